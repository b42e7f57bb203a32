"""Evaluate every method of every site on the site's untouched test set; choose the winners.

Nodes, one purpose each:

- ``site_spectra``: each site's calibration and held-out spectra (``localsoc.study.data``).
- ``predict_sites``: every registered method's estimates of the site's calibration samples and
  of its held-out samples. A method whose training data or settings used the calibration
  labels (RS-LOCAL selections, PLSR components, a transfer's base fold) is represented by the
  ``nested`` stage's outer-fold ensemble, whose calibration estimates are nested out of fold;
  the full-data model's own out-of-fold and test estimates are kept beside them. Other models
  give their own out-of-fold estimates (fold models that never saw the sample) or plain ones
  (a model that never saw the n).
- ``score_sites``: per site and method (``scoring.score_method``) the test metrics, the nested
  calibration RMSE, the prediction intervals of ``scoring.INTERVALS`` and their test coverage,
  the applicability domain. ``evaluate.interval`` picks the interval the table, the figures and
  the served model use (``evaluate.interval_fallback`` at a site without enough validation
  samples); ``scoring``'s docstring states each interval's method and guarantee.
- ``choose_winners``: the winner rule (:data:`WINNER_RULE`, :func:`apply_rule`; open this file
  to change it). It never looks at the test set.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from localsoc.methods import (
    Method,
    family,
    method,
    method_order,
    methods,
    reference_method,
    servable_families,
)
from localsoc.metrics import rmse
from localsoc.models.ensemble import Folds, fold_mean_and_spread
from localsoc.pipelines.evaluate.scoring import (
    ScoreSettings,
    StudyTables,
    method_domain,
    method_estimates,
    outer_folds,
    rmse_se,
    score_method,
    site_samples,
    site_table,
)
from localsoc.pipelines.evaluate.stacking import stacked_estimates
from localsoc.plots import delta_rmse_figure, observed_estimated_figure
from localsoc.study import site_country, sites_of
from localsoc.study.data import SiteSpectra, study_sites


def site_spectra(site_calibration: pd.DataFrame, site_test: pd.DataFrame,
                 library_spectra: pd.DataFrame, selection: pd.DataFrame) -> dict[str, SiteSpectra]:
    """Each site's calibration and held-out spectra (``localsoc.study.data.study_sites``)."""
    return study_sites(site_calibration, site_test, library_spectra, selection)


def calibration_estimates(model, X_cal: np.ndarray, ids_cal: list[str]) -> np.ndarray:
    """Out-of-fold estimates of the site's calibration samples when the model trained on them,
    else the model's plain estimates (it never saw them)."""
    folds = getattr(model, "folds", None)
    trained_ids = list(folds.sample_ids) if folds is not None else getattr(model, "sample_ids", [])
    position = {str(s): i for i, s in enumerate(trained_ids)}
    if all(s in position for s in ids_cal):
        return np.asarray(model.oof_predictions_, dtype=np.float64)[[position[s] for s in ids_cal]]
    if any(s in position for s in ids_cal):
        raise ValueError("a model trained on some but not all calibration samples cannot be scored")
    return np.asarray(model.predict(X_cal), dtype=np.float64)


def _model_folds(model, ids_cal: list[str]) -> np.ndarray | None:
    """The fold of each calibration sample in the model's own fold models (None when the model
    has no fold models or did not train on every calibration sample)."""
    folds = getattr(model, "folds", None)
    if folds is None or not hasattr(model, "predict_folds"):
        return None
    position = {str(s): i for i, s in enumerate(folds.sample_ids)}
    if not all(s in position for s in ids_cal):
        return None
    return np.asarray(folds.assignment)[[position[s] for s in ids_cal]].astype(int)


