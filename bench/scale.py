"""Scaling out on this machine: RS-LOCAL on Dask and the Keras-Tuner chief/worker CNN search.

Prints figures, asserts nothing about speed. This machine has 2 cores shared with other jobs, so
"2 workers" here means two processes on the same two cores: the figures show that the machinery
works and what it costs, not what a cluster gains (there, each worker brings its own cores or
GPU and throughput grows with the worker count until the scheduler or the chief is the limit).

1. RS-LOCAL subset fits per second (k = 100, b = 40, retain = 0.95, 10 PLS factors, 30 local
   samples, a synthetic low-rank library of --library samples x 211 bands): the local executor
   (native kernel, 1 and 2 OpenMP threads) and executor="dask" on a LocalCluster of 1 and 2
   worker processes (1 thread each). Cluster start-up is not timed; scattering the arrays is.
   Every run must select the same samples as the local one (printed).
2. Keras-Tuner trials per minute: a random search of --trials trials (the same trials in every
   run) on --samples spectra x 211 bands, 3-fold CV, as one process and as a chief with 1 and
   2 worker processes (a worker gets cores / workers TensorFlow threads). Worker start-up
   (TensorFlow import) is not timed; the chief's own work (writing the task, loading the best
   trial's models) is.

Usage: python bench/scale.py [--quick] [--library N] [--trials N] [--samples N] [--skip-dask]
       [--skip-tuner]
"""

from __future__ import annotations

import argparse
import logging
import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("KEDRO_DISABLE_TELEMETRY", "true")

import numpy as np  # noqa: E402

from _common import print_header, row  # noqa: E402
from localsoc.selection import RSLocal  # noqa: E402

SETTINGS = {"k": 100, "b": 40, "retain": 0.95, "n_components": 10}
SPACE = {
    "conv_blocks": [1, 2],
    "filters": [8, 16],
    "kernel_size": {"min": 3, "max": 9},
    "strides": [1, 2],
    "fc_blocks": [1],
    "fc_units": [16, 32],
    "batch_normalization": [False],
    "fc_batch_normalization": [False],
    "dropout": [False],
    "fc_dropout": [False],
    "optimizer": ["adam"],
    "learning_rate": {"min": 1e-3, "max": 1e-2, "sampling": "log"},
    "batch_size": [16],
}
ROOT = Path(__file__).resolve().parents[1]


def cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not Linux
        return os.cpu_count() or 1


def synthetic(n_library: int, n_local: int = 30, seed: int = 0):
    """Low-rank absorbance-like library and a site with its own X -> y relation."""
    rng = np.random.default_rng(seed)
    basis = np.cumsum(rng.normal(size=(15, 211)), axis=1) / 20
    latent = rng.normal(size=(n_library + n_local, 15))
    X = 0.5 + latent @ basis + 0.003 * rng.normal(size=(n_library + n_local, 211))
    y = np.exp(0.5 * latent[:, 0] + 0.2 * latent[:, 1]) + 0.05 * rng.normal(size=len(X))
    y[n_library:] = 1.6 + 0.4 * latent[n_library:, 0] - 0.3 * latent[n_library:, 2]
    return X[:n_library], y[:n_library], X[n_library:], y[n_library:]


def rslocal_figures(n_library: int) -> None:
    import distributed

    for name in ("distributed", "tornado"):  # start-up and shut-down chatter
        logging.getLogger(name).setLevel(logging.CRITICAL)

    print(f"\n-- 1. RS-LOCAL subset fits per second (library {n_library:,} x 211, k = 100, "
          "b = 40, retain = 0.95, 10 factors, n = 30)")
    X, y, X_local, y_local = synthetic(n_library)
    reference, local_seconds = None, None

    def run(label: str, **kwargs) -> None:
        nonlocal reference, local_seconds
        model = RSLocal(**SETTINGS, random_state=0, **kwargs)
        start = time.perf_counter()
        model.fit(X, y, X_local, y_local)
        seconds = time.perf_counter() - start
        fits = sum(entry["n_subsets"] for entry in model.history_)
        if reference is None:
            reference = model.selected_indices_
        same = np.array_equal(model.selected_indices_, reference)
        row(label, f"{fits / seconds:9,.0f} fits/s  ({fits:,} fits, {model.n_iter_} iterations, "
                   f"{seconds:6.2f} s; same selection as local: {same})")
        if local_seconds is None:
            local_seconds = seconds
        elif kwargs.get("executor") == "dask":
            row("  time above the 1-thread local run, per iteration",
                f"{1e3 * (seconds - local_seconds) / model.n_iter_:9.1f} ms")

    run("local executor, native kernel, 1 thread", n_jobs=1)
    run(f"local executor, native kernel, {cores()} threads (OpenMP)", n_jobs=-1)
    for workers in (1, 2):
        with distributed.LocalCluster(n_workers=workers, threads_per_worker=1, processes=True,
                                      dashboard_address=None, host="127.0.0.1") as cluster:
            with distributed.Client(cluster) as client:
                client.wait_for_workers(workers, timeout=120)
                run(f"dask LocalCluster, {workers} worker(s) x 1 thread", n_jobs=1,
                    executor="dask", scheduler_address=cluster.scheduler_address)


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def start_workers(count: int, directory: Path, port: int, threads: int) -> list:
    workers = []
    for number in range(1, count + 1):
        env = {**os.environ, "KERASTUNER_TUNER_ID": f"tuner{number}",
               "KERASTUNER_ORACLE_IP": "127.0.0.1", "KERASTUNER_ORACLE_PORT": str(port),
               "CUDA_VISIBLE_DEVICES": ""}
        workers.append(subprocess.Popen(
            [sys.executable, "-m", "localsoc.models.distributed_search", "--directory",
             str(directory), "--max-searches", "1", "--idle-timeout", "300", "--threads",
             str(threads), "--poll", "0.2"],
            env=env, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        ))
    return workers


