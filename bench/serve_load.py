"""Load test of the prediction service: latency and throughput from a second process.

Drives ``POST /predict`` on 127.0.0.1 with N requests at concurrency C (asyncio + aiohttp, one
keep-alive connection per concurrent client), first with one spectrum per request, then with
batches of spectra, and prints p50 / p99 latency, throughput and the error count (any answer
other than 200, or a failed connection, is an error). Targets (quoted, not asserted): one
spectrum p50 < 15 ms and p99 < 50 ms at concurrency 32; batched >= 2,000 spectra/s; 0 errors.

Without ``--url`` the script starts ``bentoml serve`` itself (the project's bundle, as
``make serve``; LOCALSOC_WORKERS / LOCALSOC_THREADS pass through) and stops it afterwards.
``--family cnn`` serves instead each site's best 1D-CNN fold ensemble (lowest calibration OOF
RMSE among the CNN methods of the study in data/), packaged into a temporary BentoML home, to
measure the CNN path when the winners are PLSR models (their domain statistics are the
winner's: the figures are about speed only).
Spectra: the served site's rows of data/02_intermediate/sites_ssl.parquet when present, else
simulated ones. The load generator shares the machine's cores with the service.

``--kill-requests 3000`` adds a run of that many single-spectrum requests during which one
worker is killed (SIGKILL) half-way: the errors are printed beside the client connections the
killed worker held (each has at most one request in flight: the target is no more errors than
those) and the requests in flight at the kill, then whether the worker came back and the server
still answers /readyz.

Usage: python bench/serve_load.py [--url http://127.0.0.1:3000] [--requests 10000]
           [--batch-requests 10000] [--batch-size 100] [--concurrency 32] [--site SITE]
           [--family cnn] [--kill-requests 3000]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from _common import print_header, row

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start_server(port: int, log_path: Path, extra_env: dict | None = None) -> subprocess.Popen:
    log = open(log_path, "w")  # noqa: SIM115 - the server process owns it
    return subprocess.Popen(
        [str(BIN / "bentoml"), "serve", "localsoc.serving.service:LocalSOCService",
         "--host", "127.0.0.1", "--port", str(port)],
        cwd=ROOT, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
        env={**os.environ, "BENTOML_DO_NOT_TRACK": "true", "TF_CPP_MIN_LOG_LEVEL": "2",
             **(extra_env or {})},
    )


def cnn_bundle(home: Path) -> str:
    """Package each site's best CNN of the study in data/ into ``home``; returns the tag."""
    import pandas as pd
    import yaml

    from localsoc.datasets.bento_bundle import BentoBundleDataset
    from localsoc.datasets.keras_ensemble import KerasEnsembleDataset
    from localsoc.methods import methods
    from localsoc.pipelines.package.nodes import package_winners

    data = ROOT / "data"
    winners = json.loads((data / "08_reporting/study_winners.json").read_text())
    metrics = pd.read_csv(data / "08_reporting/study_metrics.csv")
    predictions = pd.read_csv(data / "07_model_output/study_predictions.csv")
    collection_of = {m.label: m.collection for m in methods()}
    collections: dict[str, dict] = {"library": {}, "site": {}, "transfer": {}}
    for site in winners:
        cnn = metrics.loc[(metrics["site"] == site) & (metrics["family"] == "cnn")]
        best = cnn.sort_values("cal_rmse", kind="stable").iloc[0]
        collection = collection_of[best["method"]]
        winners[site] = {
            **winners[site], "method": best["method"], "model_key": best["model_key"],
            "collection": collection, "family": "cnn", "trained_on": best["trained_on"],
            "cal_rmse": float(best["cal_rmse"]),
            "interval_halfwidth": float(best["interval_halfwidth"]),
            "test_metrics": {k: float(best[k]) for k in winners[site]["test_metrics"]},
        }
        folder = data / f"06_models/{collection}_models/{best['model_key']}"
        collections[collection][best["model_key"]] = KerasEnsembleDataset(
            filepath=str(folder)).load()
    conf = {}
    for name in ("parameters", "parameters_preprocess", "parameters_validate",
                 "parameters_package"):
        conf.update(yaml.safe_load((ROOT / f"conf/base/{name}.yml").read_text()))
    library_ssl = pd.read_parquet(data / "02_intermediate/library_ssl.parquet")
    sites_ssl = pd.read_parquet(data / "02_intermediate/sites_ssl.parquet")
    bundle = package_winners(winners, predictions, collections["library"], collections["site"],
                             collections["transfer"], library_ssl, sites_ssl, conf["grid"],
                             conf["preprocess"], conf["validate"], conf["package"])
    dataset = BentoBundleDataset(filepath=str(home / "bento_tag.txt"), home=str(home))
    dataset.save(bundle)
    return dataset.tag()


