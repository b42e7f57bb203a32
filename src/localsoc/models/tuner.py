"""Keras-Tuner glue for the CNN search: one purpose, what the oracle and its tuner need.

* ``CNN1DHyperModel``: registers the architecture (``localsoc.models.cnn1d``) and the training
  hyperparameters with the oracle;
* ``CrossValidationTuner``: one trial = ``cross_validate`` (``localsoc.models.training``) over the
  data set's fixed folds, objective ``OBJECTIVE`` (mean fold RMSE); it keeps the best trial's fold
  models in the best-trial store;
* ``make_oracle`` (kinds ``TUNERS``) and ``BayesianOracle``, Keras-Tuner's Bayesian optimisation
  with a cheaper search for the acquisition optimum;
* the best-trial store: ``save_outcome``, ``load_outcome``, ``load_best_outcome`` under
  ``BEST_DIR`` (fold models in the layout of ``localsoc.models.fold_files``);
* ``trial_table``: one row per trial; ``LoggingStream``: Keras-Tuner's prints to the logger.

The search itself (arguments, resume, the result) is ``localsoc.models.search``; Keras-Tuner
internals are reached only through ``localsoc.models.keras_tuner_adapter``.
"""

from __future__ import annotations

import io
import json
import logging
import math
import shutil
import time
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import keras_tuner
import numpy as np
import pandas as pd
import scipy.optimize
import sklearn.exceptions

from localsoc.models import keras_tuner_adapter as kt_adapter
from localsoc.models.cnn1d import build_cnn1d, declare_training_hyperparameters, fold_builder
from localsoc.models.fold_files import load_fold_models, save_fold_models
from localsoc.models.training import CrossValidationOutcome, TrainingSettings, cross_validate

__all__ = [
    "BEST_DIR",
    "OBJECTIVE",
    "TUNERS",
    "BayesianOracle",
    "CNN1DHyperModel",
    "CrossValidationTuner",
    "LoggingStream",
    "load_best_outcome",
    "load_outcome",
    "make_oracle",
    "save_outcome",
    "train_trial",
    "trial_settings",
    "trial_table",
    "worker_best_dir",
]

logger = logging.getLogger(__name__)

TUNERS = ("bayesian", "hyperband", "random")
OBJECTIVE = "cv_rmse"
#: The best trial's fold models, under the project directory (a distributed worker keeps its
#: own, ``worker_best_dir``).
BEST_DIR = "best_trial"
_ORACLE_SEED_FOR_ZERO = 2**31 - 1


class CNN1DHyperModel(keras_tuner.HyperModel):
    """Registers the architecture and the training hyperparameters with the oracle."""

    def __init__(self, n_bands: int, space: Mapping[str, Any]):
        super().__init__(name="cnn1d")
        self.n_bands = n_bands
        self.space = space

    def build(self, hp):
        declare_training_hyperparameters(hp, self.space)
        return build_cnn1d(hp, self.n_bands, self.space)


class LoggingStream(io.TextIOBase):
    """Keras-Tuner prints; this sends those lines to the logger instead of stdout."""

    def write(self, text: str) -> int:
        for line in text.splitlines():
            if line.strip():
                logger.debug("keras-tuner: %s", line.strip())
        return len(text)


def trial_settings(hp: Any, space: Mapping[str, Any], budget: Mapping[str, Any]) -> TrainingSettings:
    """How a trial's fold models are trained: its training hyperparameters (``hp``: Keras-Tuner
    hyperparameters or a dict of values; drawn and registered here) and the budget (Hyperband's
    ``tuner/epochs`` when set, else ``max_epochs``)."""
    training = declare_training_hyperparameters(hp, space)
    values = hp if isinstance(hp, Mapping) else hp.values
    return TrainingSettings(
        optimizer=training["optimizer"],
        learning_rate=training["learning_rate"],
        batch_size=training["batch_size"],
        max_epochs=int(values.get("tuner/epochs", budget["max_epochs"])),
        patience=int(budget["patience"]),
        validation_fraction=float(budget["validation_fraction"]),
        engine=str(budget.get("engine", "stack")),
    )


