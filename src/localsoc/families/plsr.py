"""The PLSR family: partial least squares regression with components chosen by CV on the folds.

Stored as ``linear_model.json`` (``LinearModel.to_dict``: x mean, coefficients, intercept, the
out-of-fold predictions and the CV curve; no pickles). Served as it is: a linear model is one
matrix product, and its spread is 0.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from localsoc.models.linear import LinearModel
from localsoc.models.pls import fit_pls_cv
from localsoc.study import utc_now


class LinearModelStore:
    """Save and load a :class:`LinearModel` as one JSON file in a folder."""

    model_format = "linear_model"
    marker = "linear_model.json"

    def owns(self, model: Any) -> bool:
        return isinstance(model, LinearModel)

    def save(self, model: LinearModel, folder: Path) -> None:
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        (folder / self.marker).write_text(json.dumps(model.to_dict()))

    def load(self, folder: Path) -> LinearModel:
        return LinearModel.from_dict(json.loads((Path(folder) / self.marker).read_text()))


STORE = LinearModelStore()


def train_site_model(X, y, ids, folds, seed: int, params: dict, label: str, dataset: str,
                     n_local: int | None = None):
    """PLSR on a site data set, the number of components by CV on ``folds`` (``seed`` and
    ``n_local`` unused: PLSR is deterministic and weighs every row alike). Returns (model,
    None): no trial table."""
    fitted = fit_pls_cv(X, y, max_components=int(params["pls_max_components"]),
                        cv=list(folds.split()))
    model = LinearModel.from_pls(fitted, ids, info={"data": dataset, "trained_at": utc_now()})
    return model, None


def refit_folds(model, fold_data, params: dict, seed: int, base=None, base_data=None):
    """PLSR refitted on each outer fold's own training data, the number of components chosen
    again by an inner CV there (``train.site_budget.folds`` folds, at most one per sample).

    Returns (per fold: (predictions of its arrays, {"n_components": chosen}), build) where
    ``build(folds, oof)`` makes the outer-fold ensemble (``LinearModel.from_folds``) that the
    nested collection stores and the package stage may serve.
    """
    from localsoc.models.ensemble import make_folds

    results, fitted_models = [], []
    for fold, (X, y, to_predict) in enumerate(fold_data):
        inner = make_folds(len(y), min(int(params["site_budget"]["folds"]), len(y)), seed + fold)
        fitted = fit_pls_cv(X, y, max_components=int(params["pls_max_components"]),
                            cv=list(inner.split()))
        fitted_models.append(fitted)
        results.append(([fitted.predict(A).ravel() if len(A) else A[:, 0] for A in to_predict],
                         {"n_components": int(fitted.n_components_)}))

    def build(folds, oof, extra=None):
        return LinearModel.from_folds(fitted_models, folds, oof,
                                      info={**dict(extra or {}), "trained_at": utc_now()})

    return results, build


def serving_predictor(model: LinearModel) -> LinearModel:
    return model
