"""The GPR family: Gaussian process regression on PLS scores (``localsoc.models.gpr``; the idea
of resemble's ``fit_gpr``), the number of scores chosen by CV.

Stored as ``pls_gp_model.json`` (``PLSGPModel.to_dict``: per part the PLS centring and
rotations, score scales, training scores and SOC, the fitted kernel's log-hyperparameters; no
pickles). Served as it is: the estimate is the GP mean (the mean of the parts for an
outer-fold ensemble), the spread the GP's predictive standard deviation.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from localsoc.models.ensemble import make_folds
from localsoc.models.gpr import GPSettings, PLSGPModel, fit_pls_gp_cv
from localsoc.study import utc_now


class PLSGPStore:
    """Save and load a :class:`PLSGPModel` as one JSON file in a folder."""

    model_format = "pls_gp_model"
    marker = "pls_gp_model.json"

    def owns(self, model: Any) -> bool:
        return isinstance(model, PLSGPModel)

    def save(self, model: PLSGPModel, folder: Path) -> None:
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        (folder / self.marker).write_text(json.dumps(model.to_dict()))

    def load(self, folder: Path) -> PLSGPModel:
        return PLSGPModel.from_dict(json.loads((Path(folder) / self.marker).read_text()))


STORE = PLSGPStore()


def train_site_model(X, y, ids, folds, seed: int, params: dict, label: str, dataset: str,
                     n_local: int | None = None):
    """GP on PLS scores of a site data set, the number of scores by CV on ``folds``
    (``train.gpr``; ``seed`` seeds the optimizer's restarts). Returns (model, None)."""
    part, curve, oof = fit_pls_gp_cv(X, y, list(folds.split()),
                                     GPSettings.from_params(params["gpr"]), seed)
    model = PLSGPModel([part], [str(s) for s in ids], oof, [float(v) for v in curve],
                       {"data": dataset, "trained_at": utc_now(),
                        "n_components": int(part.scores.shape[1])})
    return model, None


def refit_folds(model, fold_data, params: dict, seed: int, base=None, base_data=None):
    """The GP refitted on each outer fold's own training data, the number of scores chosen
    again by an inner CV there (``train.site_budget.folds`` folds, seeded seed + fold).

    Returns (per fold: (predictions of its arrays, {"n_components": chosen}), build) with
    ``build(folds, oof, extra)`` the outer-fold ensemble (a :class:`PLSGPModel` of K parts).
    """
    settings = GPSettings.from_params(params["gpr"])
    results, parts = [], []
    for fold, (X, y, to_predict) in enumerate(fold_data):
        inner = make_folds(len(y), min(int(params["site_budget"]["folds"]), len(y)), seed + fold)
        part, _, _ = fit_pls_gp_cv(X, y, list(inner.split()), settings, seed + fold)
        parts.append(part)
        results.append(([part.predict(A) if len(A) else A[:, 0] for A in to_predict],
                         {"n_components": int(part.scores.shape[1])}))

    def build(folds, oof, extra=None):
        return PLSGPModel(parts, [str(s) for s in folds.sample_ids], oof, [],
                          {**dict(extra or {}), "trained_at": utc_now(),
                           "fold_n_components": [int(p.scores.shape[1]) for p in parts]},
                          folds)

    return results, build


def serving_predictor(model: PLSGPModel) -> PLSGPModel:
    return model