def train_trial(hp: Any, data: Mapping[str, Any]) -> CrossValidationOutcome:
    """Train and cross-validate the fold models of the trial with hyperparameters ``hp`` on
    ``data`` (the tuner's: ``X``, ``y``, ``folds``, ``budget``, ``space``, ``seed``,
    ``n_bands``)."""
    settings = trial_settings(hp, data["space"], data["budget"])
    return cross_validate(
        fold_builder(hp, data["n_bands"], data["space"]),
        data["X"],
        data["y"],
        data["folds"],
        settings,
        seed=data["seed"],
    )


class CrossValidationTuner(kt_adapter.BaseTuner):
    """A tuner whose trial trains K fold models of one architecture (``cross_validate``).

    ``data``: as ``train_trial`` takes it. Each
    trial's record goes to ``<trial dir>/cross_validation.json``; a trial better than every
    earlier one replaces the best-trial store. ``progress_bar``: a tqdm bar advanced per trial.
    """

    best_dir_name = BEST_DIR  # a distributed worker keeps its own (distributed_search.py)

    def __init__(self, oracle, hypermodel, *, data: dict[str, Any], **kwargs):
        self._data = data
        self.progress_bar = None
        super().__init__(oracle, hypermodel, **kwargs)

    # One trial = K fold models of one architecture.
    def run_trial(self, trial, *args, **kwargs):
        hp = trial.hyperparameters
        outcome = train_trial(hp, self._data)
        record = {
            "trial_id": trial.trial_id,
            "tuner_id": self.tuner_id,
            "cv_rmse": outcome.cv_rmse,
            "fold_rmse": outcome.fold_rmse.tolist(),
            "epochs": outcome.epochs,
            "seconds": outcome.seconds,
            "hyperparameters": dict(hp.values),
        }
        trial_dir = Path(self.get_trial_dir(trial.trial_id))
        trial_dir.mkdir(parents=True, exist_ok=True)
        (trial_dir / "cross_validation.json").write_text(json.dumps(_finite(record), indent=1))
        if not math.isfinite(outcome.cv_rmse):
            raise keras_tuner.errors.FailedTrialError(
                f"trial {trial.trial_id}: a fold model diverged (non-finite predictions)"
            )
        best = self._best_score()
        if best is None or outcome.cv_rmse < best:
            save_outcome(Path(self.project_dir) / self.best_dir_name, trial.trial_id, outcome)
        return {OBJECTIVE: outcome.cv_rmse}

    def _best_score(self) -> float | None:
        best = self.oracle.get_best_trials(1)
        return None if not best or best[0].score is None else float(best[0].score)

    def on_trial_begin(self, trial):
        super().on_trial_begin(trial)
        self._trial_start = time.perf_counter()

    def on_trial_end(self, trial):
        super().on_trial_end(trial)
        best = self._best_score()
        seconds = time.perf_counter() - self._trial_start
        logger.info(
            "trial %s: %s, cv_rmse %s, %.1f s; best so far %s",
            trial.trial_id,
            trial.status,
            trial.score,
            seconds,
            best,
        )
        if self.progress_bar is not None:
            self.progress_bar.update(1)
            self.progress_bar.set_postfix(
                trial=trial.trial_id,
                best_cv_rmse=f"{best:.4g}" if best is not None else "-",
                s_per_trial=f"{seconds:.1f}",
            )


def _finite(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, list):
        return [_finite(v) for v in value]
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    return value


# --------------------------------------------------------------------------------------------
# The best-trial store


def worker_best_dir(tuner_id: str) -> str:
    """The best-trial store of distributed worker ``tuner_id`` (workers never share files)."""
    return f"{BEST_DIR}.{tuner_id}"


def save_outcome(directory: Path, trial_id: str, outcome: CrossValidationOutcome) -> None:
    """Replace the store in ``directory`` with trial ``trial_id``'s fold models and results
    (written next to it first, so a kill leaves the old store or the new one)."""
    staging = directory.with_name(directory.name + ".tmp")
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    save_fold_models(outcome.models, staging)
    np.savez(
        staging / "outcome.npz",
        y_mean=outcome.y_mean,
        y_scale=outcome.y_scale,
        oof_predictions=outcome.oof_predictions,
        fold_rmse=outcome.fold_rmse,
        epochs=np.asarray(outcome.epochs),
    )
    (staging / "trial.json").write_text(json.dumps({"trial_id": trial_id}))
    shutil.rmtree(directory, ignore_errors=True)
    staging.rename(directory)


