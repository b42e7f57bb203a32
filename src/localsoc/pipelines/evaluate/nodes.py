"""Evaluate every model of every site on the site's untouched test set; choose the winners.

The winner rule never looks at the test set: lowest out-of-fold RMSE on the site's n
calibration samples (library-only models are scored on those n as they are, since they never
saw them). Prediction intervals are split-conformal from the same calibration residuals; the
applicability domain is a PCA (T2, Q) of each model's training spectra.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from localsoc.data.schema import spectra_of
from localsoc.metrics import all_metrics, delta_rmse, rmse
from localsoc.pipelines.train.nodes import site_data
from localsoc.plots import delta_rmse_figure, observed_estimated_figure
from localsoc.study import scope_key, scope_rows, site_country, sites_of
from localsoc.uncertainty import ApplicabilityDomain, conformal_halfwidth, interval_coverage


@dataclass(frozen=True)
class Method:
    """One row of the study table: label, where its model lives, what it was trained on."""

    label: str
    key: str  # template: {site}, {country}
    collection: str  # library | site | transfer
    data: str  # n | k+n:<scope> | library:<scope>
    family: str  # cnn | plsr


METHODS: tuple[Method, ...] = (
    Method("Local", "{site}/local", "site", "n", "cnn"),
    Method("Global", "global", "library", "library:global", "cnn"),
    Method("Country", "country_{country}", "library", "library:country", "cnn"),
    Method("DTL-Ig", "{site}/dtl_ig", "site", "k+n:global", "cnn"),
    Method("DTL-Ic", "{site}/dtl_ic", "site", "k+n:country", "cnn"),
    Method("DTL-Rg", "{site}/dtl_rg", "transfer", "n", "cnn"),
    Method("DTL-Rc", "{site}/dtl_rc", "transfer", "n", "cnn"),
    Method("DTL-IRg", "{site}/dtl_irg", "transfer", "k+n:global", "cnn"),
    Method("DTL-IRc", "{site}/dtl_irc", "transfer", "k+n:country", "cnn"),
    Method("PLSR Local", "{site}/plsr_local", "site", "n", "plsr"),
    Method("RS-LOCAL+PLSR g", "{site}/plsr_rslocal_g", "site", "k+n:global", "plsr"),
    Method("RS-LOCAL+PLSR c", "{site}/plsr_rslocal_c", "site", "k+n:country", "plsr"),
)
METHOD_ORDER = [m.label for m in METHODS]


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


def _training_spectra(method: Method, library_spectra, site_calibration, selection, site,
                      country) -> np.ndarray:
    if method.data == "n":
        return site_data(library_spectra, site_calibration, selection, site)[0]
    kind, scope = method.data.split(":")
    if kind == "k+n":
        return site_data(library_spectra, site_calibration, selection, site, scope)[0]
    return spectra_of(scope_rows(library_spectra, scope, country))


def _models_of(site: str, country: str | None, collections: dict) -> list[tuple[Method, str, object]]:
    found = []
    for method in METHODS:
        key = method.key.format(site=site, country=country)
        if method.collection == "library":
            key = scope_key(method.data.split(":")[1], country)
        model = collections[method.collection].get(key)
        if model is not None:
            found.append((method, key, model))
    return found


@dataclass
class Candidate:
    """One model's estimates for a site, however it was obtained."""

    method: Method
    key: str
    cal_estimate: np.ndarray
    estimate: np.ndarray
    spread: np.ndarray
    training_spectra: np.ndarray


MBL_METHODS: tuple[Method, ...] = (
    Method("MBL g", "{site}/mbl_g", "none", "library:global", "mbl"),
    Method("MBL+spiking g", "{site}/mbl_spike_g", "none", "library:global+n", "mbl"),
    Method("MBL c", "{site}/mbl_c", "none", "library:country", "mbl"),
    Method("MBL+spiking c", "{site}/mbl_spike_c", "none", "library:country+n", "mbl"),
)
METHOD_ORDER = METHOD_ORDER + [m.label for m in MBL_METHODS]
#: Families the package stage can serve (MBL needs the whole library at prediction time).
SERVABLE_FAMILIES = ("cnn", "plsr")


