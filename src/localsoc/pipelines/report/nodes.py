"""The human report: data, RS-LOCAL, the Table-3 layout, winners, uncertainty, the field
summary, the model cards, times, versions."""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping

import numpy as np
import pandas as pd

from localsoc.field import METHOD as FIELD_METHOD
from localsoc.field import optional_columns, site_field_summary
from localsoc.methods import methods, reference_method
from localsoc.pipelines.report.notes import carbon_kind_lines, plan_lines, skipped_scope_lines
from localsoc.provenance import code_version, data_version
from localsoc.serving.card import card_markdown, site_card
from localsoc.uncertainty import split_conformal_coverage_law


def validation_spread_sentence(study_metrics: pd.DataFrame) -> str:
    """'; <how one site's realised coverage varies>' for the sites served the validation
    interval, one clause per validation count m (``split_conformal_coverage_law``); empty when
    none is."""
    if not {"interval", "n_validation", "interval_level"} <= set(study_metrics):
        return ""
    served = study_metrics.loc[study_metrics["interval"] == "validation"]
    clauses = []
    for (m, level), rows in served.groupby(["n_validation", "interval_level"], sort=True):
        sites = ", ".join(sorted(set(rows["site"].astype(str))))
        clauses.append(f"{sites}: " + split_conformal_coverage_law(int(m), float(level))
                       .sentence())
    return "; " + "; ".join(clauses) if clauses else ""


def _table(frame: pd.DataFrame, floats: str = "{:.3f}") -> str:
    header = "| " + " | ".join(map(str, frame.columns)) + " |"
    rule = "|" + "---|" * len(frame.columns)
    rows = []
    for record in frame.itertuples(index=False):
        cells = []
        for value in record:
            if isinstance(value, float | np.floating):
                cells.append("" if np.isnan(value) else floats.format(value))
            else:
                cells.append(str(value))
        rows.append("| " + " | ".join(cells) + " |")
    return "\n".join([header, rule, *rows])


