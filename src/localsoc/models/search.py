"""Automated 1D-CNN search: Keras-Tuner over K-fold cross-validation.

``search_cnn`` drives a Keras-Tuner oracle (Bayesian optimisation by default; Hyperband and random
search as options) whose objective, ``cv_rmse``, is the mean validation RMSE over the K folds of a
fixed ``Folds`` (made once per data set and reused by every model on that data). Every trial
trains K fresh models: ``y`` is standardised on the training folds, an inner random split of the
training folds (``validation_fraction``) drives early stopping, and the held-out fold is only
predicted. The result carries the best hyperparameters, a per-trial table (CV RMSE, seconds) and
the best trial's ``FoldEnsemble`` with its out-of-fold predictions.

Budget (a dict the pipeline passes; unknown keys are an error): ``trials``, ``max_epochs``,
``patience``, ``folds`` (K when ``folds`` is not given), ``validation_fraction``,
``initial_points`` (Bayesian random start; default ``trials // 4`` in 2..10), ``hyperband_factor``,
``max_consecutive_failed_trials``. Hyperband sets each trial's epochs itself (up to
``max_epochs``) and trains every trial from scratch (no warm start from earlier rounds).

Keras-Tuner state goes to ``directory/project_name``. ``resume=False`` (default) wipes it first
(Keras-Tuner's own default would silently resume old trials); ``resume=True`` continues a killed
or shorter search, after checking that the data, folds, seed, tuner and space are the same. With
``directory=None`` a temporary directory is used and removed afterwards.

Determinism: with the same seed and data the oracle proposes the same trials, and on CPU every
fold model gets the same initial weights, shuffling and inner split, so the metrics repeat
exactly (``configure_tensorflow`` turns on TensorFlow's op determinism). Not removed: GPU kernels
without a deterministic implementation raise under op determinism (turn it off with
``deterministic=False`` there) and results differ between CPU and GPU and between oneDNN builds.
"""

from __future__ import annotations

import contextlib
import io
import json
import logging
import math
import os
import shutil
import tempfile
import time
import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import keras
import keras_tuner
import numpy as np
import pandas as pd
import scipy.optimize
import sklearn.exceptions
from tqdm.auto import tqdm

from localsoc.models.cnn1d import (
    build_cnn1d,
    declare_training_hyperparameters,
    make_optimizer,
    resolve_search_space,
)
from localsoc.models.ensemble import (
    PREDICT_CHUNK,
    FoldEnsemble,
    Folds,
    as_spectra,
    as_target,
    data_hash,
    make_folds,
    rmse,
)

__all__ = [
    "DEFAULT_BUDGET",
    "SearchResult",
    "TrainingSettings",
    "configure_tensorflow",
    "cross_validate",
    "make_folds",
    "search_cnn",
]

logger = logging.getLogger(__name__)

DEFAULT_BUDGET: dict[str, Any] = {
    "trials": 20,
    "max_epochs": 200,
    "patience": 20,
    "folds": 10,
    "validation_fraction": 0.1,
    # Bayesian: random trials before the Gaussian process takes over. None: trials // 4, in
    # 2..10 (Keras-Tuner's own default, 3 x the ~60 dimensions, would make any affordable
    # search purely random).
    "initial_points": None,
    "hyperband_factor": 3,
    "max_consecutive_failed_trials": 5,
}

TUNERS = ("bayesian", "hyperband", "random")
OBJECTIVE = "cv_rmse"
_STATE_FILE = "localsoc_search.json"
_BEST_DIR = "best_trial"
_ORACLE_SEED_FOR_ZERO = 2**31 - 1


def resolve_budget(budget: Mapping[str, Any] | None) -> dict[str, Any]:
    """Defaults with ``budget`` applied; ``ValueError`` naming an unknown or bad key."""
    resolved = dict(DEFAULT_BUDGET)
    for key, value in dict(budget or {}).items():
        if key not in DEFAULT_BUDGET:
            raise ValueError(f"unknown budget key {key!r}; known keys: {sorted(DEFAULT_BUDGET)}")
        resolved[key] = value
    for key in ("trials", "max_epochs", "folds", "hyperband_factor"):
        if int(resolved[key]) < 1:
            raise ValueError(f"budget {key!r} must be >= 1, got {resolved[key]}")
    if int(resolved["patience"]) < 0:
        raise ValueError(f"budget 'patience' must be >= 0, got {resolved['patience']}")
    if not 0 <= float(resolved["validation_fraction"]) < 1:
        raise ValueError(
            f"budget 'validation_fraction' must be in [0, 1), got {resolved['validation_fraction']}"
        )
    return resolved


