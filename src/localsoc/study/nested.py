"""Nested out-of-fold estimates for methods whose training data depend on the calibration labels.

RS-LOCAL chooses its k library samples to predict the n calibration samples' SOC. A model
trained on those k + n and scored out-of-fold on the same n is scored on labels that chose its
training data, so its calibration RMSE is optimistic. The nested estimate redoes every
label-dependent choice inside an outer K-fold over the n: in outer fold f, RS-LOCAL runs on the
library and the fold's training locals only, the PLSR components are chosen by an inner CV on
that fold's k_f + n_f, and the refitted model predicts the held-out locals, which took no part
in any of those choices.

This module holds the RS-LOCAL + PLSR case (:func:`nested_rslocal_pls`) and its un-nested
counterpart (:func:`unnested_rslocal_pls`, what the train stage does today), so a test can show
the difference on data where the truth is known.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from localsoc.models.ensemble import Folds, make_folds
from localsoc.models.pls import fit_pls_cv


@dataclass
class NestedEstimates:
    """Out-of-fold estimates of the n calibration samples and what each outer fold chose."""

    oof_predictions: np.ndarray
    folds: Folds
    selections: list[np.ndarray] = field(default_factory=list)  # library rows per outer fold
    n_components: list[int] = field(default_factory=list)  # PLSR components per outer fold

    def rmse(self, y: np.ndarray) -> float:
        return float(np.sqrt(np.mean((np.asarray(y) - self.oof_predictions) ** 2)))


def _rslocal(X_library, y_library, X_local, y_local, params: Mapping[str, Any], seed: int):
    from localsoc.selection import RSLocal

    settings = {"progress": False, **dict(params), "random_state": int(seed)}
    return RSLocal(**settings).fit(X_library, y_library, X_local, y_local).selected_indices_


def nested_rslocal_pls(
    X_library: np.ndarray,
    y_library: np.ndarray,
    X_local: np.ndarray,
    y_local: np.ndarray,
    folds: Folds,
    rslocal: Mapping[str, Any],
    max_components: int = 20,
    inner_folds: int = 5,
    seed: int = 0,
) -> NestedEstimates:
    """Nested out-of-fold RS-LOCAL + PLSR estimates of the local samples.

    ``folds`` is the outer K-fold over the n local samples (their order). ``rslocal`` holds the
    :class:`~localsoc.selection.RSLocal` settings (``k``, ``b``, ``retain``, ...); each outer
    fold's selection is seeded from ``seed`` and the fold number. The inner CV that chooses the
    components splits the fold's k_f + n_f samples into ``inner_folds`` folds.
    """
    X_library, y_library = np.asarray(X_library, np.float64), np.asarray(y_library, np.float64)
    X_local, y_local = np.asarray(X_local, np.float64), np.asarray(y_local, np.float64)
    if folds.n_samples != len(y_local):
        raise ValueError(f"the outer folds cover {folds.n_samples} samples; there are "
                         f"{len(y_local)} local samples")
    estimates = np.full(len(y_local), np.nan)
    result = NestedEstimates(estimates, folds)
    for fold, (train, held_out) in enumerate(folds.split()):
        chosen = _rslocal(X_library, y_library, X_local[train], y_local[train], rslocal,
                          seed + 7919 * (fold + 1))
        X = np.vstack([X_library[chosen], X_local[train]])
        y = np.concatenate([y_library[chosen], y_local[train]])
        inner = make_folds(len(y), min(int(inner_folds), len(y)), seed + fold)
        fitted = fit_pls_cv(X, y, max_components=max_components, cv=list(inner.split()))
        estimates[held_out] = fitted.predict(X_local[held_out])
        result.selections.append(np.asarray(chosen))
        result.n_components.append(int(fitted.n_components_))
    return result


def unnested_rslocal_pls(
    X_library: np.ndarray,
    y_library: np.ndarray,
    X_local: np.ndarray,
    y_local: np.ndarray,
    folds: Folds,
    rslocal: Mapping[str, Any],
    max_components: int = 20,
    seed: int = 0,
) -> NestedEstimates:
    """The un-nested estimate: RS-LOCAL on all n, PLSR components chosen by CV on k + n, and the
    out-of-fold estimates of the n from that CV (``folds`` assign the n; the k library samples
    are spread over the same number of folds)."""
    X_library, y_library = np.asarray(X_library, np.float64), np.asarray(y_library, np.float64)
    X_local, y_local = np.asarray(X_local, np.float64), np.asarray(y_local, np.float64)
    chosen = _rslocal(X_library, y_library, X_local, y_local, rslocal, seed)
    X = np.vstack([X_library[chosen], X_local])
    y = np.concatenate([y_library[chosen], y_local])
    library_folds = make_folds(len(chosen), folds.n_splits, seed).assignment
    assignment = np.concatenate([library_folds, folds.assignment])
    cv = [(np.flatnonzero(assignment != f), np.flatnonzero(assignment == f))
          for f in range(folds.n_splits)]
    fitted = fit_pls_cv(X, y, max_components=max_components, cv=cv)
    oof = np.asarray(fitted.oof_predictions_)[len(chosen):]
    return NestedEstimates(oof, folds, [np.asarray(chosen)], [int(fitted.n_components_)])
