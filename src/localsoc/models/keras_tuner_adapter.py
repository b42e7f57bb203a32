"""The one module that touches Keras-Tuner internals (private methods, ``keras_tuner.src``).

Keras-Tuner's public API covers running a tuner; LocalSOC also subclasses its base tuner, scores
the Bayesian oracle's acquisition itself and serves the oracle over gRPC in its own loop. Those
need parts of Keras-Tuner that may change in any release, so every such use goes through a name
here, and ``RELIED_ON`` lists each one. ``tests/models/test_keras_tuner_adapter.py`` checks that
each still exists with the parameters used and fails naming the installed keras-tuner version;
after a Keras-Tuner upgrade, fix this module (and ``RELIED_ON``) only.

Used by ``localsoc.models.tuner`` (base tuner, Bayesian oracle internals) and
``localsoc.models.distributed_search`` (chief environment check, oracle gRPC service, failure
check).
"""

from __future__ import annotations

import importlib
import inspect
from typing import Any

import keras_tuner
import numpy as np

__all__ = [
    "KERAS_TUNER_VERSION",
    "RELIED_ON",
    "BaseTuner",
    "add_oracle_service",
    "check_consecutive_failures",
    "given_values",
    "hyperparameter_bounds",
    "is_chief_environment",
    "missing_internals",
    "oracle_random_state",
    "random_proposal",
    "running_proposal",
    "service_stop_requested",
    "vector_to_values",
    "vectorized_trials",
]

KERAS_TUNER_VERSION: str = keras_tuner.__version__

#: The tuner class that runs one trial per ``run_trial`` call with no model-saving logic
#: (``keras_tuner.Tuner`` assumes one Keras model per trial; a trial here is K fold models).
BaseTuner = keras_tuner.engine.base_tuner.BaseTuner

#: What this module (and the subclasses of ``BaseTuner`` and ``BayesianOptimizationOracle`` in
#: ``localsoc.models.tuner``) rely on: (module, attribute path, parameters it must take, in
#: order; ``None``: an attribute, not called). Instance attributes (``gpr``, ``beta``,
#: ``ongoing_trials``, ``tuner_ids``, ``stop_triggered``) are checked on instances by the test.
RELIED_ON: tuple[tuple[str, str, tuple[str, ...] | None], ...] = (
    ("keras_tuner.engine.base_tuner", "BaseTuner", None),
    ("keras_tuner.engine.base_tuner", "BaseTuner.__init__",
     ("self", "oracle", "hypermodel", "directory", "project_name", "overwrite")),
    ("keras_tuner.engine.base_tuner", "BaseTuner.run_trial", ("self", "trial")),
    ("keras_tuner.engine.base_tuner", "BaseTuner.pre_create_trial", ("self",)),
    ("keras_tuner.engine.base_tuner", "BaseTuner.on_trial_begin", ("self", "trial")),
    ("keras_tuner.engine.base_tuner", "BaseTuner.on_trial_end", ("self", "trial")),
    ("keras_tuner.engine.base_tuner", "BaseTuner.get_trial_dir", ("self", "trial_id")),
    ("keras_tuner.engine.base_tuner", "BaseTuner.save", ("self",)),
    ("keras_tuner.engine.base_tuner", "BaseTuner.project_dir", None),
    ("keras_tuner.engine.trial", "TrialStatus.RUNNING", None),
    ("keras_tuner.oracles", "BayesianOptimizationOracle.populate_space", ("self", "trial_id")),
    ("keras_tuner.oracles", "BayesianOptimizationOracle._random_populate_space", ("self",)),
    ("keras_tuner.oracles", "BayesianOptimizationOracle._vectorize_trials", ("self",)),
    ("keras_tuner.oracles", "BayesianOptimizationOracle._get_hp_bounds", ("self",)),
    ("keras_tuner.oracles", "BayesianOptimizationOracle._vector_to_values", ("self", "vector")),
    ("keras_tuner", "Oracle._check_consecutive_failures", ("self",)),
    ("keras_tuner", "HyperParameters.merge", ("self", "hps")),
    ("keras_tuner", "HyperParameters.is_active", ("self", "hyperparameter")),
    ("keras_tuner.src.distribute.utils", "has_chief_oracle", ()),
    ("keras_tuner.src.distribute.utils", "is_chief_oracle", ()),
    ("keras_tuner.src.distribute.oracle_chief", "OracleServicer.__init__", ("self", "oracle")),
    ("keras_tuner.src.protos", "get_service_grpc", ()),
)


