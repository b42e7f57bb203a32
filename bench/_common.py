"""Shared helpers for the benchmark scripts: timing, peak memory, a machine description line.

Benchmarks print figures; they assert nothing about speed (targets are quoted next to figures).
"""

from __future__ import annotations

import argparse
import os
import platform
import resource
import sys
import threading
import time
from collections.abc import Callable
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import psutil


@dataclass
class Measurement:
    """Wall and CPU seconds of one block, and the peak resident memory above its start."""

    wall_s: float = 0.0
    cpu_s: float = 0.0
    peak_rss_delta_mib: float = 0.0
    extra: dict = field(default_factory=dict)


class _RssSampler(threading.Thread):
    def __init__(self, interval_s: float = 0.005):
        super().__init__(daemon=True)
        self.process = psutil.Process()
        self.interval_s = interval_s
        self.start_rss = self.process.memory_info().rss
        self.peak_rss = self.start_rss
        self._stop_event = threading.Event()

    def run(self) -> None:
        while not self._stop_event.is_set():
            self.peak_rss = max(self.peak_rss, self.process.memory_info().rss)
            self._stop_event.wait(self.interval_s)

    def stop(self) -> None:
        self._stop_event.set()
        self.join()
        self.peak_rss = max(self.peak_rss, self.process.memory_info().rss)


@contextmanager
def measure():
    """``with measure() as m: ...`` fills m.wall_s, m.cpu_s and m.peak_rss_delta_mib."""
    result = Measurement()
    sampler = _RssSampler()
    sampler.start()
    cpu_start = time.process_time()
    wall_start = time.perf_counter()
    try:
        yield result
    finally:
        result.wall_s = time.perf_counter() - wall_start
        result.cpu_s = time.process_time() - cpu_start
        sampler.stop()
        result.peak_rss_delta_mib = (sampler.peak_rss - sampler.start_rss) / 2**20


def best_of(function: Callable[[], object], repeats: int = 5) -> tuple[float, float]:
    """(minimum, median) wall seconds of ``repeats`` calls (one untimed warm-up call first)."""
    function()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        function()
        times.append(time.perf_counter() - start)
    return float(np.min(times)), float(np.median(times))


def peak_rss_mib() -> float:
    """Peak resident memory of this process so far (getrusage), MiB."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / 2**20 if sys.platform == "darwin" else peak / 2**10


def machine_line() -> str:
    """One line: CPU model, cores usable, RAM, load, Python, NumPy and its BLAS."""
    model = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as cpuinfo:
            for line in cpuinfo:
                if line.startswith("model name"):
                    model = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:
        cores = os.cpu_count()
    memory_gib = psutil.virtual_memory().total / 2**30
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    blas = "unknown BLAS"
    try:
        from threadpoolctl import threadpool_info

        libraries = [i for i in threadpool_info() if i.get("user_api") == "blas"]
        if libraries:
            blas = ", ".join(
                f"{i.get('internal_api')} {i.get('version')} from "
                f"{'numpy' if 'numpy.libs' in i.get('filepath', '') else 'scipy'}"
                for i in libraries
            )
    except ImportError:
        pass
    return (
        f"machine: {model}, {cores} cores usable, {memory_gib:.0f} GiB RAM, load average "
        f"{load:.2f} at start; Python {platform.python_version()}, NumPy {np.__version__} ({blas})"
    )


def print_header(title: str) -> None:
    print(f"== {title}")
    print(machine_line())


def row(label: str, value: str) -> None:
    print(f"  {label:<58} {value}")


def print_frame(frame, title: str | None = None) -> None:
    """A result table, three decimals, every column on one line (``title`` above it)."""
    import pandas as pd

    if title:
        print(title)
    with pd.option_context("display.width", 250, "display.max_columns", 60):
        print(frame.to_string(index=False, float_format=lambda v: f"{v:.3f}"))


def study_projects_parser(doc: str, root, draws: bool = True) -> argparse.ArgumentParser:
    """The parser of a script that reads finished studies: positional project directories
    (default: ``root``, this project after `make run`), and with ``draws`` the ``--draws`` and
    ``--seed`` of its resampling."""
    parser = argparse.ArgumentParser(description=doc.splitlines()[0])
    parser.add_argument("projects", nargs="*", type=Path, default=[Path(root)],
                        help="study project directories (default: this project, after make run)")
    if draws:
        parser.add_argument("--draws", type=int, default=4000)
        parser.add_argument("--seed", type=int, default=0)
    return parser


def check_study_projects(projects) -> None:
    """Stop with a message naming the first project without study outputs."""
    for project in projects:
        if not (Path(project) / "data/07_model_output/study_predictions.csv").exists():
            raise SystemExit(f"{project}: no study outputs (data/07_model_output/"
                             "study_predictions.csv); run `make run` there, or pass a project")
