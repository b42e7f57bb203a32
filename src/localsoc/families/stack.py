"""The stack family: a convex combination of a site's servable models (stacked generalisation,
Wolpert 1992; non-negative weights, Breiman 1996).

The weights are fitted, by non-negative least squares with the weights summing to one, to the
components' *nested* out-of-fold estimates of the n calibration samples (each made by a model
that never saw that sample's outer fold). The stack's own estimate of outer fold f's samples
uses weights fitted on the other folds' samples only (:func:`cross_fitted`), so the weights
that score fold f never saw fold f's residuals; the components' estimates of the other folds
came from models that trained on fold f's labels (a second-order dependence, as in the winner
rule's own nested RMSE; the pure-noise test in ``tests/study`` measures what it costs). The
estimate of a held-out spectrum is the combination, with the weights fitted on all n, of the
components' estimates (their represented, outer-fold models).

The evaluate stage makes the stack's estimates from the other methods'
(``localsoc.pipelines.evaluate.stacking``); the package stage builds the served
:class:`StackModel` (the weights on all n, each outer fold's weights and the component models
with a positive weight) with the same fit. Stored as ``stack.json`` plus one folder per
component, saved by its own family's store; served through each component's family's
serving path.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from scipy.optimize import nnls


def convex_weights(estimates: np.ndarray, observed: np.ndarray) -> np.ndarray:
    """Non-negative weights summing to one that minimise ||estimates @ w - observed||.

    ``estimates``: (n samples, M models). The sum-to-one constraint is an extra row of the
    least-squares system scaled far above the data (then the weights are divided by their
    sum, a correction of the order of the data's scale over that row's).
    """
    estimates = np.asarray(estimates, np.float64)
    observed = np.asarray(observed, np.float64)
    scale = float(np.abs(estimates).max() * np.sqrt(len(observed))) or 1.0
    big = 1e3 * scale  # the constraint row, weighted far above any residual
    weights, _ = nnls(np.vstack([estimates, np.full(estimates.shape[1], big)]),
                      np.concatenate([observed, [big]]))
    total = weights.sum()
    if total <= 0:
        return np.full(estimates.shape[1], 1.0 / estimates.shape[1])
    return weights / total


def cross_fitted(estimates: np.ndarray, observed: np.ndarray,
                 folds: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(the stack's estimate of each sample with the weights fitted without its fold, those
    weights per fold (K, M), the weights fitted on all samples (M,)). ``folds``: each sample's
    outer fold (0..K-1)."""
    folds = np.asarray(folds, int)
    oof = np.empty(len(observed))
    per_fold = []
    for fold in range(int(folds.max()) + 1):
        held = folds == fold
        weights = convex_weights(estimates[~held], observed[~held])
        oof[held] = estimates[held] @ weights
        per_fold.append(weights)
    return oof, np.stack(per_fold), convex_weights(estimates, observed)


@dataclass(eq=False)
class StackModel:
    """The served stack: ``components`` (label, family name, model) with ``weights`` (fitted on
    all n) and ``fold_weights`` (K, M) (fold k's, fitted without outer fold k); ``folds``: the
    outer folds of ``sample_ids``, ``oof_predictions_`` the cross-fitted estimates."""

    components: list[tuple[str, str, Any]]
    weights: np.ndarray
    fold_weights: np.ndarray
    folds: Any
    sample_ids: list[str]
    oof_predictions_: np.ndarray
    info: dict[str, Any] = field(default_factory=dict)

    @property
    def n_bands(self) -> int:
        return int(self.components[0][2].n_bands)

    def predict(self, X, return_std: bool = False, models=None):
        """The weighted estimates (and the weighted spreads) of the components (``models``:
        what predicts for each component, by default the component models)."""
        models = models or [model for _, _, model in self.components]
        outputs = [model.predict(X, return_std=True) for model in models]
        estimate = np.column_stack([o[0] for o in outputs]) @ self.weights
        if not return_std:
            return estimate
        return estimate, np.nan_to_num(np.column_stack([o[1] for o in outputs])) @ self.weights

    def predict_folds(self, X, models=None) -> np.ndarray:
        """Fold k's stack estimates (K, n): each component's fold-k model (its one model where
        it has no K outer-fold models) combined with fold k's weights."""
        models = models or [model for _, _, model in self.components]
        n_folds = len(self.fold_weights)
        columns = []
        for (_, _, component), model in zip(self.components, models, strict=True):
            folds = getattr(component, "folds", None)
            if folds is not None and folds.n_splits == n_folds and hasattr(model,
                                                                            "predict_folds"):
                columns.append(np.asarray(model.predict_folds(X), np.float64))
            else:
                columns.append(np.repeat(np.asarray(model.predict(X))[None, :], n_folds, 0))
        return np.einsum("mkn,km->kn", np.stack(columns), self.fold_weights)


class StackStore:
    """Save and load a :class:`StackModel`: ``stack.json`` and a folder per component."""

    model_format = "stack"
    marker = "stack.json"

    def owns(self, model: Any) -> bool:
        return isinstance(model, StackModel)

    def save(self, model: StackModel, folder: Path) -> None:
        from localsoc.methods import family_of_model

        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        formats = []
        for i, (_, _, component) in enumerate(model.components):
            store = family_of_model(component).store
            store.save(component, folder / f"component_{i}")
            formats.append(store.model_format)
        (folder / self.marker).write_text(json.dumps({
            "format": "localsoc.stack/1", "labels": [c[0] for c in model.components],
            "families": [c[1] for c in model.components], "model_formats": formats,
            "weights": model.weights.tolist(), "fold_weights": model.fold_weights.tolist(),
            "folds": model.folds.to_dict(), "sample_ids": model.sample_ids,
            "oof_predictions": model.oof_predictions_.tolist(), "info": model.info}))

    def load(self, folder: Path) -> StackModel:
        from localsoc.methods import family_of_format
        from localsoc.models.ensemble import Folds

        folder = Path(folder)
        data = json.loads((folder / self.marker).read_text())
        if data.get("format") != "localsoc.stack/1":
            raise ValueError(f"not a localsoc stack: format {data.get('format')!r}")
        components = [(label, kind, family_of_format(fmt).store.load(folder / f"component_{i}"))
                      for i, (label, kind, fmt) in enumerate(zip(
                          data["labels"], data["families"], data["model_formats"], strict=True))]
        return StackModel(components, np.asarray(data["weights"], np.float64),
                          np.asarray(data["fold_weights"], np.float64),
                          Folds.from_dict(data["folds"]), list(data["sample_ids"]),
                          np.asarray(data["oof_predictions"], np.float64), dict(data["info"]))


STORE = StackStore()


class StackPredictor:
    """The served stack through each component's family's serving path."""

    def __init__(self, model: StackModel) -> None:
        from localsoc.methods import family

        self.model = model
        self.predictors = [family(kind).implementation().serving_predictor(component)
                           for _, kind, component in model.components]

    def predict(self, X, return_std: bool = False):
        return self.model.predict(X, return_std, self.predictors)

    def predict_folds(self, X) -> np.ndarray:
        return self.model.predict_folds(X, self.predictors)


def serving_predictor(model: StackModel) -> StackPredictor:
    return StackPredictor(model)
