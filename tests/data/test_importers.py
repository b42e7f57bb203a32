from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from localsoc.data import schema
from localsoc.data.importers import (
    WideOptions,
    import_geeves,
    import_nirsoil,
    import_wide,
    read_canonical,
)
from localsoc.data.schema import Grid

REAL_SSL = Path(__file__).resolve().parents[2] / "data" / "01_raw" / "real_ssl"
GEEVES = REAL_SSL / "geeves" / "datsoilspc.csv.gz"
NIRSOIL = REAL_SSL / "nirsoil" / "NIRsoil.csv.gz"
GRID = Grid()
SOURCE_NM = np.arange(350.0, 2501.0, 5.0)
N_META = len(schema.META_COLUMNS)


def linear_reflectance(wavelengths_nm, row: int = 0):
    return 0.2 + 0.01 * row + 1e-4 * (np.asarray(wavelengths_nm) - 350.0)


def wide_frame(name=lambda w: f"nm_{w:g}", *, scale=1.0, rows=3, wavelengths_nm=SOURCE_NM):
    """A small wide table: linear reflectance spectra plus soc and an id column."""
    spectra = np.vstack([linear_reflectance(wavelengths_nm, r) for r in range(rows)]) * scale
    frame = pd.DataFrame(spectra, columns=[name(w) for w in wavelengths_nm])
    frame.insert(0, "soc", np.linspace(0.5, 2.5, rows))
    frame.insert(0, "lab_id", [f"S{r}" for r in range(rows)])
    return frame


def expected_on_grid(row: int = 0) -> np.ndarray:
    # with 5 nm source bands, the window [t - 5, t + 5) holds t - 5 and t: mean at t - 2.5
    return linear_reflectance(GRID.wavelengths_nm - 2.5, row)


@pytest.mark.parametrize(
    ("convention", "name"),
    [
        ("<wavelength>", lambda w: f"{w:g}"),
        ("nm_<wavelength>", lambda w: f"nm_{w:g}"),
        ("wl_<wavelength>", lambda w: f"wl_{w:g}"),
        ("r<wavelength>", lambda w: f"r{w:g}"),
        ("scan_visnir.<wavelength>_ref", lambda w: f"scan_visnir.{w:g}_ref"),
        ("<wavelength>", lambda w: int(w)),  # numeric column labels
    ],
)
def test_each_naming_convention(convention, name):
    table, report = import_wide(wide_frame(name), grid=GRID, library="lab")
    assert table.shape == (3, N_META + 211)
    assert schema.band_columns(table) == GRID.columns
    np.testing.assert_allclose(schema.spectra_of(table)[1], expected_on_grid(1), rtol=1e-12)
    assert report.spectral_convention == convention
    assert report.spectral_columns == SOURCE_NM.size
    assert report.source_range_nm == (350.0, 2500.0)
    assert report.ignored_columns == ("lab_id",)


def test_decimal_wavelengths():
    wavelengths = np.arange(350.5, 2500.0, 5.0)
    frame = wide_frame(lambda w: f"wl_{w:g}", wavelengths_nm=wavelengths)
    table, report = import_wide(frame, grid=GRID, library="lab")
    assert report.source_range_nm == (350.5, 2495.5)
    # window [t - 5, t + 5) holds t - 4.5 and t + 0.5: mean at t - 2
    np.testing.assert_allclose(table.loc[0, "nm_1000"], linear_reflectance(998.0), rtol=1e-12)


def test_mixed_conventions_are_refused():
    frame = wide_frame()
    frame["r2"] = 0.9
    with pytest.raises(ValueError, match="more than one naming convention") as error:
        import_wide(frame, grid=GRID, library="lab")
    message = str(error.value)
    assert "'r2'" in message and "nm_<wavelength>" in message and "scan_visnir.350_ref" in message


def test_no_spectral_columns_lists_what_was_seen():
    frame = pd.DataFrame({"soc": [1.0], "band_a": [0.3], "band_b": [0.4]})
    with pytest.raises(ValueError, match="no spectral columns found") as error:
        import_wide(frame, grid=GRID, library="lab")
    assert "'band_a'" in str(error.value) and "'wl_350'" in str(error.value)