@dataclass(frozen=True)
class Predicted:
    """One method's estimates at one site: of the calibration samples (``cal_estimate``; the
    full-data model's own ``unnested`` ones where an outer-fold ensemble represents it; the fold
    of each, ``own_folds``, None for one model that never saw the n) and of the held-out
    samples (``estimate``, ``spread``, each fold model's ``per_fold``, the full-data model's
    ``refit``)."""

    cal_estimate: np.ndarray
    estimate: np.ndarray
    spread: np.ndarray
    own_folds: np.ndarray | None = None
    per_fold: np.ndarray | None = None
    unnested: np.ndarray | None = None
    refit: np.ndarray | None = None


def _rows(site, label, key, role, ids, observed, estimated, spread, fold, unnested=None,
          collection=None):
    n = len(ids)
    return pd.DataFrame({
        "site": site, "method": label, "model_key": key, "collection": collection, "role": role,
        "sample_id": [str(s) for s in ids],
        "observed": np.asarray(observed, dtype=np.float64),
        "estimated": np.asarray(estimated, dtype=np.float64),
        "spread": np.asarray(spread, dtype=np.float64) if spread is not None else np.nan,
        "fold": np.broadcast_to(np.asarray(fold, dtype=np.int64), (n,)),
        "estimated_unnested": (np.asarray(unnested, dtype=np.float64) if unnested is not None
                               else np.nan),
    })


def _method_rows(s: SiteSpectra, label: str, key: str, collection: str | None,
                 p: Predicted) -> list[pd.DataFrame]:
    """The calibration, test, test-fold (and full-refit test) rows of one method at one site."""
    if p.own_folds is not None:
        cal_fold, per_fold = p.own_folds, p.per_fold
    else:  # one model that never saw the n (or leave-one-out estimates): a single "fold"
        cal_fold, per_fold = 0, np.asarray(p.estimate, dtype=np.float64)[None, :]
    frames = [
        _rows(s.site, label, key, "calibration", s.ids_cal, s.y_cal, p.cal_estimate, None,
              cal_fold, p.unnested, collection),
        _rows(s.site, label, key, "test", s.ids_test, s.y_test, p.estimate, p.spread, -1, None,
              collection),
    ]
    for k, row in enumerate(np.atleast_2d(per_fold)):
        if len(s.ids_test):
            frames.append(_rows(s.site, label, key, "test_fold", s.ids_test, s.y_test, row,
                                None, k, None, collection))
    if p.refit is not None:
        frames.append(_rows(s.site, label, key, "test_refit", s.ids_test, s.y_test, p.refit,
                            None, -1, None, collection))
    return frames


def _stored_estimates(entry: Method, s: SiteSpectra,
                      mbl_estimates: pd.DataFrame | None) -> Predicted | None:
    """The estimates of a stage without stored models (MBL), or None where it made none."""
    if mbl_estimates is None or mbl_estimates.empty:
        return None
    rows = mbl_estimates.loc[(mbl_estimates["site"] == s.site)
                             & (mbl_estimates["method"] == entry.label)]
    if rows.empty:
        return None
    cal = rows.loc[rows["role"] == "calibration"].set_index("sample_id")
    tested = rows.loc[rows["role"] == "test"].set_index("sample_id")
    return Predicted(cal.loc[s.ids_cal, "estimated"].to_numpy(np.float64),
                     tested.loc[s.ids_test, "estimated"].to_numpy(np.float64),
                     np.full(len(s.y_test), np.nan))


def _model_estimates(model, outer, s: SiteSpectra) -> Predicted:
    """The estimates of a stored model, represented by its outer-fold ensemble ``outer`` where
    the nested stage made one (None: by itself)."""
    served = outer if outer is not None else model
    own_folds = _model_folds(served, s.ids_cal)
    per_fold = None
    if not len(s.y_test):
        estimate, spread = np.empty(0), np.empty(0)
    elif own_folds is not None:
        per_fold = served.predict_folds(s.X_test)
        estimate, spread = fold_mean_and_spread(per_fold)
    else:
        estimate, spread = served.predict(s.X_test, return_std=True)
    unnested, refit = None, None
    if outer is not None:
        unnested = calibration_estimates(model, s.X_cal, s.ids_cal)
        refit = (np.asarray(model.predict(s.X_test), dtype=np.float64) if len(s.y_test)
                 else np.empty(0))
    return Predicted(calibration_estimates(served, s.X_cal, s.ids_cal), estimate, spread,
                     own_folds, per_fold, unnested, refit)