# --------------------------------------------------------------------------------------------
# TensorFlow set-up


def configure_tensorflow(threads: int | None = None, deterministic: bool = True) -> dict[str, Any]:
    """Thread pools and op determinism for the TensorFlow backend; returns what is in effect.

    Thread counts can only be set before TensorFlow starts its runtime; later calls keep the
    running values (logged at debug level). ``threads=None``: all CPU cores for intra-op work,
    one inter-op thread (small convolutions gain nothing from running ops side by side).
    """
    info: dict[str, Any] = {"backend": keras.backend.backend()}
    if keras.backend.backend() != "tensorflow":
        info["devices"] = compute_devices()
        return info
    import tensorflow as tf

    threads = int(threads or os.cpu_count() or 1)
    try:
        if tf.config.threading.get_intra_op_parallelism_threads() != threads:
            tf.config.threading.set_intra_op_parallelism_threads(threads)
        if tf.config.threading.get_inter_op_parallelism_threads() != 1:
            tf.config.threading.set_inter_op_parallelism_threads(1)
    except RuntimeError as error:  # the runtime is already initialised
        logger.debug("TensorFlow thread pools already fixed: %s", error)
    if deterministic:
        try:
            tf.config.experimental.enable_op_determinism()
        except Exception as error:  # pragma: no cover - depends on the TF build
            logger.warning("could not enable TensorFlow op determinism: %s", error)
    info.update(
        intra_op_threads=tf.config.threading.get_intra_op_parallelism_threads(),
        inter_op_threads=tf.config.threading.get_inter_op_parallelism_threads(),
        deterministic=bool(deterministic),
        devices=compute_devices(),
    )
    return info


def compute_devices() -> list[str]:
    """The devices the Keras backend sees, e.g. ``["CPU:0"]`` or ``["CPU:0", "GPU:0 (NVIDIA
    H100 80GB HBM3)"]`` (TensorFlow); for JAX or torch, the backend's own device names."""
    backend = keras.backend.backend()
    if backend == "jax":
        import jax

        return [f"{d.platform.upper()}:{d.id} ({d.device_kind})" for d in jax.devices()]
    if backend == "torch":
        import torch

        if torch.cuda.is_available():
            return [f"GPU:{i} ({torch.cuda.get_device_name(i)})"
                    for i in range(torch.cuda.device_count())]
        return ["CPU:0"]
    if backend != "tensorflow":
        return [backend]
    import tensorflow as tf

    names = []
    for device in tf.config.list_physical_devices():
        label = device.name.replace("/physical_device:", "")
        if device.device_type == "GPU":
            details = tf.config.experimental.get_device_details(device)
            label += f" ({details.get('device_name', 'GPU')})"
        names.append(label)
    return names


# --------------------------------------------------------------------------------------------
# Cross-validated training (shared with the representation transfer)


@dataclass(frozen=True)
class TrainingSettings:
    """How one fold model is trained."""

    optimizer: str = "adam"
    learning_rate: float = 1e-3
    batch_size: int = 32
    max_epochs: int = 200
    patience: int = 20
    validation_fraction: float = 0.1


@dataclass
class CrossValidationOutcome:
    models: list
    y_mean: np.ndarray
    y_scale: np.ndarray
    oof_predictions: np.ndarray
    fold_rmse: np.ndarray
    epochs: list[int]
    seconds: float

    @property
    def cv_rmse(self) -> float:
        return float(np.mean(self.fold_rmse))


def fold_seed(seed: int, fold: int) -> int:
    """The seed of fold ``fold`` (the same for every trial: common random numbers)."""
    return (int(seed) * 1_000_003 + 7919 * int(fold) + 17) % (2**31 - 1)


