"""OSSL tables as published: v1.2 ``_ref`` and v1.0 ``_pcnt`` vis-NIR columns, the carbon
column found by name, and the level-0 join of the site, lab and vis-NIR tables on the layer id.

The fixtures are small tables with the OSSL documentation's column names (the OSSL manual's
database chapter and the ossl-imports code): v1.2 ``id.layer_uuid_txt``,
``scan_visnir.<nm>_ref`` (fractions, 400-2500 nm every 2 nm), ``oc_usda.c729_w.pct``,
``layer.upper.depth_usda_cm``, ``longitude.point_wgs84_dd``; v1.0 ``id.layer_uuid_c``,
``scan_visnir.<nm>_pcnt`` (percent, 350-2500 nm every 2 nm), ``oc_usda.calc_wpct``,
``longitude_wgs84_dd``.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner

from localsoc.data.importers import import_ossl, import_wide
from localsoc.data.schema import Grid, spectra_of

GRID = Grid(400, 2500, 20)
N = 6


def _reflectance(wavelengths: np.ndarray, rows: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    shape = 0.2 + 0.25 * (wavelengths - 350) / 2150 + 0.03 * np.sin(wavelengths / 90)
    return np.clip(rng.uniform(0.8, 1.2, (rows, 1)) * shape, 0.01, 0.95)


def ossl_v12(rows: int = N) -> dict[str, pd.DataFrame]:
    """Level-0 v1.2 tables: vis-NIR (one scan has no lab row), soil lab L1 and soil site."""
    ids = [f"a1b2c3d4-0000-4000-8000-{i:012d}" for i in range(rows)]
    wavelengths = np.arange(400, 2501, 2)
    visnir = pd.DataFrame({
        "id.layer_uuid_txt": ids,
        "id.scan_local_c": [f"scan{i}" for i in range(rows)],
        "scan.visnir.date.begin_iso.8601_yyyy.mm.dd": "2019-01-01",
        "scan.visnir.model.name_utf8_txt": "ASD FieldSpec Pro FR",
        "dataset.code_ascii_txt": "KSSL.SSL",
    })
    spectra = pd.DataFrame(_reflectance(wavelengths, rows),
                           columns=[f"scan_visnir.{w}_ref" for w in wavelengths])
    visnir = pd.concat([visnir, spectra], axis=1)
    lab = pd.DataFrame({
        "id.layer_uuid_txt": ids[:-1],
        "id.layer_local_c": [str(100 + i) for i in range(rows - 1)],
        "c.tot_usda.a622_w.pct": np.linspace(1.0, 3.0, rows - 1) + 0.2,
        "oc_usda.c729_w.pct": np.linspace(1.0, 3.0, rows - 1),
        "clay.tot_usda.a334_w.pct": 20.0,
        "ph.h2o_usda.a268_index": 6.5,
    }).iloc[::-1].reset_index(drop=True)  # another order than the scans: the join must key
    site = pd.DataFrame({
        "id.layer_uuid_txt": ids,
        "id.project_ascii_txt": "P1",
        "dataset.code_ascii_txt": "KSSL.SSL",
        "longitude.point_wgs84_dd": np.linspace(-90, -89, rows),
        "latitude.point_wgs84_dd": np.linspace(40, 41, rows),
        "layer.upper.depth_usda_cm": np.arange(rows) * 10.0,
        "layer.lower.depth_usda_cm": np.arange(rows) * 10.0 + 10,
        "observation.date.begin_iso.8601_yyyy.mm.dd": "2010-05-01",
    }).sample(frac=1.0, random_state=1).reset_index(drop=True)
    return {"visnir": visnir, "soillab": lab, "soilsite": site}


def ossl_v10(rows: int = N) -> dict[str, pd.DataFrame]:
    """Level-0 v1.0 tables: percent reflectance ``_pcnt`` and ``oc_usda.calc_wpct``."""
    ids = [f"layer-{i}" for i in range(rows)]
    wavelengths = np.arange(350, 2501, 2)
    visnir = pd.concat([
        pd.DataFrame({"id.scan_uuid_c": [f"s{i}" for i in range(rows)],
                      "id.layer_uuid_c": ids, "id.layer_local_c": [str(i) for i in range(rows)]}),
        pd.DataFrame(100 * _reflectance(wavelengths, rows),
                     columns=[f"scan_visnir.{w}_pcnt" for w in wavelengths]),
    ], axis=1)
    lab = pd.DataFrame({"id.layer_uuid_c": ids, "oc_usda.calc_wpct": np.linspace(0.5, 2, rows),
                        "c.tot_usda.4h2_wpct": np.linspace(0.6, 2.1, rows)})
    site = pd.DataFrame({"id.layer_uuid_c": ids, "longitude_wgs84_dd": 10.0,
                         "latitude_wgs84_dd": 50.0,
                         "layer.upper.depth_usda_cm": 0.0, "layer.lower.depth_usda_cm": 30.0})
    return {"visnir": visnir, "soillab": lab, "soilsite": site}


def test_level0_v12_join_has_the_right_shape_units_carbon_and_depths():
    tables = ossl_v12()
    table, report = import_ossl(tables["visnir"], tables["soillab"], tables["soilsite"],
                                grid=GRID, library="kssl")
    assert table.shape[0] == N
    assert spectra_of(table).shape == (N, len(GRID))
    assert report.spectral_convention == "scan_visnir.<wavelength>_ref"
    assert report.spectra_units == "reflectance"
    assert report.carbon_column == "oc_usda.c729_w.pct"
    assert table["sample_id"].tolist() == tables["visnir"]["id.layer_uuid_txt"].tolist()
    lab = tables["soillab"].set_index("id.layer_uuid_txt")["oc_usda.c729_w.pct"]
    expected = table["sample_id"].map(lab)
    np.testing.assert_allclose(table["soc"], expected)  # NaN for the scan without a lab row
    assert table["soc"].isna().sum() == 1 and report.labelled_rows == N - 1
    site = tables["soilsite"].set_index("id.layer_uuid_txt")
    np.testing.assert_array_equal(table["depth_upper_cm"],
                                  table["sample_id"].map(site["layer.upper.depth_usda_cm"]))
    np.testing.assert_array_equal(table["depth_lower_cm"],
                                  table["sample_id"].map(site["layer.lower.depth_usda_cm"]))
    np.testing.assert_allclose(table["lat"], table["sample_id"].map(site["latitude.point_wgs84_dd"]))
    assert any("joined the soil lab table on id.layer_uuid_txt: 5 of 6" in n for n in report.notes)
    # the spectra are those of the vis-NIR table, resampled (fractions, not rescaled)
    assert 0.01 <= spectra_of(table).min() and spectra_of(table).max() <= 0.95


def test_v10_pcnt_columns_are_percent_and_equal_the_same_spectra_as_fractions():
    tables = ossl_v10()
    table, report = import_ossl(tables["visnir"], tables["soillab"], tables["soilsite"],
                                grid=GRID, library="afsis")
    assert report.spectral_convention == "scan_visnir.<wavelength>_pcnt"
    assert report.spectra_units == "percent_reflectance"
    assert report.carbon_column == "oc_usda.calc_wpct"
    assert report.conversions[0].startswith("units from the column names")
    assert spectra_of(table).shape == (N, len(GRID))
    as_fractions = tables["visnir"].rename(columns=lambda c: c.replace("_pcnt", "_ref"))
    bands = [c for c in as_fractions.columns if c.endswith("_ref")]
    as_fractions[bands] = as_fractions[bands] / 100
    reference, _ = import_wide(as_fractions, grid=GRID, library="afsis", spectra="reflectance",
                               carbon_column=None)
    np.testing.assert_allclose(spectra_of(table), spectra_of(reference), rtol=1e-12)
    assert table["depth_lower_cm"].eq(30.0).all() and table["lon"].eq(10.0).all()


def test_a_level1_table_alone_finds_its_carbon_column():
    tables = ossl_v12()
    joined = tables["visnir"].merge(tables["soillab"], on="id.layer_uuid_txt", how="left")
    table, report = import_wide(joined, grid=GRID, library="ossl", spectra="auto",
                                carbon_column="auto")
    assert report.carbon_column == "oc_usda.c729_w.pct"
    assert any("OSSL organic carbon" in note for note in report.notes)
    assert report.id_column == "id.layer_uuid_txt"
    assert table["soc"].notna().sum() == N - 1


def test_column_units_contradicting_the_declaration_are_refused():
    tables = ossl_v12()
    with pytest.raises(ValueError, match=r"spectra='percent_reflectance' but the spectral "
                                         r"columns are named scan_visnir.<wavelength>_ref"):
        import_ossl(tables["visnir"], tables["soillab"], grid=GRID,
                    spectra="percent_reflectance")
    # percent values in _ref columns break the unit rules, naming the column
    broken = tables["visnir"].copy()
    bands = [c for c in broken.columns if c.endswith("_ref")]
    broken[bands] = broken[bands] * 100
    with pytest.raises(ValueError, match="look like percent reflectance"):
        import_ossl(broken, grid=GRID, carbon_column=None)


def test_duplicate_layers_missing_ids_and_carbon_are_named():
    tables = ossl_v12()
    lab = pd.concat([tables["soillab"], tables["soillab"].head(1)], ignore_index=True)
    with pytest.raises(ValueError, match=r"soil lab table: layer id 'a1b2c3d4-0000-4000-8000-"
                                         r"000000000004' appears in rows \[0, 5\]"):
        import_ossl(tables["visnir"], lab, grid=GRID)
    with pytest.raises(ValueError, match="no OSSL layer id column"):
        import_ossl(tables["visnir"], tables["soillab"].drop(columns="id.layer_uuid_txt"),
                    grid=GRID)
    with pytest.raises(ValueError, match=r"found no carbon column.*oc_usda.c729_w.pct"):
        import_ossl(tables["visnir"], tables["soillab"].drop(columns="oc_usda.c729_w.pct"),
                    grid=GRID)


def test_mir_tables_get_a_clear_error():
    mir = pd.DataFrame(np.full((2, 3), 1.2),
                       columns=["scan_mir.600_abs", "scan_mir.602_abs", "scan_mir.604_abs"])
    mir.insert(0, "id.layer_uuid_txt", ["a", "b"])
    with pytest.raises(ValueError, match="mid-infrared.*vis-NIR spectra"):
        import_ossl(mir, grid=GRID, carbon_column=None)


def test_localsoc_import_joins_the_level0_tables_and_reports_the_carbon_column(tmp_path):
    from localsoc.command_line import main
    from tests.conftest import make_scratch_project

    project = make_scratch_project(tmp_path / "project")
    paths = {}
    for name, frame in ossl_v12().items():
        paths[name] = tmp_path / f"ossl_{name}_L0_v1.2.csv"
        frame.to_csv(paths[name], index=False)
    result = CliRunner().invoke(
        main, ["import", str(paths["visnir"]), "--as", "kssl", "--ossl-lab",
               str(paths["soillab"]), "--ossl-site", str(paths["soilsite"]), "--no-dvc",
               "--grid-start", "400", "--grid-stop", "2500", "--grid-step", "20"],
        env={"LOCALSOC_PROJECT": str(project)})
    assert result.exit_code == 0, result.output
    assert "carbon: column 'oc_usda.c729_w.pct'" in result.output
    assert "joined" in result.output and "units from the column names" in result.output
    stored = pd.read_parquet(project / "data/01_raw/imports/libraries/kssl.parquet")
    assert len(stored) == N and {"depth_upper_cm", "depth_lower_cm"} <= set(stored.columns)