def test_duplicate_and_implausible_wavelengths():
    frame = wide_frame()
    frame["nm_400.0"] = 0.3
    with pytest.raises(ValueError, match="'nm_400' and 'nm_400.0' give the same wavelength"):
        import_wide(frame, grid=GRID, library="lab")
    index_like = pd.DataFrame({"soc": [1.0], "1": [0.2], "2": [0.3], "3": [0.4]})
    with pytest.raises(ValueError, match="outside 200-3000 nm"):
        import_wide(index_like, grid=GRID, library="lab")


def test_percent_reflectance_detected_and_declared():
    fraction, _ = import_wide(wide_frame(), grid=GRID, library="lab", spectra="auto")
    detected, report = import_wide(
        wide_frame(scale=100.0), grid=GRID, library="lab", spectra="auto"
    )
    declared, _ = import_wide(
        wide_frame(scale=100.0), grid=GRID, library="lab", spectra="percent_reflectance"
    )
    assert report.spectra_units == "percent_reflectance"
    np.testing.assert_allclose(schema.spectra_of(detected), schema.spectra_of(fraction), rtol=1e-12)
    np.testing.assert_allclose(schema.spectra_of(declared), schema.spectra_of(fraction), rtol=1e-12)


def test_declared_absorbance_is_converted_before_averaging():
    frame = wide_frame()
    bands = [c for c in frame.columns if c.startswith("nm_")]
    frame[bands] = np.log10(1.0 / frame[bands])
    table, report = import_wide(frame, grid=GRID, library="lab", spectra="absorbance")
    assert report.spectra_units == "absorbance"
    np.testing.assert_allclose(schema.spectra_of(table)[0], expected_on_grid(0), rtol=1e-12)


def test_auto_refuses_values_that_look_like_absorbance():
    frame = wide_frame(scale=3.0)  # maximum about 1.3
    with pytest.raises(ValueError, match="look like absorbance") as error:
        import_wide(frame, grid=GRID, library="lab", spectra="auto")
    assert "spectra='absorbance'" in str(error.value)


@pytest.mark.parametrize(
    ("scale", "spectra", "message"),
    [
        (100.0, "reflectance", "look like percent reflectance"),
        (1.0, "percent_reflectance", "look like reflectance fractions"),
        (100.0, "absorbance", r"absorbance log10\(1/R\) above 5 means reflectance below 0.001 %"),
        (1000.0, "auto", "above 100"),
    ],
)
def test_wrong_spectral_units(scale, spectra, message):
    with pytest.raises(ValueError, match=message):
        import_wide(wide_frame(scale=scale), grid=GRID, library="lab", spectra=spectra)


def test_unit_thresholds_are_options():
    # maximum about 1.3: with the default threshold 1.5 it looks like absorbance
    frame = wide_frame(scale=3.0)
    detected, report = import_wide(frame, grid=GRID, library="lab", spectra="auto",
                                   percent_reflectance_above=1.2)
    assert report.spectra_units == "percent_reflectance"
    assert "> 1.2" in report.conversions[0]
    np.testing.assert_allclose(schema.spectra_of(detected),
                               schema.spectra_of(import_wide(frame, grid=GRID, library="lab",
                                                             spectra="reflectance")[0]) / 100,
                               rtol=1e-12)
    absorbance = wide_frame()
    bands = [c for c in absorbance.columns if c.startswith("nm_")]
    absorbance[bands] = np.log10(1.0 / absorbance[bands])
    with pytest.raises(ValueError, match="above 0.1 means reflectance below 79.4"):
        import_wide(absorbance, grid=GRID, library="lab", spectra="absorbance",
                    absorbance_max=0.1)


