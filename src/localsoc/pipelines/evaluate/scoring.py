"""Scoring one method at one site: its metrics, its prediction intervals and their coverage.

The ``score_sites`` node (``nodes.py``) loops over sites and methods and calls
:func:`score_method` for each pair. The intervals are a registry, :data:`INTERVALS`: name ->
a function of one method's :class:`IntervalData` giving (lower, upper) of its test spectra.
Adding an interval is one function and one entry (and, to serve it, the service's rule in
``localsoc.serving.bundle``).

- ``validation``: split conformal (Vovk et al. 2005; Lei et al. 2018, theorem 2.1) on the site's
  validation samples, random samples of the field kept apart from training and from the winner
  rule: estimate +- the ceil((m + 1)(1 - alpha))-th smallest of the m validation |residuals|.
  Coverage >= 1 - alpha for a new spectrum exchangeable with them, marginally over the draw
  (``localsoc.uncertainty.split_conformal_coverage_law``).
- ``plain``: estimate +- the same conformal quantile of the nested out-of-fold |residuals|.
- ``normalised``: estimate +- q sigma(x), the normalised-score interval of Lei et al. (2018), with
  a difficulty sigma known without the label (``evaluate.difficulty``).
- ``cv_plus``: CV+ (Barber et al. 2021) from each outer-fold model's estimate of the spectrum and
  the nested out-of-fold residuals; coverage >= 1 - 2 alpha for exchangeable data.
- ``normalised_cv_plus``: CV+ on the normalised score (reported, not served).

Every lower bound is clipped at 0 (SOC cannot be negative).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import pandas as pd

from localsoc.data.schema import spectra_of
from localsoc.methods import Method, method_order, reference_method
from localsoc.metrics import all_metrics, delta_rmse, rmse
from localsoc.models.ensemble import Folds, make_folds
from localsoc.study import site_country
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


@dataclass(frozen=True)
class ScoreSettings:
    """The ``evaluate`` parameters the scoring reads (``conf/base/parameters_evaluate.yml``)."""

    level: float
    interval: str
    fallback: str
    difficulty: str
    domain_components: int
    domain_quantile: float

    @classmethod
    def from_params(cls, params: dict) -> ScoreSettings:
        settings = cls(float(params["interval_level"]), str(params["interval"]),
                       str(params["interval_fallback"]), str(params["difficulty"]),
                       int(params["domain"]["n_components"]), float(params["domain"]["quantile"]))
        for key, name in (("interval", settings.interval),
                          ("interval_fallback", settings.fallback)):
            if name not in SERVED_INTERVALS or (key == "interval_fallback"
                                                and name == "validation"):
                raise ValueError(f"evaluate.{key} must be one of {SERVED_INTERVALS} (the "
                                 "intervals the served model can give; the fallback not "
                                 f"validation); got {name!r}")
        return settings


@dataclass(frozen=True)
class StudyTables:
    """The study's tables every site's scoring reads from."""

    site_calibration: pd.DataFrame
    site_test: pd.DataFrame
    library_spectra: pd.DataFrame
    selection: pd.DataFrame
    site_folds: pd.DataFrame | None


@dataclass(frozen=True)
class SiteSamples:
    """One site's calibration, test and validation samples, its outer folds and the interval it
    is served (``interval``). ``both``: test samples that also calibrate the validation
    interval (too few rows to keep them apart; its coverage is not scored on them)."""

    site: str
    country: str | None
    X_cal: np.ndarray
    ids_cal: list[str]
    X_test: np.ndarray
    ids_test: list[str]
    ids_val: list[str]
    both: frozenset[str]
    folds: Folds
    interval: str

    @property
    def has_test(self) -> bool:
        return bool(self.ids_test)


@dataclass(frozen=True)
class MethodEstimates:
    """One method's estimates at one site, read back from ``study_estimates``."""

    label: str
    model_key: str
    collection: str | None
    y_cal: np.ndarray
    cal_estimate: np.ndarray
    unnested: np.ndarray
    fold_of_cal: np.ndarray
    y_test: np.ndarray
    estimate: np.ndarray
    spread: np.ndarray
    per_fold: np.ndarray
    y_val: np.ndarray
    val_estimate: np.ndarray
    refit: pd.DataFrame


