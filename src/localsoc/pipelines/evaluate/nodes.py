"""Evaluate every method of every site on the site's untouched test set; choose the winners.

Three nodes, one purpose each:

- ``predict_sites``: every registered method's estimates of the site's calibration samples
  (out-of-fold when its model trained on them, plain estimates when it never saw them) and of
  its test samples, with the fold spread; MBL estimates come from the ``mbl`` stage.
- ``score_sites``: test metrics, the calibration RMSE, the prediction interval and its
  coverage, the applicability domain (a PCA (T2, Q) of each model's training spectra).
- ``choose_winners``: the winner rule (open this file to change it). It never looks at the test
  set: the servable model with the lowest calibration RMSE.

Prediction intervals are split-conformal from the calibration residuals
(``localsoc.uncertainty``).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from localsoc.data.schema import spectra_of
from localsoc.methods import method, method_order, methods, reference_method, servable_families
from localsoc.metrics import all_metrics, delta_rmse, rmse
from localsoc.plots import delta_rmse_figure, observed_estimated_figure
from localsoc.study import site_country, sites_of
from localsoc.study.data import site_data, training_spectra
from localsoc.uncertainty import ApplicabilityDomain, conformal_halfwidth, interval_coverage

METRIC_NAMES = ("rmse", "me", "ccc", "r2", "rpiq")


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


def _estimate_rows(site, label, key, role, ids, observed, estimated, spread) -> pd.DataFrame:
    return pd.DataFrame({
        "site": site, "method": label, "model_key": key, "role": role,
        "sample_id": [str(s) for s in ids], "observed": np.asarray(observed, dtype=np.float64),
        "estimated": np.asarray(estimated, dtype=np.float64),
        "spread": np.asarray(spread, dtype=np.float64),
    })


def predict_sites(
    site_calibration: pd.DataFrame,
    site_test: pd.DataFrame,
    library_spectra: pd.DataFrame,
    selection: pd.DataFrame,
    library_models: dict,
    site_models: dict,
    transfer_models: dict,
    mbl_estimates: pd.DataFrame | None,
) -> pd.DataFrame:
    """Calibration and test estimates of every registered method found for every site.

    Methods are taken in registry order; a method whose model (or MBL estimates) a site does not
    have is left out. Calibration rows have no spread (NaN); so do MBL's test rows.
    """
    collections = {"library": library_models, "site": site_models, "transfer": transfer_models}
    frames = []
    for site in sites_of(site_calibration):
        country = site_country(site_calibration, site)
        X_cal, y_cal, ids_cal = site_data(library_spectra, site_calibration, selection, site)
        test = site_test.loc[site_test["site"] == site]
        X_test = spectra_of(test) if not test.empty else np.empty((0, X_cal.shape[1]))
        y_test = test["soc"].to_numpy(np.float64)
        ids_test = test["sample_id"].astype(str).tolist()
        blank = np.full(len(y_cal), np.nan)
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
                frames.append(_estimate_rows(site, entry.label, key, "calibration", ids_cal,
                                             y_cal, cal.loc[ids_cal, "estimated"], blank))
                frames.append(_estimate_rows(site, entry.label, key, "test", ids_test, y_test,
                                             tested.loc[ids_test, "estimated"],
                                             np.full(len(y_test), np.nan)))
                continue
            model = collections[entry.collection].get(key)
            if model is None:
                continue
            if len(y_test):
                estimate, spread = model.predict(X_test, return_std=True)
            else:
                estimate, spread = np.empty(0), np.empty(0)
            frames.append(_estimate_rows(site, entry.label, key, "calibration", ids_cal, y_cal,
                                         calibration_estimates(model, X_cal, ids_cal), blank))
            frames.append(_estimate_rows(site, entry.label, key, "test", ids_test, y_test,
                                         estimate, spread))
    return pd.concat(frames, ignore_index=True)


def score_sites(
    study_estimates: pd.DataFrame,
    site_calibration: pd.DataFrame,
    site_test: pd.DataFrame,
    library_spectra: pd.DataFrame,
    selection: pd.DataFrame,
    params: dict,
) -> tuple[pd.DataFrame, pd.DataFrame, dict]:
    """(predictions with intervals and domain flags, the scored table, the domains).

    Per site and method: test metrics (NaN without a test set), the calibration RMSE, the
    conformal half-width at ``evaluate.interval_level``, its test coverage, the applicability
    domain of the method's training spectra and the test share outside it; dRMSE against the
    registry's reference method. Rows are in registry order.
    """
    level = float(params["interval_level"])
    predictions, tables, domains = [], [], {}
    for site in sites_of(site_calibration):
        country = site_country(site_calibration, site)
        test = site_test.loc[site_test["site"] == site]
        has_test = not test.empty
        X_test = spectra_of(test) if has_test else None
        site_rows = []
        of_site = study_estimates.loc[study_estimates["site"] == site]
        for label in dict.fromkeys(of_site["method"]):
            entry = method(label)
            rows = of_site.loc[of_site["method"] == label]
            cal = rows.loc[rows["role"] == "calibration"]
            tested = rows.loc[rows["role"] == "test"]
            y_cal = cal["observed"].to_numpy(np.float64)
            cal_estimate = cal["estimated"].to_numpy(np.float64)
            y_test = tested["observed"].to_numpy(np.float64)
            estimate = tested["estimated"].to_numpy(np.float64)
            half = conformal_halfwidth(y_cal, cal_estimate, level)
            domain = ApplicabilityDomain.fit(
                training_spectra(entry.data, library_spectra, site_calibration, selection, site,
                                 country),
                n_components=int(params["domain"]["n_components"]),
                quantile=float(params["domain"]["quantile"]),
            )
            t2, q = domain.statistics(X_test) if has_test else (np.empty(0), np.empty(0))
            inside = (t2 <= domain.t2_limit) & (q <= domain.q_limit)
            lower, upper = estimate - half, estimate + half
            blank = np.full(len(y_cal), np.nan)
            predictions.append(pd.DataFrame({
                "site": site, "method": label, "role": "calibration",
                "sample_id": cal["sample_id"].tolist(), "observed": y_cal,
                "estimated": cal_estimate, "spread": blank, "lower": cal_estimate - half,
                "upper": cal_estimate + half, "t2": blank, "q": blank, "in_domain": True,
            }))
            predictions.append(pd.DataFrame({
                "site": site, "method": label, "role": "test",
                "sample_id": tested["sample_id"].tolist(), "observed": y_test,
                "estimated": estimate, "spread": tested["spread"].to_numpy(np.float64),
                "lower": lower, "upper": upper, "t2": t2, "q": q, "in_domain": inside,
            }))
            site_rows.append({
                "site": site,
                "method": label,
                "family": entry.family,
                "model_key": rows["model_key"].iloc[0],
                "trained_on": entry.data,
                "n_test": len(y_test),
                **(all_metrics(y_test, estimate) if has_test else dict.fromkeys(
                    METRIC_NAMES, np.nan)),
                "cal_rmse": rmse(y_cal, cal_estimate),
                "interval_level": level,
                "interval_halfwidth": half,
                "coverage": interval_coverage(y_test, lower, upper) if has_test else np.nan,
                "mean_width": 2.0 * half,
                "out_of_domain_share": float(np.mean(~inside)) if has_test else np.nan,
            })
            domains.setdefault(site, {})[label] = domain.to_dict()
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


def choose_winners(
    scored: pd.DataFrame,
    domains: dict,
    site_calibration: pd.DataFrame,
) -> tuple[pd.DataFrame, dict]:
    """(the study table with its ``winner`` column, the winners) per site.

    The rule: the servable model (a family the package stage can serve) with the lowest
    calibration RMSE (out-of-fold for models trained on the calibration samples). MBL rows are
    scored the same way, and the winners record when one of them would have scored better. The
    test set is used only to report whether the winner was also best on test.
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
        best = servable.sort_values(["cal_rmse"], kind="stable").iloc[0]
        best_overall = table.sort_values(["cal_rmse"], kind="stable").iloc[0]
        best_test = table.sort_values(["rmse"], kind="stable").iloc[0] if has_test else None
        table["winner"] = table["method"] == best["method"]
        tables.append(table)
        winners[site] = {
            "site": site,
            "country": site_country(site_calibration, site),
            "method": best["method"],
            "model_key": best["model_key"],
            "collection": method(best["method"]).collection,
            "family": best["family"],
            "trained_on": best["trained_on"],
            "cal_rmse": float(best["cal_rmse"]),
            "has_test": has_test,
            "test_metrics": {k: _finite_or_none(best[k]) for k in (
                "rmse", "me", "ccc", "r2", "rpiq", "drmse", "coverage", "mean_width")},
            "interval_level": float(best["interval_level"]),
            "interval_halfwidth": float(best["interval_halfwidth"]),
            "domain": domains[site][best["method"]],
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
) -> tuple[pd.DataFrame, pd.DataFrame, dict]:
    """(predictions, metrics, winners): the evaluate pipeline's three nodes in one call, for
    scripts and tests (``mbl_estimates``: the ``mbl`` stage's output; None: no MBL rows)."""
    estimates = predict_sites(site_calibration, site_test, library_spectra, selection,
                              library_models, site_models, transfer_models, mbl_estimates)
    predictions, scored, domains = score_sites(estimates, site_calibration, site_test,
                                               library_spectra, selection, params)
    metrics, winners = choose_winners(scored, domains, site_calibration)
    return predictions, metrics, winners


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