def missing_internals() -> list[str]:
    """What of ``RELIED_ON`` the installed Keras-Tuner lacks (or takes other parameters); each
    line names the version."""
    problems = []
    for module_name, path, parameters in RELIED_ON:
        where = f"keras-tuner {KERAS_TUNER_VERSION}: {module_name}.{path}"
        try:
            target: Any = importlib.import_module(module_name)
            for part in path.split("."):
                target = getattr(target, part)
        except (ImportError, AttributeError) as error:
            problems.append(f"{where} is gone ({error})")
            continue
        if parameters is None:
            continue
        if isinstance(target, property):
            problems.append(f"{where} is now a property, not a function")
            continue
        found = tuple(inspect.signature(target).parameters)
        if found[: len(parameters)] != parameters:
            problems.append(f"{where} takes {found}, not {parameters}")
    return problems


# --------------------------------------------------------------------------------------------
# Bayesian optimisation oracle (``localsoc.models.tuner.BayesianOracle``)


def random_proposal(oracle) -> dict[str, Any]:
    """The oracle's own random proposal (its seeded random state), as ``populate_space``
    returns it."""
    return oracle._random_populate_space()


def vectorized_trials(oracle) -> tuple[np.ndarray, np.ndarray]:
    """(x, y): the completed trials as points of the unit cube and their scores to minimise."""
    return oracle._vectorize_trials()


def hyperparameter_bounds(oracle) -> np.ndarray:
    """``(n_dimensions, 2)``: lower and upper bound of each searched dimension."""
    return oracle._get_hp_bounds()


def vector_to_values(oracle, vector: np.ndarray) -> dict[str, Any]:
    """Hyperparameter values of a point of the unit cube."""
    return oracle._vector_to_values(vector)


def oracle_random_state(oracle) -> np.random.RandomState:
    """The oracle's seeded random state (drawing from it advances the oracle's own draws)."""
    return oracle._random_state


def running_proposal(values: dict[str, Any]) -> dict[str, Any]:
    """What ``populate_space`` returns to start a trial with ``values``."""
    return {"status": keras_tuner.engine.trial.TrialStatus.RUNNING, "values": values}


def given_values(oracle, values: dict[str, Any], label: str) -> dict[str, Any]:
    """A full set of hyperparameter values for the oracle's space: ``values`` where given, the
    space's defaults elsewhere, only the active ones (as the oracle's own proposals). Raises
    ``ValueError`` naming ``label`` and the hyperparameter when a given value lies outside the
    searched space or names no hyperparameter of it."""
    hps = keras_tuner.HyperParameters()
    known = set()
    for hp in oracle.hyperparameters.space:
        known.add(hp.name)
        hps.merge([hp])
        if not hps.is_active(hp):
            continue
        value = values.get(hp.name, hp.default)
        if hp.name in values and not _in_space(hp, value):
            raise ValueError(f"initial trial {label!r}: {hp.name} = {value!r} lies outside the "
                             f"searched space ({hp.get_config()}); widen the space or drop it")
        hps.values[hp.name] = value
    unknown = sorted(set(values) - known)
    if unknown:
        raise ValueError(f"initial trial {label!r}: no such hyperparameter(s) {unknown}")
    return dict(hps.values)


def _in_space(hp, value) -> bool:
    config = hp.get_config()
    if "values" in config:  # Choice
        return value in config["values"]
    if "min_value" in config:  # Int, Float
        return config["min_value"] <= value <= config["max_value"]
    if "value" in config:  # Fixed
        return value == config["value"]
    return isinstance(value, bool)  # Boolean


def check_consecutive_failures(oracle) -> None:
    """Raise as the single-process search does after too many consecutive failed trials."""
    oracle._check_consecutive_failures()


# --------------------------------------------------------------------------------------------
# Distributed tuning (``localsoc.models.distributed_search``)


def is_chief_environment() -> bool:
    """Keras-Tuner's reading of ``KERASTUNER_*``: raises when they are incomplete; True for the
    chief, False for a worker."""
    from keras_tuner.src.distribute import utils as dist_utils

    dist_utils.has_chief_oracle()
    return dist_utils.is_chief_oracle()


def add_oracle_service(server, oracle):
    """Add Keras-Tuner's oracle service for ``oracle`` to a ``grpc.Server``; returns the
    servicer (see ``service_stop_requested``)."""
    from keras_tuner.src import protos
    from keras_tuner.src.distribute import oracle_chief

    servicer = oracle_chief.OracleServicer(oracle)
    protos.get_service_grpc().add_OracleServicer_to_server(servicer, server)
    return servicer


def service_stop_requested(servicer) -> bool:
    """Whether the oracle has told a worker to stop (the budget is spent)."""
    return bool(servicer.stop_triggered)