@pytest.mark.parametrize(
    ("units", "values", "factor", "expected"),
    [
        ("percent", [1.5, 0.25], 1.724, [1.5, 0.25]),
        ("g_per_kg", [12.5, 3.0], 1.724, [1.25, 0.3]),
        ("organic_matter_percent", [3.448, 1.724], 1.724, [2.0, 1.0]),
        ("organic_matter_percent", [3.0, 1.0], 2.0, [1.5, 0.5]),
        ("organic_matter_g_per_kg", [34.48, 17.24], 1.724, [2.0, 1.0]),
    ],
)
def test_carbon_units(units, values, factor, expected):
    frame = wide_frame(rows=2)
    frame["carbon"] = values
    table, report = import_wide(
        frame,
        grid=GRID,
        library="lab",
        carbon_column="carbon",
        carbon_units=units,
        om_factor=factor,
    )
    np.testing.assert_allclose(table["soc"], expected, rtol=1e-12)
    assert report.carbon_units == units
    if units.startswith("organic_matter"):
        assert report.om_factor == factor
        assert any(f"/ {factor:g}" in line for line in report.conversions)
    else:
        assert report.om_factor is None


def test_carbon_in_wrong_units_is_refused():
    frame = wide_frame()
    frame["soc"] = [12.0, 150.0, 30.0]  # g/kg declared as percent
    with pytest.raises(ValueError, match="row 1") as error:
        import_wide(frame, grid=GRID, library="lab")
    assert "carbon_units='g_per_kg'" in str(error.value)
    with pytest.raises(ValueError, match="om_factor only|only\\s+applies|factor only"):
        import_wide(wide_frame(), grid=GRID, library="lab", om_factor=2.0)


def test_missing_and_non_numeric_columns():
    with pytest.raises(ValueError, match="carbon_column='TOC' is not a column") as error:
        import_wide(wide_frame(), grid=GRID, library="lab", carbon_column="TOC")
    assert "'soc'" in str(error.value)
    frame = wide_frame()
    frame["soc"] = ["1.2", "n.d.", "0.8"]
    with pytest.raises(ValueError, match="carbon column 'soc', row 1 .*'n.d.'"):
        import_wide(frame, grid=GRID, library="lab")
    frame = wide_frame()
    frame["nm_1000"] = frame["nm_1000"].astype(object)
    frame.loc[2, "nm_1000"] = "x"
    with pytest.raises(ValueError, match="spectral column 'nm_1000', row 2"):
        import_wide(frame, grid=GRID, library="lab")


def test_ids_metadata_and_unlabelled_rows():
    frame = wide_frame(rows=4)
    frame.loc[[1, 3], "soc"] = np.nan
    frame["latitude"] = [10.0, 11.0, 12.0, 13.0]
    frame["longitude"] = [-1.0, -2.0, -3.0, -4.0]
    frame["field"] = ["a", "a", "b", "b"]
    table, report = import_wide(
        frame,
        grid=GRID,
        library="lab",
        id_column="lab_id",
        country="SE",
        site_column="field",
        lat_column="latitude",
        lon_column="longitude",
    )
    assert len(table) == 4 and report.rows == 4 and report.labelled_rows == 2
    assert table["soc"].isna().tolist() == [False, True, False, True]
    assert table["sample_id"].tolist() == ["S0", "S1", "S2", "S3"]
    assert table["site"].tolist() == ["a", "a", "b", "b"]
    assert set(table["country"]) == {"SE"} and set(table["library"]) == {"lab"}
    assert table["lat"].tolist() == [10.0, 11.0, 12.0, 13.0]
    assert table["lon"].tolist() == [-1.0, -2.0, -3.0, -4.0]
    generated, _ = import_wide(wide_frame(rows=2), grid=GRID, library="lab", carbon_column=None)
    assert generated["sample_id"].tolist() == ["lab-0", "lab-1"]
    assert generated["soc"].isna().all() and generated["site"].isna().all()
    schema.check_table(generated)


