"""Representation transfer: fine-tune a library 1D-CNN on a site's data, front layers frozen.

After Shen et al. (2022): the base is the library ensemble's fold model with the lowest RMSE on
the site's n calibration samples. For each depth ``j`` the first ``j`` weight layers (Conv1D and
Dense, input to output) are frozen, with every layer before the next weight layer (so a block's
batch normalisation is frozen with its convolution), and the rest is fine-tuned on the target
data (n local, or k + n) over the target's fixed folds; each fold starts from a fresh copy of the
base weights and keeps the base model's ``y`` standardisation, so the output layer starts from
the library model's prediction. The depth with the lowest CV RMSE wins; the result is again a
``FoldEnsemble`` with out-of-fold predictions, plus the CV RMSE of every depth tried.

Frozen batch normalisation layers run in inference mode (Keras 3), so their moving statistics
stay those of the library.
"""

from __future__ import annotations

import dataclasses
import logging
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import keras
import numpy as np
import pandas as pd
from tqdm.auto import tqdm

from localsoc.models.cnn1d import weight_layers
from localsoc.models.ensemble import (
    FoldEnsemble,
    Folds,
    as_spectra,
    as_target,
    data_hash,
    make_folds,
    rmse,
)
from localsoc.models.runtime import configure_tensorflow
from localsoc.models.training import (
    CrossValidationOutcome,
    TrainingSettings,
    config_or_settings,
    cross_validate,
)

__all__ = [
    "DEFAULT_FINE_TUNE",
    "TransferConfig",
    "TransferResult",
    "fine_tune_settings",
    "freeze_layers",
    "select_base_model",
    "transfer_representation",
]

logger = logging.getLogger(__name__)

#: Fine-tuning budget. ``None``: take the base model's searched value (optimizer, batch size,
#: learning rate); the learning rate is multiplied by ``learning_rate_factor``.
DEFAULT_FINE_TUNE: dict[str, Any] = {
    "max_epochs": 200,
    "patience": 20,
    "validation_fraction": 0.1,
    "optimizer": None,
    "learning_rate": None,
    "learning_rate_factor": 1.0,
    "batch_size": None,
    "folds": 10,
    "engine": "stack",  # stack (all folds at once) or loop (one after another): training.ENGINES
}


@dataclass
class TransferResult:
    """The chosen freezing depth, the CV RMSE of every depth tried, the fine-tuned ensemble."""

    depth: int
    cv_rmse_by_depth: dict[int, float]
    table: pd.DataFrame
    ensemble: FoldEnsemble
    base_fold: int
    base_site_rmse: np.ndarray

    @property
    def cv_rmse(self) -> float:
        return self.cv_rmse_by_depth[self.depth]

    @property
    def oof_predictions(self) -> np.ndarray:
        return self.ensemble.oof_predictions_


def select_base_model(
    base: FoldEnsemble, X_site_cal: Any, y_site_cal: Any
) -> tuple[int, np.ndarray]:
    """The fold of ``base`` whose model has the lowest RMSE on the site's calibration samples,
    and the RMSE of every fold model there (ties: the lowest fold)."""
    X = as_spectra(X_site_cal, base.n_bands, name="X_site_cal")
    y = as_target(y_site_cal, X.shape[0], name="y_site_cal")
    per_fold = base.predict_folds(X)
    errors = np.array([rmse(y, p) if np.isfinite(p).all() else np.inf for p in per_fold])
    if not np.isfinite(errors).any():
        raise ValueError("every base fold model gives non-finite predictions on the site data")
    return int(np.argmin(errors)), errors


def freeze_layers(model: keras.Model, depth: int) -> list[str]:
    """Freeze the first ``depth`` weight layers of ``model`` (and every layer before the next
    weight layer); make the others trainable. Returns the names of the frozen layers that hold
    weights."""
    weights = weight_layers(model)
    if not 0 <= depth <= len(weights):
        raise ValueError(
            f"depth must be between 0 and the number of weight layers ({len(weights)}); "
            f"got {depth}"
        )
    boundary = model.layers.index(weights[depth]) if depth < len(weights) else len(model.layers)
    frozen = []
    for position, layer in enumerate(model.layers):
        layer.trainable = position >= boundary
        if position < boundary and layer.weights:
            frozen.append(layer.name)
    return frozen


def _resolve_fine_tune(fine_tune: Mapping[str, Any] | None) -> dict[str, Any]:
    resolved = dict(DEFAULT_FINE_TUNE)
    for key, value in dict(fine_tune or {}).items():
        if key not in DEFAULT_FINE_TUNE:
            raise ValueError(
                f"unknown fine-tune key {key!r}; known keys: {sorted(DEFAULT_FINE_TUNE)}"
            )
        resolved[key] = value
    return resolved