def _split_for_stopping(n: int, settings: TrainingSettings, rng: np.random.Generator):
    """(fit rows, early-stopping rows): a random ``validation_fraction`` (>= 1 row, only when
    there are >= 4 rows, and always leaving >= 2 rows to fit)."""
    if settings.validation_fraction > 0 and n >= 4:
        n_stop = min(max(int(round(settings.validation_fraction * n)), 1), n - 2)
    else:
        n_stop = 0
    order = rng.permutation(n)
    return order[n_stop:], order[:n_stop]


class _Trainer:
    """One compiled Keras model reused for every fold of a trial.

    Keras traces a new training graph for every new model, which costs more than training a
    small network on a few dozen spectra; so a trial compiles one model, and each fold starts
    from its own initial weights (``reset``) and a fresh optimiser state. Training runs batch by
    batch (``train_on_batch``), with early stopping on the held-out rows' loss, restoring the
    best weights; Keras' ``fit`` would rebuild a tf.data iterator every epoch, which dominated
    the time on small data.
    """

    def __init__(self, model: keras.Model, settings: TrainingSettings):
        self.model = model
        self.settings = settings
        self._optimizer_state: list[np.ndarray] = []
        self.trainable = bool(model.trainable_weights)
        if self.trainable:  # a fully frozen model (transfer at full depth) is not trained
            model.compile(
                optimizer=make_optimizer(settings.optimizer, settings.learning_rate), loss="mse"
            )
            model.optimizer.build(model.trainable_variables)
            self._optimizer_state = [np.array(v) for v in model.optimizer.variables]

    def reset(self, weights: list[np.ndarray]) -> None:
        self.model.set_weights(weights)
        if self.trainable:
            for variable, value in zip(
                self.model.optimizer.variables, self._optimizer_state, strict=True
            ):
                variable.assign(value)

    def predict(self, X: np.ndarray) -> np.ndarray:
        """Standardised predictions through the compiled predict function (traced once)."""
        parts = [
            np.asarray(self.model.predict_on_batch(X[start : start + PREDICT_CHUNK]))
            for start in range(0, X.shape[0], PREDICT_CHUNK)
        ]
        return np.concatenate(parts).reshape(-1).astype(np.float64)

    def fit(self, X: np.ndarray, z: np.ndarray, seed: int) -> int:
        """Train on ``X``, standardised ``z``; returns the number of epochs run."""
        settings = self.settings
        model = self.model
        if not self.trainable:
            return 0
        rng = np.random.default_rng(seed)
        fit_rows, stop_rows = _split_for_stopping(X.shape[0], settings, rng)
        X_fit, z_fit = X[fit_rows], z[fit_rows].astype(np.float32)
        X_stop, z_stop = X[stop_rows], z[stop_rows]
        batch_size = int(max(1, min(settings.batch_size, fit_rows.size)))
        best_loss, best_weights, waited, epochs = np.inf, None, 0, 0
        for _ in range(int(settings.max_epochs)):
            order = rng.permutation(fit_rows.size)
            for start in range(0, fit_rows.size, batch_size):
                rows = order[start : start + batch_size]
                loss = model.train_on_batch(X_fit[rows], z_fit[rows])
            epochs += 1
            if not np.isfinite(loss):
                break  # diverged; predictions will be non-finite or poor
            if stop_rows.size:
                predicted = np.asarray(model.predict_on_batch(X_stop)).reshape(-1)
                stop_loss = float(np.mean((predicted - z_stop) ** 2))
                if stop_loss < best_loss:
                    best_loss, best_weights, waited = stop_loss, model.get_weights(), 0
                else:
                    waited += 1
                    if waited >= max(int(settings.patience), 1):  # as Keras' EarlyStopping
                        break
        if best_weights is not None:
            model.set_weights(best_weights)
        return epochs


def fit_model(
    model: keras.Model,
    X: np.ndarray,
    z: np.ndarray,
    settings: TrainingSettings,
    seed: int,
) -> int:
    """Compile and fit one ``model`` on standardised targets ``z``; returns the epochs run.

    A random ``validation_fraction`` of the rows (at least one, only when >= 4 rows) is held out
    for early stopping on its loss (``patience`` epochs without improvement); the best weights
    are restored.
    """
    keras.utils.set_random_seed(seed)
    return _Trainer(model, settings).fit(X, z, seed)


