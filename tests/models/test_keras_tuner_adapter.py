"""The Keras-Tuner internals LocalSOC relies on (``localsoc.models.keras_tuner_adapter``) still
exist: each failure names the installed keras-tuner version and the piece that changed, so an
upgrade that breaks them fails here, not deep inside a search."""

from __future__ import annotations

import inspect

import keras_tuner
import numpy as np
import pytest

from localsoc.models import keras_tuner_adapter as adapter

VERSION = f"keras-tuner {adapter.KERAS_TUNER_VERSION}"


def changed(what: str) -> str:
    return (f"{VERSION}: {what}; update localsoc/models/keras_tuner_adapter.py (and its "
            "RELIED_ON) for this keras-tuner version")


@pytest.fixture
def oracle():
    hp = keras_tuner.HyperParameters()
    hp.Int("units", 4, 64)
    hp.Choice("optimizer", ["adam", "sgd"])
    return keras_tuner.oracles.BayesianOptimizationOracle(
        objective=keras_tuner.Objective("cv_rmse", direction="min"), max_trials=3,
        num_initial_points=1, hyperparameters=hp, seed=1,
    )


def test_every_internal_relied_on_exists_with_its_parameters():
    problems = adapter.missing_internals()
    assert not problems, changed("these internals changed:\n  " + "\n  ".join(problems))


def test_base_tuner_asks_pre_create_trial_before_every_trial():
    # A distributed worker stops joining a closed search in pre_create_trial.
    source = inspect.getsource(adapter.BaseTuner.search)
    assert "self.pre_create_trial()" in source, changed(
        "BaseTuner.search no longer calls pre_create_trial before create_trial")


def test_bayesian_oracle_internals(oracle):
    for name in ("gpr", "beta", "num_initial_points", "hyperparameters", "trials",
                 "ongoing_trials", "tuner_ids", "max_trials", "seed"):
        assert hasattr(oracle, name), changed(f"an oracle has no attribute {name!r}")
    state = adapter.oracle_random_state(oracle)
    assert isinstance(state, np.random.RandomState), changed("the oracle's random state changed")
    proposal = adapter.random_proposal(oracle)
    assert set(proposal) >= {"status", "values"}, changed(f"a random proposal is {proposal!r}")
    bounds = adapter.hyperparameter_bounds(oracle)
    assert bounds.shape == (2, 2), changed(f"hyperparameter bounds have shape {bounds.shape}")
    values = adapter.vector_to_values(oracle, bounds.mean(axis=1))
    assert set(values) == {"units", "optimizer"}, changed(f"vector_to_values gave {values!r}")
    x, y = adapter.vectorized_trials(oracle)
    assert len(x) == len(y) == 0, changed("vectorising no trials gave points")
    running = adapter.running_proposal(values)
    assert running["status"] == "RUNNING" and running["values"] == values
    adapter.check_consecutive_failures(oracle)  # no trial failed: returns


def test_chief_environment(monkeypatch):
    for name in ("KERASTUNER_TUNER_ID", "KERASTUNER_ORACLE_IP", "KERASTUNER_ORACLE_PORT"):
        monkeypatch.delenv(name, raising=False)
    assert adapter.is_chief_environment() is False
    monkeypatch.setenv("KERASTUNER_ORACLE_IP", "127.0.0.1")
    with pytest.raises(RuntimeError):  # port and tuner id missing
        adapter.is_chief_environment()
    monkeypatch.setenv("KERASTUNER_ORACLE_PORT", "8000")
    monkeypatch.setenv("KERASTUNER_TUNER_ID", "chief")
    assert adapter.is_chief_environment() is True, changed("the chief is not recognised")
    monkeypatch.setenv("KERASTUNER_TUNER_ID", "tuner1")
    assert adapter.is_chief_environment() is False, changed("a worker is taken for the chief")


def test_oracle_service_attaches_to_a_grpc_server(oracle):
    from concurrent import futures

    grpc = pytest.importorskip("grpc")
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=1))
    try:
        servicer = adapter.add_oracle_service(server, oracle)
        assert adapter.service_stop_requested(servicer) is False, changed(
            "a fresh oracle service already says stop")
    finally:
        server.stop(grace=None)