def test_uncovered_grid_and_narrowing():
    wavelengths = np.arange(1100.0, 2499.0, 2.0)
    frame = wide_frame(wavelengths_nm=wavelengths)
    with pytest.raises(ValueError) as error:
        import_wide(frame, grid=GRID, library="lab")
    message = str(error.value)
    assert "source covers 1100-2498 nm; the grid needs 400-2500 nm: missing 400-1100 nm" in message
    assert "start_nm: 1100" in message and "narrow_grid_ok" in message
    narrowed, report = import_wide(frame, grid=GRID, library="lab", narrow_grid_ok=True)
    assert schema.band_columns(narrowed)[0] == "nm_1100"
    assert report.grid == {"start_nm": 1100.0, "stop_nm": 2500.0, "step_nm": 10.0, "bands": 141}
    assert any("grid narrowed" in note for note in report.notes)
    declared, _ = import_wide(
        frame, grid={"start_nm": 1100, "stop_nm": 2450, "step_nm": 10}, library="lab"
    )
    assert schema.band_columns(declared) == Grid(1100, 2450, 10).columns


def test_files_and_canonical_round_trip(tmp_path):
    frame = wide_frame()
    frame.to_csv(tmp_path / "wide.csv.gz", index=False)
    frame.to_parquet(tmp_path / "wide.parquet", index=False)
    from_csv, report = import_wide(tmp_path / "wide.csv.gz", grid=GRID, library="lab")
    from_parquet, _ = import_wide(tmp_path / "wide.parquet", grid=GRID, library="lab")
    pd.testing.assert_frame_equal(from_csv, from_parquet)
    assert report.source.endswith("wide.csv.gz")
    (tmp_path / "wide.xlsx").write_text("")
    with pytest.raises(ValueError, match="unknown file type '.xlsx'"):
        import_wide(tmp_path / "wide.xlsx", grid=GRID, library="lab")

    from_csv["sample_id"] = ["1", "2", "3"]  # numbers in a CSV come back as int64
    from_csv.to_csv(tmp_path / "table.csv", index=False)
    from_csv.to_parquet(tmp_path / "table.parquet", index=False)
    for name in ("table.csv", "table.parquet"):
        read = read_canonical(tmp_path / name, grid=GRID)
        pd.testing.assert_frame_equal(read, from_csv, check_dtype=False)
        assert read["sample_id"].tolist() == ["1", "2", "3"]
        assert str(read["sample_id"].dtype) == "string"
    with pytest.raises(ValueError, match="do not match the grid"):
        read_canonical(tmp_path / "table.parquet", grid=Grid(400, 2500, 20))
    from_csv.drop(columns=["lat"]).to_csv(tmp_path / "bad.csv", index=False)
    with pytest.raises(ValueError, match=r"missing column\(s\) \['lat'\]"):
        read_canonical(tmp_path / "bad.csv")


# ---- the real libraries -------------------------------------------------------------------


@pytest.fixture(scope="module")
def geeves_raw():
    return pd.read_csv(GEEVES)


@pytest.fixture(scope="module")
def nirsoil_raw():
    return pd.read_csv(NIRSOIL)


@pytest.fixture(scope="module")
def geeves():
    return import_geeves(GEEVES, GRID)


@pytest.fixture(scope="module")
def nirsoil():
    return import_nirsoil(NIRSOIL, Grid(1100, 2450, 10))


def test_geeves_shape_units_and_values(geeves, geeves_raw):
    table, report = geeves
    assert table.shape == (391, N_META + 211)
    assert len(geeves_raw) == 391
    spectra = schema.spectra_of(table)
    assert np.isfinite(spectra).all() and spectra.min() > 0 and spectra.max() <= 1
    np.testing.assert_array_equal(table["soc"], geeves_raw["TotalCarbon"])
    assert table["soc"].notna().all() and report.labelled_rows == 391
    first_window = geeves_raw.loc[0, [f"nm_{w}" for w in range(1995, 2005)]].mean()
    assert table.loc[0, "nm_2000"] == pytest.approx(first_window, rel=1e-12)
    last_window = geeves_raw.loc[390, [f"nm_{w}" for w in range(2495, 2501)]].mean()
    assert table.loc[390, "nm_2500"] == pytest.approx(last_window, rel=1e-12)
    assert set(table["library"]) == {"geeves"} and set(table["country"]) == {"AU"}
    assert table["sample_id"].is_unique and table.loc[0, "sample_id"] == "geeves-0"
    assert report.spectra_units == "reflectance"
    assert any("no inorganic" in note for note in report.notes)


