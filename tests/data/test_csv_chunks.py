"""A CSV import read in chunks (``importers.CSV_CHUNK_BYTES``) gives the table and the messages
of one read of the whole file: here a few rows per chunk stand for a large file."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner

from localsoc.command_line import main
from localsoc.data import importers
from localsoc.data.importers import import_wide
from tests.conftest import make_scratch_project
from tests.data.test_importers import GRID, wide_frame

ROWS = 40
BAD_ROW = 37


@pytest.fixture
def small_chunks(monkeypatch):
    """About two rows of this file's 9 kB rows per chunk."""
    monkeypatch.setattr(importers, "CSV_CHUNK_BYTES", 20_000)


def source_frame() -> pd.DataFrame:
    """Ids that are numbers with leading zeros in the first chunks and text later (one with a
    comma, one with a line break, both quoted in the file), blank carbon cells."""
    frame = wide_frame(rows=ROWS)
    frame["lab_id"] = [f"{r:04d}" for r in range(ROWS - 3)] + ["A, 1", "B\n2", "C3"]
    frame.loc[[3, 30], "soc"] = np.nan
    return frame


def import_csv(path):
    return import_wide(path, grid=GRID, library="lab", id_column="lab_id")


def message(path) -> str:
    with pytest.raises(ValueError) as error:
        import_csv(path)
    return str(error.value)


def test_a_file_read_in_chunks_imports_as_one_read_of_it(tmp_path, monkeypatch):
    path = tmp_path / "wide.csv"
    source_frame().to_csv(path, index=False)
    with open(path, "ab") as handle:
        handle.write(b"\n")  # a blank line at the end, skipped
    whole, whole_report = import_csv(path)
    monkeypatch.setattr(importers, "CSV_CHUNK_BYTES", 20_000)
    monkeypatch.setattr(importers, "MATRIX_PART_BYTES", 10_000)  # 2 rows of the floats
    chunked, chunked_report = import_csv(path)
    pd.testing.assert_frame_equal(chunked, whole)
    assert chunked_report == whole_report
    assert chunked["sample_id"].tolist()[:2] == ["0000", "0001"]  # the zeros are kept
    assert chunked["sample_id"].tolist()[-3:] == ["A, 1", "B\n2", "C3"]
    assert chunked["soc"].isna().sum() == 2
    # and as pandas.read_csv of the whole file, given as a DataFrame
    from_frame, _ = import_wide(pd.read_csv(path), grid=GRID, library="lab",
                                id_column="lab_id")
    pd.testing.assert_frame_equal(chunked, from_frame)


def test_a_non_numeric_cell_in_a_late_chunk_is_named_as_in_one_read(tmp_path, monkeypatch):
    frame = source_frame().astype({"nm_1000": object})
    frame.loc[BAD_ROW, "nm_1000"] = "#VALUE!"
    path = tmp_path / "wide.csv"
    frame.to_csv(path, index=False)
    whole = message(path)
    monkeypatch.setattr(importers, "CSV_CHUNK_BYTES", 20_000)
    assert message(path) == whole == (
        f"spectral column 'nm_1000', row {BAD_ROW} (counting from 0): '#VALUE!' is not a "
        "number; fix or blank the cell")


def write_with_bad_row(path, cut: int) -> None:
    """The source as CSV with its row BAD_ROW missing (cut < 0) or gaining (cut > 0) a field
    in the middle of the spectrum."""
    lines = source_frame().drop(columns="lab_id").to_csv(index=False).splitlines(keepends=True)
    cells = lines[1 + BAD_ROW].split(",")
    lines[1 + BAD_ROW] = ",".join(cells[:200] + cells[200 - cut:] if cut < 0
                                  else cells[:200] + ["0.5"] * cut + cells[200:])
    path.write_text("".join(lines))


@pytest.mark.parametrize(("cut", "what"), [(-1, "fewer"), (1, "more")])
def test_a_row_with_a_lost_or_an_extra_field_is_refused_naming_it(tmp_path, small_chunks,
                                                                   cut, what):
    path = tmp_path / "wide.csv"
    write_with_bad_row(path, cut)
    text = message(path)
    fields = len(wide_frame().columns) - 1  # soc and the bands (no id column)
    assert text.startswith(f"{path}: row {BAD_ROW} (counting from 0; line {BAD_ROW + 2} of the "
                           f"file, starting ")
    assert f"has {fields + cut} fields, {what} than the {fields} columns of the header" in text
    assert "Give every row one field per column" in text and "remove the row" in text


def test_the_command_prints_the_malformed_row_on_one_line(tmp_path, small_chunks):
    project = make_scratch_project(tmp_path / "project")
    path = tmp_path / "wide.csv"
    write_with_bad_row(path, -1)
    result = CliRunner().invoke(main, ["import", str(path), "--library", "lab", "--no-dvc"],
                                env={"LOCALSOC_PROJECT": str(project)})
    assert result.exit_code != 0
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: "), result.output
    assert f"row {BAD_ROW} (counting from 0; line {BAD_ROW + 2}" in lines[0]
    assert not list((project / "data/01_raw/imports").rglob("*.parquet"))