def tuner_figures(n_trials: int, n_samples: int) -> None:
    from localsoc.models import distributed_search
    from localsoc.models.ensemble import make_folds
    from localsoc.models.search import search_cnn

    budget = {"trials": n_trials, "max_epochs": 15, "patience": 5, "folds": 3}
    print(f"\n-- 2. Keras-Tuner trials per minute (random search, {n_trials} trials, "
          f"{n_samples} spectra x 211 bands, 3-fold CV, <= 15 epochs)")
    rng = np.random.default_rng(0)
    X = rng.normal(size=(n_samples, 211)).cumsum(axis=1) / 10
    y = X[:, 40] - 0.5 * X[:, 150] + 0.1 * rng.normal(size=n_samples)
    ids = [f"s{i:04d}" for i in range(n_samples)]
    folds = make_folds(ids, 3, 0)
    common = {"folds": folds, "budget": budget, "seed": 0, "tuner": "random", "space": SPACE,
              "sample_ids": ids, "progress": False}

    start = time.perf_counter()
    single = search_cnn(X, y, threads=cores(), **common)
    seconds = time.perf_counter() - start
    row(f"one process ({cores()} TensorFlow threads)",
        f"{60 * n_trials / seconds:6.1f} trials/min  ({seconds:6.1f} s; best trial "
        f"{single.ensemble.info['trial_id']}, cv_rmse {single.cv_rmse:.4f})")

    for count in (1, 2):
        threads = max(1, cores() // count)
        with tempfile.TemporaryDirectory(prefix="scale_tuning_") as shared:
            port = free_port()
            workers = start_workers(count, Path(shared), port, threads)
            try:
                deadline = time.monotonic() + 180
                while len(distributed_search.ready_workers(shared)) < count:
                    if time.monotonic() > deadline or any(w.poll() is not None for w in workers):
                        raise RuntimeError("tuner workers did not start")
                    time.sleep(0.2)
                start = time.perf_counter()
                result = search_cnn(
                    X, y, threads=1,
                    distributed={"enabled": True, "oracle_ip": "127.0.0.1", "oracle_port": port,
                                 "directory": shared, "wait_timeout_s": 300},
                    **common,
                )
                seconds = time.perf_counter() - start
                for worker in workers:
                    worker.wait(timeout=120)
            finally:
                for worker in workers:
                    if worker.poll() is None:
                        worker.kill()
        per_worker = result.trials["tuner_id"].value_counts().sort_index().to_dict()
        row(f"chief + {count} worker(s) x {threads} TensorFlow thread(s)",
            f"{60 * n_trials / seconds:6.1f} trials/min  ({seconds:6.1f} s; trials per worker "
            f"{per_worker}; best trial {result.ensemble.info['trial_id']}, same as one "
            f"process: {result.ensemble.info['trial_id'] == single.ensemble.info['trial_id']})")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="smaller library and fewer trials")
    parser.add_argument("--library", type=int, default=5000)
    parser.add_argument("--trials", type=int, default=6)
    parser.add_argument("--samples", type=int, default=130)
    parser.add_argument("--skip-dask", action="store_true")
    parser.add_argument("--skip-tuner", action="store_true")
    args = parser.parse_args()
    if args.quick:
        args.library, args.trials = min(args.library, 1500), min(args.trials, 4)
    logging.basicConfig(level=logging.WARNING)
    print_header("scale: RS-LOCAL on Dask, Keras-Tuner chief/workers")
    print(f"caveat: {cores()} cores on this machine (shared with other jobs); workers here "
          "share them, so 2 workers cannot beat 1 by much. On a cluster each worker brings its "
          "own cores or GPU.")
    if not args.skip_dask:
        rslocal_figures(args.library)
    if not args.skip_tuner:
        tuner_figures(args.trials, args.samples)


if __name__ == "__main__":
    main()