def test_nirsoil_needs_a_narrower_grid():
    with pytest.raises(ValueError, match="missing 400-1100 nm") as error:
        import_nirsoil(NIRSOIL, GRID)
    assert str(error.value).startswith("nirsoil: source covers 1100-2498 nm")


def test_nirsoil_shape_units_and_values(nirsoil, nirsoil_raw):
    table, report = nirsoil
    assert table.shape == (825, N_META + 136)
    assert schema.band_columns(table) == Grid(1100, 2450, 10).columns
    spectra = schema.spectra_of(table)
    assert np.isfinite(spectra).all() and spectra.min() > 0 and spectra.max() <= 1
    assert table["soc"].isna().sum() == nirsoil_raw["Ciso"].isna().sum() == 93
    assert report.labelled_rows == 825 - 93
    np.testing.assert_array_equal(table["soc"], nirsoil_raw["Ciso"])
    # reflectance of each 2 nm band, averaged over the window [1195, 1205)
    absorbance = nirsoil_raw.loc[0, [f"nm_{w}" for w in range(1196, 1205, 2)]].to_numpy(float)
    assert table.loc[0, "nm_1200"] == pytest.approx(np.mean(10.0**-absorbance), rel=1e-12)
    assert set(table["library"]) == {"nirsoil"} and set(table["country"]) == {"BE"}
    assert report.spectra_units == "absorbance"
    assert any("ISO 14235" in note for note in report.notes)


def test_numbers_stored_as_text_and_float_ids():
    frame = wide_frame(rows=3)
    frame["soc"] = pd.Series(["1.5", None, "0.25"], dtype="string")
    frame["lab_id"] = [101.0, np.nan, 103.0]
    table, _ = import_wide(frame, grid=GRID, library="lab", id_column="lab_id")
    np.testing.assert_array_equal(table["soc"], [1.5, np.nan, 0.25])
    assert table["sample_id"].tolist() == ["101", pd.NA, "103"]


def mixed_units(percent_rows: int, fraction_rows: int) -> pd.DataFrame:
    """A site file whose first rows are percent reflectance and the others fractions."""
    frame = wide_frame(rows=percent_rows + fraction_rows)
    bands = [c for c in frame.columns if c.startswith("nm_")]
    frame.loc[: percent_rows - 1, bands] *= 100.0
    return frame


def validate_site(table):
    from localsoc.pipelines.validate.nodes import validate_table
    from tests.conftest import grid_params, load_params

    return validate_table(table, load_params("base")["validate"], grid_params(GRID),
                          role="site", name="site field")


def test_rows_in_other_units_than_the_file_are_quarantined_with_the_reason():
    frame = mixed_units(percent_rows=30, fraction_rows=10)
    table, report = import_wide(frame, grid=GRID, library="lab", site="field", spectra="auto")
    assert report.spectra_units == "percent_reflectance"
    assert any("10 row(s)" in note and "fractions" in note for note in report.notes)
    kept, quarantine, validation = validate_site(table)
    assert quarantine["source_row"].tolist() == list(range(30, 40))
    assert quarantine["quarantine_reason"].str.contains("reflectance fractions").all()
    assert validation["rows_in"] == 40 == len(kept) + len(quarantine)
    np.testing.assert_allclose(schema.spectra_of(kept)[1], expected_on_grid(1), rtol=1e-12)
    assert list(kept.columns) == list(schema.META_COLUMNS) + GRID.columns


def test_a_file_mostly_of_fractions_names_its_rows_in_percent():
    # the file's maximum (10 percent rows) would make every row percent: 30 of 40 are fractions
    with pytest.raises(ValueError, match="30 of 40 rows look like reflectance fractions") as error:
        import_wide(mixed_units(percent_rows=10, fraction_rows=30), grid=GRID,
                    library="lab", site="field", spectra="auto")
    message = str(error.value)
    assert "10 row(s) hold values above 1.5" in message
    # the largest cell of each row, and how many more
    assert "row 0, column 'nm_2500': 41.5 and 430 more cell(s) above 1.5" in message
    assert "(10 rows in all)" in message and "separate file" in message


