"""Nested out-of-fold estimates for methods whose training data depend on the calibration labels.

RS-LOCAL chooses its k library samples to predict the n calibration samples' SOC. A model
trained on those k + n and scored out-of-fold on the same n is scored on labels that chose its
training data, so its calibration RMSE is optimistic. The nested estimate redoes every
label-dependent choice inside an outer K-fold over the n: in outer fold f, RS-LOCAL runs on the
library and the fold's training locals only, the PLSR components are chosen by an inner CV on
that fold's k_f + n_f, and the refitted model predicts the held-out locals, which took no part
in any of those choices.

:func:`nested_site_estimates` is the ``nested`` stage's work for one site: for every method
with a ``nested`` procedure in the registry it returns, per outer fold f of the stored folds of
the n, the estimates of fold f's held-out locals and of the site's test spectra by the model
refitted on fold f's training data (RS-LOCAL rerun on those locals for ``rslocal`` methods).
Those estimates feed the winner rule (nested out-of-fold RMSE) and the CV+ intervals of the
evaluate stage. The RS-LOCAL runs of the outer folds are independent and run in a thread pool
(the native kernel releases the GIL; each run uses ``localise.n_jobs`` threads).

Redone in every outer fold: the RS-LOCAL selection (k of thousands of library samples picked
to fit the n labels), the PLSR component count and a transfer model's base fold (the library
fold model that fits the fold's training locals best). What stays un-nested (stated in the
report): the architecture of a searched CNN (the best of its trials on all n), a transfer
model's freezing depth, MBL's neighbourhood size. The K refitted models of each method are
kept as its outer-fold ensemble, the model the evaluate stage scores and the package stage
serves.

:func:`nested_rslocal_pls` and its un-nested counterpart :func:`unnested_rslocal_pls` are the
self-contained RS-LOCAL + PLSR case, so a test can show the difference on data where the truth
is known.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from localsoc.data.schema import spectra_of
from localsoc.models.ensemble import Folds, make_folds
from localsoc.models.pls import fit_pls_cv
from localsoc.study import derived_seed, scope_key, scope_rows

ESTIMATE_COLUMNS = ("site", "method", "role", "sample_id", "fold", "estimated")


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
    from localsoc.families import plsr

    estimates = np.full(len(y_local), np.nan)
    result = NestedEstimates(estimates, folds)
    splits = list(folds.split())
    fold_data = []
    for fold, (train, held_out) in enumerate(splits):
        chosen = _rslocal(X_library, y_library, X_local[train], y_local[train], rslocal,
                          seed + 7919 * (fold + 1))
        fold_data.append((np.vstack([X_library[chosen], X_local[train]]),
                          np.concatenate([y_library[chosen], y_local[train]]),
                          [X_local[held_out]]))
        result.selections.append(np.asarray(chosen))
    # the stage's PLSR refit: components by an inner CV of inner_folds folds, seeded seed + fold
    refits, _ = plsr.refit_folds(None, fold_data, {"pls_max_components": max_components,
                                                   "site_budget": {"folds": inner_folds}}, seed)
    for (_, held_out), ((held_estimate,), chosen) in zip(splits, refits, strict=True):
        estimates[held_out] = held_estimate
        result.n_components.append(chosen["n_components"])
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


def fold_selections(pool: pd.DataFrame, X_local: np.ndarray, y_local: np.ndarray, folds: Folds,
                    params: Mapping[str, Any], seeds: list[int],
                    workers: int | None = None) -> list[np.ndarray]:
    """RS-LOCAL on each outer fold's training locals (rows of ``pool``, one array per fold).

    ``params``: the ``localise`` parameters; ``seeds``: one per fold. The runs go to a pool of
    ``workers`` threads (None: cores // ``n_jobs``, at least 1); the result does not depend on
    the number of workers.
    """
    from localsoc.selection import RSLocal

    X_pool, y_pool = spectra_of(pool), pool["soc"].to_numpy(np.float64)
    splits = list(folds.split())
    if workers is None:
        workers = max(1, (os.cpu_count() or 1) // max(1, int(params["n_jobs"])))

    def run(fold: int) -> np.ndarray:
        train = splits[fold][0]
        selector = RSLocal.from_params(params, seeds[fold], progress=False)
        return np.asarray(selector.fit(X_pool, y_pool, X_local[train], y_local[train])
                          .selected_indices_)

    with ThreadPoolExecutor(max_workers=int(workers)) as executor:
        return list(executor.map(run, range(len(splits))))


def _outer_selections(site: str, scope: str, country: str | None, library_spectra: pd.DataFrame,
                      X_n: np.ndarray, y_n: np.ndarray, folds: Folds,
                      localise: Mapping[str, Any], seed: int,
                      workers: int | None) -> tuple[pd.DataFrame, list[np.ndarray]]:
    """(the scope's library pool, the RS-LOCAL selection of each outer fold from it)."""
    pool = scope_rows(library_spectra, scope, country)
    seeds = [derived_seed(seed, site, scope, f"outer_fold_{f}") for f in range(folds.n_splits)]
    return pool, fold_selections(pool, X_n, y_n, folds, localise, seeds, workers)


def _fold_data(entry, splits: list, X_n: np.ndarray, y_n: np.ndarray, X_test: np.ndarray,
               selected: dict) -> tuple[list, list[list[str]]]:
    """(per outer fold: training X, y and the spectra to estimate [held-out locals, test];
    per outer fold: the library samples used). An ``rslocal`` method trains on its fold's
    selection (``selected[scope]``: the pool and its rows per fold) plus the fold's locals."""
    fold_data, used = [], []
    for f, (train, held) in enumerate(splits):
        if entry.nested == "rslocal":
            pool, per_fold = selected[entry.scope]
            picked = pool.iloc[per_fold[f]]
            X = np.vstack([spectra_of(picked), X_n[train]])
            y = np.concatenate([picked["soc"].to_numpy(np.float64), y_n[train]])
            used.append(picked["sample_id"].astype(str).tolist())
        else:
            X, y = X_n[train], y_n[train]
            used.append([])
        fold_data.append((X, y, [X_n[held], X_test]))
    return fold_data, used


def _method_records(site: str, entry, splits: list, results: list, ids_n: list[str],
                    ids_test: list[str], fold_data: list, used: list[list[str]],
                    selection: pd.DataFrame) -> tuple[list[pd.DataFrame], list[dict]]:
    """(estimate rows, choice rows) of one method's outer folds; a fold's choice row says how
    much of its library samples the selection made on all n (``selection``) also holds."""
    full = set(selection.loc[(selection["site"] == site) & (selection["scope"] == entry.scope),
                             "sample_id"].astype(str)) if entry.nested == "rslocal" else set()
    frames, choices = [], []
    for f, ((_, held), ((held_estimate, test_estimate), info)) in enumerate(
            zip(splits, results, strict=True)):
        frames.append(pd.DataFrame({
            "site": site, "method": entry.label, "role": "calibration",
            "sample_id": [ids_n[i] for i in held], "fold": f,
            "estimated": np.asarray(held_estimate, np.float64)}))
        frames.append(pd.DataFrame({
            "site": site, "method": entry.label, "role": "test", "sample_id": ids_test,
            "fold": f, "estimated": np.asarray(test_estimate, np.float64)}))
        choices.append({
            "site": site, "method": entry.label, "fold": f, "nested": entry.nested,
            "n_train": len(fold_data[f][1]), "n_library": len(used[f]),
            "overlap_with_full_selection": (len(full & set(used[f])) / len(used[f])
                                            if used[f] else np.nan),
            **info,
        })
    return frames, choices


def nested_site_estimates(
    site: str,
    country: str | None,
    library_spectra: pd.DataFrame,
    local: pd.DataFrame,
    test: pd.DataFrame,
    selection: pd.DataFrame,
    folds: Folds,
    entries: list,
    models: Mapping[str, Any],
    bases: Mapping[str, Any],
    params: Mapping[str, Mapping[str, Any]],
    seed: int,
    workers: int | None = None,
) -> tuple[pd.DataFrame, pd.DataFrame, dict]:
    """Nested estimates of one site: (estimates, choices, outer-fold ensembles by label).

    ``entries``: the registry methods to re-estimate (``Method.nested`` set), with their fitted
    models in ``models`` (by method label) and, for transfer methods, the library models they
    started from in ``bases`` (by label). ``folds``: the stored outer folds of the n (aligned to
    ``local``'s rows). ``params``: ``localise``, ``train`` and ``transfer`` parameters.

    Estimates: one ``calibration`` row per local sample (its outer fold's model) and one
    ``test`` row per test sample and outer fold. Choices: per method and fold, the training
    size, the library samples used, their overlap with the selection made on all n, and what
    the refit chose (components, epochs). Outer-fold ensembles: per method, the K refitted
    models as one model (fold k never saw outer fold k) with the nested out-of-fold estimates.
    """
    from localsoc.methods import family

    X_n, y_n = spectra_of(local), local["soc"].to_numpy(np.float64)
    ids_n = local["sample_id"].astype(str).tolist()
    folds = folds.aligned_to(ids_n)
    splits = list(folds.split())
    X_test = spectra_of(test) if not test.empty else np.empty((0, X_n.shape[1]))
    ids_test = test["sample_id"].astype(str).tolist()
    selected = {scope: _outer_selections(site, scope, country, library_spectra, X_n, y_n, folds,
                                         params["localise"], seed, workers)
                for scope in dict.fromkeys(m.scope for m in entries if m.nested == "rslocal")}
    frames, choices, outer = [], [], {}
    for entry in entries:
        fold_data, used = _fold_data(entry, splits, X_n, y_n, X_test, selected)
        results, build = family(entry.family).implementation().refit_folds(
            models[entry.label], fold_data,
            params["transfer"] if entry.stage == "transfer" else params["train"],
            derived_seed(seed, site, entry.label, "nested"), base=bases.get(entry.label),
            base_data=[(X_n[train], y_n[train]) for train, _ in splits])
        oof = np.full(len(ids_n), np.nan)
        for (_, held), ((held_estimate, _), _) in zip(splits, results, strict=True):
            oof[held] = held_estimate
        outer[entry.label] = build(folds, oof, {
            "method": entry.label, "data": entry.data, "nested": entry.nested,
            "library_samples_per_fold": [len(u) for u in used]})
        records = _method_records(site, entry, splits, results, ids_n, ids_test, fold_data,
                                  used, selection)
        frames, choices = frames + records[0], choices + records[1]
    estimates = (pd.concat(frames, ignore_index=True) if frames
                 else pd.DataFrame(columns=list(ESTIMATE_COLUMNS)))
    return estimates, pd.DataFrame(choices), outer


def base_model_key(entry, country: str | None) -> str | None:
    """The library model a transfer method started from (None for other methods)."""
    return scope_key(entry.base, country) if entry.base is not None else None
