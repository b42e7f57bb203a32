"""Report notes on the study's data: the carbon kind of each table, and the library scopes a
site skipped (with the reason the localise stage skipped them)."""

from __future__ import annotations

from collections.abc import Mapping

import pandas as pd

from localsoc.datasets.imported_tables import carbon_kind_warning, carbon_kinds_of
from localsoc.study import scope_problem, scope_rows, site_country, sites_of


def carbon_kind_lines(library_ssl: pd.DataFrame, sites_ssl: pd.DataFrame,
                      imported_libraries: Mapping | None,
                      imported_sites: Mapping | None) -> list[str]:
    """Markdown lines: the declared carbon kind of each imported table the study used, and the
    warning when a site and a library differ (none for tables that were not imported)."""
    libraries = [n for n in sorted(library_ssl["library"].dropna().unique())
                 if imported_libraries is not None and n in imported_libraries]
    sites = [n for n in sorted(sites_ssl["site"].dropna().unique())
             if imported_sites is not None and n in imported_sites]
    if not libraries and not sites:
        return []
    library_kinds = carbon_kinds_of(imported_libraries, libraries)
    site_kinds = carbon_kinds_of(imported_sites, sites)
    shown = [f"{kind} {name}: {value + ' carbon' if value else 'not declared'}"
             for kind, kinds in (("library", library_kinds), ("site", site_kinds))
             for name, value in kinds.items()]
    lines = ["", "Carbon kind of each table (declared at import with `--carbon-kind`): "
             + "; ".join(shown) + "."]
    warning = carbon_kind_warning(library_kinds, site_kinds)
    if warning:
        lines += ["", f"**Warning: {warning}.**"]
    return lines


def skipped_scope_lines(library_ssl: pd.DataFrame, site_calibration: pd.DataFrame,
                        rslocal_selection: pd.DataFrame, study: dict,
                        localise: dict | None) -> list[str]:
    """Markdown lines naming every (site, scope) of ``study.scopes`` without an RS-LOCAL
    selection, with the reason (``scope_problem``): its models were not trained."""
    if localise is None:
        return []
    lines = []
    for site in sites_of(site_calibration):
        country = site_country(site_calibration, site)
        for scope in study["scopes"]:
            done = ((rslocal_selection["site"] == site)
                    & (rslocal_selection["scope"] == scope)).any()
            if done:
                continue
            pool = scope_rows(library_ssl, scope, country)
            problem = scope_problem(scope, country, len(pool), int(localise["k"]))
            lines.append(f"- **{site}: {scope} scope skipped** ({problem or 'no selection'}); "
                         "its models (library model, instance and representation transfer, "
                         "MBL of that scope) were not trained or scored.")
    return ["", *lines] if lines else []


def plan_lines(split_assignment: pd.DataFrame | None) -> list[str]:
    """Markdown lines for each site whose split followed its lab plan (``localsoc plan``):
    how many calibration, validation and test rows came from the plan; and for each site
    without a plan whose random validation samples are also test samples."""
    if split_assignment is None or "plan" not in split_assignment:
        return []
    lines = []
    planned = split_assignment["plan"].fillna("").astype(str)
    for site, rows in split_assignment.loc[planned != ""].groupby("site", sort=True):
        roles = rows.groupby(["plan", "role"]).size()
        calibration = int(roles.get(("calibration", "calibration"), 0))
        validation = int(roles.get(("validation", "validation"), 0))
        in_test = int(roles.get(("validation", "test"), 0))
        tested = int((split_assignment.loc[split_assignment["site"] == site, "role"]
                      == "test").sum())
        head = (f"- {site}: calibration = the {calibration} planned calibration samples of "
                f"its lab plan (Kennard-Stone on all its spectra before the lab, "
                f"data/01_raw/imports/plans/{site}.csv); ")
        if validation:
            lines.append(head + f"validation = the plan's {validation} random validation "
                         f"samples (the validation interval's calibration set); test = {tested} "
                         "rows.")
        else:
            lines.append(head + f"test = {tested} rows, {in_test} of them the plan's random "
                         "validation samples" + (
                             " (too few other labelled rows for split.min_test to keep them "
                             "apart: they also calibrate the validation interval, whose test "
                             "coverage is therefore not measured on them; it covers >= the "
                             "level by the random draw of the validation samples)." if in_test
                             else "."))
    if "validation" in split_assignment:
        shared = split_assignment.loc[(planned == "") & (split_assignment["role"] == "test")
                                      & split_assignment["validation"].fillna(False).astype(bool)]
        for site, rows in shared.groupby("site", sort=True):
            lines.append(f"- {site}: its {len(rows)} random validation samples "
                         "(split.n_validation) are also test samples (too few other labelled "
                         "rows for split.min_test): they calibrate the validation interval, "
                         "whose test coverage is measured on the other test samples only.")
    return ["", "Lab plans and validation samples:", *lines] if lines else []
