"""Validate the canonical SSL tables with Great Expectations; quarantine failing rows with reasons.

Rows in = rows kept + rows quarantined, always. A table whose quarantined share exceeds
``max_quarantine_share`` stops the run with a summary of what is wrong.
"""

from __future__ import annotations

from collections import defaultdict

import numpy as np
import pandas as pd

from localsoc.data.schema import (
    IMPORT_PROBLEM,
    Grid,
    band_columns,
    band_wavelength,
    check_table,
)
from localsoc.expectations import result_summary, row_view, run_suite, ssl_suite
from localsoc.pipelines.validate.data_docs import data_docs_site

QUARANTINE_COLUMNS = ("source_row", "quarantine_reason", "failed_expectations")


def check_grid(frame: pd.DataFrame, grid: Grid, name: str) -> None:
    """The band columns must be exactly the project grid (importers resample to it)."""
    have = band_columns(frame)
    want = grid.columns
    missing = [c for c in want if c not in set(have)]
    extra = [c for c in have if c not in set(want)]
    if missing or extra:
        parts = []
        if missing:
            nm = [band_wavelength(c) for c in missing]
            parts.append(f"{len(missing)} grid band(s) missing ({min(nm):g}-{max(nm):g} nm)")
        if extra:
            nm = [band_wavelength(c) for c in extra]
            parts.append(f"{len(extra)} band(s) off the grid ({min(nm):g}-{max(nm):g} nm)")
        raise ValueError(
            f"{name}: the spectra are not on the project grid "
            f"{grid.start_nm:g}-{grid.stop_nm:g} nm every {grid.step_nm:g} nm: "
            + "; ".join(parts)
            + ". Import the table with localsoc.data.importers (it resamples to the grid), or "
            "declare the grid the data has under 'grid' in the parameters."
        )


def _row_details(frame: pd.DataFrame, view: pd.DataFrame, column: str, rows: list[int]) -> dict:
    """A short, specific detail per failing row (which bands, which value)."""
    details: dict[int, str] = {}
    if column in ("bands_non_finite", "reflectance_min", "reflectance_max"):
        bands = band_columns(frame)
        values = frame[bands].to_numpy(dtype=np.float64)
        for row in rows:
            spectrum = values[row]
            if column == "bands_non_finite":
                bad = [bands[i] for i in np.flatnonzero(~np.isfinite(spectrum))]
                shown = ", ".join(bad[:5]) + (" ..." if len(bad) > 5 else "")
                details[row] = f"{len(bad)} band(s): {shown}"
            else:
                where = np.nanargmin(spectrum) if column == "reflectance_min" else np.nanargmax(
                    spectrum
                )
                details[row] = f"{spectrum[where]:.4g} at {bands[where]}"
    elif column == IMPORT_PROBLEM:
        for row in rows:
            details[row] = str(view.at[row, column])
    elif column in view.columns:
        for row in rows:
            value = view.at[row, column]
            details[row] = f"{column} = {value:.6g}" if isinstance(value, float) else (
                f"{column} = {value!r}"
            )
    return details


def _failures(frame: pd.DataFrame, view: pd.DataFrame, specs: list,
              results: list) -> tuple[dict[int, list[str]], dict[int, list[str]], list, list]:
    """(reasons per failing row, failed expectations per failing row, a summary per
    expectation, per expectation the first failing row's reason in full)."""
    reasons: dict[int, list[str]] = defaultdict(list)
    failed: dict[int, list[str]] = defaultdict(list)
    per_expectation, examples = [], []
    for spec, outcome in zip(specs, results, strict=True):
        rows = [int(i) for i in (outcome.result.get("unexpected_index_list") or [])]
        column = spec.kwargs.get("column", "")
        details = _row_details(frame, view, column, rows)
        for row in rows:
            text = spec.reason if row not in details else f"{spec.reason} [{details[row]}]"
            reasons[row].append(text)
            failed[row].append(f"{spec.type}({column})")
        examples.append(f"row {rows[0]}: {reasons[rows[0]][-1]}" if rows else "")
        per_expectation.append({"expectation": spec.type, "column": column,
                                "success": bool(outcome.success), "rows_failed": len(rows),
                                "reason": spec.reason, "result": result_summary(outcome)})
    return reasons, failed, per_expectation, examples


def _quarantine(frame: pd.DataFrame, reasons: dict, failed: dict) -> tuple[pd.DataFrame,
                                                                            pd.DataFrame]:
    """(kept rows, quarantined rows with their source row, reasons and failed expectations)."""
    bad_rows = np.array(sorted(reasons), dtype=np.int64)
    keep_mask = np.ones(len(frame), dtype=bool)
    keep_mask[bad_rows] = False
    kept = frame.loc[keep_mask].drop(columns=[IMPORT_PROBLEM], errors="ignore")
    quarantine = frame.loc[~keep_mask].copy()
    quarantine.insert(0, "source_row", bad_rows)
    quarantine.insert(1, "quarantine_reason", ["; ".join(reasons[r]) for r in bad_rows])
    quarantine.insert(2, "failed_expectations", [", ".join(failed[r]) for r in bad_rows])
    return kept.reset_index(drop=True), quarantine.reset_index(drop=True)