def cross_validate(
    make_model: Callable[[int], keras.Model],
    X: np.ndarray,
    y: np.ndarray,
    folds: Folds,
    settings: TrainingSettings,
    *,
    seed: int,
    y_scaling: tuple[float, float] | None = None,
) -> CrossValidationOutcome:
    """Train one model per fold and predict its held-out fold.

    ``make_model(fold)`` returns a fresh model for that fold (its initial weights and trainable
    flags are used; call it under the fold's seed). ``y_scaling=None`` standardises ``y`` on each
    fold's training rows; a ``(mean, scale)`` pair is used for every fold instead (fine-tuning
    keeps its base model's scaling). Non-finite predictions (a diverged model) give a NaN fold
    RMSE; nothing raises.
    """
    start = time.perf_counter()
    trainer = None
    models, means, scales, epochs, fold_rmse = [], [], [], [], []
    oof = np.full(y.shape[0], np.nan)
    for fold, (train, valid) in enumerate(folds.split()):
        if y_scaling is None:
            mean = float(np.mean(y[train]))
            scale = float(np.std(y[train]))
            scale = scale if scale > 0 else 1.0
        else:
            mean, scale = (float(v) for v in y_scaling)
        seed_k = fold_seed(seed, fold)
        keras.utils.set_random_seed(seed_k)
        fresh = make_model(fold)
        if trainer is None:
            trainer = _Trainer(make_model(fold), settings)
        trainer.reset(fresh.get_weights())
        epochs.append(trainer.fit(X[train], (y[train] - mean) / scale, seed_k))
        prediction = mean + scale * trainer.predict(X[valid])
        fresh.set_weights(trainer.model.get_weights())  # the kept fold model
        oof[valid] = prediction
        fold_rmse.append(rmse(y[valid], prediction) if np.isfinite(prediction).all() else np.nan)
        models.append(fresh)
        means.append(mean)
        scales.append(scale)
    return CrossValidationOutcome(
        models=models,
        y_mean=np.asarray(means),
        y_scale=np.asarray(scales),
        oof_predictions=oof,
        fold_rmse=np.asarray(fold_rmse),
        epochs=epochs,
        seconds=time.perf_counter() - start,
    )


# --------------------------------------------------------------------------------------------
# Keras-Tuner glue


class _CNN1DHyperModel(keras_tuner.HyperModel):
    """Registers the architecture and the training hyperparameters with the oracle."""

    def __init__(self, n_bands: int, space: Mapping[str, Any]):
        super().__init__(name="cnn1d")
        self.n_bands = n_bands
        self.space = space

    def build(self, hp):
        declare_training_hyperparameters(hp, self.space)
        return build_cnn1d(hp, self.n_bands, self.space)


class _LoggingStream(io.TextIOBase):
    """Keras-Tuner prints; this sends those lines to the logger instead of stdout."""

    def write(self, text: str) -> int:
        for line in text.splitlines():
            if line.strip():
                logger.debug("keras-tuner: %s", line.strip())
        return len(text)


