"""The human report, answer first: each site's served model and field summary, the contents,
the study (the Table-3 layout, winners, uncertainty), RS-LOCAL, the data and its validation,
and the model cards last. It follows from the code, data and seed alone (no clock time, no
stage times: those are the run log's, ``localsoc.hooks``), so the same inputs give the same
report, byte for byte.

One node per group of sections (``report_header``, ``data_section``, ``localise_section``,
``study_sections``, ``serving_sections``), each returning Markdown lines; ``render_report``
joins them into the Markdown report and ``report_page`` makes it a self-contained HTML page
with the stages' figures embedded (``localsoc.pipelines.report.page``). :func:`write_report`
runs them all in one call, for scripts and tests.
"""

from __future__ import annotations

from collections.abc import Mapping

import pandas as pd

import localsoc
from localsoc.hooks import STAGE_SECONDS_FILE
from localsoc.pipelines.report.notes import carbon_kind_lines, plan_lines, skipped_scope_lines
from localsoc.pipelines.report.page import contents_lines, figure_uris, html_page
from localsoc.pipelines.report.sections import (
    markdown_table,
    methods_section,
    uncertainty_section,
    validation_spread_sentence,
    winners_section,
)
from localsoc.pipelines.report.served import (
    field_summary_section,
    glance_section,
    model_cards_section,
)
from localsoc.provenance import data_version

# re-exported: the report's interval sentence and its served sections
__all__ = ["field_summary_section", "model_cards_section", "validation_spread_sentence"]

DATA_COLUMNS = ("set", "kind", "samples", "quarantined", "calibration", "validation", "test",
                "mean", "sd", "min", "median", "max")


def report_header(library_ssl: pd.DataFrame, sites_ssl: pd.DataFrame, study: dict) -> list[str]:
    """The title, the code and data versions and the run's seed; where the run's times are."""
    return ["# LocalSOC study report", "",
            f"LocalSOC {localsoc.__version__}; data version "
            f"`{data_version(library_ssl, sites_ssl)}` (hash of the validated library and site "
            f"tables); seed {study['seed']}. The exact code and data of every result: "
            f"`dvc.lock`; how long each stage ran: `{STAGE_SECONDS_FILE.as_posix()}` (the run "
            "log; not in this report, so the same code, data and seed give the same report)."]


#: Pages beside the report (paths relative to it): the validate stage writes the Data Docs,
#: `make viz` the pipeline page. Always linked, so the report does not depend on whether
#: `make viz` ran (it is a DVC output: the same inputs must give the same bytes).
PAGES_BESIDE_REPORT = {
    "data_docs/index.html": "Great Expectations Data Docs (the checks of every validated table)",
    "pipeline/index.html": "the pipeline (kedro-viz; written by `make viz`)",
}


def data_section(data_summary: pd.DataFrame, validation_report: dict,
                 library_ssl: pd.DataFrame, sites_ssl: pd.DataFrame,
                 imported_libraries: Mapping | None = None,
                 imported_sites: Mapping | None = None,
                 split_assignment: pd.DataFrame | None = None) -> list[str]:
    """The data summary, what validation kept, links to the pages beside the report
    (:data:`PAGES_BESIDE_REPORT`), each imported table's carbon kind and the sites whose split
    followed a lab plan."""
    out = ["", "## Data and validation", "",
           markdown_table(data_summary[[c for c in DATA_COLUMNS if c in data_summary]],
                          "{:.2f}")]
    for table in validation_report.get("tables", []):
        out.append(f"\nValidation of `{table['table']}`: {table['rows_in']} rows in, "
                   f"{table['rows_kept']} kept, {table['rows_quarantined']} quarantined "
                   "(reasons in data/02_intermediate/*_quarantine.csv).")
    out.append("\nPages beside this report: " + "; ".join(
        f"[{title}]({page})" for page, title in PAGES_BESIDE_REPORT.items()) + ".")
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
    for site, scope in sorted({(r["site"], r["scope"]) for r in rows}):
        out += ["", f"![{site} {scope} SOC](figures/localise/{site}_{scope}_soc_density.png) "
                f"![{site} {scope} PCA](figures/localise/{site}_{scope}_pca.png)", "",
                f"*Figure: {site}, {scope} library. Left: SOC density of the library pool, the "
                "k library samples RS-LOCAL selected and the site's n calibration samples. "
                "Right: the same samples on the library's first two principal components "
                "(library thinned to localise.max_library_points).*"]
    return out


