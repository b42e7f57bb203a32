"""A `kedro run` killed (SIGKILL) while it writes an output leaves no 0-byte or half-written
file: the previous output stays whole, and the next run works."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from tests.conftest import make_scratch_project

pytestmark = pytest.mark.slow

#: `kedro ARGS...` that kills itself (SIGKILL) right after it opens, for writing, a file whose
#: name holds $KILL_AT_OPEN_OF: the file exists, nothing is written yet (the probe's 0-byte file).
KILLING_KEDRO = """
import os, signal, sys

target = os.environ.get("KILL_AT_OPEN_OF")

def kill(*_):
    os.kill(os.getpid(), signal.SIGKILL)

def audit(event, args):
    if (target and event == "open" and isinstance(args[0], str) and target in args[0]
            and isinstance(args[1], str) and any(c in args[1] for c in "wax")):
        sys.setprofile(kill)  # the first step after the open returns

sys.addaudithook(audit)
from kedro.framework.cli import main
sys.argv = ["kedro", *sys.argv[1:]]
main()
"""
OUTPUTS = ["data/01_raw/library_raw.parquet", "data/01_raw/sites_raw.parquet",
           "data/02_intermediate/library_ssl.parquet", "data/02_intermediate/sites_ssl.parquet",
           "data/02_intermediate/library_quarantine.csv",
           "data/02_intermediate/sites_quarantine.csv",
           "data/08_reporting/validation_report.json", "data/08_reporting/stage_seconds.json"]


def kedro_run(root: Path, *args: str, kill_at: str | None = None) -> subprocess.CompletedProcess:
    env = {**os.environ, "KEDRO_DISABLE_TELEMETRY": "true", "TF_CPP_MIN_LOG_LEVEL": "2"}
    env.pop("KILL_AT_OPEN_OF", None)
    if kill_at:
        env["KILL_AT_OPEN_OF"] = kill_at
    return subprocess.run(
        [sys.executable, "-c", KILLING_KEDRO, "run", "--env", "test", "--pipelines",
         "ingest,validate", *args],
        cwd=root, env=env, capture_output=True, text=True, timeout=600)


def read(path: Path):
    if path.suffix == ".parquet":
        return pd.read_parquet(path)
    if path.suffix == ".csv":
        return pd.read_csv(path)
    return json.loads(path.read_text())


def test_a_run_killed_while_writing_leaves_whole_outputs_and_the_next_run_works(tmp_path):
    root = make_scratch_project(tmp_path / "project")
    first = kedro_run(root)
    assert first.returncode == 0, first.stderr[-3000:]
    quarantine = root / "data/02_intermediate/library_quarantine.csv"
    before = quarantine.read_bytes()
    assert before

    killed = kedro_run(root, "--params", "ingest.simulate.global_size=1200",
                       kill_at="library_quarantine.csv")
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-3000:]
    for name in OUTPUTS:
        path = root / name
        assert path.stat().st_size > 0, f"{name} is empty after the kill"
        read(path)  # whole: it parses
    assert quarantine.read_bytes() == before  # the write that was killed changed nothing

    again = kedro_run(root, "--params", "ingest.simulate.global_size=1200")
    assert again.returncode == 0, again.stderr[-3000:]
    library = pd.read_parquet(root / "data/01_raw/library_raw.parquet")
    assert len(library) == 1200
    for name in OUTPUTS:
        read(root / name)
    leftovers = [p for p in (root / "data").rglob(".*.saving-*")]
    assert leftovers == []


def test_a_dict_of_figures_replaces_the_whole_directory(tmp_path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from localsoc.datasets.atomic import MatplotlibDataset

    dataset = MatplotlibDataset(filepath=str(tmp_path / "figures"), overwrite=True)
    dataset.save({"a.png": plt.figure(), "b.png": plt.figure()})
    dataset.save({"c.png": plt.figure()})
    plt.close("all")
    assert sorted(p.name for p in tmp_path.rglob("*")) == ["c.png", "figures"]
