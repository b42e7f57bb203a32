"""Imported tables on disk: an interrupted import keeps the previous table, ingest reads only
the tables a run names, and a damaged table is an error that names the file and the fix."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time

import numpy as np
import pandas as pd
import pytest

from localsoc.data.schema import Grid, band_columns
from localsoc.datasets.imported_tables import ImportedTablesDataset
from localsoc.pipelines.ingest.nodes import ingest_tables
from localsoc.workflow import IMPORTS, import_table, imported_grid
from tests.conftest import PROJECT_ROOT, load_params

SMALL_GRID = {"start_nm": 400.0, "stop_nm": 2500.0, "step_nm": 10.0}
FINE_GRID = {"start_nm": 400.0, "stop_nm": 2500.0, "step_nm": 1.0}  # a long write


def wide_source(path, rows: int, step_nm: float, seed: int = 0) -> None:
    rng = np.random.default_rng(seed)
    wavelengths = np.arange(400.0, 2501.0, step_nm)
    spectra = rng.uniform(0.1, 0.6, (rows, 1)) + 0.05 * np.sin(wavelengths / 300.0)
    frame = pd.DataFrame(spectra, columns=[f"nm_{w:g}" for w in wavelengths])
    frame.insert(0, "soc", rng.uniform(0.5, 4.0, rows))
    frame.to_parquet(path, index=False)


def store(project, source, name, grid, kind="library"):
    params = load_params("base")
    return import_table(project, source, name=name, kind=kind, grid=grid,
                        validate_params=params["validate"], track=False,
                        spectra="reflectance", carbon_column="soc")


CHILD = textwrap.dedent("""
    import sys
    from pathlib import Path
    from tests.datasets.test_imported_tables import FINE_GRID, store
    store(Path(sys.argv[1]), sys.argv[2], "lib", FINE_GRID)
""")


@pytest.mark.slow
def test_an_import_killed_while_writing_keeps_the_previous_table_and_grid(tmp_path):
    project = tmp_path / "project"
    folder = project / IMPORTS / "libraries"
    wide_source(tmp_path / "small.parquet", 40, 10.0)
    wide_source(tmp_path / "big.parquet", 4000, 1.0, seed=1)
    first = store(project, tmp_path / "small.parquet", "lib", SMALL_GRID)
    before = {entry.name: os.stat(entry.path) for entry in os.scandir(folder)}

    child = subprocess.Popen([sys.executable, "-c", CHILD, str(project),
                              str(tmp_path / "big.parquet")], cwd=PROJECT_ROOT,
                             stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 300
    while True:  # SIGKILL as soon as the import starts writing into the folder
        now = {entry.name: os.stat(entry.path) for entry in os.scandir(folder)}
        changed = set(now) != set(before) or any(
            (now[n].st_size, now[n].st_mtime_ns) != (before[n].st_size, before[n].st_mtime_ns)
            for n in now)
        if changed:
            os.kill(child.pid, signal.SIGKILL)
            break
        if child.poll() is not None:
            pytest.fail(f"the import ended before it was killed:\n{child.stdout.read()}")
        if time.monotonic() > deadline:
            child.kill()
            pytest.fail("the import never started writing")
        time.sleep(0.0005)
    assert child.wait(timeout=60) == -signal.SIGKILL

    tables = ImportedTablesDataset(directory=str(folder)).load()
    assert list(tables) == ["lib"]
    pd.testing.assert_frame_equal(tables["lib"], first.table)
    grid = imported_grid(project, "library", "lib")
    assert grid == SMALL_GRID
    assert band_columns(tables["lib"]) == Grid.from_params(grid).columns

    assert [p.name for p in folder.glob(".lib.parquet.saving-*")]  # the killed write's leftover
    again = store(project, tmp_path / "big.parquet", "lib", FINE_GRID)  # the next import works
    assert len(again.table) == 4000 and imported_grid(project, "library", "lib") == FINE_GRID
    assert sorted(p.name for p in folder.iterdir()) == ["lib.parquet"]  # and removes it


@pytest.fixture
def imports_with_a_damaged_table(tmp_path):
    project = tmp_path / "project"
    wide_source(tmp_path / "lib.parquet", 40, 10.0)
    store(project, tmp_path / "lib.parquet", "good", SMALL_GRID)
    store(project, tmp_path / "lib.parquet", "field", SMALL_GRID, kind="site")
    (project / IMPORTS / "libraries" / "broken.parquet").write_bytes(b"")  # a killed write
    return project


def ingest(project, **params):
    folder = project / IMPORTS
    libraries = ImportedTablesDataset(directory=str(folder / "libraries")).load()
    sites = ImportedTablesDataset(directory=str(folder / "sites")).load()
    settings = {"source": "files", "libraries": None, "sites": None,
                "simulate": {"global_size": 600, "sites": ["china_site"]}, **params}
    return ingest_tables(settings, SMALL_GRID, {"seed": 1}, libraries, sites)


def test_ingest_reads_only_the_tables_the_run_names(imports_with_a_damaged_table):
    project = imports_with_a_damaged_table
    library, _ = ingest(project, source="simulate")  # reads no import
    assert len(library) > 0 and "good" not in set(library["library"])
    library, sites = ingest(project, libraries=["good"], sites=["field"])
    assert set(library["library"]) == {"good"} and len(sites) == 40


def test_a_damaged_table_names_the_file_and_the_fix(imports_with_a_damaged_table):
    project = imports_with_a_damaged_table
    for attempt in (lambda: ingest(project), lambda: ingest(project, libraries=["broken"]),
                    lambda: imported_grid(project, "library", "broken")):
        with pytest.raises(ValueError, match="broken.parquet") as error:
            attempt()
        assert "re-run the import" in str(error.value) and "--library broken" in str(error.value)


def test_a_table_never_imported_is_not_called_damaged(tmp_path):
    from localsoc.datasets.imported_tables import read_table

    with pytest.raises(FileNotFoundError, match="nothing was imported") as error:
        read_table(tmp_path / "usa_site.parquet")
    assert "damaged" not in str(error.value) and "delete" not in str(error.value)


def test_the_grid_travels_inside_the_table(imports_with_a_damaged_table):
    project = imports_with_a_damaged_table
    folder = project / IMPORTS / "libraries"
    assert sorted(p.name for p in folder.iterdir()) == ["broken.parquet", "good.parquet"]
    assert imported_grid(project, "library", "good") == SMALL_GRID