def study_sections(study_metrics: pd.DataFrame, study_table: str, study_winners: dict,
                   transfer_depths: pd.DataFrame, study: dict) -> list[str]:
    """The models on the test sets, the winners, the intervals and domain
    (``localsoc.pipelines.report.sections``)."""
    return (methods_section(study_metrics, study_table, study["seed"])
            + winners_section(study_winners)
            + uncertainty_section(study_metrics, transfer_depths))


def serving_sections(serving_manifest, study_predictions: pd.DataFrame | None,
                     sites_ssl: pd.DataFrame, study_metrics: pd.DataFrame
                     ) -> tuple[list[str], list[str]]:
    """(the report's first sections: each site at a glance and the field summary; the model
    cards) of the packaged bundle (a ``ServingBundle`` or its manifest, read back from the
    store; None: not packaged)."""
    manifest = getattr(serving_manifest, "manifest", serving_manifest)
    return ([*glance_section(manifest, study_metrics), "",
             *field_summary_section(manifest, study_predictions, sites_ssl)],
            ["", *model_cards_section(manifest)])


def render_report(header: list[str], answer: list[str], data: list[str], localise: list[str],
                  study: list[str], serving: list[str]) -> str:
    """The Markdown report, answer first: the header, each site at a glance and its field
    summary, the contents, the study, RS-LOCAL, the data, the model cards. Figures are linked
    relative to data/08_reporting."""
    body = [*study, *localise, *data, *serving]
    contents = contents_lines([*answer, *body])
    return "\n".join([*header, "", *answer, "", *contents, *body]) + "\n"


def report_page(study_report: str, localise_figures: Mapping | None,
                study_figures: Mapping | None) -> str:
    """The report as one self-contained HTML page, the figures (``{file name: bytes}`` of
    the localise and evaluate stages' figure folders) embedded."""
    return html_page(study_report, figure_uris({"figures/localise": localise_figures or {},
                                                "figures/study": study_figures or {}}))


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
    study: dict,
    study_predictions: pd.DataFrame | None = None,
    serving_manifest=None,
    localise: dict | None = None,
    imported_libraries: Mapping | None = None,
    imported_sites: Mapping | None = None,
    split_assignment: pd.DataFrame | None = None,
    figures: tuple[Mapping, Mapping] | None = None,
) -> tuple[str, str]:
    """(Markdown, HTML): the report pipeline's nodes in one call, for scripts and tests.

    ``study`` is ``params:study`` (the run's seed is printed). ``serving_manifest``: the
    packaged bundle; with ``study_predictions`` it gives the field summary and the model cards.
    ``localise`` (its ``k``) states why a scope was skipped; the imported-table mappings give
    each table's carbon kind; ``split_assignment`` says which sites' splits followed a lab
    plan; ``figures``: (localise, study) figure files to embed in the HTML."""
    answer, cards = serving_sections(serving_manifest, study_predictions, sites_ssl,
                                     study_metrics)
    text = render_report(
        report_header(library_ssl, sites_ssl, study), answer,
        data_section(data_summary, validation_report, library_ssl, sites_ssl,
                     imported_libraries, imported_sites, split_assignment),
        localise_section(rslocal_selection, rslocal_history, site_calibration, library_ssl,
                         study, localise),
        study_sections(study_metrics, study_table, study_winners, transfer_depths, study),
        cards)
    return text, report_page(text, *(figures or (None, None)))