def _mbl_candidates(site, country, library_spectra, calibration, test, X_cal, params):
    """Memory-based learning (Ramirez-Lopez et al. 2013) on each library scope, with and
    without spiking by the site's calibration samples; nothing is fitted on test rows."""
    from localsoc.models.mbl import predict_site_mbl

    settings = dict(params)
    scopes = settings.pop("scopes", ["global", "country"])
    found = []
    for method in MBL_METHODS:
        scope = method.data.split(":")[1].removesuffix("+n")
        spike = method.data.endswith("+n")
        if scope not in scopes:
            continue
        pool = scope_rows(library_spectra, scope, country)
        k = settings.get("k", 100)
        largest = max(k) if isinstance(k, list) else k
        if len(pool) <= largest:
            continue
        result = predict_site_mbl(pool, calibration, test, spike=spike, **settings)
        training = spectra_of(pool)
        if spike:
            training = np.vstack([training, X_cal])
        found.append(Candidate(
            method, method.key.format(site=site),
            result.calibration["estimated"].to_numpy(np.float64),
            result.test["estimated"].to_numpy(np.float64),
            np.full(len(test), np.nan), training,
        ))
    return found


def evaluate_sites(
    site_calibration: pd.DataFrame,
    site_test: pd.DataFrame,
    library_spectra: pd.DataFrame,
    selection: pd.DataFrame,
    library_models: dict,
    site_models: dict,
    transfer_models: dict,
    params: dict,
) -> tuple[pd.DataFrame, pd.DataFrame, dict]:
    """(predictions, metrics, winners) for every site and method.

    The winner is the servable model (CNN or PLSR) with the lowest calibration RMSE
    (out-of-fold for models trained on the calibration samples); MBL rows are scored the same
    way, and the table shows when one of them would have scored better.
    """
    collections = {"library": library_models, "site": site_models, "transfer": transfer_models}
    level = float(params["interval_level"])
    predictions, metrics, winners = [], [], {}
    for site in sites_of(site_calibration):
        country = site_country(site_calibration, site)
        X_cal, y_cal, ids_cal = site_data(library_spectra, site_calibration, selection, site)
        calibration = site_calibration.loc[site_calibration["site"] == site]
        test = site_test.loc[site_test["site"] == site]
        has_test = not test.empty  # no test set (split.no_test): cross-validated figures only
        X_test = spectra_of(test) if has_test else np.empty((0, X_cal.shape[1]))
        y_test = test["soc"].to_numpy(np.float64)
        candidates = []
        for method, key, model in _models_of(site, country, collections):
            if has_test:
                estimate, spread = model.predict(X_test, return_std=True)
            else:
                estimate, spread = np.empty(0), np.empty(0)
            candidates.append(Candidate(
                method, key, calibration_estimates(model, X_cal, ids_cal),
                np.asarray(estimate, dtype=np.float64), np.asarray(spread, dtype=np.float64),
                _training_spectra(method, library_spectra, site_calibration, selection, site,
                                  country),
            ))
        if params.get("mbl", {}).get("enabled", False) and has_test:
            mbl = {k: v for k, v in params["mbl"].items() if k != "enabled"}
            candidates += _mbl_candidates(site, country, library_spectra, calibration, test,
                                          X_cal, mbl)
        site_rows, extras = [], {}
        for candidate in candidates:
            method, cal_estimate, estimate = candidate.method, candidate.cal_estimate, \
                candidate.estimate
            half = conformal_halfwidth(y_cal, cal_estimate, level)
            domain = ApplicabilityDomain.fit(
                candidate.training_spectra,
                n_components=int(params["domain"]["n_components"]),
                quantile=float(params["domain"]["quantile"]),
            )
            t2, q = domain.statistics(X_test) if has_test else (np.empty(0), np.empty(0))
            inside = (t2 <= domain.t2_limit) & (q <= domain.q_limit)
            lower, upper = estimate - half, estimate + half
            blank = np.full(len(y_cal), np.nan)
            predictions.append(pd.DataFrame({
                "site": site, "method": method.label, "role": "calibration",
                "sample_id": ids_cal, "observed": y_cal, "estimated": cal_estimate,
                "spread": blank, "lower": cal_estimate - half, "upper": cal_estimate + half,
                "t2": blank, "q": blank, "in_domain": True,
            }))
            predictions.append(pd.DataFrame({
                "site": site, "method": method.label, "role": "test",
                "sample_id": test["sample_id"].astype(str).tolist(), "observed": y_test,
                "estimated": estimate, "spread": candidate.spread, "lower": lower,
                "upper": upper, "t2": t2, "q": q, "in_domain": inside,
            }))
            site_rows.append({
                "site": site,
                "method": method.label,
                "family": method.family,
                "model_key": candidate.key,
                "trained_on": method.data,
                "n_test": len(y_test),
                **(all_metrics(y_test, estimate) if has_test else dict.fromkeys(
                    ("rmse", "me", "ccc", "r2", "rpiq"), np.nan)),
                "cal_rmse": rmse(y_cal, cal_estimate),
                "interval_level": level,
                "interval_halfwidth": half,
                "coverage": interval_coverage(y_test, lower, upper) if has_test else np.nan,
                "mean_width": 2.0 * half,
                "out_of_domain_share": float(np.mean(~inside)) if has_test else np.nan,
            })
            extras[method.label] = {"domain": domain.to_dict(), "interval_halfwidth": half}
        table = pd.DataFrame(site_rows)
        if "Local" in set(table["method"]) and has_test:
            local_rmse = float(table.loc[table["method"] == "Local", "rmse"].iloc[0])
            table["drmse"] = [delta_rmse(local_rmse, value) for value in table["rmse"]]
        else:
            table["drmse"] = np.nan
        order = {label: i for i, label in enumerate(METHOD_ORDER)}
        table["_order"] = table["method"].map(order)
        table = table.sort_values("_order").drop(columns="_order").reset_index(drop=True)
        servable = table.loc[table["family"].isin(SERVABLE_FAMILIES)]
        if servable.empty:
            raise ValueError(f"site {site!r}: no servable (CNN or PLSR) model to choose from")
        best = servable.sort_values(["cal_rmse"], kind="stable").iloc[0]
        best_overall = table.sort_values(["cal_rmse"], kind="stable").iloc[0]
        best_test = table.sort_values(["rmse"], kind="stable").iloc[0] if has_test else None
        table["winner"] = table["method"] == best["method"]
        metrics.append(table)
        extra = extras[best["method"]]
        winners[site] = {
            "site": site,
            "country": country,
            "method": best["method"],
            "model_key": best["model_key"],
            "collection": next(m.collection for m in METHODS if m.label == best["method"]),
            "family": best["family"],
            "trained_on": best["trained_on"],
            "cal_rmse": float(best["cal_rmse"]),
            "has_test": has_test,
            "test_metrics": {k: _finite_or_none(best[k]) for k in (
                "rmse", "me", "ccc", "r2", "rpiq", "drmse", "coverage", "mean_width")},
            "interval_level": level,
            "interval_halfwidth": float(extra["interval_halfwidth"]),
            "domain": extra["domain"],
            "best_on_test": None if best_test is None else best_test["method"],
            "winner_was_best_on_test": (None if best_test is None
                                        else bool(best_test["method"] == best["method"])),
            "best_calibration_overall": best_overall["method"],
        }
    return (pd.concat(predictions, ignore_index=True), pd.concat(metrics, ignore_index=True),
            winners)