def _stack_rows(s: SiteSpectra, site_frames: list[pd.DataFrame]) -> list[pd.DataFrame]:
    """The rows of the registry's stack methods at one site (``stacking.stacked_estimates``
    from the other methods' rows; collection ``stack``: the package stage builds its model),
    none where the site has too few components."""
    out = []
    for entry in methods(family="stack"):
        found = (stacked_estimates(pd.concat(site_frames, ignore_index=True), s.ids_cal,
                                   s.y_cal, s.ids_test) if site_frames else None)
        if found is not None:
            cal, estimate, spread, folds, per_fold, _ = found
            out += _method_rows(s, entry.label, entry.model_key(s.site, s.country), "stack",
                                Predicted(cal, estimate, spread, folds, per_fold))
    return out


def _mark_validation(estimates: pd.DataFrame, sites: dict[str, SiteSpectra]) -> pd.DataFrame:
    """The estimates of the split's validation samples (``SiteSpectra.ids_validation``) under
    role ``validation`` instead of ``test``; their test-fold and refit rows are dropped (the
    validation interval uses the represented model's own estimate only)."""
    held = [(s.site, sample) for s in sites.values() for sample in s.ids_validation]
    if not held:
        return estimates
    keys = pd.MultiIndex.from_tuples(held)
    is_val = pd.MultiIndex.from_arrays([estimates["site"].astype(str),
                                        estimates["sample_id"].astype(str)]).isin(keys)
    estimates = estimates.loc[~(is_val & estimates["role"].isin(["test_fold", "test_refit"]))]
    is_val = is_val[estimates.index]
    estimates = estimates.reset_index(drop=True)
    estimates.loc[is_val & (estimates["role"] == "test").to_numpy(), "role"] = "validation"
    return estimates


def predict_sites(
    sites: dict[str, SiteSpectra],
    library_models: dict,
    site_models: dict,
    transfer_models: dict,
    mbl_estimates: pd.DataFrame | None,
    nested_models: dict | None = None,
) -> pd.DataFrame:
    """Calibration, test and test-fold estimates of every registered method of every site.

    Methods are taken in registry order; a method whose model (or MBL estimates) a site does not
    have is left out. A method with an outer-fold ensemble in ``nested_models`` (the ``nested``
    stage's) is represented by it: that is the model the package stage serves. Roles:
    ``calibration`` (``estimated``: out of fold, nested where the nested stage made it;
    ``estimated_unnested``: the full-data model's own out-of-fold estimate then; ``fold``: the
    fold whose model made the estimate), ``test`` (the represented model's estimate and fold
    spread), ``test_fold`` (fold k's model's estimate of each test sample, for CV+; one "fold"
    for a model without fold models over the n), ``test_refit`` (the full-data model's test
    estimate, where an outer-fold ensemble represents the method) and ``validation`` (the
    represented model's estimate of each validation sample kept apart from the test set; a
    validation sample that is also a test sample keeps its test rows).
    """
    collections = {"library": library_models, "site": site_models, "transfer": transfer_models}
    nested_models = nested_models or {}
    frames = []
    for s in sites.values():
        site_frames = []
        for entry in methods():
            key = entry.model_key(s.site, s.country)
            if entry.family == "stack":
                continue  # made below from the other methods' estimates
            if entry.collection is None:
                found, collection = _stored_estimates(entry, s, mbl_estimates), None
            else:
                model = collections[entry.collection].get(key)
                outer = nested_models.get(key)
                found = None if model is None else _model_estimates(model, outer, s)
                collection = "nested" if outer is not None else entry.collection
            if found is not None:
                site_frames += _method_rows(s, entry.label, key, collection, found)
        frames += site_frames + _stack_rows(s, site_frames)
    return _mark_validation(pd.concat(frames, ignore_index=True), sites)


