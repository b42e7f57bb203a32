"""The whole study at growing global library sizes: each stage's wall time, CPU seconds and peak
memory, and how each grows with the library (issue #30, item 3).

Each size runs in its own scratch project (WORKDIR/size_<N>/project, ``study_seeds.scratch``) with conf/demo's budgets and
``ingest.simulate.global_size = N`` (the country libraries follow in the paper's proportions,
``localsoc.data.simulate.country_sizes_for``), so the figures isolate data size. Each stage runs
as its own process, ``localsoc stage <name>`` (what dvc.yaml runs), and its figures are its own:
wall seconds, CPU seconds (user + sys of the process and its children, from ``os.wait4``), peak
RSS (``ru_maxrss``), the seconds inside the Kedro session (``localsoc stage``'s log: the wall
less the process start-up) and the 1-minute load average at the stage's start and end (the
machine may be shared: CPU seconds are the figure that load does not inflate).

A watchdog stops a stage whose resident memory passes --max-rss-gib or when the machine's
available memory falls under --min-available-gib (recorded as ``killed``: a finding, not a crash).

Printed: the table (size x stage), each stage's growth exponent (least-squares slope of log
seconds against log size, from CPU seconds and from wall, over every size measured) and the
ratios the issue's targets name (50,422 / 5,000 at most 13x, 200,000 / 50,422 at most 5.2x,
the CNN searches exempt). Written: WORKDIR/results/stages.csv (every measurement),
WORKDIR/results/size_<N>/{study_metrics,library_search_trials}.csv, and the log-log figure
(--figure, default docs/img/study-scale.png).

    python bench/study_scale.py [--sizes 5000 20000 50422 200000] [--workdir /tmp/localsoc_scale]
        [--reuse] [--stages nested mbl] [--figure docs/img/study-scale.png]

``--reuse`` keeps a size's project and skips the stages already measured there (a stopped run
goes on where it stopped); ``--stages`` runs only those stages (their inputs must already be in
the size's project, e.g. from an earlier run with --reuse) and replaces their measurements.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pandas as pd
import psutil

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench._common import machine_line  # noqa: E402
from bench.study_seeds import scratch  # noqa: E402

from localsoc.pipeline_registry import STAGES  # noqa: E402

SIZES = (5000, 20000, 50422, 200000)
CNN_SEARCHES = ("train_library", "train_sites", "transfer")  # exempt from the targets
TARGETS = ((5000, 50422, 13.0), (50422, 200000, 5.2))  # (from, to, at most this many times)
SAVED = ("data/08_reporting/study_metrics.csv", "data/07_model_output/library_search_trials.csv")
STAGE_LOG = "LOCALSOC_STAGE_LOG"  # localsoc.command_line.STAGE_LOG_VARIABLE
GIB = 2**30


def size_params(size: int) -> dict:
    return {"ingest": {"simulate": {"global_size": int(size)}}}


class Watchdog(threading.Thread):
    """Polls a process tree's RSS and the machine's available memory; kills the tree past a
    limit and says why."""

    def __init__(self, pid: int, max_rss: float, min_available: float, interval_s: float = 0.5):
        super().__init__(daemon=True)
        self.pid, self.max_rss, self.min_available = pid, max_rss, min_available
        self.interval_s = interval_s
        self.peak_tree_rss = 0
        self.killed: str | None = None
        self._done = threading.Event()

    def tree_rss(self) -> int:
        try:
            process = psutil.Process(self.pid)
            members = [process, *process.children(recursive=True)]
        except psutil.Error:
            return 0
        total = 0
        for member in members:
            try:
                total += member.memory_info().rss
            except psutil.Error:
                pass
        return total

    def run(self) -> None:
        while not self._done.wait(self.interval_s):
            rss = self.tree_rss()
            self.peak_tree_rss = max(self.peak_tree_rss, rss)
            available = psutil.virtual_memory().available
            if rss > self.max_rss or available < self.min_available:
                self.killed = (f"RSS {rss / GIB:.1f} GiB, available {available / GIB:.1f} GiB "
                               f"(limits {self.max_rss / GIB:.1f} / {self.min_available / GIB:.1f})")
                for member in self._tree():
                    try:
                        member.kill()
                    except psutil.Error:
                        pass
                return

    def _tree(self) -> list:
        try:
            process = psutil.Process(self.pid)
            return [*process.children(recursive=True), process]
        except psutil.Error:
            return []

    def stop(self) -> None:
        self._done.set()
        self.join()


# What every stage process does before its Kedro session: the imports of `localsoc stage`
# (TensorFlow, Kedro, every pipeline). Measured once as a process of its own (STARTUP row).
STARTUP = "(start-up)"
STARTUP_CODE = ("from localsoc.command_options import start_tensorflow; start_tensorflow(); "
                "from localsoc.pipeline_registry import register_pipelines; register_pipelines()")
ORDER = (STARTUP, *STAGES)


def run_stage(project: Path, stage: str, log_dir: Path, args) -> dict:
    """One stage as its own process: its wall, CPU seconds, peak RSS and load averages
    (``stage`` STARTUP: the imports of a stage process only)."""
    environment = {**os.environ, "KEDRO_DISABLE_TELEMETRY": "true", "DVC_NO_ANALYTICS": "1",
                   "BENTOML_DO_NOT_TRACK": "true", "TF_CPP_MIN_LOG_LEVEL": "2",
                   "PYTHONHASHSEED": "0", "BENTOML_HOME": str(project.parent / "bentoml_home"),
                   STAGE_LOG: str(log_dir / "stage_seconds.log")}
    command = ([sys.executable, "-c", STARTUP_CODE] if stage == STARTUP
               else [sys.executable, "-m", "localsoc.command_line", "stage", stage])
    load_start = os.getloadavg()[0]
    start = time.perf_counter()
    with open(log_dir / f"{stage.strip('()')}.log", "w") as log:
        process = subprocess.Popen(command, cwd=project, env=environment, stdout=log,
                                   stderr=subprocess.STDOUT)
        watchdog = Watchdog(process.pid, args.max_rss_gib * GIB, args.min_available_gib * GIB)
        watchdog.start()
        _, status, usage = os.wait4(process.pid, 0)
        wall = time.perf_counter() - start
        watchdog.stop()
    process.returncode = os.waitstatus_to_exitcode(status)
    return {"stage": stage, "wall_s": round(wall, 2),
            "cpu_s": round(usage.ru_utime + usage.ru_stime, 2),
            "peak_rss_mib": round(usage.ru_maxrss / 1024, 1),
            "peak_tree_rss_mib": round(watchdog.peak_tree_rss / 2**20, 1),
            "session_s": session_seconds(log_dir / "stage_seconds.log", stage),
            "load_start": round(load_start, 2), "load_end": round(os.getloadavg()[0], 2),
            "returncode": process.returncode, "killed": watchdog.killed or ""}


def session_seconds(path: Path, stage: str) -> float:
    """The seconds `localsoc stage` logged for ``stage`` (inside its Kedro session), last one."""
    if not path.exists():
        return float("nan")
    found = [line.split() for line in path.read_text().splitlines()]
    times = [float(parts[1]) for parts in found if len(parts) == 2 and parts[0] == stage]
    return times[-1] if times else float("nan")


def run_size(size: int, stages: list[str], args) -> list[dict]:
    """Every stage of ``stages`` at one global size; the size's measurements so far."""
    from localsoc.dvc_stages import write_params

    base = args.workdir / f"size_{size}"
    record = base / "measurements.json"
    project = base / "project"
    done = json.loads(record.read_text()) if (args.reuse or args.stages) and record.exists() else []
    if not project.exists() or not (args.reuse or args.stages):
        shutil.rmtree(base, ignore_errors=True)
        scratch(project)
        (base / "bentoml_home").mkdir()
        done = []
    write_params(project, "demo", size_params(size))
    log_dir = base / "logs"
    log_dir.mkdir(exist_ok=True)
    measured = {row["stage"] for row in done if row["returncode"] == 0}
    for stage in stages:
        if args.reuse and not args.stages and stage in measured:
            continue
        print(f"  {size:>7,} {stage:<14} ", end="", flush=True)
        row = {"size": size, **run_stage(project, stage, log_dir, args)}
        done = [r for r in done if r["stage"] != stage] + [row]
        record.write_text(json.dumps(done, indent=1))
        print(f"wall {row['wall_s']:8.1f} s  cpu {row['cpu_s']:8.1f} s  "
              f"rss {row['peak_rss_mib'] / 1024:5.2f} GiB  load {row['load_start']:.1f}->"
              f"{row['load_end']:.1f}  rc {row['returncode']} {row['killed']}", flush=True)
        if row["returncode"] != 0:
            print(f"  stage {stage} failed at {size:,}: see {log_dir / (stage + '.log')}")
            break
    saved = args.workdir / "results" / f"size_{size}"
    saved.mkdir(parents=True, exist_ok=True)
    for relative in SAVED:
        if (project / relative).exists():
            shutil.copy(project / relative, saved / Path(relative).name)
    return done


