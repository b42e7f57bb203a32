"""Spiking with extra weight: PLSR on library samples plus the local samples weighted w.

Guerrero et al. (2014, Geoderma 232-234; 2016, Soil Tillage Res. 155) spike a library with
the site's own samples and *extra-weight* them by repeating them, so a few dozen local spectra
are not swamped by hundreds of library spectra. Here the library samples are RS-LOCAL's k and
the local samples the n calibration samples (``localsoc.methods``: ``RS-LOCAL+PLSR ... w``).

The weighted fit repeats each local row w times (w a positive integer) and fits
``sklearn.cross_decomposition.PLSRegression(scale=False)`` on the stacked rows. For PLS1 this
*is* the weighted PLS with integer row weights: every mean and cross-product of NIPALS becomes
the w-weighted one (the centring is the weighted mean), and it reuses the PLSR code and the
served :class:`~localsoc.models.linear.LinearModel` of the PLSR family unchanged (a weighted
PLSR is still one coefficient vector and an intercept). The cost is k + w n rows.

The weight w (from a small grid) and the number of components a are chosen together by CV:
for each fold of ``cv`` (index pairs over the rows), every w of the grid is fitted once on the
fold's training rows (its locals repeated w times) with A components, and the fold's held-out
*local* rows are predicted with 1..A components; the (w, a) with the lowest pooled RMSE over
the local rows wins (ties: the smaller w, then fewer components). Library rows are never the
target: the field is. A replicate never crosses a fold (folds are over the original rows).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from sklearn.cross_decomposition import PLSRegression

from localsoc.models.pls import components_predictions


def repeated_rows(X: np.ndarray, y: np.ndarray, local: np.ndarray,
                  weight: int) -> tuple[np.ndarray, np.ndarray]:
    """The rows with every ``local`` row repeated ``weight`` times (library rows once)."""
    counts = np.where(local, int(weight), 1)
    return np.repeat(X, counts, axis=0), np.repeat(y, counts)


class SpikedPLS:
    """PLSR on library + local rows with the local rows extra-weighted, (w, a) chosen by CV.

    After :meth:`fit`: ``weight_`` (the chosen w), ``n_components_``, ``cv_rmse_`` (the local
    rows' pooled CV RMSE by components at the chosen w), ``cv_rmse_by_weight_`` ({w: that
    curve}), ``oof_predictions_`` (every row's out-of-fold estimate at the chosen w and a),
    ``estimator_`` (the PLSRegression refitted on all rows, locals repeated) and ``x_mean_``
    (the weighted mean spectrum it centres by), the attributes
    :class:`~localsoc.models.linear.LinearModel` reads.
    """

    def __init__(self, weights: Sequence[int], max_components: int, cv) -> None:
        if not weights or any(int(w) != w or w < 1 for w in weights):
            raise ValueError(f"weights must be positive integers; got {list(weights)!r}")
        self.weights = [int(w) for w in weights]
        self.max_components = int(max_components)
        self.cv = [(np.asarray(a), np.asarray(b)) for a, b in cv]

    def fit(self, X, y, local) -> SpikedPLS:
        X, y = np.asarray(X, np.float64), np.asarray(y, np.float64)
        local = np.asarray(local, bool)
        if not local.any():
            raise ValueError("spiking needs at least one local row")
        smallest = min(len(train) for train, _ in self.cv)
        n_max = min(self.max_components, smallest - 1, X.shape[1])
        if n_max < 1:
            raise ValueError(f"the smallest training fold has {smallest} rows: too few for PLS")
        oof = np.full((len(self.weights), n_max, len(y)), np.nan)
        for train, held in self.cv:
            for i, weight in enumerate(self.weights):
                X_w, y_w = repeated_rows(X[train], y[train], local[train], weight)
                oof[i][:, held] = components_predictions(X_w, y_w, X[held], n_max)
        if np.isnan(oof[:, :, local]).any():
            raise ValueError("the CV folds must hold out every local row once")
        curves = np.sqrt(np.mean((oof[:, :, local] - y[local]) ** 2, axis=2))
        best_w, best_a = np.unravel_index(int(np.argmin(curves)), curves.shape)
        self.weight_ = self.weights[best_w]
        self.n_components_ = int(best_a) + 1
        self.cv_rmse_ = curves[best_w]
        self.cv_rmse_by_weight_ = {w: curves[i].tolist() for i, w in enumerate(self.weights)}
        self.oof_predictions_ = oof[best_w, best_a]
        X_w, y_w = repeated_rows(X, y, local, self.weight_)
        self.estimator_ = PLSRegression(n_components=self.n_components_, scale=False).fit(X_w,
                                                                                        y_w)
        self.x_mean_ = X_w.mean(axis=0)
        return self

    def predict(self, X) -> np.ndarray:
        return self.estimator_.predict(np.asarray(X, np.float64)).ravel()
