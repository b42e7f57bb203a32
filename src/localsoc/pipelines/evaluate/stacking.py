"""The stack's estimates at one site, from the other methods' estimates (``localsoc.families.
stack``: a convex combination fitted to the nested out-of-fold calibration estimates).

Components: every method of a servable family (not the stack) whose estimates the site has.
The outer folds are those of the components' nested calibration estimates (the stored folds
of the n); a component without fold models over the n (a library model) has one estimate per
spectrum, used for every fold.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from localsoc.families.stack import cross_fitted
from localsoc.methods import family, method


def _components(rows: pd.DataFrame) -> list[str]:
    labels = []
    for label in dict.fromkeys(rows["method"]):
        kind = family(method(label).family)
        if kind.servable and kind.name != "stack":
            labels.append(str(label))
    return labels


def _outer_folds(cal: pd.DataFrame, labels: list[str], ids_cal: list[str]) -> np.ndarray | None:
    """The outer fold of each calibration sample, shared by every component with fold models
    over the n (None: no such component, or two that disagree)."""
    found = None
    for label in labels:
        folds = cal.loc[cal["method"] == label].set_index("sample_id").loc[ids_cal, "fold"]
        folds = folds.to_numpy(int)
        if folds.max() == 0:
            continue
        if found is not None and not np.array_equal(found, folds):
            return None
        found = folds
    return found


def _per_fold(rows: pd.DataFrame, labels: list[str], ids_test: list[str], test: np.ndarray,
              n_folds: int) -> np.ndarray:
    """(K, n_test, M): each component's fold-k model's estimate of every test spectrum (its one
    estimate where it has no K fold models)."""
    out = np.repeat(test[None, :, :], n_folds, axis=0)
    for m, label in enumerate(labels):
        of = rows.loc[(rows["method"] == label) & (rows["role"] == "test_fold")]
        table = of.pivot(index="fold", columns="sample_id", values="estimated")
        if len(table) == n_folds and len(ids_test):
            out[:, :, m] = table.reindex(columns=ids_test).to_numpy(np.float64)
    return out


def stacked_estimates(rows: pd.DataFrame, ids_cal: list[str], y_cal: np.ndarray,
                      ids_test: list[str]):
    """(calibration estimates, test estimates, test spread, outer fold of each calibration
    sample, fold-k stack's test estimates (K, n_test), weights on all n by component) of the
    stack at one site, or None (fewer than two components, or no shared outer folds).

    ``rows``: the site's estimate rows of every method (``predict_sites``' calibration, test
    and test_fold roles). Fold k's stack combines the components' fold-k models with the
    weights fitted without fold k; the served stack, their represented models with the weights
    fitted on all n. Spread: the weighted sum of the components' spreads."""
    labels = _components(rows)
    if len(labels) < 2:
        return None
    cal = rows.loc[rows["role"] == "calibration"]
    folds = _outer_folds(cal, labels, ids_cal)
    if folds is None:
        return None
    C = np.column_stack([cal.loc[cal["method"] == label].set_index("sample_id")
                         .loc[ids_cal, "estimated"].to_numpy(np.float64) for label in labels])
    tested = rows.loc[rows["role"] == "test"]

    def test_column(label: str, column: str) -> np.ndarray:
        of = tested.loc[tested["method"] == label].set_index("sample_id")
        return of.loc[ids_test, column].to_numpy(np.float64)

    T = np.column_stack([test_column(label, "estimated") for label in labels])
    spread = np.nan_to_num(np.column_stack([test_column(label, "spread") for label in labels]))
    oof, fold_weights, weights = cross_fitted(C, np.asarray(y_cal, np.float64), folds)
    per_fold = _per_fold(rows, labels, ids_test, T, len(fold_weights))
    fold_estimates = np.einsum("knm,km->kn", per_fold, fold_weights)
    return (oof, T @ weights, spread @ weights, folds, fold_estimates,
            dict(zip(labels, weights.tolist(), strict=True)))
