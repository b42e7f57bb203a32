"""Cross-validated training of Keras models: one purpose, the training loop of every fold model.

The CNN search (``localsoc.models.search``, one trial = ``cross_validate`` over the data set's
fixed folds) and the representation transfer (``localsoc.models.transfer``, fine-tuning over the
target's folds) both train through this module, so both get the same loop, seeds and early
stopping. What is here:

* ``DEFAULT_BUDGET`` / ``resolve_budget``: the search budget (trials, epochs, patience, folds,
  early-stopping fraction, oracle settings) with its checks; the keys are described in
  ``localsoc.models.search``;
* ``TrainingSettings``: how one fold model is trained (optimiser, learning rate, batch size,
  epochs, patience, early-stopping fraction);
* ``FoldTrainer``: one compiled model reused for every fold of a trial (batch-by-batch training,
  early stopping on held-out rows, best weights restored);
* ``fit_model``: one model; ``cross_validate``: one model per fold with out-of-fold predictions
  (``CrossValidationOutcome``); ``fit_fold_models``: one model per fold on each fold's own
  training data (nested evaluation); ``fold_seed``: the seed of each fold.

TensorFlow threads and op determinism are set in ``localsoc.models.runtime``; the Keras-Tuner
side of a search (hypermodel, tuner, oracle, best-trial store) is ``localsoc.models.tuner``.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

import keras
import numpy as np

from localsoc.models import fold_stack
from localsoc.models.cnn1d import make_optimizer
from localsoc.models.ensemble import PREDICT_CHUNK, Folds, rmse

__all__ = [
    "DEFAULT_BUDGET",
    "CrossValidationOutcome",
    "FoldTrainer",
    "TrainingSettings",
    "config_or_settings",
    "cross_validate",
    "fit_fold_models",
    "fit_model",
    "fold_seed",
    "resolve_budget",
]

#: How a trial's K fold models are trained (``TrainingSettings.engine``).
ENGINES = ("stack", "loop")

logger = logging.getLogger(__name__)

DEFAULT_BUDGET: dict[str, Any] = {
    "trials": 20,
    "max_epochs": 200,
    "patience": 20,
    "folds": 10,
    "validation_fraction": 0.1,
    # stack: the K fold models of a trial trained side by side in one compiled epoch
    # (localsoc.models.fold_stack); loop: one after another (FoldTrainer), the reference.
    "engine": "stack",
    # Bayesian: random trials before the Gaussian process takes over. None: trials // 4, in
    # 2..10 (Keras-Tuner's own default, 3 x the ~60 dimensions, would make any affordable
    # search purely random).
    "initial_points": None,
    "hyperband_factor": 3,
    # Networks tried first, in order (names of cnn1d.KNOWN_NETWORKS or dicts of values), so
    # even a small budget starts from a sensible network; the oracle proposes the rest.
    "initial_trials": [],
    "max_consecutive_failed_trials": 5,
}


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
    if resolved["engine"] not in ENGINES:
        raise ValueError(f"budget 'engine' must be one of {list(ENGINES)}, got {resolved['engine']!r}")
    if not 0 <= float(resolved["validation_fraction"]) < 1:
        raise ValueError(
            f"budget 'validation_fraction' must be in [0, 1), got {resolved['validation_fraction']}"
        )
    return resolved


T = TypeVar("T")


def config_or_settings(cls: type[T], config: T | None, settings: Mapping[str, Any]) -> T:
    """``config``, or a ``cls`` made of the keyword ``settings`` (a function's settings come as
    one config object or as its fields, not both)."""
    if config is None:
        return cls(**settings)
    if settings:
        raise TypeError(f"give the settings in config or as keywords, not both: {sorted(settings)}")
    return config


@dataclass(frozen=True)
class TrainingSettings:
    """How one fold model is trained."""

    optimizer: str = "adam"
    learning_rate: float = 1e-3
    batch_size: int = 32
    max_epochs: int = 200
    patience: int = 20
    validation_fraction: float = 0.1
    engine: str = "stack"  # stack (fold_stack, all folds at once) or loop (FoldTrainer)


@dataclass
class CrossValidationOutcome:
    """The fold models of one cross-validation, their ``y`` scaling and held-out results."""

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


class FoldTrainer:
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
        """Start the next fold: ``weights`` and the optimiser's initial state."""
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
        fit_rows, stop_rows = fold_stack.stop_split(X.shape[0], settings.validation_fraction, rng)
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
    return FoldTrainer(model, settings).fit(X, z, seed)