@dataclass(frozen=True)
class IntervalData:
    """What every interval of :data:`INTERVALS` is computed from: one method's estimates, the
    difficulties sigma of its calibration and test spectra, the conformal half-widths of the
    nested calibration residuals (``half``) and of the validation residuals (``half_val``,
    NaN without validation samples)."""

    estimates: MethodEstimates
    sigma_cal: np.ndarray
    sigma_test: np.ndarray
    half: float
    half_val: float
    level: float
    has_test: bool


@dataclass(frozen=True)
class MethodScore:
    """One method at one site: its prediction rows (calibration, test, validation, with the
    served interval), its row of the study table and its domain record (the applicability
    domain and the calibration scores of its interval)."""

    predictions: list[pd.DataFrame]
    row: dict
    domain: dict


Bounds = tuple[np.ndarray, np.ndarray]


def validation_interval(data: IntervalData) -> Bounds:
    estimate = data.estimates.estimate
    return estimate - data.half_val, estimate + data.half_val


def plain_interval(data: IntervalData) -> Bounds:
    estimate = data.estimates.estimate
    return estimate - data.half, estimate + data.half


def normalised_interval(data: IntervalData) -> Bounds:
    m = data.estimates
    half = normalized_halfwidths(m.y_cal, m.cal_estimate, data.sigma_cal, data.sigma_test,
                                 data.level)
    return m.estimate - half, m.estimate + half


def cv_plus(data: IntervalData) -> Bounds:
    m = data.estimates
    if not data.has_test:
        return m.estimate, m.estimate
    return cv_plus_interval(m.y_cal, m.cal_estimate, m.fold_of_cal, m.per_fold, data.level)


def normalised_cv_plus(data: IntervalData) -> Bounds:
    m = data.estimates
    if not data.has_test:
        return m.estimate, m.estimate
    return cv_plus_interval(m.y_cal, m.cal_estimate, m.fold_of_cal, m.per_fold, data.level,
                            data.sigma_cal, data.sigma_test)


#: Every interval a method is scored with, in the order of the study table's columns.
INTERVALS: dict[str, Callable[[IntervalData], Bounds]] = {
    "validation": validation_interval,
    "plain": plain_interval,
    "normalised": normalised_interval,
    "cv_plus": cv_plus,
    "normalised_cv_plus": normalised_cv_plus,
}
#: The intervals the served model can give (``evaluate.interval``).
SERVED_INTERVALS = ("validation", "cv_plus", "normalised", "plain")


def outer_folds(site_folds: pd.DataFrame | None, site: str, ids_cal: list[str]) -> Folds:
    """The stored folds of the site's n (the nested stage's outer folds), or, for a study
    without stored folds (scripts, tests), 5 folds of the n with seed 0."""
    if site_folds is not None and not site_folds.empty and (
            (site_folds["site"] == site) & (site_folds["dataset"] == "n")).any():
        return folds_from_table(site_folds, site, "n").aligned_to(ids_cal)
    return make_folds(ids_cal, min(5, len(ids_cal)), 0)


def served_interval(site: str, n_validation: int, settings: ScoreSettings) -> str:
    """The interval a site is served: ``evaluate.interval``, or the fallback where the
    validation interval is wanted but would be infinite: it needs ceil((m + 1) level) <= m
    validation samples (m >= 9 at 90 %)."""
    enough = n_validation > 0 and math.ceil((n_validation + 1) * settings.level) <= n_validation
    if settings.interval != "validation" or enough:
        return settings.interval
    if n_validation:
        logger.warning("site %s: %d validation samples are too few for a finite %.0f %% "
                       "validation interval (it needs ceil((m + 1) level) <= m); the site is "
                       "served %s", site, n_validation, 100 * settings.level, settings.fallback)
    return settings.fallback


