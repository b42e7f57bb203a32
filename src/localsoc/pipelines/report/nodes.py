"""The human report: data, RS-LOCAL, the Table-3 layout, winners, uncertainty, the field
summary, the model cards, times, versions.

One node per group of sections (``report_header``, ``data_section``, ``localise_section``,
``study_sections``, ``serving_sections``), each returning Markdown lines, and ``render_report``
joining them with the run times into Markdown and HTML. :func:`write_report` runs them all in
one call, for scripts and tests.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping

import numpy as np
import pandas as pd

from localsoc.field import METHOD as FIELD_METHOD
from localsoc.field import optional_columns, site_field_summary
from localsoc.pipelines.report.notes import carbon_kind_lines, plan_lines, skipped_scope_lines
from localsoc.pipelines.report.sections import (
    markdown_table,
    methods_section,
    uncertainty_section,
    validation_spread_sentence,
    winners_section,
)
from localsoc.provenance import code_version, data_version
from localsoc.serving.card import card_markdown, site_card

__all__ = ["validation_spread_sentence"]  # re-exported: the report's interval sentence

HTML_PAGE = (
    "<!doctype html><html><head><meta charset='utf-8'><title>LocalSOC report</title>"
    "<style>body{font-family:sans-serif;max-width:1100px;margin:auto}table{border-collapse:"
    "collapse}td,th{border:1px solid #ccc;padding:2px 6px}img{max-width:48%}</style>"
    "</head><body>{html}</body></html>")
DATA_COLUMNS = ("set", "kind", "samples", "quarantined", "calibration", "validation", "test",
                "mean", "sd", "min", "median", "max")


def report_header(library_ssl: pd.DataFrame, sites_ssl: pd.DataFrame, study: dict) -> list[str]:
    """The title, the time, the code and data versions and the run's seed."""
    return ["# LocalSOC study report", "",
            f"Generated {dt.datetime.now(dt.UTC):%Y-%m-%d %H:%M} UTC. Code "
            f"`{code_version()}`; data version `{data_version(library_ssl, sites_ssl)}` "
            f"(hash of the validated library and site tables); seed {study['seed']}."]


def data_section(data_summary: pd.DataFrame, validation_report: dict,
                 library_ssl: pd.DataFrame, sites_ssl: pd.DataFrame,
                 imported_libraries: Mapping | None = None,
                 imported_sites: Mapping | None = None,
                 split_assignment: pd.DataFrame | None = None) -> list[str]:
    """The data summary, what validation kept, each imported table's carbon kind and the
    sites whose split followed a lab plan."""
    out = ["", "## Data", "",
           markdown_table(data_summary[[c for c in DATA_COLUMNS if c in data_summary]],
                          "{:.2f}")]
    for table in validation_report.get("tables", []):
        out.append(f"\nValidation of `{table['table']}`: {table['rows_in']} rows in, "
                   f"{table['rows_kept']} kept, {table['rows_quarantined']} quarantined "
                   "(reasons in data/02_intermediate/*_quarantine.csv).")
    return (out + carbon_kind_lines(library_ssl, sites_ssl, imported_libraries, imported_sites)
            + plan_lines(split_assignment))


def localise_section(rslocal_selection: pd.DataFrame, rslocal_history: pd.DataFrame,
                     site_calibration: pd.DataFrame, library_ssl: pd.DataFrame, study: dict,
                     localise: dict | None = None) -> list[str]:
    """Per site and scope the RS-LOCAL selection's size, iterations and SOC mean, the scopes
    skipped (with ``localise``, their reason) and the figures."""
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
    out = ["", "## Instance transfer (RS-LOCAL)", "",
           markdown_table(pd.DataFrame(rows), "{:.2f}") if rows else "No RS-LOCAL selection."]
    out += skipped_scope_lines(library_ssl, site_calibration, rslocal_selection, study,
                               localise)
    out.append("")
    for site, scope in sorted({(r["site"], r["scope"]) for r in rows}):
        out.append(f"![{site} {scope} SOC](figures/localise/{site}_{scope}_soc_density.png) "
                   f"![{site} {scope} PCA](figures/localise/{site}_{scope}_pca.png)")
    return out