def _check_share(name: str, n_rows: int, n_bad: int, limit: float, per_expectation: list,
                 examples: list) -> None:
    """ValueError when the table is empty or more than ``limit`` of its rows fail."""
    if n_rows == 0:
        raise ValueError(f"{name}: the table is empty; nothing to validate")
    share = n_bad / n_rows
    if share > limit:
        worst = sorted(range(len(per_expectation)),
                       key=lambda i: -per_expectation[i]["rows_failed"])[:3]
        summary = "; ".join(
            f"{per_expectation[i]['rows_failed']} row(s), e.g. {examples[i]}"
            for i in worst if per_expectation[i]["rows_failed"]
        )
        raise ValueError(
            f"{name}: {n_bad} of {n_rows} rows ({share:.0%}) fail validation, more than "
            f"the allowed {limit:.0%} (validate.max_quarantine_share). Most common problems: "
            f"{summary}. Fix the source or its import declarations and run again."
        )


def validate_table(
    frame: pd.DataFrame, params: dict, grid_params: dict, *, role: str, name: str
) -> tuple[pd.DataFrame, pd.DataFrame, dict]:
    """Validate one canonical table with the Great Expectations suite of
    ``localsoc.expectations.ssl_suite``; return (kept rows, quarantined rows with reasons,
    report)."""
    check_table(frame, name)
    check_grid(frame, Grid.from_params(grid_params), name)
    frame = frame.reset_index(drop=True)
    specs = ssl_suite(params, role=role)
    view = row_view(frame)
    success, results = run_suite(view, specs, name)
    reasons, failed, per_expectation, examples = _failures(frame, view, specs, results)
    kept, quarantine = _quarantine(frame, reasons, failed)
    limit = float(params["max_quarantine_share"])
    report = {
        "table": name,
        "role": role,
        "rows_in": int(len(frame)),
        "rows_kept": int(len(kept)),
        "rows_quarantined": int(len(quarantine)),
        "quarantined_share": round(len(quarantine) / max(len(frame), 1), 6),
        "max_quarantine_share": limit,
        "great_expectations_success": bool(success),
        "expectations": per_expectation,
        "suite": [spec.as_dict() for spec in specs],
    }
    _check_share(name, len(frame), len(quarantine), limit, per_expectation, examples)
    return kept, quarantine, report


def validate_library(
    library_raw: pd.DataFrame, params: dict, grid_params: dict
) -> tuple[pd.DataFrame, pd.DataFrame, dict]:
    return validate_table(library_raw, params, grid_params, role="library", name="library")


def validate_sites(
    sites_raw: pd.DataFrame, params: dict, grid_params: dict, split_params: dict
) -> tuple[pd.DataFrame, pd.DataFrame, dict]:
    kept, quarantine, report = validate_table(
        sites_raw, params, grid_params, role="site", name="sites"
    )
    no_test = bool(split_params["no_test"])
    needed = int(split_params["n_calibration"]) + (0 if no_test else int(split_params["min_test"]))
    labelled = kept.loc[kept["soc"].notna()].groupby("site", observed=True).size()
    report["labelled_per_site"] = {str(k): int(v) for k, v in labelled.items()}
    short = {site: int(count) for site, count in labelled.items() if count < needed}
    for site in kept["site"].dropna().unique():
        if site not in labelled.index:
            short[str(site)] = 0
    if short:
        listed = ", ".join(f"{site} has {count}" for site, count in sorted(short.items()))
        if no_test:
            raise ValueError(
                f"sites: with no test set every site still needs at least {needed} labelled "
                f"samples (split.n_calibration) for cross-validation; {listed}. Add labelled "
                "samples or lower split.n_calibration."
            )
        raise ValueError(
            f"sites: every site needs at least {needed} labelled samples after validation "
            f"(split.n_calibration = {split_params['n_calibration']} for calibration + "
            f"split.min_test = {split_params['min_test']} for testing); {listed}. Add labelled "
            "samples, lower split.n_calibration / split.min_test, or use every labelled sample "
            "for calibration with no test set (`localsoc study --no-test`, or "
            "split.no_test: true): then only cross-validated figures are reported."
        )
    return kept, quarantine, report


def merge_reports(library_report: dict, sites_report: dict) -> dict:
    return {"tables": [library_report, sites_report]}


def write_data_docs(validation_report: dict) -> dict[str, str]:
    """Great Expectations Data Docs of every validated table, offline: ``{file name: HTML}``,
    an index and a page per table (``localsoc.pipelines.validate.data_docs``)."""
    return data_docs_site(validation_report["tables"])