def score_sites(
    study_estimates: pd.DataFrame,
    site_calibration: pd.DataFrame,
    site_test: pd.DataFrame,
    library_spectra: pd.DataFrame,
    selection: pd.DataFrame,
    params: dict,
    site_folds: pd.DataFrame | None = None,
) -> tuple[pd.DataFrame, pd.DataFrame, dict]:
    """(predictions with intervals and domain flags, the scored table, per site and method its
    applicability domain and the calibration scores of its interval).

    Per site and method, ``scoring.score_method``: test metrics (NaN without a test set); the
    nested calibration RMSE ``cal_rmse`` with its standard error and the un-nested
    ``cal_rmse_unnested``; on the site's validation samples the RMSE ``val_rmse``; the
    interval of ``evaluate.interval`` (``evaluate.interval_fallback`` at a site without enough
    validation samples) at ``evaluate.interval_level`` (``lower``/``upper`` in the predictions;
    ``coverage`` and ``mean_width`` on test) and the coverage and width of every interval of
    ``scoring.INTERVALS``; the applicability domain of the method's training spectra and the
    test share outside it; dRMSE against the registry's reference method. Rows are in registry
    order.
    """
    settings = ScoreSettings.from_params(params)
    tables = StudyTables(site_calibration, site_test, library_spectra, selection, site_folds)
    predictions, site_tables, domains = [], [], {}
    for site in sites_of(site_calibration):
        samples = site_samples(site, tables, settings)
        of_site = study_estimates.loc[study_estimates["site"] == site]
        rows = []
        for label in dict.fromkeys(of_site["method"]):
            entry = method(label)
            scored = score_method(entry, method_estimates(of_site.loc[of_site["method"] == label],
                                                          samples),
                                  samples, method_domain(entry, tables, samples, settings),
                                  settings)
            predictions += scored.predictions
            rows.append(scored.row)
            domains.setdefault(site, {})[label] = scored.domain
        site_tables.append(site_table(rows, samples.has_test))
    return (pd.concat(predictions, ignore_index=True),
            pd.concat(site_tables, ignore_index=True), domains)


#: The winner rules (``evaluate.winner_rule``), as the report states them.
WINNER_RULES = {
    "lowest": (
        "Among the servable models, the lowest nested out-of-fold calibration RMSE wins (on a "
        "tie, the simpler model: PLSR before a GP or a CNN before the stack, then local data "
        "only before local + library data). The test set is not used."
    ),
    "simplest_within_one_se": (
        "Among the servable models, the lowest nested out-of-fold calibration RMSE decides; "
        "every model within one standard error of that best RMSE is a candidate, and the "
        "simplest candidate wins: PLSR before a GP or a CNN before the stack, then local data "
        "only before local + library data, then the lower nested RMSE. The test set is not "
        "used."
    ),
}
#: The rule of conf/base (bench/real_rules.py: on 7 real fields x 2 seeds, both directions,
#: it served 0.861 x local PLSR's test RMSE on average; the one-s.e. rule 0.961).
DEFAULT_RULE = "lowest"
WINNER_RULE = WINNER_RULES[DEFAULT_RULE]


def _locality(dataset: str) -> int:
    """0: the n only; 1: library data with the n; 2: library data only."""
    if dataset == "n":
        return 0
    return 1 if dataset.startswith("k+n") or dataset.endswith("+n") else 2