@dataclass(frozen=True)
class TransferConfig:
    """How one representation transfer runs.

    ``depths``: freezing depths to try (``None``: ``0 .. n_weight_layers - 1``; depth 0
    fine-tunes every layer from the base weights). ``fine_tune``: overrides of
    ``DEFAULT_FINE_TUNE``. ``seed``: folds (when not given) and fold models. ``threads``,
    ``deterministic``: ``localsoc.models.runtime.configure_tensorflow``.
    """

    depths: Sequence[int] | None = None
    fine_tune: Mapping[str, Any] | None = None
    seed: int = 0
    progress: bool = True
    data_version: str | None = None
    threads: int | None = None
    deterministic: bool = True

    @classmethod
    def from_params(cls, params: Mapping[str, Any], seed: int) -> TransferConfig:
        """The transfer of one data set from ``params:transfer`` (``depths``, ``fine_tune``,
        ``progress``, ``threads``) and a seed."""
        return cls(
            depths=params["depths"],
            fine_tune=params["fine_tune"],
            seed=seed,
            progress=bool(params["progress"]),
            threads=params["threads"],
        )


def transfer_representation(
    base: FoldEnsemble,
    X_target: Any,
    y_target: Any,
    config: TransferConfig | None = None,
    *,
    X_site_cal: Any,
    y_site_cal: Any,
    folds: Folds | None = None,
    sample_ids: Sequence | None = None,
    **settings: Any,
) -> TransferResult:
    """Fine-tune ``base`` on the target data at every freezing depth; keep the best by CV RMSE.

    ``X_target, y_target``: the data to fine-tune on (n local, or k + n); ``X_site_cal,
    y_site_cal``: the site's n calibration samples, which pick the base fold model
    (``select_base_model``). ``config``: a ``TransferConfig``, or its fields as keywords
    (``settings``). ``folds``: the target data's fixed folds (``None``: ``fine_tune["folds"]``
    folds from ``sample_ids`` and the seed).
    """
    config = config_or_settings(TransferConfig, config, settings)
    fine_tune = _resolve_fine_tune(config.fine_tune)
    X = as_spectra(X_target, base.n_bands, name="X_target")
    y = as_target(y_target, X.shape[0], name="y_target")
    if folds is None:
        folds = make_folds(
            sample_ids if sample_ids is not None else X.shape[0], int(fine_tune["folds"]),
            config.seed,
        )
    if folds.n_samples != X.shape[0]:
        raise ValueError(f"folds cover {folds.n_samples} samples but X_target has {X.shape[0]}")
    configure_tensorflow(config.threads, config.deterministic)

    base_fold, site_errors = select_base_model(base, X_site_cal, y_site_cal)
    base_model = base.models_[base_fold]
    depths = _check_depths(config.depths, len(weight_layers(base_model)))
    settings_ = fine_tune_settings(fine_tune, base.hyperparameters)
    y_scaling = (float(base.y_mean_[base_fold]), float(base.y_scale_[base_fold]))
    table, depth, outcome = _try_depths(
        base_model, depths, X, y, folds, settings_, config, y_scaling)
    cv_by_depth = {int(r["depth"]): float(r["cv_rmse"]) for r in table.to_dict("records")}
    ensemble = _transfer_ensemble(base, base_fold, site_errors, X, y, folds, config, settings_,
                                  table, depth, outcome)
    return TransferResult(depth=depth, cv_rmse_by_depth=cv_by_depth, table=table,
                          ensemble=ensemble, base_fold=base_fold, base_site_rmse=site_errors)


# --------------------------------------------------------------------------------------------
# The steps of a transfer


def _check_depths(depths: Sequence[int] | None, n_weight_layers: int) -> list[int]:
    """The freezing depths to try (default ``0 .. n_weight_layers - 1``), checked."""
    if depths is None:
        depths = list(range(n_weight_layers))
    depths = [int(d) for d in depths]
    for depth in depths:
        if not 0 <= depth <= n_weight_layers:
            raise ValueError(
                f"depths must lie in 0..{n_weight_layers} (the base has {n_weight_layers} "
                f"weight layers); got {depth}"
            )
    if not depths:
        raise ValueError("depths is empty; give at least one freezing depth")
    return depths


