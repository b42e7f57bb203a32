"""The spiked-PLSR family: PLSR on RS-LOCAL's k library samples plus the n local samples
extra-weighted by w (Guerrero et al. 2014, 2016; ``localsoc.models.spiking``).

The weight w (``train.spiking_weights``, a small grid) and the number of components are chosen
together by CV on the local rows: on the data set's stored folds for the full-data model, and
again inside each outer fold of the nested stage (an inner CV over that fold's k_f + n_f, as
the PLSR family's refit does), so the nested estimate pays for the choice. A fitted model is a
:class:`~localsoc.models.linear.LinearModel` (one coefficient vector): it is stored and served
exactly as a PLSR model (the PLSR family's ``STORE``); its choice of w is in ``info``.

The data sets this family learns from hold the library rows first and the site's calibration
samples last (``localsoc.study.data.site_data``); ``n_local`` / ``base_data`` say how many.
"""

from __future__ import annotations

import numpy as np

from localsoc.families.plsr import STORE  # noqa: F401  (the same store: a LinearModel)
from localsoc.models.ensemble import make_folds
from localsoc.models.linear import LinearModel
from localsoc.models.spiking import SpikedPLS
from localsoc.study import utc_now


def _local_mask(n_rows: int, n_local: int) -> np.ndarray:
    if not 0 < n_local <= n_rows:
        raise ValueError(f"spiking needs 1..{n_rows} local rows; got {n_local}")
    return np.arange(n_rows) >= n_rows - n_local


def _fit(X, y, local, cv, params: dict) -> SpikedPLS:
    return SpikedPLS([int(w) for w in params["spiking_weights"]],
                     int(params["pls_max_components"]), cv).fit(X, y, local)


def train_site_model(X, y, ids, folds, seed: int, params: dict, label: str, dataset: str,
                     n_local: int):
    """Spiked PLSR on a k + n data set (its last ``n_local`` rows are the site's), w and the
    components chosen by CV on ``folds`` (``seed`` unused: deterministic). Returns (model,
    None)."""
    fitted = _fit(X, y, _local_mask(len(y), n_local), list(folds.split()), params)
    model = LinearModel.from_pls(fitted, ids, info={
        "data": dataset, "trained_at": utc_now(), "spiking_weight": fitted.weight_,
        "cv_rmse_by_weight": fitted.cv_rmse_by_weight_})
    return model, None


def refit_folds(model, fold_data, params: dict, seed: int, base=None, base_data=None):
    """Spiked PLSR refitted on each outer fold's k_f + n_f, w and the components chosen again
    by an inner CV there (``train.site_budget.folds`` folds over its rows, seeded seed + fold);
    ``base_data[f]``: the fold's training locals, the last rows of its data.

    Returns (per fold: (predictions of its arrays, {"n_components", "spiking_weight"}), build)
    with ``build(folds, oof, extra)`` the outer-fold ensemble (``LinearModel.from_folds``).
    """
    if base_data is None:
        raise ValueError("spiked PLSR needs each outer fold's training locals (base_data)")
    results, fitted_models = [], []
    for fold, ((X, y, to_predict), (X_local, _)) in enumerate(
            zip(fold_data, base_data, strict=True)):
        local = _local_mask(len(y), len(X_local))
        if not np.array_equal(X[local], X_local):
            raise ValueError(f"outer fold {fold}: the local rows must be the data's last rows")
        inner = make_folds(len(y), min(int(params["site_budget"]["folds"]), len(y)), seed + fold)
        fitted = _fit(X, y, local, list(inner.split()), params)
        fitted_models.append(fitted)
        results.append(([fitted.predict(A) if len(A) else A[:, 0] for A in to_predict],
                        {"n_components": int(fitted.n_components_),
                         "spiking_weight": int(fitted.weight_)}))

    def build(folds, oof, extra=None):
        return LinearModel.from_folds(fitted_models, folds, oof, info={
            **dict(extra or {}), "trained_at": utc_now(),
            "fold_spiking_weights": [int(f.weight_) for f in fitted_models]})

    return results, build


def serving_predictor(model: LinearModel) -> LinearModel:
    return model
