"""ASD FieldSpec .asd binaries: the documented layout read directly, files made by the project's
writer and, independently, byte by byte at the documented offsets."""

from __future__ import annotations

import struct

import numpy as np
import pandas as pd
import pytest

from localsoc.data.asd import read_asd, write_asd
from localsoc.data.importers import import_asd
from localsoc.data.schema import Grid, spectra_of

GRID = Grid(400, 2500, 10)
WAVELENGTHS = np.arange(350.0, 2501.0)  # a FieldSpec: 2151 channels, 1 nm


def _reflectance(seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return 0.15 + 0.3 * (WAVELENGTHS - 350) / 2150 * rng.uniform(0.8, 1.2)


def _by_hand(path, values, data_type=1, data_format=0, magic=b"as6"):
    """An .asd file packed at the documented offsets, without the project's writer."""
    header = bytearray(484)
    header[0:3] = magic
    header[186] = data_type
    header[191:195] = struct.pack("<f", 350.0)
    header[195:199] = struct.pack("<f", 1.0)
    header[199] = data_format
    header[204:206] = struct.pack("<H", len(values))
    dtype = {0: "<f4", 2: "<f8"}[data_format]
    path.write_bytes(bytes(header) + np.asarray(values, dtype=dtype).tobytes())
    return path


def test_a_file_packed_at_the_documented_offsets_reads_back(tmp_path):
    values = _reflectance(0)
    spectrum = read_asd(_by_hand(tmp_path / "a.asd", values))
    np.testing.assert_array_equal(spectrum.wavelengths_nm, WAVELENGTHS)
    np.testing.assert_allclose(spectrum.values, values, rtol=1e-6)  # float32 data
    assert spectrum.data_type == "reflectance" and spectrum.reference is None


def test_the_writer_round_trips_and_raw_files_use_their_white_reference(tmp_path):
    target = 1000 + 2000 * _reflectance(1)
    reference = np.full(WAVELENGTHS.size, 3000.0)
    write_asd(tmp_path / "raw.asd", 350, 1, target, data_type="raw", reference=reference)
    spectrum = read_asd(tmp_path / "raw.asd")
    assert spectrum.file_version == 7 and spectrum.data_type == "raw"
    np.testing.assert_array_equal(spectrum.reference, reference)
    np.testing.assert_allclose(spectrum.reflectance(), target / 3000.0, rtol=1e-15)


def test_import_asd_gives_the_canonical_table_with_carbon_from_labels(tmp_path):
    folder = tmp_path / "field"
    folder.mkdir()
    for i in range(4):
        write_asd(folder / f"S{i}.asd", 350, 1, _reflectance(i))
    labels = pd.DataFrame({"sample_id": ["S0", "S1", "S3"], "soc": [1.0, 1.5, 2.0]})
    table, report = import_asd(folder, grid=GRID, library="field", labels=labels)
    assert table["sample_id"].tolist() == ["S0", "S1", "S2", "S3"]
    assert spectra_of(table).shape == (4, len(GRID))
    assert report.spectra_units == "reflectance" and report.carbon_column == "soc"
    assert table["soc"].isna().tolist() == [False, False, True, False]
    # the same spectra through the wide importer give the same table
    wide = pd.DataFrame([_reflectance(i) for i in range(4)],
                        columns=[f"nm_{w:g}" for w in WAVELENGTHS])
    reference, _ = import_wide_table(wide)
    np.testing.assert_allclose(spectra_of(table), spectra_of(reference), rtol=1e-12)


def import_wide_table(wide):
    from localsoc.data.importers import import_wide

    return import_wide(wide, grid=GRID, library="field", spectra="reflectance",
                       carbon_column=None)


@pytest.mark.parametrize("make, message", [
    (lambda p: p.write_bytes(b"not an asd file" * 40), "not an ASD .asd file"),
    (lambda p: write_asd(p, 350, 1, _reflectance(0), data_type="radiance"), "radiance, not"),
    (lambda p: write_asd(p, 350, 1, _reflectance(0), data_type="raw"), "white reference"),
    (lambda p: p.write_bytes(_by_hand(p, _reflectance(0)).read_bytes()[:2000]), "truncated"),
])
def test_unreadable_asd_files_are_named_with_the_fix(tmp_path, make, message):
    path = tmp_path / "bad.asd"
    make(path)
    with pytest.raises(ValueError, match=message) as error:
        import_asd(path, grid=GRID, library="x")
    assert "bad.asd" in str(error.value)


def test_localsoc_site_reads_a_directory_of_asd_files(tmp_path):
    from click.testing import CliRunner

    from localsoc.command_line import main
    from tests.conftest import make_scratch_project

    project = make_scratch_project(tmp_path / "project")
    folder = tmp_path / "scans"
    folder.mkdir()
    for i in range(5):
        write_asd(folder / f"F{i}.asd", 350, 1, 1000 * _reflectance(i), data_type="raw",
                  reference=np.full(WAVELENGTHS.size, 1000.0))
    pd.DataFrame({"sample_id": ["F0", "F1"], "TotalCarbon": [1.2, 2.4]}).to_csv(
        tmp_path / "labels.csv", index=False)
    result = CliRunner().invoke(
        main, ["site", str(folder), "--name", "scans", "--labels", str(tmp_path / "labels.csv"),
               "--carbon-column", "TotalCarbon", "--no-dvc"],
        env={"LOCALSOC_PROJECT": str(project)})
    assert result.exit_code == 0, result.output
    assert "2 labelled rows" in result.output and "3 unlabelled rows" in result.output
    stored = pd.read_parquet(project / "data/01_raw/imports/sites/scans.parquet")
    # raw DN / white reference: the reflectance, as the wide importer gives it on that grid
    from localsoc.data.importers import import_wide
    from localsoc.data.schema import wavelengths_of

    bands = wavelengths_of(stored)
    wide = pd.DataFrame([_reflectance(i) for i in range(5)],
                        columns=[f"nm_{w:g}" for w in WAVELENGTHS])
    expected, _ = import_wide(wide, grid=Grid(bands[0], bands[-1], bands[1] - bands[0]),
                              library="x", spectra="reflectance", carbon_column=None)
    np.testing.assert_allclose(spectra_of(stored), spectra_of(expected), rtol=1e-12)