def with_work(table: pd.DataFrame) -> pd.DataFrame:
    """``table`` with ``work_cpu_s``: a stage's CPU seconds less the start-up's, that of the
    same size's STARTUP row (the median of all STARTUP rows for a size without one; NaN without
    any). Per size, because start-up changed between runs: 16-21 CPU s before the venv held
    compiled bytecode (98529cb), about 7 after."""
    startup = table.loc[(table["stage"] == STARTUP) & (table["returncode"] == 0)]
    per_size = startup.groupby("size")["cpu_s"].median()
    fallback = float(startup["cpu_s"].median()) if len(startup) else np.nan
    base = table["size"].map(per_size).fillna(fallback)
    work = (table["cpu_s"] - base).where(table["stage"] != STARTUP, table["cpu_s"])
    return table.assign(work_cpu_s=work.round(2))


def slope(sizes: pd.Series, seconds: pd.Series) -> float:
    """Least-squares slope of log seconds on log size (NaN under two positive points)."""
    ok = seconds.notna() & (seconds > 0)
    return (float(np.polyfit(np.log(sizes[ok]), np.log(seconds[ok]), 1)[0])
            if ok.sum() >= 2 else np.nan)


def exponents(table: pd.DataFrame) -> pd.DataFrame:
    """Per stage: the slope of log seconds against log size (CPU, CPU above start-up, wall)
    and the ratios the targets name, judged on CPU seconds (all, and above the start-up) and on
    wall seconds."""
    rows = []
    for stage in ORDER:
        group = table.loc[(table["stage"] == stage) & (table["returncode"] == 0)]
        group = group.sort_values("size")
        if group.empty:
            continue
        row = {"stage": stage}
        for column in ("cpu_s", "work_cpu_s", "wall_s"):
            row[f"exp {column[:-2]}"] = slope(group["size"], group[column])
        by_size = group.set_index("size")
        for low, high, limit in TARGETS:
            for column in ("cpu_s", "work_cpu_s", "wall_s"):
                ratio = (by_size.loc[high, column] / by_size.loc[low, column]
                         if low in by_size.index and high in by_size.index else np.nan)
                row[f"{column[:-2]} {high}/{low}"] = ratio
                row[f"{column[:-2]} <= {limit}x"] = (
                    "exempt" if stage in CNN_SEARCHES else "-" if np.isnan(ratio)
                    else "yes" if ratio <= limit else "NO")
        rows.append(row)
    return pd.DataFrame(rows)


