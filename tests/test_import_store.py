"""Storing an import is all or nothing (#27 item 5): DVC runs as ``python -m dvc`` (no ``dvc`` on
PATH needed), a failing ``dvc add`` puts the previous table back (or removes a new one), and the
hidden staging leftovers of killed imports are removed by the next import, never a live one's.

Real DVC repositories in temporary directories; real processes killed for the leftovers."""

from __future__ import annotations

import hashlib
import os
import shutil
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import yaml

from localsoc.datasets.atomic import staging_path
from localsoc.workflow import IMPORTS
from tests.conftest import PROJECT_ROOT
from tests.datasets.test_imported_tables import SMALL_GRID, store, wide_source

#: PATH without the virtual environment's bin folder (where the ``dvc`` script lives).
BARE_PATH = os.pathsep.join(p for p in ("/usr/local/bin", "/usr/bin", "/bin")
                            if Path(p).is_dir())


def tracked_store(project, source, name, kind="library"):
    from localsoc.workflow import import_table
    from tests.conftest import load_params

    return import_table(project, source, name=name, kind=kind, grid=SMALL_GRID,
                        validate_params=load_params("base")["validate"], track=True,
                        spectra="reflectance", carbon_column="soc")


@pytest.fixture
def dvc_project(tmp_path, monkeypatch):
    """A git + DVC repository, with PATH that has no ``dvc``."""
    project = tmp_path / "project"
    project.mkdir()
    for command in (["git", "init", "-q"], [sys.executable, "-m", "dvc", "init", "-q"]):
        done = subprocess.run(command, cwd=project, capture_output=True, text=True)
        assert done.returncode == 0, done.stderr
    monkeypatch.setenv("PATH", BARE_PATH)
    monkeypatch.setenv("DVC_NO_ANALYTICS", "1")
    assert shutil.which("dvc") is None, "this test needs a PATH without dvc"
    for rows, seed in ((40, 0), (50, 1)):
        wide_source(tmp_path / f"source{rows}.parquet", rows, 10.0, seed=seed)
    return project


def md5(path: Path) -> str:
    return hashlib.md5(path.read_bytes()).hexdigest()


def test_import_is_tracked_by_dvc_without_dvc_on_path(dvc_project, tmp_path):
    outcome = tracked_store(dvc_project, tmp_path / "source40.parquet", "lib")
    assert outcome.dvc.startswith("tracked by DVC"), outcome.dvc
    dvc_file = outcome.path.with_name("lib.parquet.dvc")
    (out,) = yaml.safe_load(dvc_file.read_text())["outs"]
    assert out["path"] == "lib.parquet" and out["md5"] == md5(outcome.path)
    assert "/lib.parquet" in (outcome.path.parent / ".gitignore").read_text().split()


def break_dvc(project: Path) -> None:
    (project / ".dvc/config").write_text("[core\nthis is not a config\n")


def test_a_failing_dvc_add_puts_the_previous_table_back(dvc_project, tmp_path):
    first = tracked_store(dvc_project, tmp_path / "source40.parquet", "lib")
    folder = first.path.parent
    before = {p.name: p.read_bytes() for p in folder.iterdir()}
    break_dvc(dvc_project)
    with pytest.raises(ValueError, match="dvc add") as error:
        tracked_store(dvc_project, tmp_path / "source50.parquet", "lib")
    assert "the previous table is back" in str(error.value)
    assert {p.name: p.read_bytes() for p in folder.iterdir()} == before  # no leftover either


def test_a_failing_dvc_add_removes_a_new_table(dvc_project, tmp_path):
    break_dvc(dvc_project)
    with pytest.raises(ValueError, match="dvc add") as error:
        tracked_store(dvc_project, tmp_path / "source40.parquet", "site1", kind="site")
    assert "no table was stored" in str(error.value) and "--no-dvc" in str(error.value)
    folder = dvc_project / IMPORTS / "sites"
    assert sorted(p.name for p in folder.iterdir()) == []


WRITER = textwrap.dedent("""
    import os, signal, sys, time
    from localsoc.datasets.atomic import staging_path
    staged = staging_path(sys.argv[1])
    staged.write_bytes(b"PAR1 half a table")
    print(staged, flush=True)
    if sys.argv[2] == "die":
        os.kill(os.getpid(), signal.SIGKILL)
    time.sleep(600)
""")


def leave_staging(target: Path, how: str) -> tuple[subprocess.Popen, Path]:
    """A writer process that stages ``target`` and is killed (``die``) or keeps writing."""
    child = subprocess.Popen([sys.executable, "-c", WRITER, str(target), how], cwd=PROJECT_ROOT,
                             stdout=subprocess.PIPE, text=True)
    staged = Path(child.stdout.readline().strip())
    assert staged.exists() and staged.name.startswith(f".{target.name}.saving-{child.pid}-")
    if how == "die":
        assert child.wait(timeout=60) == -signal.SIGKILL
    return child, staged


def test_the_next_import_removes_killed_imports_leftovers_only(tmp_path):
    project = tmp_path / "project"
    wide_source(tmp_path / "source.parquet", 40, 10.0)
    folder = project / IMPORTS / "libraries"
    folder.mkdir(parents=True)
    _, dead_same = leave_staging(folder / "lib.parquet", "die")
    _, dead_other = leave_staging(folder / "other.parquet", "die")
    live, live_staged = leave_staging(folder / "lib.parquet", "write")
    not_ours = folder / ".notes.saving-draft"
    not_ours.write_text("a user's file")
    try:
        store(project, tmp_path / "source.parquet", "lib", SMALL_GRID)
        left = sorted(p.name for p in folder.iterdir())
        assert left == sorted([live_staged.name, not_ours.name, "lib.parquet"])
        assert not dead_same.exists() and not dead_other.exists()
    finally:
        live.kill()
        live.wait(timeout=60)
    store(project, tmp_path / "source.parquet", "lib", SMALL_GRID)
    assert sorted(p.name for p in folder.iterdir()) == sorted([not_ours.name, "lib.parquet"])


def test_staging_names_parse_back(tmp_path):
    from localsoc.datasets.atomic import STAGING_NAME

    staged = staging_path(tmp_path / "lib.parquet")
    match = STAGING_NAME.match(staged.name)
    assert match["target"] == "lib.parquet" and int(match["pid"]) == os.getpid()