def _finite_or_none(value) -> float | None:
    value = float(value)
    return value if np.isfinite(value) else None


def study_table_markdown(metrics: pd.DataFrame) -> str:
    """The paper's Table 3 layout: per site, every model's test RMSE, ME, CCC, R2, RPIQ, dRMSE."""
    lines = []
    for site, table in metrics.groupby("site", sort=True):
        lines.append(f"### {site} (test n = {int(table['n_test'].iloc[0])})\n")
        lines.append("| model | RMSE | ME | CCC | R2 | RPIQ | dRMSE % | cal. RMSE (OOF) | "
                     "coverage | winner |")
        lines.append("|---|---|---|---|---|---|---|---|---|---|")
        for row in table.to_dict("records"):
            lines.append(
                f"| {row['method']} | {row['rmse']:.3f} | {row['me']:+.3f} | {row['ccc']:.3f} | "
                f"{row['r2']:.3f} | {row['rpiq']:.2f} | {row['drmse']:+.1f} | "
                f"{row['cal_rmse']:.3f} | {row['coverage']:.2f} | "
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
                                                 "coverage", "cal_rmse")
            if np.isfinite(float(row[k]))
        }
    summary = {}
    for label in METHOD_ORDER:
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
    figures = {"drmse_by_method.png": delta_rmse_figure(metrics)}
    if panels:
        figures["winners_observed_estimated.png"] = observed_estimated_figure(panels)
    return figures