@pytest.mark.parametrize(("value", "spectra"), [(45.0, "auto"), (45.0, "reflectance"),
                                                (450.0, "auto"), (45.0, "percent_reflectance")])
def test_one_cell_above_the_threshold_in_a_fraction_file_is_named(value, spectra):
    frame = wide_frame(rows=40)
    frame.loc[7, "nm_1200"] = value  # a percent value (or a typo) among fractions
    with pytest.raises(ValueError) as error:
        import_wide(frame, grid=GRID, library="lab", site="field", spectra=spectra,
                    id_column="lab_id")
    message = str(error.value)
    assert f"row 7 (sample 'S7'), column 'nm_1200': {value:g}" in message
    assert "39 of 40 rows look like reflectance fractions" in message
    assert "1 row(s) hold values above 1.5" in message
    assert "divide it by 100" in message and "blank" in message
    assert "other cell" not in message and "rows in all" not in message


def test_a_fraction_file_with_a_cell_above_the_threshold_names_every_cell_of_its_row():
    frame = wide_frame(rows=3).drop(columns="lab_id")  # no id column: rows only
    frame.loc[1, ["nm_400", "nm_405"]] = [2.0, 3.0]
    with pytest.raises(ValueError, match="2 of 3 rows") as error:
        import_wide(frame, grid=GRID, library="lab", spectra="auto")
    assert "row 1, column 'nm_405': 3 and 1 more cell(s) above 1.5" in str(error.value)


@pytest.mark.parametrize("column", ["sample_id", "id", "id.layer_uuid_txt", "id.layer_local_c"])
def test_an_id_column_is_found_by_name_and_bad_ids_are_quarantined(column):
    frame = wide_frame(rows=8).drop(columns="lab_id")
    frame.insert(0, column, ["a", "b", "c", "c", "", "f", None, "h"])  # a duplicate, two blanks
    table, report = import_wide(frame, grid=GRID, library="lab", site="field")
    assert report.id_column == column
    assert any(f"sample ids from column {column!r}" in note for note in report.notes)
    assert column not in report.ignored_columns
    assert table["sample_id"].tolist()[:3] == ["a", "b", "c"]
    kept, quarantine, _ = validate_site(table)
    assert quarantine["source_row"].tolist() == [2, 3, 4, 6]
    reasons = dict(zip(quarantine["source_row"], quarantine["quarantine_reason"], strict=True))
    assert "more than once" in reasons[2] and "more than once" in reasons[3]
    assert "empty" in reasons[4] and "empty" in reasons[6]
    assert kept["sample_id"].tolist() == ["a", "b", "f", "h"]


def test_without_an_id_column_the_report_says_ids_were_generated():
    table, report = import_wide(wide_frame(), grid=GRID, library="lab")
    assert report.id_column is None
    assert any("generated" in note for note in report.notes)
    assert table["sample_id"].tolist() == ["lab-0", "lab-1", "lab-2"]


def test_declarations_as_an_options_object_or_as_keywords_give_the_same_import():
    frame = wide_frame(scale=100.0)
    options = WideOptions(library="lab", spectra="auto", site="field")
    by_options = import_wide(frame, grid=GRID, options=options)
    by_keywords = import_wide(frame, grid=GRID, library="lab", spectra="auto", site="field")
    pd.testing.assert_frame_equal(by_options[0], by_keywords[0])
    assert by_options[1] == by_keywords[1]
    overridden, report = import_wide(frame, grid=GRID, options=options,
                                     spectra="percent_reflectance", site="other")
    assert report.spectra_declared == "percent_reflectance"
    assert set(overridden["site"]) == {"other"}
    with pytest.raises(TypeError, match="spectral_units"):
        import_wide(frame, grid=GRID, library="lab", spectral_units="auto")
    with pytest.raises(ValueError, match="spectra must be one of"):
        import_wide(frame, grid=GRID, options=WideOptions(library="lab", spectra="percent"))
