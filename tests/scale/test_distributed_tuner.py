"""Keras-Tuner chief/worker search: a chief and two worker processes on 127.0.0.1.

The chief is this test's process, running the pipeline's own search call (``search`` of the
CNN family, localsoc.families.cnn) with ``train.distributed`` set; the two workers are ``python -m
localsoc.models.distributed_search`` subprocesses. Random search makes the trial proposals
independent of which worker asks first, so the distributed trials must equal a single-process
search's.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from localsoc.families.cnn import search
from localsoc.models import distributed_search
from localsoc.models.ensemble import make_folds, rmse
from localsoc.models.search import search_cnn
from tests.conftest import TINY_CNN_SPACE

SPACE = {**TINY_CNN_SPACE, "conv_blocks": [1]}
BUDGET = {"trials": 4, "max_epochs": 4, "patience": 2, "folds": 2}
SEED = 3
WORKERS = ("tuner1", "tuner2")
PROJECT_ROOT = Path(__file__).resolve().parents[2]


def simulated(n: int = 48, n_bands: int = 32, seed: int = 0):
    rng = np.random.default_rng(seed)
    grid = np.linspace(0.0, 1.0, n_bands)
    features = np.stack([np.exp(-0.5 * ((grid - c) / 0.08) ** 2) for c in (0.2, 0.5, 0.8)])
    amounts = rng.uniform(0.0, 1.0, size=(n, 3))
    X = amounts @ features + 0.01 * rng.normal(size=(n, n_bands))
    y = 1.0 + 2.0 * amounts[:, 0] - amounts[:, 1] + 0.05 * rng.normal(size=n)
    return X, y, [f"s{i:03d}" for i in range(n)]


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def start_worker(tuner_id: str, directory: Path, port: int, log: Path) -> subprocess.Popen:
    env = {
        **os.environ,
        "KERASTUNER_TUNER_ID": tuner_id,
        "KERASTUNER_ORACLE_IP": "127.0.0.1",
        "KERASTUNER_ORACLE_PORT": str(port),
        "CUDA_VISIBLE_DEVICES": "",
        "TF_CPP_MIN_LOG_LEVEL": "2",
    }
    command = [sys.executable, "-m", "localsoc.models.distributed_search",
               "--directory", str(directory), "--max-searches", "2", "--idle-timeout", "150",
               "--threads", "1", "--poll", "0.2"]
    return subprocess.Popen(command, env=env, cwd=PROJECT_ROOT, stdout=log.open("w"),
                            stderr=subprocess.STDOUT)


@pytest.fixture(scope="module")
def distributed_run(tmp_path_factory):
    """The chief runs two searches in a row (as the pipeline does) with the same two workers.

    Returns (first SearchResult, shared directory, worker exit codes, worker logs, first
    search's data, second SearchResult).
    """
    directory = tmp_path_factory.mktemp("shared_tuning")
    logs = tmp_path_factory.mktemp("worker_logs")
    port = free_port()
    X, y, ids = simulated()
    folds = make_folds(ids, BUDGET["folds"], SEED)
    params = {
        "tuner": "random",
        "space": SPACE,
        "progress": False,
        "threads": 1,
        "distributed": {"enabled": True, "oracle_ip": "127.0.0.1", "oracle_port": port,
                        "directory": str(directory), "wait_timeout_s": 90},
    }
    workers = [start_worker(t, directory, port, logs / f"{t}.log") for t in WORKERS]
    try:
        # Both workers idle (TensorFlow loaded) before the chief publishes the search, so that
        # one of them cannot take every trial while the other is still starting.
        deadline = time.monotonic() + 90
        while len(distributed_search.ready_workers(directory)) < len(WORKERS):
            for worker in workers:
                assert worker.poll() is None, "a worker exited early: " + "\n".join(
                    p.read_text() for p in sorted(logs.glob("*.log")))
            assert time.monotonic() < deadline, "the workers did not start within 90 s"
            time.sleep(0.2)
        result = search(X, y, ids, folds, BUDGET, params, SEED, "site_a/local")
        second_folds = make_folds(ids[:30], 2, SEED + 1)
        second = search(X[:30], y[:30], ids[:30], second_folds, {**BUDGET, "trials": 2}, params,
                         SEED + 1, "site_a/dtl_ig")
        codes = [worker.wait(timeout=60) for worker in workers]
    finally:
        for worker in workers:
            if worker.poll() is None:
                worker.kill()
                worker.wait(timeout=10)
    texts = {p.stem: p.read_text() for p in sorted(logs.glob("*.log"))}
    return result, directory, codes, texts, (X, y, folds), second


def test_both_workers_ran_trials_and_exited(distributed_run):
    result, directory, codes, logs, _, second = distributed_run
    assert codes == [0, 0], logs
    trials = result.trials
    assert len(trials) == BUDGET["trials"]
    assert set(trials["status"]) == {"COMPLETED"}
    per_worker = trials["tuner_id"].value_counts().to_dict()
    assert set(per_worker) == set(WORKERS), per_worker  # the chief ran none itself
    # The same workers then served the second search, on the same port.
    assert len(second.trials) == 2 and set(second.trials["status"]) == {"COMPLETED"}
    assert set(second.trials["tuner_id"]) <= set(WORKERS)
    assert second.ensemble.info["trial_id"] == second.trials.loc[
        second.trials["cv_rmse"].idxmin(), "trial_id"]
    both = trials["tuner_id"].tolist() + second.trials["tuner_id"].tolist()
    reports = {w["tuner_id"]: w for w in distributed_search.ready_workers(directory)}
    assert {t: reports[t]["trials"] for t in WORKERS} == {t: both.count(t) for t in WORKERS}
    assert all(reports[t]["state"] == "stopped" and reports[t]["searches"] == 2
               for t in WORKERS)


def test_the_pipeline_uses_the_chiefs_best_trial(distributed_run):
    result, directory, _, _, (X, y, folds), _ = distributed_run
    trials = result.trials
    best = trials.loc[trials["cv_rmse"].idxmin()]
    assert result.ensemble.info["trial_id"] == best["trial_id"]
    assert result.best_hyperparameters == best["hyperparameters"]
    assert result.cv_rmse == pytest.approx(best["cv_rmse"], rel=1e-9)
    # The ensemble's models are that trial's fold models: their out-of-fold predictions give
    # exactly its fold RMSEs, and the ensemble predicts like them.
    oof = result.oof_predictions
    fold_rmse = [rmse(y[valid], oof[valid]) for _, valid in folds.split()]
    np.testing.assert_allclose(fold_rmse, best["fold_rmse"], rtol=1e-9)
    assert np.isfinite(result.ensemble.predict(X)).all()
    # Results land in the shared directory under the search's project name.
    project = Path(directory) / "site_a_local"
    assert result.directory == str(directory)
    trial_dirs = sorted(p.name for p in project.glob("trial_*"))
    assert trial_dirs == [f"trial_{i}" for i in range(BUDGET["trials"])]
    pointer = json.loads((Path(directory) / distributed_search.POINTER_FILE).read_text())
    assert pointer["state"] == "finished" and pointer["project_name"] == "site_a_dtl_ig"


def test_distributed_trials_equal_a_single_process_search(distributed_run):
    result, _, _, _, (X, y, folds), _ = distributed_run
    single = search_cnn(X, y, folds=folds, budget=BUDGET, seed=SEED, tuner="random",
                        space=SPACE, progress=False, threads=1)
    ours = result.trials.set_index("trial_id")
    theirs = single.trials.set_index("trial_id")
    assert ours["hyperparameters"].to_dict() == theirs["hyperparameters"].to_dict()
    np.testing.assert_allclose(ours["cv_rmse"], theirs["cv_rmse"], rtol=1e-5)
    assert result.ensemble.info["trial_id"] == single.ensemble.info["trial_id"]
    np.testing.assert_allclose(result.oof_predictions, single.oof_predictions, rtol=1e-5)


def test_a_worker_environment_cannot_run_the_chief(monkeypatch):
    monkeypatch.setenv("KERASTUNER_TUNER_ID", "tuner1")
    monkeypatch.setenv("KERASTUNER_ORACLE_IP", "127.0.0.1")
    monkeypatch.setenv("KERASTUNER_ORACLE_PORT", "8000")
    with pytest.raises(RuntimeError, match="distributed_search --directory"):
        distributed_search.resolve_distributed(None)


def test_settings_errors_name_the_fix(monkeypatch, tmp_path):
    for name in distributed_search.TUNER_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    assert distributed_search.resolve_distributed({"enabled": False}) is None
    with pytest.raises(ValueError, match="train.distributed.directory"):
        distributed_search.resolve_distributed({"enabled": True})
    with pytest.raises(ValueError, match="unknown train.distributed key"):
        distributed_search.resolve_distributed({"enabled": True, "port": 1})
    monkeypatch.setenv("KERASTUNER_TUNER_ID", "chief")
    monkeypatch.setenv("KERASTUNER_ORACLE_IP", "0.0.0.0")
    monkeypatch.setenv("KERASTUNER_ORACLE_PORT", "8123")
    settings = distributed_search.resolve_distributed(None, tmp_path)
    assert (settings.directory, settings.oracle_port) == (tmp_path, 8123)
    assert settings.advertised_ip not in ("0.0.0.0", "")


def test_the_chief_times_out_without_workers(tmp_path):
    X, y, ids = simulated(n=16)
    with pytest.raises(TimeoutError, match="distributed_search --directory"):
        search_cnn(X, y, budget={**BUDGET, "trials": 1}, seed=0, tuner="random", space=SPACE,
                   sample_ids=ids, progress=False, threads=1,
                   distributed={"enabled": True, "oracle_port": free_port(),
                                "directory": str(tmp_path), "wait_timeout_s": 1})
    pointer = json.loads((tmp_path / distributed_search.POINTER_FILE).read_text())
    assert pointer["state"] == "failed"


def test_seed_zero_gives_the_same_oracle_every_time():
    # Keras-Tuner turns seed=0 into a random seed; search_cnn must not.
    import random

    from localsoc.models.training import resolve_budget
    from localsoc.models.tuner import make_oracle

    budget = resolve_budget(BUDGET)
    random.seed(1)
    first = make_oracle("random", budget, 0).seed
    random.seed(2)
    assert make_oracle("random", budget, 0).seed == first
    assert make_oracle("random", budget, 5).seed == 5