def write_report(
    data_summary: pd.DataFrame,
    validation_report: dict,
    rslocal_selection: pd.DataFrame,
    rslocal_history: pd.DataFrame,
    site_calibration: pd.DataFrame,
    study_metrics: pd.DataFrame,
    study_winners: dict,
    study_table: str,
    transfer_depths: pd.DataFrame,
    library_ssl: pd.DataFrame,
    sites_ssl: pd.DataFrame,
    stage_seconds: dict,
    study: dict,
    study_predictions: pd.DataFrame | None = None,
    serving_manifest=None,
    localise: dict | None = None,
    imported_libraries: Mapping | None = None,
    imported_sites: Mapping | None = None,
    split_assignment: pd.DataFrame | None = None,
) -> tuple[str, str]:
    """Markdown report (and the same as HTML). Figures are linked relative to data/08_reporting.

    ``study`` is ``params:study`` (the run's seed is printed). ``serving_manifest``: the
    packaged bundle (a ``ServingBundle`` or its manifest), read back from the store; with
    ``study_predictions`` it gives the field summary and the model cards
    (``field_summary_section``, ``model_cards_section``). ``localise`` (its ``k``) states
    why a scope was skipped; the imported-table mappings give each table's carbon kind;
    ``split_assignment`` says which sites' splits followed a lab plan."""
    import markdown

    seed = study["seed"]
    out = ["# LocalSOC study report", ""]
    out.append(f"Generated {dt.datetime.now(dt.UTC):%Y-%m-%d %H:%M} UTC. Code "
               f"`{code_version()}`; data version `{data_version(library_ssl, sites_ssl)}` "
               f"(hash of the validated library and site tables); seed {seed}.")
    out += ["", "## Data", ""]
    columns = [c for c in ("set", "kind", "samples", "quarantined", "calibration",
                           "validation", "test", "mean", "sd", "min", "median", "max")
               if c in data_summary]
    out.append(_table(data_summary[columns], "{:.2f}"))
    for table in validation_report.get("tables", []):
        out.append(f"\nValidation of `{table['table']}`: {table['rows_in']} rows in, "
                   f"{table['rows_kept']} kept, {table['rows_quarantined']} quarantined "
                   "(reasons in data/02_intermediate/*_quarantine.csv).")
    out += carbon_kind_lines(library_ssl, sites_ssl, imported_libraries, imported_sites)
    out += plan_lines(split_assignment)

    out += ["", "## Instance transfer (RS-LOCAL)", ""]
    rows = []
    for (site, scope), chosen in rslocal_selection.groupby(["site", "scope"], sort=True):
        history = rslocal_history.loc[(rslocal_history["site"] == site)
                                      & (rslocal_history["scope"] == scope)]
        local = site_calibration.loc[site_calibration["site"] == site, "soc"]
        rows.append({"site": site, "scope": scope, "k": len(chosen),
                     "iterations": len(history),
                     "library pool": int(history["pool_size"].iloc[0]) if len(history) else 0,
                     "selected SOC mean": chosen["soc"].mean(),
                     "local SOC mean": local.mean()})
    out.append(_table(pd.DataFrame(rows), "{:.2f}") if rows else "No RS-LOCAL selection.")
    out += skipped_scope_lines(library_ssl, site_calibration, rslocal_selection, study,
                               localise)
    out.append("")
    for site, scope in sorted({(r["site"], r["scope"]) for r in rows}):
        out.append(f"![{site} {scope} SOC](figures/localise/{site}_{scope}_soc_density.png) "
                   f"![{site} {scope} PCA](figures/localise/{site}_{scope}_pca.png)")

    reference = reference_method().label
    level_pct = f"{100 * float(study_metrics['interval_level'].iloc[0]):.0f} %"
    out += ["", "## Models on each site's test set (layout of the paper's Table 3)", "",
            "RMSE, ME (estimate minus observed), Lin's CCC and RMSE-based figures in SOC %; "
            f"dRMSE against {reference}. 'nested cal. RMSE' is the out-of-fold RMSE on the n "
            "calibration samples with every label-driven choice (RS-LOCAL selection, PLSR "
            "components) redone inside each outer fold; it picks the winner. 'un-nested' is the "
            "same models' own out-of-fold RMSE (optimistic where RS-LOCAL chose library samples "
            f"for those labels). Coverage and width are those of the served {level_pct} "
            "interval on the test set.", "", study_table]
    for entry in methods():  # the paper's figure beside ours, where the registry gives one
        if entry.paper_drmse is None:
            continue
        rows = study_metrics.loc[study_metrics["method"] == entry.label]
        drmse = rows["drmse"]
        if len(drmse):
            out.append(f"**{entry.label} mean dRMSE against {reference} over {len(drmse)} sites: "
                       f"{drmse.mean():+.1f} %** (seed {seed}; the paper reports "
                       f"{entry.paper_drmse:+.1f} %). Per site: "
                       + ", ".join(f"{s} {v:+.1f} %" for s, v in zip(rows["site"], drmse,
                                                                   strict=True)) + ".")
    out += ["", "![dRMSE per method and site](figures/study/drmse_by_method.png)", ""]

    out += ["## Winners (chosen without the test set)", ""]
    if not any(w.get("has_test", True) for w in study_winners.values()):
        out += ["No test set (split.no_test): every labelled sample calibrated; the figures "
                "below are cross-validated only.", ""]
    winners = pd.DataFrame([
        {"site": site, "winner": w["method"], "nested cal. RMSE": w["cal_rmse"],
         "s.e.": w.get("cal_rmse_se", np.nan),
         "lowest nested RMSE": w.get("lowest_cal_rmse", {}).get("method", w["method"]),
         "validation RMSE": (np.nan if w.get("val_rmse") is None else w["val_rmse"]),
         "test RMSE": w["test_metrics"]["rmse"],
         "nested / test": (w["cal_rmse"] / w["test_metrics"]["rmse"]
                           if w["test_metrics"]["rmse"] else np.nan),
         "rule's nested RMSE": (np.nan if w.get("cal_rmse_selection") is None
                                else w["cal_rmse_selection"]),
         "picks per fold": ", ".join(w.get("selection_picks", [])),
         "best on test": w["best_on_test"],
         "winner was best on test": {True: "yes", False: "no"}.get(
             w["winner_was_best_on_test"], "no test set"),
         "test coverage": w["test_metrics"]["coverage"],
         "mean width": w["test_metrics"]["mean_width"]}
        for site, w in sorted(study_winners.items())
    ])
    out.append(_table(winners))
    rule = next(iter(study_winners.values()), {}).get("rule")
    if rule:
        out.append(f"\nRule: {rule}")
        out.append(
            "\n'rule's nested RMSE' scores the winner rule itself: in each outer fold the rule "
            "picks a model from the other folds' nested estimates, and that fold's samples are "
            "scored by the pick ('picks per fold'). It pays for choosing the lowest of a dozen "
            "noisy RMSEs, which the winner's own nested RMSE does not.")
    out.append(
        "\nWhat remains optimistic: the nested estimates redo the RS-LOCAL selection, the "
        "PLSR components and a transfer's base fold in every outer fold, but keep the CNN "
        "architecture (the best of the search's trials on all n), a transfer model's frozen "
        "depth and MBL's neighbourhood size as chosen on all n; and the winner is the minimum over a dozen "
        "noisy estimates from n samples (an RMSE from 30 samples has a standard error of about "
        "13 %). Kennard-Stone puts the spectral extremes in the calibration set, so a nested "
        "calibration RMSE above the test RMSE is expected; see the per-method ratio below.")
    out += ["", "![winners: estimated vs observed](figures/study/winners_observed_estimated.png)",
            ""]

    out += ["## Uncertainty and applicability domain", ""]
    interval = (str(study_metrics["interval"].iloc[0]) if "interval" in study_metrics
                else "plain")
    spread = validation_spread_sentence(study_metrics)
    out.append(
        f"Served interval: **{interval}** at {level_pct}, lower bound clipped at 0. validation: "
        "split conformal on each site's validation samples (random samples of the field, "
        "never trained on and not used to choose the winner): estimate +- the "
        "ceil((m + 1)(1 - alpha))-th smallest validation |residual| of the served model; "
        "coverage >= the level for a new random sample of the same field (marginally over "
        f"the validation draw{spread}); a site "
        "without validation samples falls back to the interval its rows name. The others "
        "come from the nested out-of-fold calibration residuals. cv_plus: CV+ (Barber et al. 2021) "
        "from each outer-fold model's estimate of the spectrum: a method with a nested "
        "procedure is represented and served by its outer-fold ensemble (the K models whose "
        "residuals the interval uses; 'RMSE full refit' below is the model refitted on all n, "
        "for comparison), a model that never saw the n by itself (split conformal); guarantee "
        ">= 1 - 2 alpha for exchangeable data. normalised: estimate +- q sigma(x) with a "
        "difficulty sigma known without the label (Lei et al. 2018); plain: one conformal "
        "half-width. Kennard-Stone calibration samples are the spectral extremes, not "
        "exchangeable with the test samples, so every interval is judged by its coverage on "
        "test. Coverage and mean width (SOC %) per interval:")
    out.append("")
    columns = {"site": "site", "method": "method", "cal_rmse": "nested cal. RMSE",
               "cal_rmse_unnested": "un-nested", "val_rmse": "validation RMSE",
               "rmse": "test RMSE",
               "rmse_full_refit": "RMSE full refit"}
    for name in ("validation", "cv_plus", "normalised", "plain", "normalised_cv_plus"):
        if f"coverage_{name}" in study_metrics:
            columns[f"coverage_{name}"] = f"cov. {name}"
            columns[f"width_{name}"] = f"width {name}"
    columns["out_of_domain_share"] = "test share out of domain"
    unc = study_metrics[[c for c in columns if c in study_metrics]].copy()
    if {"cal_rmse", "rmse"} <= set(unc):
        after = "rmse_full_refit" if "rmse_full_refit" in unc else "rmse"
        unc.insert(unc.columns.get_loc(after) + 1, "nested / test",
                   unc["cal_rmse"] / unc["rmse"])
    out.append(_table(unc.rename(columns=columns)))
    if len(transfer_depths):
        out += ["", "## Representation transfer: CV RMSE per frozen depth", ""]
        out.append(_table(transfer_depths))

    manifest = getattr(serving_manifest, "manifest", serving_manifest)
    out += ["", *field_summary_section(manifest, study_predictions, sites_ssl)]
    out += ["", *model_cards_section(manifest)]

    out += ["", "## Run time per stage", ""]
    if stage_seconds:
        times = pd.DataFrame({"stage": list(stage_seconds), "seconds": list(stage_seconds.values())})
        out.append(_table(times, "{:.1f}"))
        out.append(f"\nTotal of the recorded stages: {sum(stage_seconds.values()):.1f} s.")
    else:
        out.append("No stage times recorded (run through `localsoc run` or `kedro run`).")
    text = "\n".join(out) + "\n"
    html = markdown.markdown(text, extensions=["tables"])
    page = (f"<!doctype html><html><head><meta charset='utf-8'><title>LocalSOC report</title>"
            "<style>body{font-family:sans-serif;max-width:1100px;margin:auto}table{border-collapse:"
            "collapse}td,th{border:1px solid #ccc;padding:2px 6px}img{max-width:48%}</style>"
            f"</head><body>{html}</body></html>")
    return text, page