def fit_fold_models(
    make_model: Callable[[int], keras.Model],
    fold_data: Iterable[tuple[np.ndarray, np.ndarray, Sequence[np.ndarray]]],
    settings: TrainingSettings,
    *,
    seed: int,
    y_scaling: tuple[float, float] | Sequence[tuple[float, float]] | None = None,
) -> tuple[list, np.ndarray, np.ndarray, list[int], list[list[np.ndarray]]]:
    """Train one model per fold on that fold's own training data; predict its arrays.

    ``fold_data`` yields, per fold, ``(X_train, y_train, to_predict)``: the fold's training rows
    (any rows: the nested evaluation trains fold f on its own RS-LOCAL selection plus the
    fold's training locals) and the spectra arrays its model predicts (in ``y`` units). Every
    fold model is trained as ``cross_validate`` trains it (same seeds, one compiled trainer:
    every fold's model must have the same architecture). ``y_scaling``: None (standardise on
    each fold's training rows), one (mean, scale) pair for every fold, or a list of pairs, one
    per fold. Returns (models, y means, y scales, epochs, predictions per fold).
    """
    fold_data = list(fold_data)
    scaling = [_fold_scaling(y_scaling, fold, y_train)
               for fold, (_, y_train, _) in enumerate(fold_data)]
    if settings.engine == "stack" and fold_stack.available() and fold_data:
        try:
            return _fit_stacked(make_model, fold_data, settings, seed, scaling)
        except fold_stack.UnsupportedLayer as error:
            logger.debug("fold stack: %s; training the folds one after another", error)
    trainer = None
    models, means, scales, epochs, predictions = [], [], [], [], []
    for fold, (X_train, y_train, to_predict) in enumerate(fold_data):
        mean, scale = scaling[fold]
        seed_k = fold_seed(seed, fold)
        keras.utils.set_random_seed(seed_k)
        fresh = make_model(fold)
        if trainer is None:
            trainer = FoldTrainer(make_model(fold), settings)
        trainer.reset(fresh.get_weights())
        epochs.append(trainer.fit(X_train, (y_train - mean) / scale, seed_k))
        predictions.append([mean + scale * trainer.predict(X) if len(X) else np.empty(0)
                            for X in to_predict])
        fresh.set_weights(trainer.model.get_weights())  # the kept fold model
        models.append(fresh)
        means.append(mean)
        scales.append(scale)
    return models, np.asarray(means), np.asarray(scales), epochs, predictions


def _fold_scaling(y_scaling, fold: int, y_train: np.ndarray) -> tuple[float, float]:
    """Fold ``fold``'s (mean, scale) of ``y``: its own training rows' (``y_scaling`` None), the
    one pair given, or its entry of a per-fold list."""
    if y_scaling is None:
        scale = float(np.std(y_train))
        return float(np.mean(y_train)), (scale if scale > 0 else 1.0)
    if len(y_scaling) > 0 and not np.isscalar(y_scaling[0]):
        return tuple(float(v) for v in y_scaling[fold])
    return tuple(float(v) for v in y_scaling)


def _fit_stacked(make_model, fold_data, settings, seed, scaling):
    """``fit_fold_models`` with every fold trained at once (``fold_stack``); same seeds, same
    fold models and returns."""
    models, seeds = [], []
    for fold in range(len(fold_data)):
        seeds.append(fold_seed(seed, fold))
        keras.utils.set_random_seed(seeds[-1])
        models.append(make_model(fold))
    standardised = [(X, (y - mean) / scale)
                    for (X, y, _), (mean, scale) in zip(fold_data, scaling, strict=True)]
    epochs = fold_stack.train_fold_stack(models, standardised, settings, seeds, make_optimizer)
    n_arrays = max(len(to_predict) for _, _, to_predict in fold_data)
    columns = []
    for position in range(n_arrays):
        arrays = [to_predict[position] if position < len(to_predict) else X[:0]
                  for X, _, to_predict in fold_data]
        columns.append(fold_stack.predict_stack(models, arrays, PREDICT_CHUNK))
    predictions = []
    for fold, (mean, scale) in enumerate(scaling):
        n_own = len(fold_data[fold][2])
        predictions.append([mean + scale * columns[p][fold] if len(columns[p][fold])
                            else np.empty(0) for p in range(n_own)])
    means = np.asarray([m for m, _ in scaling])
    scales = np.asarray([s for _, s in scaling])
    return models, means, scales, epochs, predictions


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
    splits = list(folds.split())
    models, means, scales, epochs, predictions = fit_fold_models(
        make_model, ((X[train], y[train], [X[valid]]) for train, valid in splits), settings,
        seed=seed, y_scaling=y_scaling)
    oof = np.full(y.shape[0], np.nan)
    fold_rmse = []
    for (_, valid), (prediction,) in zip(splits, predictions, strict=True):
        oof[valid] = prediction
        fold_rmse.append(rmse(y[valid], prediction) if np.isfinite(prediction).all() else np.nan)
    return CrossValidationOutcome(
        models=models,
        y_mean=means,
        y_scale=scales,
        oof_predictions=oof,
        fold_rmse=np.asarray(fold_rmse),
        epochs=epochs,
        seconds=time.perf_counter() - start,
    )