def site_samples(site: str, tables: StudyTables, settings: ScoreSettings) -> SiteSamples:
    """The site's samples by role (``site_test.holdout``: validation, test or
    test_validation), its outer folds and its served interval."""
    holdout = tables.site_test.loc[tables.site_test["site"] == site]
    kind = (holdout["holdout"].astype(str).to_numpy() if "holdout" in holdout
            else np.full(len(holdout), "test"))
    test = holdout.loc[kind != "validation"]
    ids_val = holdout.loc[np.isin(kind, ["validation", "test_validation"]),
                          "sample_id"].astype(str).tolist()
    both = frozenset(holdout.loc[kind == "test_validation", "sample_id"].astype(str))
    X_cal, _, ids_cal = site_data(tables.library_spectra, tables.site_calibration,
                                  tables.selection, site)
    X_test = spectra_of(test) if not test.empty else np.empty((0, X_cal.shape[1]))
    return SiteSamples(site, site_country(tables.site_calibration, site), X_cal, ids_cal,
                       X_test, test["sample_id"].astype(str).tolist(), ids_val, both,
                       outer_folds(tables.site_folds, site, ids_cal),
                       served_interval(site, len(ids_val), settings))


def method_estimates(rows: pd.DataFrame, samples: SiteSamples) -> MethodEstimates:
    """One method's rows of ``study_estimates`` at one site, as arrays in the site's order."""
    cal = rows.loc[rows["role"] == "calibration"].set_index("sample_id").loc[samples.ids_cal]
    tested = rows.loc[rows["role"] == "test"].set_index("sample_id").loc[samples.ids_test]
    validated = (rows.loc[rows["role"].isin(["validation", "test"])]
                 .set_index("sample_id").loc[samples.ids_val])
    per_fold = (rows.loc[rows["role"] == "test_fold"]
                .pivot(index="fold", columns="sample_id", values="estimated")
                .reindex(columns=samples.ids_test).to_numpy(np.float64))
    return MethodEstimates(
        label=str(rows["method"].iloc[0]), model_key=rows["model_key"].iloc[0],
        collection=rows["collection"].iloc[0],
        y_cal=cal["observed"].to_numpy(np.float64),
        cal_estimate=cal["estimated"].to_numpy(np.float64),
        unnested=cal["estimated_unnested"].to_numpy(np.float64),
        fold_of_cal=cal["fold"].to_numpy(np.int64),
        y_test=tested["observed"].to_numpy(np.float64),
        estimate=tested["estimated"].to_numpy(np.float64),
        spread=tested["spread"].to_numpy(np.float64), per_fold=per_fold,
        y_val=validated["observed"].to_numpy(np.float64),
        val_estimate=validated["estimated"].to_numpy(np.float64),
        refit=rows.loc[rows["role"] == "test_refit"].set_index("sample_id"))


def method_domain(entry: Method, tables: StudyTables, samples: SiteSamples,
                  settings: ScoreSettings) -> tuple[ApplicabilityDomain, np.ndarray, np.ndarray]:
    """(the method's applicability domain, domain distance of each calibration sample, of each
    test spectrum). A calibration sample's distance comes from the domain of the method's
    training spectra without its outer fold's locals, so it is scored as a new spectrum is."""
    X_train, _, ids_train = dataset_data(entry.data, tables.library_spectra,
                                         tables.site_calibration, tables.selection,
                                         samples.site, samples.country)
    options = {"n_components": settings.domain_components,
               "quantile": settings.domain_quantile}
    domain = ApplicabilityDomain.fit(X_train, **options)
    sigma_test = (domain_difficulty(domain, samples.X_test) if len(samples.X_test)
                  else np.empty(0))
    ids_cal = samples.ids_cal
    trained = np.isin(np.asarray(ids_train, dtype=object), np.asarray(ids_cal, dtype=object))
    if not trained.any():
        return domain, domain_difficulty(domain, samples.X_cal), sigma_test
    sigma_cal = np.empty(len(ids_cal))
    position = {s: i for i, s in enumerate(ids_train)}
    for _, held in samples.folds.split():
        drop = np.zeros(len(ids_train), dtype=bool)
        drop[[position[ids_cal[i]] for i in held if ids_cal[i] in position]] = True
        fold_domain = ApplicabilityDomain.fit(X_train[~drop], **options)
        sigma_cal[held] = domain_difficulty(fold_domain, samples.X_cal[held])
    return domain, sigma_cal, sigma_test