class _CrossValidationTuner(keras_tuner.engine.base_tuner.BaseTuner):
    best_dir_name = _BEST_DIR  # a distributed worker keeps its own (distributed_search.py)

    def __init__(self, oracle, hypermodel, *, data: dict[str, Any], **kwargs):
        self._data = data
        self._bar = None
        super().__init__(oracle, hypermodel, **kwargs)

    # One trial = K fold models of one architecture.
    def run_trial(self, trial, *args, **kwargs):
        data = self._data
        hp = trial.hyperparameters
        budget = data["budget"]
        training = declare_training_hyperparameters(hp, data["space"])
        settings = TrainingSettings(
            optimizer=training["optimizer"],
            learning_rate=training["learning_rate"],
            batch_size=training["batch_size"],
            max_epochs=int(hp.values.get("tuner/epochs", budget["max_epochs"])),
            patience=int(budget["patience"]),
            validation_fraction=float(budget["validation_fraction"]),
        )
        outcome = cross_validate(
            lambda fold: build_cnn1d(hp, data["n_bands"], data["space"]),
            data["X"],
            data["y"],
            data["folds"],
            settings,
            seed=data["seed"],
        )
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
            _save_outcome(Path(self.project_dir) / self.best_dir_name, trial.trial_id, outcome)
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
        if self._bar is not None:
            self._bar.update(1)
            self._bar.set_postfix(
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


def _save_outcome(directory: Path, trial_id: str, outcome: CrossValidationOutcome) -> None:
    staging = directory.with_name(directory.name + ".tmp")
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    for fold, model in enumerate(outcome.models):
        model.save(staging / f"fold_{fold:02d}.keras")
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


def _load_outcome(directory: Path, trial_id: str) -> CrossValidationOutcome | None:
    try:
        stored = json.loads((directory / "trial.json").read_text())["trial_id"]
    except (OSError, KeyError, ValueError):
        return None
    if stored != trial_id:
        return None
    arrays = np.load(directory / "outcome.npz")
    n_folds = arrays["y_mean"].size
    models = [
        keras.models.load_model(directory / f"fold_{k:02d}.keras", compile=False)
        for k in range(n_folds)
    ]
    return CrossValidationOutcome(
        models=models,
        y_mean=arrays["y_mean"],
        y_scale=arrays["y_scale"],
        oof_predictions=arrays["oof_predictions"],
        fold_rmse=arrays["fold_rmse"],
        epochs=arrays["epochs"].tolist(),
        seconds=float("nan"),
    )


class _BayesianOracle(keras_tuner.oracles.BayesianOptimizationOracle):
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
        completed = [t for t in self.trials.values() if t.status == "COMPLETED"]
        dimensions = len(self.hyperparameters.space)
        num_initial_points = self.num_initial_points or max(3 * dimensions, 3)
        if len(completed) < num_initial_points:
            return self._random_populate_space()
        x, y = self._vectorize_trials()
        x = np.nan_to_num(x, posinf=0, neginf=0)
        y = np.nan_to_num(y, posinf=0, neginf=0)
        with warnings.catch_warnings():
            # a GP on a handful of trials often puts a length scale at its bound: expected
            warnings.simplefilter("ignore", sklearn.exceptions.ConvergenceWarning)
            self.gpr.fit(x, y)
        bounds = self._get_hp_bounds()

        def acquisition(points: np.ndarray) -> np.ndarray:
            mean, std = self.gpr.predict(np.atleast_2d(points), return_std=True)
            return mean - self.beta * std

        candidates = self._random_state.uniform(
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
        return {
            "status": keras_tuner.engine.trial.TrialStatus.RUNNING,
            "values": self._vector_to_values(best_x),
        }


def _make_oracle(kind: str, budget: Mapping[str, Any], seed: int):
    objective = keras_tuner.Objective(OBJECTIVE, direction="min")
    common = {
        "objective": objective,
        # Keras-Tuner replaces a seed of 0 by a random one (`seed or random.randint(...)`).
        "seed": int(seed) if int(seed) != 0 else _ORACLE_SEED_FOR_ZERO,
        "max_consecutive_failed_trials": int(budget["max_consecutive_failed_trials"]),
    }
    if kind == "bayesian":
        initial_points = budget["initial_points"]
        if initial_points is None:
            initial_points = min(10, max(2, int(budget["trials"]) // 4))
        return _BayesianOracle(
            max_trials=int(budget["trials"]),
            num_initial_points=int(initial_points),
            **common,
        )
    if kind == "random":
        return keras_tuner.oracles.RandomSearchOracle(max_trials=int(budget["trials"]), **common)
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
# The public search


@dataclass
class SearchResult:
    """What a search found: the best hyperparameters, every trial, the best fold ensemble."""

    best_hyperparameters: dict[str, Any]
    trials: pd.DataFrame
    ensemble: FoldEnsemble
    tuner: str
    directory: str | None = None
    tensorflow: dict[str, Any] = field(default_factory=dict)

    @property
    def cv_rmse(self) -> float:
        return self.ensemble.cv_rmse_

    @property
    def oof_predictions(self) -> np.ndarray:
        return self.ensemble.oof_predictions_


def search_cnn(
    X: Any,
    y: Any,
    *,
    folds: Folds | None = None,
    budget: Mapping[str, Any] | None = None,
    seed: int = 0,
    directory: str | os.PathLike | None = None,
    tuner: str = "bayesian",
    resume: bool = False,
    progress: bool = True,
    space: Mapping[str, Any] | None = None,
    sample_ids: Sequence | None = None,
    data_version: str | None = None,
    project_name: str = "cnn1d_search",
    threads: int | None = None,
    deterministic: bool = True,
    distributed: Mapping[str, Any] | None = None,
) -> SearchResult:
    """Search 1D-CNN architectures and training settings by K-fold CV RMSE.

    ``X``: preprocessed spectra ``(n, n_bands)``; ``y``: targets ``(n,)``. ``folds``: the data
    set's fixed folds (rows in the order of ``X``); ``None`` makes ``budget["folds"]`` folds from
    ``sample_ids`` (default ``0..n-1``) and ``seed``. ``space``: overrides of
    ``localsoc.models.cnn1d.DEFAULT_SEARCH_SPACE``. See the module docstring for the budget,
    ``directory`` and ``resume``.

    ``distributed``: ``{"enabled": True, "oracle_ip", "oracle_port", "directory",
    "wait_timeout_s"}`` (``train.distributed``) makes this call Keras-Tuner's chief: workers
    started with ``python -m localsoc.models.distributed_search`` run the trials, and the result
    is what a single-process search returns. The ``KERASTUNER_*`` variables with
    ``KERASTUNER_TUNER_ID=chief`` do the same. See ``localsoc.models.distributed_search``.
    """
    budget = resolve_budget(budget)
    space = resolve_search_space(space)
    if tuner not in TUNERS:
        raise ValueError(f"tuner must be one of {list(TUNERS)}, got {tuner!r}")
    X = as_spectra(X)
    y = as_target(y, X.shape[0])
    if folds is None:
        folds = make_folds(
            sample_ids if sample_ids is not None else X.shape[0], int(budget["folds"]), seed
        )
    elif not isinstance(folds, Folds):
        raise TypeError(f"folds must be a Folds (see make_folds), got {type(folds).__name__}")
    if folds.n_samples != X.shape[0]:
        raise ValueError(f"folds cover {folds.n_samples} samples but X has {X.shape[0]} rows")
    if sample_ids is not None and not np.array_equal(
        folds.sample_ids, np.asarray([str(s) for s in sample_ids], dtype=object)
    ):
        raise ValueError("sample_ids differ from the folds' sample ids (or their order)")
    from localsoc.models import distributed_search

    distributed_settings = distributed_search.resolve_distributed(distributed, directory)
    if distributed_settings is not None:
        directory = distributed_settings.directory  # shared with the workers
    if resume and directory is None:
        raise ValueError("resume=True needs the directory of the search to resume")

    tf_info = configure_tensorflow(threads, deterministic)
    hash_ = data_hash(X, y, folds.sample_ids)
    state = {
        "training_data_hash": hash_,
        "folds": folds.to_dict(),
        "seed": int(seed),
        "tuner": tuner,
        "space": space,
    }

    with contextlib.ExitStack() as stack:
        if directory is None:
            directory = stack.enter_context(tempfile.TemporaryDirectory(prefix="cnn1d_search_"))
            kept_directory = None
        else:
            directory = Path(directory)
            directory.mkdir(parents=True, exist_ok=True)
            kept_directory = str(directory)
        project_dir = Path(directory) / project_name
        state_file = project_dir / _STATE_FILE
        if resume and state_file.exists():
            stored = json.loads(state_file.read_text())
            changed = [key for key in state if stored.get(key) != json.loads(json.dumps(state[key]))]
            if changed:
                raise ValueError(
                    f"resume=True, but the search in {project_dir} was run with other {changed}; "
                    "pass resume=False to start over, or another directory"
                )

        oracle = _make_oracle(tuner, budget, seed)
        hypermodel = _CNN1DHyperModel(X.shape[1], space)
        data = {
            "X": X,
            "y": y,
            "folds": folds,
            "budget": budget,
            "space": space,
            "seed": int(seed),
            "n_bands": X.shape[1],
        }
        keras.utils.set_random_seed(int(seed))
        with contextlib.ExitStack() as role:
            if distributed_settings is not None:
                role.enter_context(distributed_search.tuner_environment(
                    "chief", distributed_settings.oracle_ip, distributed_settings.oracle_port))
            role.enter_context(contextlib.redirect_stdout(_LoggingStream()))
            cv_tuner = _CrossValidationTuner(
                oracle,
                hypermodel,
                data=data,
                directory=str(directory),
                project_name=project_name,
                overwrite=not resume,
            )
        project_dir.mkdir(parents=True, exist_ok=True)
        state_file.write_text(json.dumps(state))
        done = sum(
            1 for t in cv_tuner.oracle.trials.values() if t.status in ("COMPLETED", "FAILED")
        )
        with tqdm(
            total=int(budget["trials"]),
            initial=min(done, int(budget["trials"])),
            desc=f"CNN search ({tuner}, {folds.n_splits}-fold)",
            unit="trial",
            disable=not progress,
            leave=True,
        ) as bar:
            cv_tuner._bar = bar
            with contextlib.redirect_stdout(_LoggingStream()):
                if distributed_settings is None:
                    cv_tuner.search(verbose=0)
                else:  # the chief: workers run the trials
                    distributed_search.serve_search(
                        cv_tuner, data, tuner, hash_, distributed_settings, bar
                    )
            cv_tuner._bar = None

        best_trials = cv_tuner.oracle.get_best_trials(1)
        if not best_trials or best_trials[0].score is None:
            raise RuntimeError(
                f"no trial of the search in {project_dir} completed; see the trial messages "
                "there (a model diverged on every try?)"
            )
        best = best_trials[0]
        best_values = dict(best.hyperparameters.values)
        outcome = _load_outcome(project_dir / _BEST_DIR, best.trial_id)
        for worker_dir in sorted(project_dir.glob(f"{_BEST_DIR}.*")):  # distributed workers'
            if outcome is None and worker_dir.is_dir() and not worker_dir.name.endswith(".tmp"):
                outcome = _load_outcome(worker_dir, best.trial_id)
        if outcome is None:  # e.g. resumed after a kill between training and saving
            logger.info("retraining the fold models of best trial %s", best.trial_id)
            training = declare_training_hyperparameters(best_values, space)
            outcome = cross_validate(
                lambda fold: build_cnn1d(best_values, X.shape[1], space),
                X,
                y,
                folds,
                TrainingSettings(
                    optimizer=training["optimizer"],
                    learning_rate=training["learning_rate"],
                    batch_size=training["batch_size"],
                    max_epochs=int(best_values.get("tuner/epochs", budget["max_epochs"])),
                    patience=int(budget["patience"]),
                    validation_fraction=float(budget["validation_fraction"]),
                ),
                seed=int(seed),
            )
        trials = _trial_table(cv_tuner)

    ensemble = FoldEnsemble(
        models_=outcome.models,
        y_mean_=outcome.y_mean,
        y_scale_=outcome.y_scale,
        folds=folds,
        hyperparameters=best_values,
        seed=int(seed),
        oof_predictions_=outcome.oof_predictions,
        fold_rmse_=outcome.fold_rmse,
        training_data_hash=hash_,
        data_version=data_version,
        info={
            "kind": "search",
            "tuner": tuner,
            "trial_id": best.trial_id,
            "budget": budget,
            "space": space,
            "epochs": list(outcome.epochs),
            "keras_version": keras.__version__,
            "backend": keras.backend.backend(),
        },
    )
    return SearchResult(
        best_hyperparameters=best_values,
        trials=trials,
        ensemble=ensemble,
        tuner=tuner,
        directory=kept_directory,
        tensorflow=tf_info,
    )


def _trial_table(cv_tuner: _CrossValidationTuner) -> pd.DataFrame:
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
