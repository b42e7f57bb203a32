"""Validation: every failing row is quarantined with its reason; nothing disappears."""

from __future__ import annotations

import numpy as np
import pytest

from localsoc.data.schema import Grid, band_columns
from localsoc.pipelines.validate.nodes import validate_library, validate_sites, validate_table
from tests.conftest import SMALL_GRID, grid_params, make_ssl


@pytest.fixture
def params(base_params):
    return dict(base_params["validate"])


def corrupt(frame):
    bands = band_columns(frame)
    frame = frame.copy()
    frame.loc[1, bands[3]] = np.nan  # missing band
    frame.loc[2, bands[0]] = -0.01  # negative reflectance
    frame.loc[3, bands[5]] = 45.0  # percent reflectance
    frame.loc[4, "sample_id"] = frame.loc[5, "sample_id"]  # duplicate id
    frame.loc[6, "soc"] = 75.0  # outside [0, 60]
    frame.loc[7, "lat"] = 123.0  # bad coordinate
    frame.loc[8, "lon"] = -200.0
    frame.loc[9, bands[7]] = np.inf
    return frame


def test_a_flat_spectrum_is_quarantined_at_validation_not_left_to_fail_preprocessing(
        small_library, params):
    frame = small_library.copy()
    bands = band_columns(frame)
    frame.loc[8, bands] = 0.25  # a failed scan: the same reflectance in every band
    frame.loc[9, bands[0]] = frame.loc[9, bands[0]] * 1.001  # a normal spectrum stays
    kept, quarantine, _ = validate_table(frame, params, grid_params(), role="library",
                                         name="library")
    assert quarantine["source_row"].tolist() == [8]
    assert "flat spectrum" in quarantine["quarantine_reason"].iloc[0]
    assert len(kept) == len(frame) - 1


def test_each_failure_class_is_quarantined_with_its_reason(small_library, params):
    frame = corrupt(small_library)
    kept, quarantine, report = validate_table(
        frame, params, grid_params(), role="library", name="library"
    )
    assert len(kept) + len(quarantine) == len(frame)
    reasons = dict(zip(quarantine["source_row"], quarantine["quarantine_reason"], strict=True))
    assert set(reasons) == {1, 2, 3, 4, 5, 6, 7, 8, 9}
    bands = band_columns(frame)
    assert "non-finite" in reasons[1] and bands[3] in reasons[1]
    assert "at or below" in reasons[2] and bands[0] in reasons[2]
    assert "percent_reflectance" in reasons[3] and "45" in reasons[3]
    assert "more than once" in reasons[4] and "more than once" in reasons[5]
    assert "SOC outside" in reasons[6] and "75" in reasons[6]
    assert "latitude" in reasons[7]
    assert "longitude" in reasons[8]
    assert bands[7] in reasons[9]
    assert report["rows_in"] == len(frame)
    assert report["rows_quarantined"] == 9
    assert not report["great_expectations_success"]
    assert set(kept["sample_id"]).isdisjoint(set(quarantine["sample_id"]) - {frame.loc[5, "sample_id"]})


def test_clean_table_passes_untouched(small_library, params):
    kept, quarantine, report = validate_table(
        small_library, params, grid_params(), role="library", name="library"
    )
    assert len(quarantine) == 0
    assert report["great_expectations_success"]
    assert kept.equals(small_library.reset_index(drop=True))


def test_library_rows_need_soc_but_site_rows_do_not(params, base_params):
    library = make_ssl(30, seed=2)
    library.loc[0, "soc"] = np.nan
    _, quarantine, _ = validate_library(library, params, grid_params())
    assert list(quarantine["source_row"]) == [0]
    assert "without SOC" in quarantine.loc[0, "quarantine_reason"]

    split = {"n_calibration": 5, "min_test": 3, "no_test": False}
    site = make_ssl(30, seed=3, site="s1", library=None)
    site.loc[0, "soc"] = np.nan
    kept, quarantine, report = validate_sites(site, params, grid_params(), split)
    assert len(quarantine) == 0 and len(kept) == 30
    assert report["labelled_per_site"] == {"s1": 29}


def test_site_with_too_few_labelled_samples_stops_with_the_site_named(params):
    site = make_ssl(12, seed=4, site="tiny_field", library=None)
    with pytest.raises(ValueError, match=r"tiny_field has 12.*n_calibration"):
        validate_sites(site, params, grid_params(),
                       {"n_calibration": 10, "min_test": 5, "no_test": False})


def test_mostly_bad_table_stops_the_run(small_library, params):
    frame = small_library.copy()
    frame.loc[: len(frame) // 2 + 5, "soc"] = 99.0
    with pytest.raises(ValueError, match=r"fail validation, more than the allowed 50%.*SOC outside"):
        validate_table(frame, params, grid_params(), role="library", name="library")


def test_spectra_off_the_grid_are_an_error_naming_the_range(small_library, params):
    narrower = Grid(400, 2600, 100)
    with pytest.raises(ValueError, match=r"1 grid band\(s\) missing \(2600-2600 nm\)"):
        validate_table(small_library, params, grid_params(narrower), role="library", name="lib")
    dropped = small_library.drop(columns=["nm_400", "nm_500"])
    with pytest.raises(ValueError, match=r"missing \(400-500 nm\).*importers"):
        validate_table(dropped, params, grid_params(SMALL_GRID), role="library", name="lib")


def test_missing_metadata_column_is_named(small_library, params):
    with pytest.raises(ValueError, match=r"missing column\(s\) \['soc'\]"):
        validate_table(small_library.drop(columns=["soc"]), params, grid_params(),
                       role="library", name="lib")