def rmse_se(observed: np.ndarray, estimated: np.ndarray) -> float:
    """Standard error of an RMSE from n residuals (delta method: se(MSE) / (2 RMSE))."""
    squared = (np.asarray(estimated) - np.asarray(observed)) ** 2
    value = float(np.sqrt(squared.mean()))
    if squared.size < 2 or value == 0:
        return 0.0
    return float(squared.std(ddof=1) / np.sqrt(squared.size) / (2 * value))


def interval_figures(bounds: dict[str, Bounds], m: MethodEstimates,
                     samples: SiteSamples) -> dict[str, float]:
    """Test coverage and mean width of every interval (NaN without a test set). The
    validation interval is not scored on the test samples that set its width."""
    has_test, figures = samples.has_test, {}
    for name, (low, high) in bounds.items():
        figures[f"coverage_{name}"] = (
            interval_coverage(m.y_test, low, high) if has_test
            and (name != "validation" or samples.ids_val) else np.nan)
        figures[f"width_{name}"] = float(np.mean(high - low)) if has_test else np.nan
    if samples.both and has_test:
        scored = ~np.isin(np.asarray(samples.ids_test, dtype=object), list(samples.both))
        low, high = bounds["validation"]
        figures["coverage_validation"] = (
            interval_coverage(m.y_test[scored], low[scored], high[scored])
            if scored.any() else np.nan)
    return figures


def prediction_frames(m: MethodEstimates, samples: SiteSamples, data: IntervalData,
                      bounds: Bounds, cal_half, domain: ApplicabilityDomain) -> list[pd.DataFrame]:
    """The calibration, test and (with validation samples) validation rows of one method, with
    the served interval (``lower``/``upper``) and the test spectra's domain statistics."""
    site, label = samples.site, m.label
    has_test = samples.has_test
    t2, q = domain.statistics(samples.X_test) if has_test else (np.empty(0), np.empty(0))
    blank = np.full(len(m.y_cal), np.nan)
    frames = [pd.DataFrame({
        "site": site, "method": label, "role": "calibration",
        "sample_id": samples.ids_cal, "observed": m.y_cal, "estimated": m.cal_estimate,
        "spread": blank, "lower": np.maximum(m.cal_estimate - cal_half, 0.0),
        "upper": m.cal_estimate + cal_half, "t2": blank, "q": blank, "in_domain": True,
        "fold": m.fold_of_cal, "estimated_unnested": m.unnested, "difficulty": data.sigma_cal,
    }), pd.DataFrame({
        "site": site, "method": label, "role": "test",
        "sample_id": samples.ids_test, "observed": m.y_test, "estimated": m.estimate,
        "spread": m.spread, "lower": bounds[0], "upper": bounds[1], "t2": t2, "q": q,
        "in_domain": (t2 <= domain.t2_limit) & (q <= domain.q_limit),
        "fold": -1, "estimated_unnested": np.nan, "difficulty": data.sigma_test,
    })]
    if samples.ids_val:
        none = np.full(len(samples.ids_val), np.nan)
        frames.append(pd.DataFrame({
            "site": site, "method": label, "role": "validation",
            "sample_id": samples.ids_val, "observed": m.y_val, "estimated": m.val_estimate,
            "spread": none, "lower": np.maximum(m.val_estimate - data.half_val, 0.0),
            "upper": m.val_estimate + data.half_val, "t2": none, "q": none, "in_domain": True,
            "fold": -1, "estimated_unnested": none, "difficulty": none,
        }))
    return frames