def wait_ready(url: str, process: subprocess.Popen | None, log_path: Path | None,
               seconds: float = 300) -> None:
    import urllib.request

    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            log = log_path.read_text()[-3000:] if log_path else ""
            raise SystemExit(f"the service exited ({process.returncode}):\n{log}")
        try:
            with urllib.request.urlopen(f"{url}/readyz", timeout=2) as answer:
                if answer.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.5)
    raise SystemExit(f"the service at {url} was not ready in {seconds:.0f} s")


def site_spectra(site: dict, n: int) -> tuple[list[float], np.ndarray]:
    """(wavelengths, reflectance rows) for the site: its real rows, else simulated ones."""
    import pandas as pd

    from localsoc.data.schema import Grid, spectra_of, wavelengths_of

    grid = site["grid"]
    path = ROOT / "data/02_intermediate/sites_ssl.parquet"
    if path.exists():
        table = pd.read_parquet(path)
        rows = table.loc[table["site"] == site["site"]]
        if len(rows) and wavelengths_of(rows).size == grid["n_bands"]:
            return wavelengths_of(rows).tolist(), spectra_of(rows)[:n]
    from localsoc.data.simulate import default_sites, simulate_ssl

    wanted = [s for s in default_sites() if s.site_id == site["site"]] or list(default_sites()[:1])
    _, table = simulate_ssl(global_size=100, country_sizes={}, sites=wanted,
                            grid=Grid(grid["start_nm"], grid["stop_nm"], grid["step_nm"]))
    return wavelengths_of(table).tolist(), spectra_of(table)[:n]


async def drive(url: str, bodies: list[bytes], n_requests: int, concurrency: int,
                at: int | None = None, action=None):
    """(latencies in s, error count, wall s, first error) of n_requests at the concurrency;
    ``action()`` is called when request ``at`` is about to start, and the requests in flight
    then are kept in ``drive.in_flight_at_action``."""
    import aiohttp

    latencies = np.zeros(n_requests)
    errors = in_flight = 0
    first_error: str | None = None
    next_index = 0
    headers = {"content-type": "application/json"}

    async def client(session: aiohttp.ClientSession) -> None:
        nonlocal next_index, errors, first_error, in_flight
        while next_index < n_requests:
            index = next_index
            next_index += 1
            body = bodies[index % len(bodies)]
            if index == at and action is not None:
                drive.in_flight_at_action = in_flight
                action()
            in_flight += 1
            start = time.perf_counter()
            try:
                async with session.post(f"{url}/predict", data=body, headers=headers) as answer:
                    payload = await answer.read()
                    if answer.status != 200:
                        errors += 1
                        first_error = first_error or f"{answer.status} {payload[:200]!r}"
            except aiohttp.ClientError as error:
                errors += 1
                first_error = first_error or repr(error)
            in_flight -= 1
            latencies[index] = time.perf_counter() - start

    connector = aiohttp.TCPConnector(limit=concurrency, force_close=False)
    timeout = aiohttp.ClientTimeout(total=120)
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:
        start = time.perf_counter()
        cpu_start = time.process_time()
        await asyncio.gather(*(client(session) for _ in range(concurrency)))
        wall = time.perf_counter() - start
        drive.client_cpu_s = time.process_time() - cpu_start
    return latencies, errors, wall, first_error


def report(label: str, latencies: np.ndarray, errors: int, wall: float, spectra_per_request: int,
           targets: str) -> None:
    n = latencies.size
    print(f"\n-- {label}: {n} requests x {spectra_per_request} spectra  ({targets})")
    row("latency p50 / p99 / mean", f"{np.percentile(latencies, 50) * 1e3:8.2f} / "
        f"{np.percentile(latencies, 99) * 1e3:8.2f} / {latencies.mean() * 1e3:8.2f} ms")
    row("throughput", f"{n / wall:8.1f} requests/s   {n * spectra_per_request / wall:9.1f} "
        "spectra/s")
    row("errors", f"{errors}")
    row("wall; CPU of the load generator", f"{wall:8.1f} s; {drive.client_cpu_s:.1f} s")


def request_bodies(site: dict, batch_size: int) -> tuple[list[bytes], list[bytes]]:
    """JSON bodies of /predict for the site: one spectrum each, and four batches."""
    wavelengths, spectra = site_spectra(site, max(batch_size, 100))
    singles = [json.dumps({"site": site["site"], "wavelengths_nm": wavelengths,
                           "reflectance": [row_.tolist()]}).encode() for row_ in spectra]
    batch = np.resize(spectra, (batch_size, spectra.shape[1]))
    batches = [json.dumps({"site": site["site"], "wavelengths_nm": wavelengths,
                           "reflectance": np.roll(batch, k, axis=0).tolist()}).encode()
               for k in range(4)]
    return singles, batches


def worker_pids(process: subprocess.Popen) -> list[int]:
    """The BentoML worker processes of the server ``process`` started."""
    import psutil

    from localsoc.serving.supervision import WORKER_MODULE

    return sorted(child.pid for child in psutil.Process(process.pid).children(recursive=True)
                  if WORKER_MODULE in child.cmdline())


