"""The `localsoc` command line: unreadable files and unusable names get one line that says what
to fix; one option name per concept in every command (old names kept, hidden, with a note);
consistent defaults; the help lists the user commands, each with an example."""

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
    flag = "--library" if command == "import" else "--site"
    result = CliRunner().invoke(main, [command, str(path), flag, name, "--no-dvc"],
                                env={"LOCALSOC_PROJECT": str(project)})
    assert result.exit_code != 0
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: "), result.output
    assert expected in lines[0].lower()
    assert not list((project / "data/01_raw/imports").rglob("*.parquet"))


USER_COMMANDS = {"run", "import", "site", "plan", "study", "predict"}
INTERNAL_COMMANDS = {"stage", "dvc-yaml"}  # called by dvc.yaml and `localsoc run`


def test_the_help_lists_the_user_commands_only_each_with_an_example():
    result = CliRunner().invoke(main, ["--help"])
    assert result.exit_code == 0
    listed = result.output.split("Commands:")[1].split()
    assert USER_COMMANDS <= set(listed) and not INTERNAL_COMMANDS & set(listed)
    for command in USER_COMMANDS | INTERNAL_COMMANDS:  # the internal ones still answer
        text = CliRunner().invoke(main, [command, "--help"]).output
        assert "Example" in text and f"localsoc {command}" in text, (command, text)


def test_version():
    from importlib.metadata import version

    result = CliRunner().invoke(main, ["--version"])
    assert result.exit_code == 0 and result.output.strip() == f"localsoc, version " \
        f"{version('localsoc')}"


@pytest.mark.parametrize("command", sorted(USER_COMMANDS - {"run", "study"}))
def test_one_name_for_the_site_and_the_library_and_one_default_environment(command):
    from localsoc.command_line import DEFAULT_ENV

    options = {param.name: param for param in main.commands[command].params}
    visible = {opt for param in options.values() if not getattr(param, "hidden", False)
               for opt in param.opts}
    assert ("--library" if command == "import" else "--site") in visible
    assert not {"--as", "--name"} & visible
    if "env" in options:
        assert options["env"].default == DEFAULT_ENV
    for other in ("run", "study"):
        assert {p.name: p for p in main.commands[other].params}["env"].default == DEFAULT_ENV


def write_library(path, rows=30):
    wide_frame(rows=rows).to_csv(path, index=False)
    return str(path)


@pytest.mark.parametrize(("command", "old", "new", "kind"), [
    ("import", "--as", "--library", "libraries"), ("site", "--name", "--site", "sites")])
def test_old_option_names_still_work_and_say_the_new_one(project, tmp_path, command, old, new,
                                                         kind):
    name = f"old_{command}"
    result = CliRunner().invoke(main, [command, write_library(tmp_path / "lib.csv", 3), old,
                                       name, "--no-dvc"], env={"LOCALSOC_PROJECT": str(project)})
    assert result.exit_code == 0, result.output
    assert f"Note: {old} is deprecated; use {new}" in result.output
    assert (project / f"data/01_raw/imports/{kind}/{name}.parquet").exists()
    new_name = CliRunner().invoke(main, [command, str(tmp_path / "lib.csv"), new, name,
                                         "--no-dvc"], env={"LOCALSOC_PROJECT": str(project)})
    assert new_name.exit_code == 0 and "deprecated" not in new_name.output


@pytest.mark.parametrize(("arguments", "message"), [
    ([], "Missing option '--library'"),
    (["--library", "a", "--as", "b"], "--library 'a' and --as 'b' disagree"),
])
def test_the_name_must_be_given_once(project, tmp_path, arguments, message):
    result = CliRunner().invoke(main, ["import", write_library(tmp_path / "lib.csv", 3),
                                       "--no-dvc", *arguments],
                                env={"LOCALSOC_PROJECT": str(project)})
    assert result.exit_code == 2 and message in result.output


def test_plan_draws_the_environments_validation_samples_like_study(project, tmp_path):
    """`plan --validation` defaulted to 0 while `study --validation` takes split.n_validation
    (conf/base: 20): both take conf's now."""
    from localsoc.workflow import project_parameters

    expected = int(project_parameters(project, "demo")["split"]["n_validation"])
    result = CliRunner().invoke(main, ["plan", write_library(tmp_path / "scans.csv"), "--site",
                                       "planned", "--n", "3", "--id-column", "lab_id",
                                       "--no-dvc"],
                                env={"LOCALSOC_PROJECT": str(project)})
    assert result.exit_code == 0, result.output
    assert f"3 calibration samples (Kennard-Stone) and {expected} validation samples" in \
        " ".join(result.output.split())
    assert "`localsoc site FILE --site planned`" in " ".join(result.output.split())
    # an option plan had once and never used: accepted, and said to do nothing
    assert "Note: --no-dvc has no effect in `localsoc plan`; ignored" in result.output


def test_study_profile_is_a_hidden_old_name_of_env(project):
    env = {"LOCALSOC_PROJECT": str(project)}
    clash = CliRunner().invoke(main, ["study", "--site", "x", "--profile", "full", "--env",
                                      "demo"], env=env)
    assert clash.exit_code == 2 and "--env demo and --profile full disagree" in clash.output
    old = CliRunner().invoke(main, ["study", "--site", "nowhere", "--profile", "full"], env=env)
    assert "Note: --profile is deprecated; use --env base" in old.output
    assert old.exit_code == 1 and "no imported site 'nowhere'" in old.output
    assert "--profile" not in CliRunner().invoke(main, ["study", "--help"]).output
