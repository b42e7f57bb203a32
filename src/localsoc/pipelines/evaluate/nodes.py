"""Evaluate every method of every site on the site's untouched test set; choose the winners.

Three nodes, one purpose each:

- ``predict_sites``: every registered method's estimates of the site's calibration samples and
  of its test samples. A method whose training data or settings used the calibration labels
  (RS-LOCAL selections, PLSR components, a transfer's base fold) is represented by the
  ``nested`` stage's outer-fold ensemble, whose calibration estimates are nested out of fold;
  the full-data model's own out-of-fold and test estimates are kept beside them. Other models
  give their own out-of-fold estimates (fold models that never saw the sample) or plain ones
  (a model that never saw the n). Per test sample: the estimate, the fold spread and every
  fold model's estimate (for CV+).
- ``score_sites``: test metrics, the nested calibration RMSE (and the un-nested one), the
  prediction intervals and their test coverage, the applicability domain.
- ``choose_winners``: the winner rule (open this file to change it). It never looks at the test
  set; see :func:`choose_winners`.

Intervals (``localsoc.uncertainty``; ``evaluate.interval`` picks the one the table, the figures
and the served model use; the others are reported beside it):

- ``validation`` (default): split conformal on the site's validation samples (random samples
  of the field, ``split.n_validation`` or the lab plan's; never used for training or for the
  winner; where the site has too few rows to keep them apart from the test set they are test
  samples too, and the interval's test coverage is scored on the other test samples only, NaN
  without any: the validation samples set its width, and leave-one-out on them would give
  ceil(m (1 - alpha)) / m by construction; its guarantee then rests on the random draw
  alone): estimate +- the ceil((m + 1)(1 - alpha))-th smallest of the m validation
  |residuals| of the represented (served) model. Its guarantee (Vovk et al. 2005; Lei et al.
  2018, theorem 2.1): coverage >= 1 - alpha for a new spectrum exchangeable with the validation
  samples, i.e. a random sample of the same field, and < 1 - alpha + 1/(m + 1) without ties;
  the guarantee is marginal over the validation draw: the share of the field one site's
  interval covers is Beta(k, m + 1 - k), k = ceil((m + 1)(1 - alpha)), over draws (m = 20:
  5th-95th percentile 0.78-0.98; ``uncertainty.split_conformal_coverage_law``, stated in the
  report); a finite test set adds binomial noise to its measured coverage. The Kennard-Stone
  calibration residuals are not exchangeable with new ones (the extremes), which is why it is
  the default. A site without validation samples
  falls back to ``evaluate.interval_fallback`` (cv_plus), and its row says so (``interval``).
- ``cv_plus`` (the fallback): the CV+ interval of Barber et al. (2021) from the outer-fold models'
  estimates of each spectrum and the nested out-of-fold residuals: a method with a nested
  procedure is represented (and served) by its outer-fold ensemble, a model with fold models
  over the n (Local) by its own, so the interval comes from the very models whose residuals
  it uses; its guarantee: coverage >= 1 - 2 alpha - small term for exchangeable data (about
  1 - alpha in practice). A model that never saw the n (library-only) has one "fold": split
  conformal around it.
- ``normalised``: estimate +- q * sigma(x), the normalised-score conformal interval of Lei et
  al. (2018) on the nested out-of-fold residuals, sigma known without the label
  (``evaluate.difficulty``, ``localsoc.uncertainty.spectrum_difficulty``): the domain distance
  ``domain_difficulty`` in the method's applicability domain (for a calibration sample, a
  domain fitted without its outer fold, so calibration and new spectra are scored alike), the
  estimated SOC level, or both; centred on the served model.
- ``plain``: estimate +- the conformal quantile of the nested out-of-fold |residuals|.
- ``normalised_cv_plus``: CV+ on the normalised score; reported, not served.

Every lower bound is clipped at 0 (SOC cannot be negative).
"""

from __future__ import annotations

import logging
import math

import numpy as np
import pandas as pd

from localsoc.data.schema import spectra_of
from localsoc.methods import (
    family,
    method,
    method_order,
    methods,
    reference_method,
    servable_families,
)
from localsoc.metrics import all_metrics, delta_rmse, rmse
from localsoc.models.ensemble import Folds, fold_mean_and_spread, make_folds
from localsoc.plots import delta_rmse_figure, observed_estimated_figure
from localsoc.study import site_country, sites_of
from localsoc.study.data import dataset_data, folds_from_table, site_data
from localsoc.uncertainty import (
    ApplicabilityDomain,
    clip_interval,
    conformal_halfwidth,
    cv_plus_interval,
    domain_difficulty,
    interval_coverage,
    level_offset,
    normalized_halfwidths,
    spectrum_difficulty,
)