def apply_rule(servable: pd.DataFrame, rule: str = DEFAULT_RULE,
               ) -> tuple[pd.Series, pd.Series, pd.DataFrame]:
    """(the winner, the lowest-RMSE model, the candidates) of the winner rule ``rule``
    (:data:`WINNER_RULES`) among the rows of ``servable`` (columns method, family,
    trained_on, cal_rmse, cal_rmse_se)."""
    if rule not in WINNER_RULES:
        raise ValueError(f"unknown winner rule {rule!r} (evaluate.winner_rule); use one of "
                         f"{sorted(WINNER_RULES)}")
    lowest = servable.sort_values(["cal_rmse"], kind="stable").iloc[0]
    threshold = float(lowest["cal_rmse"])
    if rule == "simplest_within_one_se":
        threshold += float(lowest["cal_rmse_se"])
    candidates = servable.loc[servable["cal_rmse"] <= threshold].copy()
    candidates["_simplicity"] = [family(f).simplicity for f in candidates["family"]]
    candidates["_locality"] = [_locality(d) for d in candidates["trained_on"]]
    best = candidates.sort_values(["_simplicity", "_locality", "cal_rmse"],
                                  kind="stable").iloc[0]
    return best, lowest, candidates




def selection_nested_rmse(servable: pd.DataFrame, calibration: pd.DataFrame,
                          folds: Folds, rule: str = DEFAULT_RULE) -> tuple[float, list[str]]:
    """The calibration RMSE of the winner rule itself, nested over the outer folds (Varma &
    Simon 2006): for each outer fold f, the rule picks a model from the other folds' nested
    estimates only, and fold f's samples are scored by that pick's nested estimates. It pays
    for choosing the minimum of a dozen noisy estimates on the same n (a winner's curse). No
    fold-f residual enters fold f's pick. ``calibration``: the calibration rows of the
    predictions (sample_id, method, observed, estimated). Returns (RMSE, pick per fold).
    """
    # ids as strings, as the folds hold them (study_predictions.csv reads numeric ids as ints)
    rows = calibration.loc[calibration["method"].isin(set(servable["method"]))]
    rows = rows.assign(sample_id=rows["sample_id"].astype(str))
    picks, squared = [], []
    for _, held in folds.split():
        held_ids = {str(folds.sample_ids[i]) for i in held}
        inner = rows.loc[~rows["sample_id"].isin(held_ids)]
        scores = {label: (rmse(g["observed"], g["estimated"]),
                          rmse_se(g["observed"].to_numpy(), g["estimated"].to_numpy()))
                  for label, g in inner.groupby("method")}
        table = servable.assign(cal_rmse=[scores[m][0] for m in servable["method"]],
                                cal_rmse_se=[scores[m][1] for m in servable["method"]])
        pick = apply_rule(table, rule)[0]["method"]
        picks.append(str(pick))
        scored = rows.loc[(rows["method"] == pick) & rows["sample_id"].isin(held_ids)]
        squared.extend(((scored["estimated"] - scored["observed"]) ** 2).tolist())
    if len(squared) != len(folds.sample_ids):
        raise ValueError("every calibration sample must be in exactly one outer fold")
    return float(np.sqrt(np.mean(squared))), picks


def winner_record(table: pd.DataFrame, best: pd.Series, lowest: pd.Series,
                  candidates: pd.DataFrame, selection: tuple[float, list[str]],
                  domain: dict) -> dict:
    """The winner of one site as ``study_winners`` stores it (without site and country)."""
    has_test = bool(table["n_test"].iloc[0] > 0)
    best_test = table.sort_values(["rmse"], kind="stable").iloc[0] if has_test else None
    return {
        "method": best["method"], "model_key": best["model_key"],
        "collection": best["collection"], "family": best["family"],
        "trained_on": best["trained_on"], "cal_rmse": float(best["cal_rmse"]),
        "cal_rmse_se": float(best["cal_rmse_se"]),
        "cal_rmse_unnested": float(best["cal_rmse_unnested"]),
        "cal_rmse_selection": _finite_or_none(selection[0]),
        "n_validation": int(best.get("n_validation", 0)),
        "val_rmse": _finite_or_none(best.get("val_rmse", np.nan)),
        "selection_picks": selection[1],
        "lowest_cal_rmse": {"method": lowest["method"], "cal_rmse": float(lowest["cal_rmse"]),
                            "se": float(lowest["cal_rmse_se"])},
        "candidates": sorted(candidates["method"], key=method_order().index),
        "rule": WINNER_RULE,
        "has_test": has_test,
        "test_metrics": {k: _finite_or_none(best[k]) for k in (
            "rmse", "me", "ccc", "r2", "rpiq", "drmse", "coverage", "mean_width")},
        "interval_level": float(best["interval_level"]),
        "interval_halfwidth": float(best["interval_halfwidth"]),
        "interval": best["interval"],
        "domain": domain["domain"],
        "interval_calibration": domain["interval"],
        "best_on_test": None if best_test is None else best_test["method"],
        "winner_was_best_on_test": (None if best_test is None
                                    else bool(best_test["method"] == best["method"])),
        "best_calibration_overall": table.sort_values(["cal_rmse"],
                                                      kind="stable").iloc[0]["method"],
    }


