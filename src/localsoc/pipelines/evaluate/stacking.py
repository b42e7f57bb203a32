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

from localsoc.families.stack import StackModel, cross_fitted
from localsoc.methods import family, method
from localsoc.models.ensemble import Folds


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


def stack_fit(cal: pd.DataFrame, ids_cal: list[str], y_cal: np.ndarray):
    """(component labels, outer fold of each calibration sample, cross-fitted estimates, the
    weights per fold (K, M), the weights on all n) from a site's calibration rows of every
    method (``estimated``: nested out of fold; ``fold``), or None (fewer than two components,
    or no shared outer folds). The evaluate and package stages both fit the stack here."""
    cal = cal.assign(sample_id=cal["sample_id"].astype(str))
    labels = _components(cal)
    if len(labels) < 2:
        return None
    folds = _outer_folds(cal, labels, ids_cal)
    if folds is None:
        return None
    C = np.column_stack([cal.loc[cal["method"] == label].set_index("sample_id")
                         .loc[ids_cal, "estimated"].to_numpy(np.float64) for label in labels])
    return (labels, folds, *cross_fitted(C, np.asarray(y_cal, np.float64), folds))


def served_stack(site: str, country: str | None, calibration: pd.DataFrame,
                 collections: dict[str, dict]) -> StackModel:
    """The stack the package stage serves at a site: :func:`stack_fit` on the site's
    calibration rows (``study_predictions``), with each component's represented model (its
    outer-fold ensemble in ``collections["nested"]`` where the nested stage made one), those
    with a zero weight on all n and in every fold left out."""
    first = calibration.loc[calibration["method"] == calibration["method"].iloc[0]]
    ids_cal = first["sample_id"].astype(str).tolist()
    fitted = stack_fit(calibration, ids_cal, first["observed"].to_numpy(np.float64))
    if fitted is None:
        raise ValueError(f"site {site!r}: the stack has fewer than two components")
    labels, folds, oof, fold_weights, weights = fitted
    used = (weights > 0) | (fold_weights > 0).any(axis=0)  # a zero weight everywhere: left out
    labels = [label for label, keep in zip(labels, used, strict=True) if keep]
    weights, fold_weights = weights[used], fold_weights[:, used]
    components = []
    for label in labels:
        entry = method(label)
        key = entry.model_key(site, country)
        model = collections["nested"].get(key)
        if model is None:
            model = collections[entry.collection].get(key)
        if model is None:
            raise ValueError(f"site {site!r}: the stack's component {label!r} ({key}) is not "
                             "in the model collections; re-run the study")
        components.append((label, entry.family, model))
    return StackModel(components, weights, fold_weights,
                      Folds(np.asarray(ids_cal), folds, None), ids_cal, oof,
                      {"method": "Stack", "weights": dict(zip(labels, weights.tolist(),
                                                              strict=True))})


def stacked_estimates(rows: pd.DataFrame, ids_cal: list[str], y_cal: np.ndarray,
                      ids_test: list[str]):
    """(calibration estimates, test estimates, test spread, outer fold of each calibration
    sample, fold-k stack's test estimates (K, n_test), weights on all n by component) of the
    stack at one site, or None (fewer than two components, or no shared outer folds).

    ``rows``: the site's estimate rows of every method (``predict_sites``' calibration, test
    and test_fold roles). Fold k's stack combines the components' fold-k models with the
    weights fitted without fold k; the served stack, their represented models with the weights
    fitted on all n. Spread: the weighted sum of the components' spreads."""
    fitted = stack_fit(rows.loc[rows["role"] == "calibration"], ids_cal, y_cal)
    if fitted is None:
        return None
    labels, folds, oof, fold_weights, weights = fitted
    tested = rows.loc[rows["role"] == "test"]

    def test_column(label: str, column: str) -> np.ndarray:
        of = tested.loc[tested["method"] == label].set_index("sample_id")
        return of.loc[ids_test, column].to_numpy(np.float64)

    T = np.column_stack([test_column(label, "estimated") for label in labels])
    spread = np.nan_to_num(np.column_stack([test_column(label, "spread") for label in labels]))
    per_fold = _per_fold(rows, labels, ids_test, T, len(fold_weights))
    fold_estimates = np.einsum("knm,km->kn", per_fold, fold_weights)
    return (oof, T @ weights, spread @ weights, folds, fold_estimates,
            dict(zip(labels, weights.tolist(), strict=True)))