def study_sections(study_metrics: pd.DataFrame, study_table: str, study_winners: dict,
                   transfer_depths: pd.DataFrame, study: dict) -> list[str]:
    """The models on the test sets, the winners, the intervals and domain
    (``localsoc.pipelines.report.sections``)."""
    return (methods_section(study_metrics, study_table, study["seed"])
            + winners_section(study_winners)
            + uncertainty_section(study_metrics, transfer_depths))


def serving_sections(serving_manifest, study_predictions: pd.DataFrame | None,
                     sites_ssl: pd.DataFrame) -> list[str]:
    """The field summary and the model cards of the packaged bundle (a ``ServingBundle`` or
    its manifest, read back from the store; None: not packaged)."""
    manifest = getattr(serving_manifest, "manifest", serving_manifest)
    return (["", *field_summary_section(manifest, study_predictions, sites_ssl)]
            + ["", *model_cards_section(manifest)])


def run_time_section(stage_seconds: dict) -> list[str]:
    out = ["", "## Run time per stage", ""]
    if not stage_seconds:
        return out + ["No stage times recorded (run through `localsoc run` or `kedro run`)."]
    times = pd.DataFrame({"stage": list(stage_seconds), "seconds": list(stage_seconds.values())})
    return out + [markdown_table(times, "{:.1f}"),
                  f"\nTotal of the recorded stages: {sum(stage_seconds.values()):.1f} s."]


def render_report(header: list[str], data: list[str], localise: list[str], study: list[str],
                  serving: list[str], stage_seconds: dict) -> tuple[str, str]:
    """The report as Markdown and as HTML, from its sections and the stage times. Figures are
    linked relative to data/08_reporting."""
    import markdown

    text = "\n".join([*header, *data, *localise, *study, *serving,
                      *run_time_section(stage_seconds)]) + "\n"
    return text, HTML_PAGE.replace("{html}", markdown.markdown(text, extensions=["tables"]))


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
    """(Markdown, HTML): the report pipeline's nodes in one call, for scripts and tests.

    ``study`` is ``params:study`` (the run's seed is printed). ``serving_manifest``: the
    packaged bundle; with ``study_predictions`` it gives the field summary and the model cards.
    ``localise`` (its ``k``) states why a scope was skipped; the imported-table mappings give
    each table's carbon kind; ``split_assignment`` says which sites' splits followed a lab
    plan."""
    return render_report(
        report_header(library_ssl, sites_ssl, study),
        data_section(data_summary, validation_report, library_ssl, sites_ssl,
                     imported_libraries, imported_sites, split_assignment),
        localise_section(rslocal_selection, rslocal_history, site_calibration, library_ssl,
                         study, localise),
        study_sections(study_metrics, study_table, study_winners, transfer_depths, study),
        serving_sections(serving_manifest, study_predictions, sites_ssl), stage_seconds)


def _site_field_rows(site: str, entry: dict, tested: pd.DataFrame,
                     sites_ssl: pd.DataFrame) -> tuple[list[dict], list[str]]:
    """(rows, notes) of one served site's field summary from its test rows."""
    notes = []
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
    rows = []
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
    return rows, notes


FIELD_COLUMNS = {
    "n_samples": "N", "soc_percent": "SOC % (mean)", "mean_estimate": "mean estimate",
    "bias_correction": "bias correction", "sampling_se": "sampling s.e.",
    "model_se": "model s.e.", "stock_t_ha": "stock t C/ha", "stock_lower": "stock lower",
    "stock_upper": "stock upper"}


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
    out += [f"Method: {FIELD_METHOD}. The samples summarised are each site's test samples, "
            "as if scanned but not sent to the lab; their estimates are the served model's. "
            "'observed mean (check)' is the mean lab value of the same samples, not used "
            "by the summary.", ""]
    rows, notes = [], []
    for site, entry in sorted(manifest["sites"].items()):
        tested = study_predictions.loc[(study_predictions["site"] == site)
                                       & (study_predictions["method"] == entry["method"])
                                       & (study_predictions["role"] == "test")]
        if len(tested) < 2:
            notes.append(f"{site}: fewer than 2 test samples, no field summary.")
            continue
        site_rows, site_notes = _site_field_rows(site, entry, tested, sites_ssl)
        rows += site_rows
        notes += site_notes
    if rows:
        level = float(next(iter(manifest["sites"].values()))["interval"]["level"])
        out.append(markdown_table(pd.DataFrame(rows).rename(columns={
            **FIELD_COLUMNS, "lower": f"{level:.0%} lower", "upper": f"{level:.0%} upper"})))
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