def kill_a_worker_under_load(url: str, process: subprocess.Popen, bodies: list[bytes],
                             n_requests: int, concurrency: int) -> None:
    """``n_requests`` single-spectrum requests at ``concurrency``; one worker SIGKILLed when half
    of them have started. Prints the errors beside the requests in flight at the kill (all
    workers': a bound on the killed worker's), and whether the server recovered."""
    before = worker_pids(process)
    if len(before) < 2:
        print(f"\n-- worker kill: skipped, {len(before)} worker(s) (LOCALSOC_WORKERS >= 2)")
        return
    killed, held = before[0], []

    def kill() -> None:
        import psutil

        port = int(url.rsplit(":", 1)[1])
        held.extend(c for c in psutil.Process(killed).net_connections(kind="tcp")
                    if c.status == psutil.CONN_ESTABLISHED and c.laddr.port == port)
        os.kill(killed, signal.SIGKILL)

    latencies, errors, wall, first = asyncio.run(drive(
        url, bodies, n_requests, concurrency, at=n_requests // 2, action=kill))
    report(f"one worker of {len(before)} killed after {n_requests // 2} requests",
           latencies, errors, wall, 1, "target: errors <= the killed worker's connections")
    row("client connections held by the killed worker", f"{len(held)}")
    row("requests in flight at the kill (all workers)", f"{drive.in_flight_at_action}")
    if first:
        row("first error", first)
    time.sleep(5)
    wait_ready(url, process, None, seconds=120)
    after = worker_pids(process)
    row("workers before / after (killed pid gone)",
        f"{len(before)} / {len(after)} ({killed not in after}); server still running: "
        f"{process.poll() is None}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", help="a running service (default: start one)")
    parser.add_argument("--requests", type=int, default=10_000)
    parser.add_argument("--batch-requests", type=int, default=10_000)
    parser.add_argument("--batch-size", type=int, default=100)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--site", help="served site to ask for (default: the first)")
    parser.add_argument("--family", choices=("winner", "cnn"), default="winner",
                        help="serve the packaged winners, or each site's best CNN")
    parser.add_argument("--kill-requests", type=int, default=0,
                        help="then this many requests with a worker killed half-way (needs a "
                        "server started by this script, LOCALSOC_WORKERS >= 2; e.g. 3000)")
    args = parser.parse_args()

    print_header("Prediction service load (bentoml serve, POST /predict)")
    process = log_path = None
    url = args.url
    scratch = tempfile.TemporaryDirectory(prefix="localsoc_bench_")
    if url is None:
        extra_env = {}
        if args.family == "cnn":
            if not (ROOT / "data/08_reporting/study_metrics.csv").exists():
                print("skipped: no study outputs in data/; run `make run`")
                return
            home = Path(scratch.name) / "bentoml"
            extra_env = {"BENTOML_HOME": str(home), "LOCALSOC_BUNDLE_TAG": cnn_bundle(home)}
        elif not (ROOT / "data/06_models/bento_tag.txt").exists() and not os.environ.get(
                "LOCALSOC_BUNDLE_TAG"):
            print("skipped: no packaged bundle (data/06_models/bento_tag.txt); run `make run`")
            return
        port = free_port()
        url = f"http://127.0.0.1:{port}"
        log_path = Path(scratch.name) / "serve.log"
        process = start_server(port, log_path, extra_env)
    try:
        wait_ready(url, process, log_path)
        import urllib.request

        with urllib.request.urlopen(f"{url}/sites", timeout=10) as answer:
            document = json.loads(answer.read())
        sites = {s["site"]: s for s in document["sites"]}
        site = sites[args.site] if args.site else document["sites"][0]
        print(f"service {url}: bundle {document['bundle']}; site {site['site']} "
              f"({site['method']}, {site['family']}); workers "
              f"{os.environ.get('LOCALSOC_WORKERS', 'default')}, threads "
              f"{os.environ.get('LOCALSOC_THREADS', '1')} per worker; load generator in "
              "this process")
        singles, batches = request_bodies(site, args.batch_size)
        asyncio.run(drive(url, singles, 200, args.concurrency))  # warm-up
        latencies, errors, wall, first = asyncio.run(
            drive(url, singles, args.requests, args.concurrency))
        report(f"one spectrum per request, concurrency {args.concurrency}", latencies, errors,
               wall, 1, "target p50 < 15 ms, p99 < 50 ms, 0 errors")
        if first:
            row("first error", first)
        latencies, errors, wall, first = asyncio.run(
            drive(url, batches, args.batch_requests, args.concurrency))
        report(f"batches of {args.batch_size}, concurrency {args.concurrency}", latencies,
               errors, wall, args.batch_size, "target >= 2,000 spectra/s, 0 errors")
        if first:
            row("first error", first)
        if args.kill_requests and process is not None:
            kill_a_worker_under_load(url, process, singles, args.kill_requests,
                                     args.concurrency)
    finally:
        if process is not None and process.poll() is None:
            os.killpg(process.pid, signal.SIGTERM)
            process.wait(timeout=60)
        scratch.cleanup()


if __name__ == "__main__":
    main()