def choose_winners(
    scored: pd.DataFrame,
    domains: dict,
    site_calibration: pd.DataFrame,
    predictions: pd.DataFrame | None = None,
    site_folds: pd.DataFrame | None = None,
    rule: str = DEFAULT_RULE,
) -> tuple[pd.DataFrame, dict]:
    """(the study table with its ``winner`` column, the winners) per site.

    The rule (:data:`WINNER_RULE`): the servable models (families the package stage can
    serve) within one standard error of the lowest nested calibration RMSE are candidates; the
    simplest wins (``Family.simplicity``, then local data before library data, then the lower
    RMSE). MBL rows are scored the same way, and the winners record when one of them would
    have scored better. The test set is used only to report whether the winner was also best
    on test. With the ``predictions`` (calibration rows) the rule's own nested calibration RMSE
    is recorded too (``selection_nested_rmse``; ``cal_rmse_selection`` on the winner's row).
    """
    servable_kinds = servable_families()
    tables, winners = [], {}
    for site in sites_of(site_calibration):
        table = scored.loc[scored["site"] == site].reset_index(drop=True)
        servable = table.loc[table["family"].isin(servable_kinds)]
        if servable.empty:
            raise ValueError(f"site {site!r}: no servable model ({', '.join(servable_kinds)}) "
                             "to choose from")
        best, lowest, candidates = apply_rule(servable, rule)
        selection = (np.nan, [])
        if predictions is not None:
            calibration = predictions.loc[(predictions["site"] == site)
                                          & (predictions["role"] == "calibration")]
            ids_cal = site_calibration.loc[site_calibration["site"] == site, "sample_id"]
            selection = selection_nested_rmse(
                servable, calibration, outer_folds(site_folds, site,
                                                   ids_cal.astype(str).tolist()), rule)
        table["cal_rmse_selection"] = np.where(table["method"] == best["method"], selection[0],
                                               np.nan)
        table["winner"] = table["method"] == best["method"]
        table["candidate"] = table["method"].isin(set(candidates["method"]))
        tables.append(table)
        winners[site] = {"site": site, "country": site_country(site_calibration, site),
                         **winner_record(table, best, lowest, candidates, selection,
                                         domains[site][best["method"]]),
                         "rule": WINNER_RULES[rule]}
    return pd.concat(tables, ignore_index=True), winners


def evaluate_sites(
    site_calibration: pd.DataFrame,
    site_test: pd.DataFrame,
    library_spectra: pd.DataFrame,
    selection: pd.DataFrame,
    library_models: dict,
    site_models: dict,
    transfer_models: dict,
    params: dict,
    mbl_estimates: pd.DataFrame | None = None,
    nested_models: dict | None = None,
    site_folds: pd.DataFrame | None = None,
) -> tuple[pd.DataFrame, pd.DataFrame, dict]:
    """(predictions, metrics, winners): the evaluate pipeline's nodes in one call, for
    scripts and tests (``mbl_estimates`` / ``nested_models``: the ``mbl`` and ``nested``
    stages' outputs; None: no MBL rows / the full-data models only; ``site_folds``: the stored
    folds, None: 5 folds of the n)."""
    sites = site_spectra(site_calibration, site_test, library_spectra, selection)
    estimates = predict_sites(sites, library_models, site_models, transfer_models,
                              mbl_estimates, nested_models)
    predictions, scored, domains = score_sites(estimates, site_calibration, site_test,
                                               library_spectra, selection, params, site_folds)
    metrics, winners = choose_winners(scored, domains, site_calibration, predictions,
                                      site_folds, params["winner_rule"])
    return predictions, metrics, winners