def figure(table: pd.DataFrame, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ok = table.loc[table["returncode"] == 0]
    panels = (("cpu_s", "CPU seconds (user + sys; grey: a stage process's start-up)"),
              ("wall_s", "wall seconds (a shared machine: see the load)"),
              ("peak_rss_mib", "peak RSS, MiB"))
    fig, axes = plt.subplots(1, 3, figsize=(16, 5.5))
    colours = plt.get_cmap("tab20")(np.linspace(0, 1, len(STAGES)))
    sizes = np.array(sorted(ok["size"].unique()), float)
    for axis, (column, label) in zip(axes, panels, strict=True):
        for colour, stage in zip(colours, STAGES, strict=True):
            group = ok.loc[ok["stage"] == stage].sort_values("size")
            if group.empty:
                continue
            style = "--" if stage in CNN_SEARCHES else "-"
            axis.plot(group["size"], group[column], style, marker="o", color=colour, label=stage)
        startup = ok.loc[ok["stage"] == STARTUP].sort_values("size")
        if len(startup):
            axis.plot(startup["size"], startup[column], color="grey", lw=4, alpha=0.5,
                      label=STARTUP)
        if column != "peak_rss_mib" and len(sizes):
            anchor = ok.loc[ok["size"] == sizes[0], column].median()
            axis.plot(sizes, anchor * sizes / sizes[0], ":", color="black", lw=2,
                      label="linear (slope 1)")
        axis.set_xscale("log")
        axis.set_yscale("log")
        axis.set_xlabel("global library size (spectra)")
        axis.set_ylabel(label)
        axis.grid(True, which="both", alpha=0.3)
    axes[0].legend(fontsize=7, ncol=2)
    fig.suptitle("The study's stages against library size (conf/demo budgets; dashed: the CNN "
                 "searches)")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    print(f"figure: {path}")


def print_tables(table: pd.DataFrame) -> None:
    fmt = {"float_format": lambda v: f"{v:.2f}"}
    wide = table.loc[table["returncode"] == 0].pivot(index="stage", columns="size")
    order = [s for s in ORDER if s in wide.index]
    stages = [s for s in STAGES if s in wide.index]
    with pd.option_context("display.width", 250, "display.max_columns", 80):
        for column, label in (("wall_s", "wall s"), ("cpu_s", "CPU s"),
                              ("work_cpu_s", "CPU s above the start-up"),
                              ("session_s", "wall s inside the Kedro session"),
                              ("load_start", "1-minute load average at the start"),
                              ("peak_rss_mib", "peak RSS MiB")):
            part = wide[column].loc[order].copy()
            if column == "peak_rss_mib":
                part.loc["max"] = part.loc[stages].max()
            elif not column.startswith("load"):
                part.loc["total (stages)"] = part.loc[stages].sum(min_count=1)
            print(f"\n{label} (size across):")
            print(part.to_string(**fmt))
        print("\ngrowth per stage (exponent: slope of log seconds on log size):")
        print(exponents(table).to_string(index=False, **fmt))
        failed = table.loc[table["returncode"] != 0]
        if len(failed):
            print("\nstages that did not finish:")
            print(failed.to_string(index=False))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=list(SIZES))
    parser.add_argument("--workdir", type=Path, default=Path("/tmp/localsoc_scale"))
    parser.add_argument("--reuse", action="store_true",
                        help="keep each size's project; skip the stages measured there")
    parser.add_argument("--stages", nargs="+", choices=ORDER,
                        help=f"only these stages (default: {STARTUP!r} and every stage, in the "
                             "study's order)")
    parser.add_argument("--figure", type=Path, default=ROOT / "docs/img/study-scale.png")
    parser.add_argument("--max-rss-gib", type=float, default=16.0)
    parser.add_argument("--min-available-gib", type=float, default=2.0)
    parser.add_argument("--report-only", action="store_true",
                        help="print and draw what --workdir holds; run nothing")
    args = parser.parse_args()
    args.workdir = args.workdir.resolve()
    stages = [s for s in ORDER if not args.stages or s in args.stages]

    print(machine_line())
    rows = []
    for size in args.sizes:
        if not args.report_only:
            print(f"-- global size {size:,}", flush=True)
            rows += run_size(size, stages, args)
        elif (args.workdir / f"size_{size}/measurements.json").exists():
            rows += json.loads((args.workdir / f"size_{size}/measurements.json").read_text())
    if not rows:
        raise SystemExit(f"no measurements in {args.workdir}")
    table = with_work(pd.DataFrame(rows))
    results = args.workdir / "results"
    results.mkdir(parents=True, exist_ok=True)
    table.to_csv(results / "stages.csv", index=False)
    print_tables(table)
    figure(table, args.figure)


if __name__ == "__main__":
    main()