def load_outcome(directory: Path, trial_id: str) -> CrossValidationOutcome | None:
    """Trial ``trial_id``'s stored outcome in ``directory``; None when the store holds another
    trial or none."""
    try:
        stored = json.loads((directory / "trial.json").read_text())["trial_id"]
    except (OSError, KeyError, ValueError):
        return None
    if stored != trial_id:
        return None
    arrays = np.load(directory / "outcome.npz")
    models = load_fold_models(directory, arrays["y_mean"].size)
    return CrossValidationOutcome(
        models=models,
        y_mean=arrays["y_mean"],
        y_scale=arrays["y_scale"],
        oof_predictions=arrays["oof_predictions"],
        fold_rmse=arrays["fold_rmse"],
        epochs=arrays["epochs"].tolist(),
        seconds=float("nan"),
    )


def load_best_outcome(project_dir: Path, trial_id: str) -> CrossValidationOutcome | None:
    """Trial ``trial_id``'s outcome from the project's store or, in a distributed search, from
    a worker's; None when no store holds it."""
    outcome = load_outcome(project_dir / BEST_DIR, trial_id)
    for worker_dir in sorted(project_dir.glob(worker_best_dir("*"))):
        if outcome is None and worker_dir.is_dir() and not worker_dir.name.endswith(".tmp"):
            outcome = load_outcome(worker_dir, trial_id)
    return outcome


# --------------------------------------------------------------------------------------------
# Oracles


class InitialTrials:
    """Oracle mixin: the first trials are given points (``initial_values``: (label, values)),
    in order, before the oracle's own proposals; a given point's missing hyperparameters take
    the space's defaults. Trials already in the oracle (a resumed search) count."""

    initial_values: tuple[tuple[str, dict[str, Any]], ...] = ()

    def _initial_proposal(self, trial_id):
        started = sum(1 for other in self.trials if other != trial_id)
        if started >= len(self.initial_values):
            return None
        label, values = self.initial_values[started]
        return kt_adapter.running_proposal(kt_adapter.given_values(self, values, label))


class RandomOracle(InitialTrials, keras_tuner.oracles.RandomSearchOracle):
    """Keras-Tuner's random search after the initial trials."""

    def populate_space(self, trial_id):
        return self._initial_proposal(trial_id) or super().populate_space(trial_id)


class BayesianOracle(InitialTrials, keras_tuner.oracles.BayesianOptimizationOracle):
    """Keras-Tuner's Bayesian optimisation (Matern GP, upper confidence bound) with a cheaper
    search for the acquisition optimum.

    Keras-Tuner minimises the acquisition from 50 random starts with L-BFGS-B and numerical
    gradients; over this ~60-dimensional space that took about a minute per proposal on two
    cores, longer than a small trial. Here the acquisition is scored on ``candidates`` random
    points in one vectorised GP prediction and the best ``refine`` of them are polished with
    L-BFGS-B; the proposals are as reproducible (same seeded random state).
    """

    candidates = 2048
    refine = 3

    def populate_space(self, trial_id):
        initial = self._initial_proposal(trial_id)
        if initial is not None:
            return initial
        completed = [t for t in self.trials.values() if t.status == "COMPLETED"]
        dimensions = len(self.hyperparameters.space)
        num_initial_points = self.num_initial_points or max(3 * dimensions, 3)
        if len(completed) < num_initial_points:
            return kt_adapter.random_proposal(self)
        x, y = kt_adapter.vectorized_trials(self)
        x = np.nan_to_num(x, posinf=0, neginf=0)
        y = np.nan_to_num(y, posinf=0, neginf=0)
        with warnings.catch_warnings():
            # a GP on a handful of trials often puts a length scale at its bound: expected
            warnings.simplefilter("ignore", sklearn.exceptions.ConvergenceWarning)
            self.gpr.fit(x, y)
        bounds = kt_adapter.hyperparameter_bounds(self)

        def acquisition(points: np.ndarray) -> np.ndarray:
            mean, std = self.gpr.predict(np.atleast_2d(points), return_std=True)
            return mean - self.beta * std

        candidates = kt_adapter.oracle_random_state(self).uniform(
            bounds[:, 0], bounds[:, 1], size=(self.candidates, bounds.shape[0])
        )
        scores = acquisition(candidates)
        best_x, best_score = candidates[np.argmin(scores)], float(np.min(scores))
        for start in candidates[np.argsort(scores, kind="stable")[: self.refine]]:
            result = scipy.optimize.minimize(
                lambda v: float(acquisition(v)[0]),
                x0=start,
                bounds=bounds,
                method="L-BFGS-B",
                options={"maxiter": 50},
            )
            if float(result.fun) < best_score:
                best_x, best_score = result.x, float(result.fun)
        return kt_adapter.running_proposal(kt_adapter.vector_to_values(self, best_x))