def _shown(value, decimals: int = 3) -> str:
    """A figure for the table, or '-' where there is none (NaN)."""
    value = float(value)
    return f"{value:.{decimals}f}" if np.isfinite(value) else "-"


def _finite_or_none(value) -> float | None:
    value = float(value)
    return value if np.isfinite(value) else None


def study_table_markdown(metrics: pd.DataFrame) -> str:
    """The paper's Table 3 layout: per site, every model's test RMSE, ME, CCC, R2, RPIQ, dRMSE."""
    lines = []
    for site, table in metrics.groupby("site", sort=True):
        n_val = int(table["n_validation"].iloc[0]) if "n_validation" in table else 0
        lines.append(f"### {site} (test n = {int(table['n_test'].iloc[0])}, validation "
                     f"m = {n_val}, interval {table['interval'].iloc[0]})\n")
        lines.append("| model | RMSE | ME | CCC | R2 | RPIQ | dRMSE % | nested cal. RMSE | "
                     "un-nested | validation RMSE | coverage | width | winner |")
        lines.append("|---|---|---|---|---|---|---|---|---|---|---|---|---|")
        for row in table.to_dict("records"):
            lines.append(
                f"| {row['method']} | {row['rmse']:.3f} | {row['me']:+.3f} | {row['ccc']:.3f} | "
                f"{row['r2']:.3f} | {row['rpiq']:.2f} | {row['drmse']:+.1f} | "
                f"{row['cal_rmse']:.3f} | {row.get('cal_rmse_unnested', np.nan):.3f} | "
                f"{_shown(row.get('val_rmse', np.nan))} | "
                f"{_shown(row['coverage'], 2)} | {row['mean_width']:.3f} | "
                f"{'**winner**' if row['winner'] else ''} |"
            )
        lines.append("")
    return "\n".join(lines)


def study_metrics_json(metrics: pd.DataFrame, winners: dict) -> dict:
    """Flat metrics for `dvc metrics show/diff`: per site and method, plus the summary."""
    out: dict = {"sites": {}}
    for row in metrics.to_dict("records"):
        out["sites"].setdefault(row["site"], {})[row["method"]] = {
            k: round(float(row[k]), 6) for k in ("rmse", "me", "ccc", "r2", "rpiq", "drmse",
                                                 "coverage", "mean_width", "cal_rmse",
                                                 "cal_rmse_unnested")
            if np.isfinite(float(row[k]))
        }
    summary = {}
    for label in method_order():
        values = metrics.loc[metrics["method"] == label, "drmse"].dropna()
        values = values[np.isfinite(values)]
        if len(values):
            summary[f"mean_drmse_{label}"] = round(float(values.mean()), 4)
    summary["winners_best_on_test"] = int(sum(bool(w["winner_was_best_on_test"])
                                              for w in winners.values()))
    out["summary"] = summary
    return out


def study_figures(metrics: pd.DataFrame, predictions: pd.DataFrame, winners: dict) -> dict:
    panels = []
    for site, winner in sorted(winners.items()):
        rows = predictions.loc[(predictions["site"] == site)
                               & (predictions["method"] == winner["method"])
                               & (predictions["role"] == "test")]
        if rows.empty:
            continue
        panels.append({"site": site, "method": winner["method"],
                       "observed": rows["observed"].to_numpy(),
                       "estimated": rows["estimated"].to_numpy(),
                       "lower": rows["lower"].to_numpy(), "upper": rows["upper"].to_numpy()})
    figures = {"drmse_by_method.png": delta_rmse_figure(metrics, reference_method().label)}
    if panels:
        figures["winners_observed_estimated.png"] = observed_estimated_figure(panels)
    return figures
