"""Great Expectations suites for the canonical SSL tables, written as data.

Spectra have hundreds of band columns; one expectation per band would make validation of a
50,000-row library take minutes. Instead each row is summarised by three derived columns
(``bands_non_finite``, ``reflectance_min``, ``reflectance_max``) and the suite checks those,
together with the metadata columns and the importer's ``import_problem`` (a row the importer
found unusable, with its reason; ``localsoc.data.schema``). Every expectation carries the
reason written into the quarantine table for a row that fails it, and how to fix it.

Suites are plain lists of dictionaries (``type``, ``kwargs``, ``reason``) built from the
``validate`` parameters, turned into Great Expectations objects only at validation time.
"""

from __future__ import annotations

import logging
import warnings
from dataclasses import dataclass

import numpy as np
import pandas as pd

from localsoc.data.schema import IMPORT_PROBLEM, band_columns

logger = logging.getLogger(__name__)

DERIVED_COLUMNS = ("bands_non_finite", "reflectance_min", "reflectance_max")


@dataclass(frozen=True)
class ExpectationSpec:
    """One expectation: its GX type (snake case), its arguments, and the quarantine reason."""

    type: str
    kwargs: dict
    reason: str

    def as_dict(self) -> dict:
        return {"type": self.type, "kwargs": dict(self.kwargs), "reason": self.reason}


#: The expectations every table meets whatever the parameters: its ids, the importer's verdict.
IDENTITY_SPECS = (
    ExpectationSpec(
        "expect_column_values_to_not_be_null",
        {"column": "sample_id"},
        "sample_id is empty; give every row a unique id",
    ),
    ExpectationSpec(
        "expect_column_values_to_be_unique",
        {"column": "sample_id"},
        "sample_id occurs more than once; make ids unique (every copy is quarantined)",
    ),
    ExpectationSpec(
        "expect_column_values_to_be_null",
        {"column": IMPORT_PROBLEM},
        "the importer found this row inconsistent with the rest of its file",
    ),
    ExpectationSpec(
        "expect_column_values_to_be_between",
        {"column": "bands_non_finite", "min_value": 0, "max_value": 0},
        "missing or non-finite reflectance in some bands; re-export the spectrum or resample it",
    ),
)
#: Coordinates, checked after the parameter-driven ranges.
COORDINATE_SPECS = (
    ExpectationSpec(
        "expect_column_values_to_be_between",
        {"column": "lat", "min_value": -90.0, "max_value": 90.0},
        "latitude outside [-90, 90]; give decimal degrees (lat and lon swapped?)",
    ),
    ExpectationSpec(
        "expect_column_values_to_be_between",
        {"column": "lon", "min_value": -180.0, "max_value": 180.0},
        "longitude outside [-180, 180]; give decimal degrees",
    ),
)
#: The last expectation of each role's table.
ROLE_SPECS = {
    "library": ExpectationSpec(
        "expect_column_values_to_not_be_null",
        {"column": "soc"},
        "library sample without SOC; a library row needs a lab SOC value to be used",
    ),
    "site": ExpectationSpec(
        "expect_column_values_to_not_be_null",
        {"column": "site"},
        "site rows need a site id in column 'site'",
    ),
}


def range_specs(params: dict) -> list[ExpectationSpec]:
    """The expectations set by the ``validate`` parameters: the reflectance range, a spectrum
    that is not flat, the SOC range."""
    refl, soc = params["reflectance"], params["soc_percent"]
    return [
        ExpectationSpec(
            "expect_column_values_to_be_between",
            {"column": "reflectance_min", "min_value": float(refl["min_exclusive"]),
             "strict_min": True},
            f"reflectance at or below {refl['min_exclusive']}; reflectance must be a fraction in "
            "(0, 1] (absorbance data must be imported with spectra='absorbance')",
        ),
        ExpectationSpec(
            "expect_column_values_to_be_between",
            {"column": "reflectance_max", "max_value": float(refl["max"])},
            f"reflectance above {refl['max']}; percent reflectance must be imported with "
            "spectra='percent_reflectance' (divided by 100)",
        ),
        ExpectationSpec(
            "expect_column_values_to_be_between",
            {"column": "spectrum_flat", "min_value": 0, "max_value": 0},
            "flat spectrum (the same value in every band): SNV is undefined for it and it is "
            "usually a failed scan; rescan the sample or remove the row",
        ),
        ExpectationSpec(
            "expect_column_values_to_be_between",
            {"column": "soc", "min_value": float(soc["min"]), "max_value": float(soc["max"])},
            f"SOC outside [{soc['min']}, {soc['max']}] % by mass; check units (g/kg must be "
            "divided by 10) or the value",
        ),
    ]


