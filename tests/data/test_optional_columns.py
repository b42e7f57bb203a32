"""The optional site columns (stratum, bulk density, depth) reach the canonical table."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from localsoc.data import schema
from localsoc.data.importers import import_wide
from localsoc.data.schema import Grid, band_columns
from tests.data.test_importers import wide_frame

GRID = Grid()


def test_optional_columns_are_kept_in_their_dtypes():
    frame = wide_frame(rows=3)
    frame.insert(1, "Stratum", ["north", " ", "south"])
    frame.insert(1, "bulk_density_g_cm3", [1.2, None, 1.4])
    frame.insert(1, "depth_cm", [30, 30, 20])
    table, report = import_wide(frame, grid=GRID, library="field")
    n_meta = len(schema.META_COLUMNS)
    assert list(table.columns[n_meta:n_meta + 3]) == list(schema.OPTIONAL_COLUMNS)
    assert table.columns[n_meta + 3] == band_columns(table)[0]
    assert table["stratum"].tolist()[0] == "north" and pd.isna(table["stratum"].iloc[1])
    np.testing.assert_allclose(table["bulk_density_g_cm3"], [1.2, np.nan, 1.4])
    assert table["depth_cm"].dtype == np.float64
    assert "Stratum" not in report.ignored_columns
    assert any("optional column" in note for note in report.notes)


def test_a_bad_bulk_density_names_its_row():
    frame = wide_frame(rows=3)
    frame.insert(1, "bulk_density_g_cm3", [1.2, 12.0, 1.4])
    with pytest.raises(ValueError, match=r"row 1: '12\.0' is not a bulk_density_g_cm3"):
        import_wide(frame, grid=GRID, library="field")
