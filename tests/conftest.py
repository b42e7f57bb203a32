"""Shared fixtures: small canonical tables and the project's parameters."""

from __future__ import annotations

import os
from pathlib import Path

import absl.logging  # noqa: F401  (imported first: keep_absl_stream_open fixes its handler)
import numpy as np
import pandas as pd
import pytest
import yaml

from localsoc.data.schema import Grid, make_table
from localsoc.quiet_start import keep_absl_stream_open

os.environ.setdefault("KEDRO_DISABLE_TELEMETRY", "true")
os.environ.setdefault("DVC_NO_ANALYTICS", "1")
os.environ.setdefault("BENTOML_DO_NOT_TRACK", "true")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


# absl's handler would close pytest's capture file when Kedro's logging set-up runs in-process
# (CliRunner): every later test of that worker failed (2026-12-07); see keep_absl_stream_open
keep_absl_stream_open()

PROJECT_ROOT = Path(__file__).resolve().parents[1]
BENTOML_HOME_FILE = ".bentoml_home"  # in the study project: the BentoML store its bundle went to

# A small CNN search space: trials of a few folds run in seconds on two cores.
TINY_CNN_SPACE = {
    "conv_blocks": {"min": 1, "max": 2},
    "filters": [4, 8],
    "kernel_size": {"min": 3, "max": 7},
    "strides": [1],
    "fc_blocks": [1],
    "fc_units": [8, 16],
    "batch_normalization": [False],
    "fc_batch_normalization": [False],
    "dropout": [False],
    "fc_dropout": [False],
    "optimizer": ["adam"],
    "learning_rate": {"min": 3e-3, "max": 1e-2, "sampling": "log"},
    "batch_size": [16],
}
SMALL_GRID = Grid(400, 2500, 100)  # 22 bands: fast, same shape of problem


def load_params(env: str = "base") -> dict:
    """The merged parameters of conf/base (+ an environment), as Kedro would see them."""
    from kedro.config import OmegaConfigLoader

    loader = OmegaConfigLoader(
        conf_source=str(PROJECT_ROOT / "conf"),
        base_env="base",
        default_run_env=env,
        merge_strategy={"parameters": "soft"},
    )
    return loader["parameters"]


@pytest.fixture(scope="session")
def base_params() -> dict:
    return load_params("base")


def make_ssl(n: int, *, seed: int = 0, grid: Grid = SMALL_GRID, site: str | None = None,
             library: str | None = "lib") -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    prefix = site or library
    meta = pd.DataFrame(
        {
            "sample_id": [f"{prefix}-{i:04d}" for i in range(n)],
            "library": [library] * n,
            "country": ["XX"] * n,
            "site": [site] * n,
            "lat": rng.uniform(-40, 40, n),
            "lon": rng.uniform(-100, 100, n),
            "soc": rng.uniform(0.2, 5.0, n),
        }
    )
    spectra = rng.uniform(0.05, 0.8, (n, len(grid)))
    return make_table(meta, spectra, grid.wavelengths_nm)


@pytest.fixture
def small_library() -> pd.DataFrame:
    return make_ssl(60, seed=1)


def grid_params(grid: Grid = SMALL_GRID) -> dict:
    return {"start_nm": grid.start_nm, "stop_nm": grid.stop_nm, "step_nm": grid.step_nm}


def yaml_load(path: Path) -> dict:
    return yaml.safe_load(path.read_text())


def make_scratch_project(root: Path) -> Path:
    """A runnable copy of the project's configuration in ``root`` (data/ empty)."""
    import shutil

    root.mkdir(parents=True, exist_ok=True)
    shutil.copy(PROJECT_ROOT / "pyproject.toml", root / "pyproject.toml")
    shutil.copytree(PROJECT_ROOT / "conf", root / "conf", ignore=shutil.ignore_patterns("local"))
    (root / "conf/local").mkdir(exist_ok=True)
    (root / "src").mkdir(exist_ok=True)  # kedro wants one; the package itself is installed
    for kind in ("libraries", "sites", "plans"):
        (root / "data/01_raw/imports" / kind).mkdir(parents=True, exist_ok=True)
    return root


def _run_study(base: Path) -> tuple[Path, dict[str, float]]:
    """Every stage of the study on conf/test in a scratch project under ``base``."""
    from localsoc.command_line import run_stages
    from localsoc.pipeline_registry import STAGES

    root = make_scratch_project(base / "study")
    bentoml_home = base / "bentoml_home"
    bentoml_home.mkdir()
    with pytest.MonkeyPatch.context() as patch:
        patch.chdir(root)
        patch.setenv("BENTOML_HOME", str(bentoml_home))
        seconds = run_stages(list(STAGES), "test", project=root)
    (root / BENTOML_HOME_FILE).write_text(str(bentoml_home))
    return root, seconds


@pytest.fixture(scope="session")
def study_project(tmp_path_factory, worker_id):
    """The whole study (every stage in pipeline_registry.STAGES) run once on conf/test.

    Returns (project root, seconds per stage). Shared by every test that needs study outputs,
    and by every pytest-xdist worker: the first worker to ask runs it under a file lock in
    the session's shared temporary folder, the others wait and read it. Tests read it only
    (a test that changes it works on a copy).
    """
    import json

    from filelock import FileLock

    if worker_id == "master":  # not under xdist
        return _run_study(tmp_path_factory.mktemp("study_run"))
    shared = tmp_path_factory.getbasetemp().parent
    record = shared / "study_project.json"
    with FileLock(str(shared / "study_project.lock")):
        if not record.exists():
            base = shared / "study_run"
            if base.exists():  # a worker killed while running it
                import shutil

                shutil.rmtree(base)
            base.mkdir()
            root, seconds = _run_study(base)
            record.write_text(json.dumps({"root": str(root), "seconds": seconds}))
        done = json.loads(record.read_text())
    return Path(done["root"]), done["seconds"]