def ssl_suite(params: dict, *, role: str) -> list[ExpectationSpec]:
    """The expectations of a library (``role="library"``) or site (``role="site"``) table."""
    if role not in ROLE_SPECS:
        raise ValueError(f"role must be 'library' or 'site'; got {role!r}")
    return [*IDENTITY_SPECS, *range_specs(params), *COORDINATE_SPECS, ROLE_SPECS[role]]


def row_view(frame: pd.DataFrame) -> pd.DataFrame:
    """Metadata plus the derived per-row spectral summaries the suite checks."""
    bands = band_columns(frame)
    spectra = frame[bands].to_numpy(dtype=np.float64)
    finite = np.isfinite(spectra)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", category=RuntimeWarning)
        masked = np.where(finite, spectra, np.nan)
        low = np.nanmin(masked, axis=1) if bands else np.full(len(frame), np.nan)
        high = np.nanmax(masked, axis=1) if bands else np.full(len(frame), np.nan)
        # flat as SNV judges it (spectra.snv): sd <= 1e-12 x max(|mean|, 1), on finite bands
        mean = np.nanmean(masked, axis=1) if bands else np.full(len(frame), np.nan)
        sd = np.nanstd(masked, axis=1) if bands else np.full(len(frame), np.nan)
        flat = (sd <= 1e-12 * np.maximum(np.abs(mean), 1.0)) & (finite.sum(axis=1) > 1)
    view = pd.DataFrame(
        {
            "sample_id": frame["sample_id"].astype("object").to_numpy(),
            "site": frame["site"].astype("object").to_numpy(),
            "soc": frame["soc"].to_numpy(dtype=np.float64, na_value=np.nan),
            "lat": frame["lat"].to_numpy(dtype=np.float64, na_value=np.nan),
            "lon": frame["lon"].to_numpy(dtype=np.float64, na_value=np.nan),
            "bands_non_finite": (~finite).sum(axis=1),
            "reflectance_min": low,
            "reflectance_max": high,
            "spectrum_flat": flat.astype(np.int64),
            IMPORT_PROBLEM: (frame[IMPORT_PROBLEM].astype("object").where(
                frame[IMPORT_PROBLEM].notna(), None).to_numpy() if IMPORT_PROBLEM in frame.columns
                else np.full(len(frame), None, dtype=object)),
        },
        index=pd.RangeIndex(len(frame)),
    )
    return view


def run_suite(view: pd.DataFrame, specs: list[ExpectationSpec], name: str):
    """Validate ``view`` with Great Expectations; return (success, results in ``specs`` order)."""
    import great_expectations as gx
    import great_expectations.expectations as gxe
    from great_expectations.data_context.types.base import ProgressBarsConfig

    context = gx.get_context(mode="ephemeral")
    context.variables.progress_bars = ProgressBarsConfig(globally=False)
    asset = context.data_sources.add_pandas(f"{name}_source").add_dataframe_asset(name)
    batch = asset.add_batch_definition_whole_dataframe("whole").get_batch(
        batch_parameters={"dataframe": view}
    )
    suite = gx.ExpectationSuite(name=f"{name}_suite")
    for position, spec in enumerate(specs):
        cls = _expectation_class(gxe, spec.type)
        suite.add_expectation(cls(**spec.kwargs, meta={"reason": spec.reason, "spec": position}))
    suite = context.suites.add(suite)
    result = batch.validate(suite, result_format={"result_format": "COMPLETE"})
    # GX does not keep the suite's order in its results; put them back in spec order.
    ordered = sorted(result.results, key=lambda r: int(r.expectation_config.meta["spec"]))
    if len(ordered) != len(specs):
        raise RuntimeError(f"{name}: GX returned {len(ordered)} results for {len(specs)} specs")
    return result.success, ordered


#: What a validation report keeps of each Great Expectations result (GX's "SUMMARY" fields:
#: counts, shares and at most 20 failing values), enough to render its Data Docs page.
RESULT_SUMMARY_KEYS = ("element_count", "missing_count", "missing_percent", "unexpected_count",
                       "unexpected_percent", "unexpected_percent_nonmissing",
                       "partial_unexpected_list", "partial_unexpected_counts")


def result_summary(outcome) -> dict:
    """The ``RESULT_SUMMARY_KEYS`` of one GX expectation result, as JSON values."""
    from great_expectations.util import convert_to_json_serializable

    return {key: convert_to_json_serializable(outcome.result[key])
            for key in RESULT_SUMMARY_KEYS if key in outcome.result}


def _expectation_class(module, snake_name: str):
    camel = "".join(part.capitalize() for part in snake_name.split("_"))
    try:
        return getattr(module, camel)
    except AttributeError as err:
        raise ValueError(f"unknown Great Expectations expectation {snake_name!r}") from err
