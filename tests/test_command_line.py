"""`localsoc import` / `localsoc site` on unreadable files and unusable names: one line that
says what to fix, a non-zero exit code, no traceback."""

from __future__ import annotations

import gzip

import pytest
from click.testing import CliRunner

from localsoc.command_line import main
from tests.conftest import make_scratch_project
from tests.data.test_importers import wide_frame


@pytest.fixture(scope="module")
def project(tmp_path_factory):
    return make_scratch_project(tmp_path_factory.mktemp("cli"))


def write_truncated_gzip(path):
    data = gzip.compress(wide_frame(rows=20).to_csv(index=False).encode())
    path.write_bytes(data[: len(data) // 2])


def write_latin1(path):
    frame = wide_frame().rename(columns={"lab_id": "échantillon"})
    path.write_bytes(frame.to_csv(index=False).encode("latin-1"))


def write_binary(path):
    path.write_bytes(bytes(range(256)) * 40)


def write_semicolons(path):
    wide_frame().to_csv(path, sep=";", index=False)


@pytest.mark.parametrize(
    ("command", "name", "write", "expected"),
    [
        ("import", "lib", write_truncated_gzip, "incomplete"),
        ("site", "field", write_latin1, "save it as comma-separated utf-8"),
        ("import", "lib", write_binary, "binary file"),
        ("site", "field", write_semicolons, "';'"),
        ("import", "x" * 300, lambda path: wide_frame().to_csv(path, index=False),
         "at most 100 characters"),
    ],
    ids=["truncated-gzip", "latin-1", "binary", "semicolons", "long-name"],
)
def test_unreadable_files_and_names_get_one_line_saying_what_to_fix(project, tmp_path, command,
                                                                    name, write, expected):
    path = tmp_path / ("spectra.csv.gz" if write is write_truncated_gzip else "spectra.csv")
    write(path)
    flag = "--as" if command == "import" else "--name"
    result = CliRunner().invoke(main, [command, str(path), flag, name, "--no-dvc"],
                                env={"LOCALSOC_PROJECT": str(project)})
    assert result.exit_code != 0
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: "), result.output
    assert expected in lines[0].lower()
    assert not list((project / "data/01_raw/imports").rglob("*.parquet"))