def method_row(entry: Method, m: MethodEstimates, samples: SiteSamples, data: IntervalData,
               figures: dict[str, float], out_of_domain: float) -> dict:
    """One method's row of the study table (before dRMSE)."""
    has_test, has_val, chosen = samples.has_test, bool(samples.ids_val), samples.interval
    finite_unnested = np.isfinite(m.unnested).all()
    return {
        "site": samples.site, "method": m.label, "family": entry.family,
        "model_key": m.model_key, "trained_on": entry.data,
        "nested": entry.nested if finite_unnested else None,
        "n_test": len(m.y_test),
        **(all_metrics(m.y_test, m.estimate) if has_test
           else dict.fromkeys(METRIC_NAMES, np.nan)),
        "cal_rmse": rmse(m.y_cal, m.cal_estimate),
        "cal_rmse_se": rmse_se(m.y_cal, m.cal_estimate),
        "cal_rmse_unnested": rmse(m.y_cal, m.unnested if finite_unnested else m.cal_estimate),
        "n_validation": len(samples.ids_val),
        "val_rmse": rmse(m.y_val, m.val_estimate) if has_val else np.nan,
        "val_rmse_se": rmse_se(m.y_val, m.val_estimate) if has_val else np.nan,
        "collection": m.collection,
        "rmse_full_refit": (rmse(m.y_test, m.refit.loc[samples.ids_test, "estimated"])
                            if has_test and not m.refit.empty else np.nan),
        "interval": chosen, "interval_level": data.level,
        "interval_halfwidth": data.half_val if chosen == "validation" else data.half,
        "coverage": figures[f"coverage_{chosen}"], "mean_width": figures[f"width_{chosen}"],
        **figures,
        "out_of_domain_share": out_of_domain,
    }


def score_method(entry: Method, m: MethodEstimates, samples: SiteSamples,
                 domain: tuple[ApplicabilityDomain, np.ndarray, np.ndarray],
                 settings: ScoreSettings) -> MethodScore:
    """Metrics, intervals (every one of :data:`INTERVALS`; the site's served one in the
    prediction rows), coverage and the domain record of one method at one site. ``domain``:
    :func:`method_domain`'s (domain, calibration distances, test distances)."""
    fitted, domain_cal, domain_test = domain
    level, chosen = settings.level, samples.interval
    offset = level_offset(m.cal_estimate)
    data = IntervalData(
        m, spectrum_difficulty(settings.difficulty, domain_cal, m.cal_estimate, offset),
        spectrum_difficulty(settings.difficulty, domain_test, m.estimate, offset),
        conformal_halfwidth(m.y_cal, m.cal_estimate, level),
        conformal_halfwidth(m.y_val, m.val_estimate, level) if samples.ids_val else np.nan,
        level, samples.has_test)
    bounds = {name: clip_interval(*interval(data)) for name, interval in INTERVALS.items()}
    cal_half = (normalized_halfwidths(m.y_cal, m.cal_estimate, data.sigma_cal, data.sigma_cal,
                                      level) if chosen == "normalised" else data.half)
    predictions = prediction_frames(m, samples, data, bounds[chosen], cal_half, fitted)
    inside = predictions[1]["in_domain"].to_numpy(bool)
    row = method_row(entry, m, samples, data, interval_figures(bounds, m, samples),
                     float(np.mean(~inside)) if samples.has_test else np.nan)
    record = {
        "domain": fitted.to_dict(),
        "interval": {
            "method": chosen, "level": level, "difficulty": settings.difficulty,
            "level_offset": offset, "calibration_folds": m.fold_of_cal.tolist(),
            "fold_estimates": bool(m.fold_of_cal.max() > 0),  # the model has fold models
            "calibration_residuals": np.abs(m.y_cal - m.cal_estimate).tolist(),
            "calibration_difficulties": data.sigma_cal.tolist(),
        },
    }
    return MethodScore(predictions, row, record)


def site_table(rows: list[dict], has_test: bool) -> pd.DataFrame:
    """A site's rows of the study table, with dRMSE against the registry's reference method,
    in registry order."""
    table = pd.DataFrame(rows)
    reference = reference_method().label
    if reference in set(table["method"]) and has_test:
        local_rmse = float(table.loc[table["method"] == reference, "rmse"].iloc[0])
        table["drmse"] = [delta_rmse(local_rmse, value) for value in table["rmse"]]
    else:
        table["drmse"] = np.nan
    order = {label: i for i, label in enumerate(method_order())}
    table["_order"] = table["method"].map(order)
    return table.sort_values("_order").drop(columns="_order").reset_index(drop=True)