def field_summary_section(manifest: dict | None, study_predictions: pd.DataFrame | None,
                          sites_ssl: pd.DataFrame) -> list[str]:
    """The report's field summary: per served site, the mean SOC of its test samples (the
    site's scanned samples without lab values in this study) from the served model's estimates
    only (``localsoc.field.site_field_summary``, per stratum and with the SOC stock when the
    site table has those columns). The observed mean of the same samples is shown beside it as
    a check; it is not used to compute anything."""
    out = ["## Field summary", ""]
    if not manifest or study_predictions is None:
        return out + ["No packaged bundle was given: run the package stage before the report."]
    out.append(f"Method: {FIELD_METHOD}. The samples summarised are each site's test samples, "
               "as if scanned but not sent to the lab; their estimates are the served model's. "
               "'observed mean (check)' is the mean lab value of the same samples, not used "
               "by the summary.")
    out.append("")
    rows, notes = [], []
    for site, entry in sorted(manifest["sites"].items()):
        tested = study_predictions.loc[(study_predictions["site"] == site)
                                       & (study_predictions["method"] == entry["method"])
                                       & (study_predictions["role"] == "test")]
        if len(tested) < 2:
            notes.append(f"{site}: fewer than 2 test samples, no field summary.")
            continue
        ids = tested["sample_id"].astype(str).to_numpy()
        interval = entry.get("interval", {})
        shared = (set(map(str, interval.get("calibration_sample_ids", []))) & set(ids)
                  if interval.get("method") == "validation" else set())
        if shared:
            notes.append(f"{site}: {len(shared)} of the {len(ids)} summarised samples are the "
                         "validation samples whose residuals set the bias correction and the "
                         "model error, so their observed mean is not an independent check.")
        site_rows = sites_ssl.loc[sites_ssl["site"] == site]  # ids may repeat across sites
        site_rows = site_rows.assign(sample_id=site_rows["sample_id"].astype(str))
        extra = site_rows.drop_duplicates("sample_id").set_index("sample_id").reindex(ids)
        summaries = site_field_summary(entry, tested["estimated"].to_numpy(np.float64),
                                       **optional_columns(extra.reset_index()))
        observed = tested["observed"].to_numpy(np.float64)
        strata = (extra["stratum"].astype("string").str.strip().to_numpy()
                  if "stratum" in extra else None)
        for summary in summaries:
            mask = (np.ones(len(ids), bool) if summary.stratum == "all" else
                    pd.Series(strata, dtype="string").eq(summary.stratum).fillna(False)
                    .to_numpy(bool))
            row = {"site": site, **summary.row(),
                   "observed mean (check)": float(np.nanmean(observed[mask]))}
            row.pop("level")
            rows.append(row)
            if summary.stock is None and summary.stratum == "all":
                notes.append(f"{site}: no SOC stock ({summary.stock_note}).")
    if rows:
        level = float(next(iter(manifest["sites"].values()))["interval"]["level"])
        table = pd.DataFrame(rows).rename(columns={
            "n_samples": "N", "soc_percent": "SOC % (mean)", "lower": f"{level:.0%} lower",
            "upper": f"{level:.0%} upper", "mean_estimate": "mean estimate",
            "bias_correction": "bias correction", "sampling_se": "sampling s.e.",
            "model_se": "model s.e.", "stock_t_ha": "stock t C/ha",
            "stock_lower": "stock lower", "stock_upper": "stock upper"})
        out.append(_table(table))
    if notes:
        out += ["", *notes]
    return out


def model_cards_section(manifest: dict | None) -> list[str]:
    """One model card per served site (``localsoc.serving.card``), from the bundle's
    manifest only; the same card ``GET /sites/{site}/card`` serves."""
    out = ["## Model cards", ""]
    if not manifest:
        return out + ["No packaged bundle was given: run the package stage before the report."]
    for site in sorted(manifest["sites"]):
        out.append(card_markdown(site_card(manifest, site), "###"))
    return out