def initial_trial_values(entries) -> tuple[tuple[str, dict[str, Any]], ...]:
    """(label, values) of a budget's ``initial_trials``: names of ``cnn1d.KNOWN_NETWORKS`` or
    dicts of hyperparameter values."""
    from localsoc.models.cnn1d import KNOWN_NETWORKS

    out = []
    for position, entry in enumerate(entries or []):
        if isinstance(entry, str):
            if entry not in KNOWN_NETWORKS:
                raise ValueError(f"initial trial {entry!r} is not one of {sorted(KNOWN_NETWORKS)}")
            out.append((entry, dict(KNOWN_NETWORKS[entry]["values"])))
        elif isinstance(entry, Mapping):
            out.append((f"initial_trials[{position}]", dict(entry)))
        else:
            raise ValueError(f"initial_trials[{position}]: give a network name or a dict of "
                             f"hyperparameter values, got {entry!r}")
    return tuple(out)


def make_oracle(kind: str, budget: Mapping[str, Any], seed: int):
    """The oracle of a search: ``kind`` one of ``TUNERS``, ``budget`` resolved
    (``localsoc.models.training.resolve_budget``); the same ``seed`` gives the same trials."""
    objective = keras_tuner.Objective(OBJECTIVE, direction="min")
    common = {
        "objective": objective,
        # Keras-Tuner replaces a seed of 0 by a random one (`seed or random.randint(...)`).
        "seed": int(seed) if int(seed) != 0 else _ORACLE_SEED_FOR_ZERO,
        "max_consecutive_failed_trials": int(budget["max_consecutive_failed_trials"]),
    }
    initial = initial_trial_values(budget.get("initial_trials"))
    if kind == "bayesian":
        initial_points = budget["initial_points"]
        if initial_points is None:
            initial_points = min(10, max(2, int(budget["trials"]) // 4))
        oracle = BayesianOracle(
            max_trials=int(budget["trials"]),
            num_initial_points=max(int(initial_points), len(initial)),
            **common,
        )
        oracle.initial_values = initial
        return oracle
    if kind == "random":
        oracle = RandomOracle(max_trials=int(budget["trials"]), **common)
        oracle.initial_values = initial
        return oracle
    if initial:
        logger.warning("hyperband ignores initial_trials (its brackets draw their own points)")
    if kind == "hyperband":
        oracle = keras_tuner.oracles.HyperbandOracle(
            max_epochs=int(budget["max_epochs"]),
            factor=int(budget["hyperband_factor"]),
            **common,
        )
        oracle.max_trials = int(budget["trials"])  # Hyperband itself has no trial cap
        return oracle
    raise ValueError(f"tuner must be one of {list(TUNERS)}, got {kind!r}")


# --------------------------------------------------------------------------------------------
# The trial table


#: Wall-clock columns of ``trial_table``: kept out of the search's trial table (a DVC output,
#: which must be the same bytes for the same code, data and seed) in ``SearchResult.timings``.
TIMING_COLUMNS = ("seconds",)


def trial_table(cv_tuner: CrossValidationTuner) -> pd.DataFrame:
    """One row per trial: id, tuner, status, ``OBJECTIVE``, seconds, mean epochs, fold RMSEs,
    hyperparameters."""
    rows = []
    for trial_id, trial in sorted(cv_tuner.oracle.trials.items()):
        record_file = Path(cv_tuner.get_trial_dir(trial_id)) / "cross_validation.json"
        record = json.loads(record_file.read_text()) if record_file.exists() else {}
        epochs = record.get("epochs") or []
        rows.append(
            {
                "trial_id": trial_id,
                "tuner_id": record.get("tuner_id"),
                "status": str(trial.status),
                OBJECTIVE: np.nan if trial.score is None else float(trial.score),
                "seconds": record.get("seconds", np.nan),
                "mean_epochs": float(np.mean(epochs)) if epochs else np.nan,
                "fold_rmse": [np.nan if v is None else v for v in record.get("fold_rmse", [])],
                "hyperparameters": dict(trial.hyperparameters.values),
            }
        )
    return pd.DataFrame(rows)