logger = logging.getLogger(__name__)

METRIC_NAMES = ("rmse", "me", "ccc", "r2", "rpiq")
#: The intervals every method is scored with; the first three can be served.
INTERVALS = ("validation", "cv_plus", "normalised", "plain", "normalised_cv_plus")
SERVED_INTERVALS = ("validation", "cv_plus", "normalised", "plain")


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


def outer_folds(site_folds: pd.DataFrame | None, site: str, ids_cal: list[str]) -> Folds:
    """The stored folds of the site's n (the nested stage's outer folds), or, for a study
    without stored folds (scripts, tests), 5 folds of the n with seed 0."""
    if site_folds is not None and not site_folds.empty and (
            (site_folds["site"] == site) & (site_folds["dataset"] == "n")).any():
        return folds_from_table(site_folds, site, "n").aligned_to(ids_cal)
    return make_folds(ids_cal, min(5, len(ids_cal)), 0)


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


def _method_rows(site, entry, key, collection, ids_cal, y_cal, ids_test, y_test, cal_estimate,
                 unnested, own_folds, estimate, spread, per_fold,
                 refit_estimate=None) -> list[pd.DataFrame]:
    """The calibration, test, test-fold (and full-refit test) rows of one method at one site."""
    if own_folds is not None:
        cal_fold = own_folds
    else:  # one model that never saw the n (or leave-one-out estimates): a single "fold"
        cal_fold = 0
        per_fold = np.asarray(estimate, dtype=np.float64)[None, :]
    frames = [
        _rows(site, entry.label, key, "calibration", ids_cal, y_cal, cal_estimate, None,
              cal_fold, unnested, collection),
        _rows(site, entry.label, key, "test", ids_test, y_test, estimate, spread, -1, None,
              collection),
    ]
    for k, row in enumerate(np.atleast_2d(per_fold)):
        if len(ids_test):
            frames.append(_rows(site, entry.label, key, "test_fold", ids_test, y_test, row,
                                None, k, None, collection))
    if refit_estimate is not None:
        frames.append(_rows(site, entry.label, key, "test_refit", ids_test, y_test,
                            refit_estimate, None, -1, None, collection))
    return frames


