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

The stack has no stored model: the evaluate stage makes its estimates from the other methods'
(``localsoc.pipelines.evaluate.stacking``), and the family is not servable yet (serving needs
the weights and every component model with a positive weight in one bundle entry).
"""

from __future__ import annotations

import numpy as np
from scipy.optimize import nnls

STORE = None


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