def fine_tune_settings(
    fine_tune: Mapping[str, Any], hyperparameters: Mapping[str, Any]
) -> TrainingSettings:
    """The fold models' training settings: ``fine_tune`` (resolved, see ``DEFAULT_FINE_TUNE``)
    with the base model's searched optimizer, learning rate and batch size where it says
    ``None``; the learning rate times ``learning_rate_factor``."""
    hp = hyperparameters
    learning_rate = fine_tune["learning_rate"]
    if learning_rate is None:
        learning_rate = float(hp.get("learning_rate", 1e-3))
    return TrainingSettings(
        optimizer=fine_tune["optimizer"] or hp.get("optimizer", "adam"),
        learning_rate=float(learning_rate) * float(fine_tune["learning_rate_factor"]),
        batch_size=int(fine_tune["batch_size"] or hp.get("batch_size", 32)),
        max_epochs=int(fine_tune["max_epochs"]),
        patience=int(fine_tune["patience"]),
        validation_fraction=float(fine_tune["validation_fraction"]),
        engine=str(fine_tune["engine"]),
    )


def _model_at(base_model: keras.Model, depth: int) -> Callable[[int], keras.Model]:
    """``make_model(fold)``: a fresh copy of the base model and its weights, frozen at
    ``depth``."""
    base_weights = base_model.get_weights()

    def make_model(fold: int) -> keras.Model:
        model = keras.models.clone_model(base_model)
        model.set_weights(base_weights)
        freeze_layers(model, depth)
        return model

    return make_model


def _try_depths(
    base_model: keras.Model,
    depths: Sequence[int],
    X: np.ndarray,
    y: np.ndarray,
    folds: Folds,
    settings: TrainingSettings,
    config: TransferConfig,
    y_scaling: tuple[float, float],
) -> tuple[pd.DataFrame, int, CrossValidationOutcome]:
    """Cross-validate the fine-tuning at every depth: (table of the depths, the best depth, its
    outcome); the best is the lowest finite CV RMSE (ties: the first tried)."""
    rows, best = [], None
    with tqdm(total=len(depths), desc="representation transfer", unit="depth",
              disable=not config.progress) as bar:
        for depth in depths:
            outcome = cross_validate(_model_at(base_model, depth), X, y, folds, settings,
                                     seed=config.seed, y_scaling=y_scaling)
            frozen = freeze_layers(keras.models.clone_model(base_model), depth)
            cv = outcome.cv_rmse
            rows.append({"depth": depth, "frozen_layers": frozen, "cv_rmse": cv,
                         "seconds": outcome.seconds, "mean_epochs": float(np.mean(outcome.epochs))})
            logger.info("transfer depth %d: cv_rmse %.4g, %.1f s", depth, cv, outcome.seconds)
            if math.isfinite(cv) and (best is None or cv < best[1].cv_rmse):
                best = (depth, outcome)
            bar.update(1)
            bar.set_postfix(depth=depth, cv_rmse=f"{cv:.4g}",
                            best_depth=None if best is None else best[0])
    if best is None:
        raise RuntimeError("fine-tuning diverged at every depth; lower the learning rate")
    return pd.DataFrame(rows), best[0], best[1]


def _transfer_ensemble(
    base: FoldEnsemble,
    base_fold: int,
    site_errors: np.ndarray,
    X: np.ndarray,
    y: np.ndarray,
    folds: Folds,
    config: TransferConfig,
    settings: TrainingSettings,
    table: pd.DataFrame,
    depth: int,
    outcome: CrossValidationOutcome,
) -> FoldEnsemble:
    """The fold models fine-tuned at the chosen ``depth`` as a ``FoldEnsemble``; its ``info``
    records the base, the depths tried and the fine-tuning settings."""
    cv_by_depth = {int(r["depth"]): float(r["cv_rmse"]) for r in table.to_dict("records")}
    info = {
        "kind": "transfer",
        "depth": depth,
        "frozen_layers": table.loc[table["depth"] == depth, "frozen_layers"].iloc[0],
        "cv_rmse_by_depth": {str(k): v for k, v in cv_by_depth.items()},
        "base_fold": base_fold,
        "base_site_rmse": site_errors.tolist(),
        "base_training_data_hash": base.training_data_hash,
        "base_data_version": base.data_version,
        "fine_tune": dataclasses.asdict(settings),
        "epochs": list(outcome.epochs),
    }
    return FoldEnsemble(
        models_=outcome.models,
        y_mean_=outcome.y_mean,
        y_scale_=outcome.y_scale,
        folds=folds,
        hyperparameters=dict(base.hyperparameters),
        seed=int(config.seed),
        oof_predictions_=outcome.oof_predictions,
        fold_rmse_=outcome.fold_rmse,
        training_data_hash=data_hash(X, y, folds.sample_ids),
        data_version=config.data_version,
        info=info,
    )