def predict_sites(
    site_calibration: pd.DataFrame,
    site_test: pd.DataFrame,
    library_spectra: pd.DataFrame,
    selection: pd.DataFrame,
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
    represented model's estimate of each validation sample kept apart from the test set,
    ``site_test.holdout == "validation"``; a validation sample that is also a test sample keeps
    its test rows).
    """
    collections = {"library": library_models, "site": site_models, "transfer": transfer_models}
    nested_models = nested_models or {}
    frames = []
    for site in sites_of(site_calibration):
        country = site_country(site_calibration, site)
        X_cal, y_cal, ids_cal = site_data(library_spectra, site_calibration, selection, site)
        test = site_test.loc[site_test["site"] == site]
        X_test = spectra_of(test) if not test.empty else np.empty((0, X_cal.shape[1]))
        y_test = test["soc"].to_numpy(np.float64)
        ids_test = test["sample_id"].astype(str).tolist()
        for entry in methods():
            key = entry.model_key(site, country)
            if entry.collection is None:  # estimates of a stage without stored models (MBL)
                if mbl_estimates is None or mbl_estimates.empty:
                    continue
                rows = mbl_estimates.loc[(mbl_estimates["site"] == site)
                                         & (mbl_estimates["method"] == entry.label)]
                if rows.empty:
                    continue
                cal = rows.loc[rows["role"] == "calibration"].set_index("sample_id")
                tested = rows.loc[rows["role"] == "test"].set_index("sample_id")
                estimate = tested.loc[ids_test, "estimated"].to_numpy(np.float64)
                frames += _method_rows(site, entry, key, None, ids_cal, y_cal, ids_test, y_test,
                                       cal.loc[ids_cal, "estimated"].to_numpy(np.float64),
                                       None, None, estimate, np.full(len(y_test), np.nan),
                                       None)
                continue
            model = collections[entry.collection].get(key)
            if model is None:
                continue
            outer = nested_models.get(key)
            served = outer if outer is not None else model
            own_folds = _model_folds(served, ids_cal)
            per_fold = None
            if not len(y_test):
                estimate, spread = np.empty(0), np.empty(0)
            elif own_folds is not None:
                per_fold = served.predict_folds(X_test)
                estimate, spread = fold_mean_and_spread(per_fold)
            else:
                estimate, spread = served.predict(X_test, return_std=True)
            unnested, refit = None, None
            if outer is not None:
                unnested = calibration_estimates(model, X_cal, ids_cal)
                refit = (np.asarray(model.predict(X_test), dtype=np.float64) if len(y_test)
                         else np.empty(0))
            frames += _method_rows(site, entry, key,
                                   "nested" if outer is not None else entry.collection,
                                   ids_cal, y_cal, ids_test, y_test,
                                   calibration_estimates(served, X_cal, ids_cal), unnested,
                                   own_folds, estimate, spread, per_fold, refit)
    return _mark_validation(pd.concat(frames, ignore_index=True), site_test)


def _mark_validation(estimates: pd.DataFrame, site_test: pd.DataFrame) -> pd.DataFrame:
    """The estimates of the split's validation samples (``site_test.holdout``) under role
    ``validation`` instead of ``test``; their test-fold and refit rows are dropped (the
    validation interval uses the represented model's own estimate only)."""
    if "holdout" not in site_test or not (site_test["holdout"] == "validation").any():
        return estimates
    held = site_test.loc[site_test["holdout"] == "validation"]
    keys = pd.MultiIndex.from_arrays([held["site"].astype(str),
                                      held["sample_id"].astype(str)])
    is_val = pd.MultiIndex.from_arrays([estimates["site"].astype(str),
                                        estimates["sample_id"].astype(str)]).isin(keys)
    estimates = estimates.loc[~(is_val & estimates["role"].isin(["test_fold", "test_refit"]))]
    is_val = is_val[estimates.index]
    estimates = estimates.reset_index(drop=True)
    estimates.loc[is_val & (estimates["role"] == "test").to_numpy(), "role"] = "validation"
    return estimates


def _difficulties(entry, library_spectra, site_calibration, selection, site, country,
                  X_cal, ids_cal, X_test, folds: Folds, params) -> tuple[ApplicabilityDomain,
                                                                        np.ndarray, np.ndarray]:
    """(the method's applicability domain, sigma of each calibration sample, sigma of each test
    spectrum). A calibration sample's sigma comes from the domain of the method's training
    spectra without its outer fold's locals, so it is scored as a new spectrum would be."""
    X_train, _, ids_train = dataset_data(entry.data, library_spectra, site_calibration,
                                         selection, site, country)
    settings = {"n_components": int(params["domain"]["n_components"]),
                "quantile": float(params["domain"]["quantile"])}
    domain = ApplicabilityDomain.fit(X_train, **settings)
    sigma_test = domain_difficulty(domain, X_test) if len(X_test) else np.empty(0)
    sigma_cal = np.empty(len(ids_cal))
    trained = np.isin(np.asarray(ids_train, dtype=object), np.asarray(ids_cal, dtype=object))
    if not trained.any():
        return domain, domain_difficulty(domain, X_cal), sigma_test
    position = {s: i for i, s in enumerate(ids_train)}
    for _, held in folds.split():
        drop = np.zeros(len(ids_train), dtype=bool)
        drop[[position[ids_cal[i]] for i in held if ids_cal[i] in position]] = True
        fold_domain = ApplicabilityDomain.fit(X_train[~drop], **settings)
        sigma_cal[held] = domain_difficulty(fold_domain, X_cal[held])
    return domain, sigma_cal, sigma_test


def _rmse_se(observed: np.ndarray, estimated: np.ndarray) -> float:
    """Standard error of an RMSE from n residuals (delta method: se(MSE) / (2 RMSE))."""
    squared = (np.asarray(estimated) - np.asarray(observed)) ** 2
    value = float(np.sqrt(squared.mean()))
    if squared.size < 2 or value == 0:
        return 0.0
    return float(squared.std(ddof=1) / np.sqrt(squared.size) / (2 * value))


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

    Per site and method: test metrics (NaN without a test set); the nested calibration RMSE
    ``cal_rmse`` with its standard error and the un-nested ``cal_rmse_unnested`` (the model's
    own out-of-fold estimates); on the site's validation samples (``site_test.holdout``) the
    RMSE ``val_rmse`` (an estimate no choice saw) and the residuals of the ``validation``
    interval; the interval of ``evaluate.interval`` (``evaluate.interval_fallback`` at a site
    without validation samples) at
    ``evaluate.interval_level`` (``lower``/``upper`` in the predictions; ``coverage`` and
    ``mean_width`` on test) and the coverage and width of every interval of :data:`INTERVALS`;
    the applicability domain of the method's training spectra and the test share outside it;
    dRMSE against the registry's reference method. Rows are in registry order.
    """
    level = float(params["interval_level"])
    wanted = str(params.get("interval", "cv_plus"))
    fallback = str(params.get("interval_fallback", "cv_plus"))
    difficulty = str(params.get("difficulty", "domain"))
    for key, name in (("interval", wanted), ("interval_fallback", fallback)):
        if name not in SERVED_INTERVALS or (key == "interval_fallback" and name == "validation"):
            raise ValueError(f"evaluate.{key} must be one of {SERVED_INTERVALS} (the intervals "
                             "the served model can give; the fallback not validation); got "
                             f"{name!r}")
    predictions, tables, domains = [], [], {}
    for site in sites_of(site_calibration):
        country = site_country(site_calibration, site)
        holdout = site_test.loc[site_test["site"] == site]
        kind = (holdout["holdout"].astype(str).to_numpy() if "holdout" in holdout
                else np.full(len(holdout), "test"))
        test = holdout.loc[kind != "validation"]
        ids_val = holdout.loc[np.isin(kind, ["validation", "test_validation"]),
                              "sample_id"].astype(str).tolist()
        # test samples that also calibrate the validation interval (too few rows to keep
        # them apart): that interval's coverage is not scored on them (they set its width;
        # scored leave-one-out it would be ceil(m (1 - alpha)) / m by construction)
        both = set(holdout.loc[kind == "test_validation", "sample_id"].astype(str))
        # the validation interval needs ceil((m + 1) level) <= m (m >= 9 at 90 %): with fewer
        # validation samples its half-width is infinite, and the fallback serves instead
        enough = bool(ids_val) and math.ceil((len(ids_val) + 1) * level) <= len(ids_val)
        chosen = wanted if wanted != "validation" or enough else fallback
        if wanted == "validation" and ids_val and not enough:
            logger.warning("site %s: %d validation samples are too few for a finite %.0f %% "
                           "validation interval (it needs ceil((m + 1) level) <= m); the site "
                           "is served %s", site, len(ids_val), 100 * level, fallback)
        has_test = not test.empty
        X_cal, _, ids_cal = site_data(library_spectra, site_calibration, selection, site)
        X_test = spectra_of(test) if has_test else np.empty((0, X_cal.shape[1]))
        ids_test = test["sample_id"].astype(str).tolist()
        folds = outer_folds(site_folds, site, ids_cal)
        site_rows = []
        of_site = study_estimates.loc[study_estimates["site"] == site]
        for label in dict.fromkeys(of_site["method"]):
            entry = method(label)
            rows = of_site.loc[of_site["method"] == label]
            cal = rows.loc[rows["role"] == "calibration"].set_index("sample_id").loc[ids_cal]
            tested = rows.loc[rows["role"] == "test"].set_index("sample_id").loc[ids_test]
            refit = rows.loc[rows["role"] == "test_refit"].set_index("sample_id")
            validated = (rows.loc[rows["role"].isin(["validation", "test"])]
                         .set_index("sample_id").loc[ids_val])
            y_val = validated["observed"].to_numpy(np.float64)
            val_estimate = validated["estimated"].to_numpy(np.float64)
            y_cal = cal["observed"].to_numpy(np.float64)
            cal_estimate = cal["estimated"].to_numpy(np.float64)
            unnested = cal["estimated_unnested"].to_numpy(np.float64)
            y_test = tested["observed"].to_numpy(np.float64)
            estimate = tested["estimated"].to_numpy(np.float64)
            per_fold = (rows.loc[rows["role"] == "test_fold"]
                        .pivot(index="fold", columns="sample_id", values="estimated")
                        .reindex(columns=ids_test).to_numpy(np.float64))
            fold_of_cal = cal["fold"].to_numpy(np.int64)
            domain, domain_cal, domain_test = _difficulties(
                entry, library_spectra, site_calibration, selection, site, country, X_cal,
                ids_cal, X_test, folds, params)
            offset = level_offset(cal_estimate)
            sigma_cal = spectrum_difficulty(difficulty, domain_cal, cal_estimate, offset)
            sigma_test = spectrum_difficulty(difficulty, domain_test, estimate, offset)
            half = conformal_halfwidth(y_cal, cal_estimate, level)
            half_val = (conformal_halfwidth(y_val, val_estimate, level) if ids_val
                        else np.nan)
            bounds = {
                "validation": (estimate - half_val, estimate + half_val),
                "plain": (estimate - half, estimate + half),
                "normalised": (lambda h: (estimate - h, estimate + h))(normalized_halfwidths(
                    y_cal, cal_estimate, sigma_cal, sigma_test, level)),
            }
            if has_test:
                bounds["cv_plus"] = cv_plus_interval(y_cal, cal_estimate, fold_of_cal,
                                                     per_fold, level)
                bounds["normalised_cv_plus"] = cv_plus_interval(
                    y_cal, cal_estimate, fold_of_cal, per_fold, level, sigma_cal, sigma_test)
            else:
                bounds["cv_plus"] = bounds["normalised_cv_plus"] = (estimate, estimate)
            bounds = {name: clip_interval(*pair) for name, pair in bounds.items()}
            lower, upper = bounds[chosen]
            t2, q = domain.statistics(X_test) if has_test else (np.empty(0), np.empty(0))
            inside = (t2 <= domain.t2_limit) & (q <= domain.q_limit)
            cal_half = (normalized_halfwidths(y_cal, cal_estimate, sigma_cal, sigma_cal, level)
                        if chosen == "normalised" else half)
            blank = np.full(len(y_cal), np.nan)
            predictions.append(pd.DataFrame({
                "site": site, "method": label, "role": "calibration",
                "sample_id": ids_cal, "observed": y_cal,
                "estimated": cal_estimate, "spread": blank,
                "lower": np.maximum(cal_estimate - cal_half, 0.0),
                "upper": cal_estimate + cal_half, "t2": blank, "q": blank, "in_domain": True,
                "fold": fold_of_cal, "estimated_unnested": unnested, "difficulty": sigma_cal,
            }))
            predictions.append(pd.DataFrame({
                "site": site, "method": label, "role": "test",
                "sample_id": ids_test, "observed": y_test,
                "estimated": estimate, "spread": tested["spread"].to_numpy(np.float64),
                "lower": lower, "upper": upper, "t2": t2, "q": q, "in_domain": inside,
                "fold": -1, "estimated_unnested": np.nan, "difficulty": sigma_test,
            }))
            if ids_val:
                none = np.full(len(ids_val), np.nan)
                predictions.append(pd.DataFrame({
                    "site": site, "method": label, "role": "validation",
                    "sample_id": ids_val, "observed": y_val, "estimated": val_estimate,
                    "spread": none, "lower": np.maximum(val_estimate - half_val, 0.0),
                    "upper": val_estimate + half_val, "t2": none, "q": none, "in_domain": True,
                    "fold": -1, "estimated_unnested": none, "difficulty": none,
                }))
            finite_unnested = np.isfinite(unnested).all()
            interval_figures = {}
            for name, (low, high) in bounds.items():
                interval_figures[f"coverage_{name}"] = (
                    interval_coverage(y_test, low, high) if has_test
                    and (name != "validation" or ids_val) else np.nan)
                interval_figures[f"width_{name}"] = (float(np.mean(high - low)) if has_test
                                                     else np.nan)
            if both and has_test:  # scored on the test samples that did not set its width
                scored = ~np.isin(np.asarray(ids_test, dtype=object), list(both))
                low, high = bounds["validation"]
                interval_figures["coverage_validation"] = (
                    interval_coverage(y_test[scored], low[scored], high[scored])
                    if scored.any() else np.nan)
            site_rows.append({
                "site": site,
                "method": label,
                "family": entry.family,
                "model_key": rows["model_key"].iloc[0],
                "trained_on": entry.data,
                "nested": entry.nested if finite_unnested else None,
                "n_test": len(y_test),
                **(all_metrics(y_test, estimate) if has_test else dict.fromkeys(
                    METRIC_NAMES, np.nan)),
                "cal_rmse": rmse(y_cal, cal_estimate),
                "cal_rmse_se": _rmse_se(y_cal, cal_estimate),
                "cal_rmse_unnested": (rmse(y_cal, unnested) if finite_unnested
                                      else rmse(y_cal, cal_estimate)),
                "n_validation": len(ids_val),
                "val_rmse": rmse(y_val, val_estimate) if ids_val else np.nan,
                "val_rmse_se": _rmse_se(y_val, val_estimate) if ids_val else np.nan,
                "collection": rows["collection"].iloc[0],
                "rmse_full_refit": (rmse(y_test, refit.loc[ids_test, "estimated"])
                                    if has_test and not refit.empty else np.nan),
                "interval": chosen,
                "interval_level": level,
                "interval_halfwidth": half_val if chosen == "validation" else half,
                "coverage": interval_figures[f"coverage_{chosen}"],
                "mean_width": interval_figures[f"width_{chosen}"],
                **interval_figures,
                "out_of_domain_share": float(np.mean(~inside)) if has_test else np.nan,
            })
            domains.setdefault(site, {})[label] = {
                "domain": domain.to_dict(),
                "interval": {
                    "method": chosen, "level": level, "difficulty": difficulty,
                    "level_offset": offset, "calibration_folds": fold_of_cal.tolist(),
                    "fold_estimates": bool(fold_of_cal.max() > 0),  # the model has fold models
                    "calibration_residuals": np.abs(y_cal - cal_estimate).tolist(),
                    "calibration_difficulties": sigma_cal.tolist(),
                },
            }
        table = pd.DataFrame(site_rows)
        reference = reference_method().label
        if reference in set(table["method"]) and has_test:
            local_rmse = float(table.loc[table["method"] == reference, "rmse"].iloc[0])
            table["drmse"] = [delta_rmse(local_rmse, value) for value in table["rmse"]]
        else:
            table["drmse"] = np.nan
        order = {label: i for i, label in enumerate(method_order())}
        table["_order"] = table["method"].map(order)
        table = table.sort_values("_order").drop(columns="_order").reset_index(drop=True)
        tables.append(table)
    return (pd.concat(predictions, ignore_index=True), pd.concat(tables, ignore_index=True),
            domains)


#: The winner rule, as the report states it.
WINNER_RULE = (
    "Among the servable models, the lowest nested out-of-fold calibration RMSE decides; every "
    "model within one standard error of that best RMSE is a candidate, and the simplest "
    "candidate wins: PLSR before a CNN, then local data only before local + library data, then "
    "the lower nested RMSE. The test set is not used."
)


def _locality(dataset: str) -> int:
    """0: the n only; 1: library data with the n; 2: library data only."""
    if dataset == "n":
        return 0
    return 1 if dataset.startswith("k+n") or dataset.endswith("+n") else 2


def _apply_rule(servable: pd.DataFrame) -> tuple[pd.Series, pd.Series, pd.DataFrame]:
    """(the winner, the lowest-RMSE model, the candidates) of :data:`WINNER_RULE` among the
    rows of ``servable`` (columns method, family, trained_on, cal_rmse, cal_rmse_se)."""
    lowest = servable.sort_values(["cal_rmse"], kind="stable").iloc[0]
    threshold = float(lowest["cal_rmse"]) + float(lowest["cal_rmse_se"])
    candidates = servable.loc[servable["cal_rmse"] <= threshold].copy()
    candidates["_simplicity"] = [family(f).simplicity for f in candidates["family"]]
    candidates["_locality"] = [_locality(d) for d in candidates["trained_on"]]
    best = candidates.sort_values(["_simplicity", "_locality", "cal_rmse"],
                                  kind="stable").iloc[0]
    return best, lowest, candidates


def selection_nested_rmse(servable: pd.DataFrame, calibration: pd.DataFrame,
                          folds: Folds) -> tuple[float, list[str]]:
    """The calibration RMSE of the winner rule itself, nested over the outer folds: for each
    outer fold f, the rule picks a model from the other folds' nested estimates only, and fold
    f's samples are scored by that pick's nested estimates. The winner's own nested RMSE is the
    minimum (nearly) over a dozen noisy estimates on the same n (a winner's curse); this
    figure pays for the choice as nested CV pays for a fit (Varma & Simon 2006). The estimates
    of fold f's samples are those the nested stage made (models that never saw fold f); the
    other folds' estimates used to pick came from models that saw fold f's spectra and labels
    in training, but no fold-f residual enters the pick. ``calibration``: the calibration rows
    of the predictions (sample_id, method, observed, estimated). Returns (RMSE, pick per fold).
    """
    # ids as strings, as the folds hold them (study_predictions.csv reads numeric ids as ints)
    rows = calibration.loc[calibration["method"].isin(set(servable["method"]))]
    rows = rows.assign(sample_id=rows["sample_id"].astype(str))
    picks, squared = [], []
    for _, held in folds.split():
        held_ids = {str(folds.sample_ids[i]) for i in held}
        inner = rows.loc[~rows["sample_id"].isin(held_ids)]
        scores = {label: (rmse(g["observed"], g["estimated"]),
                          _rmse_se(g["observed"].to_numpy(), g["estimated"].to_numpy()))
                  for label, g in inner.groupby("method")}
        table = servable.assign(cal_rmse=[scores[m][0] for m in servable["method"]],
                                cal_rmse_se=[scores[m][1] for m in servable["method"]])
        pick = _apply_rule(table)[0]["method"]
        picks.append(str(pick))
        scored = rows.loc[(rows["method"] == pick) & rows["sample_id"].isin(held_ids)]
        squared.extend(((scored["estimated"] - scored["observed"]) ** 2).tolist())
    if len(squared) != len(folds.sample_ids):
        raise ValueError("every calibration sample must be in exactly one outer fold")
    return float(np.sqrt(np.mean(squared))), picks


def choose_winners(
    scored: pd.DataFrame,
    domains: dict,
    site_calibration: pd.DataFrame,
    predictions: pd.DataFrame | None = None,
    site_folds: pd.DataFrame | None = None,
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
        has_test = bool(table["n_test"].iloc[0] > 0)
        servable = table.loc[table["family"].isin(servable_kinds)]
        if servable.empty:
            raise ValueError(f"site {site!r}: no servable model ({', '.join(servable_kinds)}) "
                             "to choose from")
        best, lowest, candidates = _apply_rule(servable)
        selection, picks = np.nan, []
        if predictions is not None:
            calibration = predictions.loc[(predictions["site"] == site)
                                          & (predictions["role"] == "calibration")]
            ids_cal = site_calibration.loc[site_calibration["site"] == site, "sample_id"]
            selection, picks = selection_nested_rmse(
                servable, calibration, outer_folds(site_folds, site,
                                                   ids_cal.astype(str).tolist()))
        table["cal_rmse_selection"] = np.where(table["method"] == best["method"], selection,
                                               np.nan)
        best_overall = table.sort_values(["cal_rmse"], kind="stable").iloc[0]
        best_test = table.sort_values(["rmse"], kind="stable").iloc[0] if has_test else None
        table["winner"] = table["method"] == best["method"]
        table["candidate"] = table["method"].isin(set(candidates["method"]))
        tables.append(table)
        winners[site] = {
            "site": site,
            "country": site_country(site_calibration, site),
            "method": best["method"],
            "model_key": best["model_key"],
            "collection": best["collection"],
            "family": best["family"],
            "trained_on": best["trained_on"],
            "cal_rmse": float(best["cal_rmse"]),
            "cal_rmse_se": float(best["cal_rmse_se"]),
            "cal_rmse_unnested": float(best["cal_rmse_unnested"]),
            "cal_rmse_selection": _finite_or_none(selection),
            "n_validation": int(best.get("n_validation", 0)),
            "val_rmse": _finite_or_none(best.get("val_rmse", np.nan)),
            "selection_picks": picks,
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
            "domain": domains[site][best["method"]]["domain"],
            "interval_calibration": domains[site][best["method"]]["interval"],
            "best_on_test": None if best_test is None else best_test["method"],
            "winner_was_best_on_test": (None if best_test is None
                                        else bool(best_test["method"] == best["method"])),
            "best_calibration_overall": best_overall["method"],
        }
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
    """(predictions, metrics, winners): the evaluate pipeline's three nodes in one call, for
    scripts and tests (``mbl_estimates`` / ``nested_models``: the ``mbl`` and ``nested``
    stages' outputs; None: no MBL rows / the full-data models only; ``site_folds``: the stored
    folds, None: 5 folds of the n)."""
    estimates = predict_sites(site_calibration, site_test, library_spectra, selection,
                              library_models, site_models, transfer_models, mbl_estimates,
                              nested_models)
    predictions, scored, domains = score_sites(estimates, site_calibration, site_test,
                                               library_spectra, selection, params, site_folds)
    metrics, winners = choose_winners(scored, domains, site_calibration, predictions,
                                      site_folds)
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
