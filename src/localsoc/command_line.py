"""The `localsoc` command line: a thin layer over the Kedro pipelines (no logic of its own).

Not named cli.py: Kedro imports `<package>.cli` as project commands and would take its `run`
for `kedro run`.
"""

from __future__ import annotations

import functools
import json
import os
import time
from pathlib import Path

import click

from localsoc.change_command import later_campaign_options
from localsoc.change_command import register as register_change
from localsoc.command_options import (  # noqa: F401  (re-exported: commands, tests)
    CARBON,
    DEFAULT_ENV,
    FILE_OPTIONS,
    GRID,
    READING,
    STORING,
    FileOptions,
    file_options,
    project_root,
    start_tensorflow,
)

#: TensorFlow's C++ log level as the user's environment set it (None: not set).
USER_TF_LOG_LEVEL = os.environ.get("TF_CPP_MIN_LOG_LEVEL")
for _name, _value in (
    ("KEDRO_DISABLE_TELEMETRY", "true"),
    ("DVC_NO_ANALYTICS", "1"),
    ("BENTOML_DO_NOT_TRACK", "true"),
    ("TF_CPP_MIN_LOG_LEVEL", "3"),
):
    os.environ.setdefault(_name, _value)

def run_stages(
    stages: list[str], env: str, params: dict | None = None, project: Path | None = None
) -> dict[str, float]:
    """Run the named pipelines in order, one Kedro session each; return seconds per stage.
    Each banner numbers the stage among all of the study's (``stage 5/13``)."""
    from kedro.framework.session import KedroSession
    from kedro.framework.startup import bootstrap_project
    from rich.console import Console

    from localsoc.pipeline_registry import STAGES
    from localsoc.quiet_start import filter_library_info

    console = Console(stderr=True)
    project = project or project_root()
    bootstrap_project(project)
    filter_library_info()  # after Kedro set up logging from conf/logging.yml
    seconds: dict[str, float] = {}
    for number, stage in enumerate(stages, start=1):
        position = (f"{STAGES.index(stage) + 1}/{len(STAGES)}" if stage in STAGES
                    else f"{number}/{len(stages)}")
        console.rule(f"[bold]stage {position}: {stage}")
        start = time.perf_counter()
        with KedroSession.create(project_path=project, env=env, runtime_params=params) as session:
            session.run(pipeline_names=[stage])
        seconds[stage] = round(time.perf_counter() - start, 2)
        console.print(f"[green]{stage} done in {seconds[stage]:.1f} s")
    return seconds


def print_summary(project: Path, seconds: dict[str, float], study: bool = True) -> None:
    """The data summary, the study table and winners (when the study ran), and where to look."""
    import pandas as pd
    from rich.console import Console
    from rich.markdown import Markdown
    from rich.table import Table

    console = Console()
    if not console.is_terminal:
        console = Console(width=150)  # piped or logged: don't squeeze the tables to 80 columns
    reporting = project / "data/08_reporting"
    summary_path = reporting / "data_summary.csv"
    if summary_path.exists():
        summary = pd.read_csv(summary_path)
        table = Table(title="Data (SOC in %)")
        columns = ["set", "kind", "samples", "quarantined", "calibration", "validation",
                   "test", "mean", "sd", "min", "median", "max"]
        for column in columns:
            table.add_column(column, justify="left" if column in ("set", "kind") else "right")
        for row in summary.to_dict("records"):
            table.add_row(*[_cell(row.get(column)) for column in columns])
        console.print(table)
    study_table = reporting / "study_table.md"
    if study_table.exists() and study:
        console.rule("[bold]Models on each site's untouched test set (paper's Table 3 layout)")
        console.print(Markdown(study_table.read_text()))
        winners = json.loads((reporting / "study_winners.json").read_text())
        table = Table(title="Winner per site (chosen on the nested calibration RMSE; "
                            "not the test set)")
        for column in ("site", "winner", "nested cal. RMSE", "test RMSE", "dRMSE %",
                       "coverage", "mean width", "best on test"):
            table.add_column(column)
        for site, winner in sorted(winners.items()):
            test = winner["test_metrics"]
            table.add_row(site, winner["method"], f"{winner['cal_rmse']:.3f}",
                          "no test set" if test["rmse"] is None else f"{test['rmse']:.3f}",
                          "" if test["drmse"] is None else f"{test['drmse']:+.1f}",
                          "" if test["coverage"] is None else f"{test['coverage']:.2f}",
                          "" if test["mean_width"] is None else f"{test['mean_width']:.3f}",
                          winner["best_on_test"] or "")
        console.print(table)
    if seconds:
        timing = ", ".join(f"{k} {v:.1f} s" for k, v in seconds.items())
        console.print(f"Stages run now: {timing}; total {sum(seconds.values()):.1f} s")
    for label, path in (("Report", reporting / "report.md"),
                        ("Report (HTML)", reporting / "report.html"),
                        ("Validation report", reporting / "validation_report.json"),
                        ("Served model bundle tag", project / "data/06_models/bento_tag.txt")):
        if path.exists():
            console.print(f"{label}: {path}")


def _cell(value) -> str:
    if isinstance(value, float):
        return "" if value != value else f"{value:.2f}"
    return "" if value is None else str(value)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="localsoc", prog_name="localsoc")
@click.option("--verbose", is_flag=True,
              help="show TensorFlow's start-up lines (oneDNN, CUDA, absl) on the console")
def main(verbose: bool) -> None:
    """LocalSOC: localise a large soil spectral library to one field's SOC.

    \b
    Examples:
      localsoc run                                         the demo study (make run)
      localsoc import nirsoil.csv --library nirsoil --spectra absorbance
      localsoc site field.csv --site my_field --carbon-column TotalCarbon
      localsoc study --site my_field --library nirsoil
      localsoc predict --site my_field                     its unlabelled scans
    """
    import sys

    from localsoc.quiet_start import VERBOSE_ENV, plain_progress_when_piped

    # a log file gets progress lines, not carriage returns; the stream the command found is
    # put back when it ends (a command run in-process, e.g. by a test, leaves no wrapper)
    stderr = sys.stderr
    plain_progress_when_piped()
    click.get_current_context().call_on_close(lambda: setattr(sys, "stderr", stderr))
    if verbose:
        os.environ[VERBOSE_ENV] = "1"  # inherited by the Kedro / DVC processes a command starts
        if USER_TF_LOG_LEVEL is None:
            os.environ["TF_CPP_MIN_LOG_LEVEL"] = "0"  # TensorFlow reads it when imported


STAGE_LOG_VARIABLE = "LOCALSOC_STAGE_LOG"  # where `localsoc stage` notes what ran, for run/study


def run_through_dvc(project: Path, env: str, params: dict | None = None,
                    stages: list[str] | None = None, force: bool = False) -> dict[str, float]:
    """Run the study's stages with `dvc repro`: write params.yaml (the resolved parameters of
    ``env`` with ``params`` merged), regenerate dvc.yaml from the pipelines if it is stale, and
    let DVC run the stages whose code, data or parameters changed (all of ``stages`` with
    ``force``); dvc.lock records each. Returns seconds per stage that ran (empty: up to date).

    A project that is not a DVC repository (no .dvc/) runs the stages in this process instead,
    and says so: nothing is recorded."""
    from rich.console import Console

    start_tensorflow()  # quietly, before the pipelines (dvc.yaml's generator) import it
    from localsoc.dvc_stages import write_params
    from localsoc.pipeline_registry import STAGES

    console = Console(stderr=True)
    if not (project / ".dvc").is_dir():
        console.print(f"[yellow]{project} is not a DVC repository (no .dvc/): the stages run in "
                      "this process and no dvc.lock records them (`dvc init` to record runs)")
        return run_stages(list(stages or STAGES), env, params=params, project=project)
    if not (project / "src" / "localsoc").is_dir():
        raise click.ClickException(
            f"{project}/src/localsoc: the package source is not in this project; the DVC "
            "stages depend on it. Run from a clone of the project")
    write_params(project, env, params)
    _refresh_dvc_yaml(project, console)
    seconds = _dvc_repro(project, stages, force, console)
    if not seconds:
        console.print("[green]Nothing changed since the last run: every stage is up to date "
                      "(dvc.lock); the results below are that run's")
    if (not stages or "package" in stages) and not _bundle_in_store(project):
        # dvc.lock knows the tag file, not the BentoML store it points into (another machine,
        # a cleared $BENTOML_HOME): package again so the served model exists
        console.print("[yellow]the BentoML store has no model of data/06_models/bento_tag.txt: "
                      "running the package stage again")
        seconds.update(run_through_dvc(project, env, params, stages=["package"], force=True))
    return seconds


def _refresh_dvc_yaml(project: Path, console) -> None:
    """Write dvc.yaml from the pipelines when it is missing or stale."""
    from localsoc.datasets.atomic import write_text
    from localsoc.dvc_stages import DVC_FILE, dvc_yaml

    text = dvc_yaml(project)
    dvc_file = project / DVC_FILE
    if not dvc_file.exists() or dvc_file.read_text() != text:
        write_text(dvc_file, text)
        console.print(f"{DVC_FILE} written from the pipelines (`localsoc dvc-yaml`)")


#: `python -m dvc`, less DVC's "To track the changes with git, run: git add dvc.lock" and
#: "To enable auto staging" hints (its scm_context logger at WARNING): the run commands print
#: where the results are, and committing dvc.lock is the user's choice.
DVC_WITHOUT_GIT_HINTS = ("import logging, sys; from dvc.cli import main; "
                         "logging.getLogger('dvc.repo.scm_context').setLevel(logging.WARNING); "
                         "sys.exit(main(sys.argv[1:]))")


def _dvc_repro(project: Path, stages: list[str] | None, force: bool,
               console) -> dict[str, float]:
    """`dvc repro` (of ``stages``, or all) in ``project``: the seconds of each stage that ran,
    as `localsoc stage` logs them; a ClickException when DVC fails."""
    import subprocess
    import sys
    import tempfile

    command = [sys.executable, "-c", DVC_WITHOUT_GIT_HINTS, "repro",
               *(["--force"] if force else []), *(["--single-item", *stages] if stages else [])]
    with tempfile.TemporaryDirectory() as scratch:
        log = Path(scratch) / "stages.log"
        environment = {**os.environ, STAGE_LOG_VARIABLE: str(log),
                       "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
        console.rule("[bold]dvc repro")
        done = subprocess.run(command, cwd=project, env=environment)
        lines = log.read_text().splitlines() if log.exists() else []
    if done.returncode != 0:
        raise click.ClickException(
            f"`dvc repro` failed (exit {done.returncode}); the message above names the stage. "
            "Fix it and run again: the stages that finished are recorded and are not rerun")
    return {name: float(value) for name, value in (line.rsplit(" ", 1) for line in lines)}


def _bundle_in_store(project: Path) -> bool:
    tag_file = project / "data/06_models/bento_tag.txt"
    if not tag_file.exists():
        return True  # no package stage has run (or it failed): nothing to restore
    import bentoml

    try:
        bentoml.models.get(tag_file.read_text().strip())
    except bentoml.exceptions.NotFound:
        return False
    return True


def env_option(function):
    """``--env``: the Kedro environment under conf/ (every command's, ``DEFAULT_ENV``)."""
    return click.option("--env", default=DEFAULT_ENV, show_default=True,
                        help="Kedro environment under conf/: demo (CPU minutes), base (the "
                             "paper-sized search budgets, a GPU job), test, or yours")(function)


@main.command()
@env_option
@click.option(
    "--pipeline", "pipelines", multiple=True,
    help="only these stages, if changed (default: every stage, in order)"
)
@click.option("--force", is_flag=True, help="run the stages even if nothing changed")
def run(env: str, pipelines: tuple[str, ...], force: bool) -> None:
    """Run the study stages through DVC (only what changed) and print the summary.

    With --pipeline after `localsoc study`, the study's own choices (site, libraries, n,
    grid) recorded in params.yaml are kept, so the stages rerun for the same study.

    \b
    Examples:
      localsoc run                          the demo study on simulated data (make run)
      localsoc run --env base               the paper-sized budgets (a GPU job)
      localsoc run --pipeline evaluate --pipeline report
    """
    start_tensorflow()  # quietly, before the pipelines import it
    from localsoc.dvc_stages import recorded_overrides
    from localsoc.pipeline_registry import STAGES

    unknown = [s for s in pipelines if s not in STAGES]
    if unknown:
        raise click.BadParameter(f"unknown stage(s) {unknown}; stages are {list(STAGES)}")
    project = project_root()
    params = recorded_overrides(project, env) if pipelines else None
    seconds = run_through_dvc(project, env, params=params, stages=list(pipelines) or None,
                              force=force)
    print_summary(project, seconds, study=not pipelines)


@main.command(hidden=True)
@click.argument("name")
def stage(name: str) -> None:
    """Run one stage with the parameters of params.yaml (what each dvc.yaml stage calls).

    Internal: dvc.yaml's stages call it.

    \b
    Example:
      localsoc stage split
    """
    start_tensorflow()  # quietly, before the pipelines import it
    from localsoc.dvc_stages import read_params
    from localsoc.pipeline_registry import STAGES

    if name not in STAGES:
        raise click.BadParameter(f"unknown stage {name!r}; stages are {list(STAGES)}")
    project = project_root()
    try:
        env, params = read_params(project)
    except (OSError, ValueError) as error:
        raise click.ClickException(str(error)) from None
    try:
        seconds = run_stages([name], env, params=params, project=project)
    except ValueError as error:
        raise click.ClickException(str(error)) from None
    if os.environ.get(STAGE_LOG_VARIABLE):
        with open(os.environ[STAGE_LOG_VARIABLE], "a") as log:
            log.write(f"{name} {seconds[name]}\n")


@main.command(name="dvc-yaml", hidden=True)
@click.option("--check", is_flag=True, help="exit 1 if dvc.yaml differs instead of writing it")
def write_dvc_yaml(check: bool) -> None:
    """Write dvc.yaml from the pipeline registry, the catalog and the source imports.

    Internal: `localsoc run` writes it when it is stale.

    \b
    Example:
      localsoc dvc-yaml --check
    """
    start_tensorflow()  # quietly, before the pipelines import it
    from localsoc.datasets.atomic import write_text
    from localsoc.dvc_stages import DVC_FILE, dvc_yaml

    project = project_root()
    text = dvc_yaml(project)
    path = project / DVC_FILE
    current = path.read_text() if path.exists() else None
    if check:
        if current != text:
            raise click.ClickException(f"{path} is stale: run `localsoc dvc-yaml`")
        click.echo(f"{path} is current")
        return
    if current != text:
        write_text(path, text)
    click.echo(f"{path}: {'written' if current != text else 'unchanged'}")


# ---------------------------------------------------------------------------------------------
# Bring your own library and site


def ossl_options(function):
    """`import` and `site`: the OSSL level-0/1 tables joined to FILE (its vis-NIR table), and
    the carbon of .asd spectra."""
    function = click.option("--labels", type=click.Path(dir_okay=False), default=None,
                            help="for .asd spectra: a table with sample_id (the file names) "
                                 "and the carbon column")(function)
    function = click.option("--ossl-site", type=click.Path(dir_okay=False), default=None,
                            help="OSSL soil site table to join on the layer id (depths, "
                                 "coordinates)")(function)
    return click.option("--ossl-lab", type=click.Path(dir_okay=False), default=None,
                        help="OSSL soil lab table to join on the layer id (carbon)")(function)


def renamed_option(flag: str, old: str, help: str):
    """The required option ``flag`` whose old name ``old`` still works, hidden from the help,
    with a deprecation note on stderr. The command gets one keyword argument, ``flag``'s."""
    dest = flag.lstrip("-").replace("-", "_")

    def note(ctx, param, value):
        if value is not None:
            click.echo(f"Note: {old} is deprecated; use {flag} (the same in every command)",
                       err=True)
        return value

    def decorate(function):
        @functools.wraps(function)
        def command(*args, **kwargs):
            value, legacy = kwargs.pop(dest), kwargs.pop(f"legacy_{dest}")
            if value is not None and legacy is not None and value != legacy:
                raise click.UsageError(f"{flag} {value!r} and {old} {legacy!r} disagree; give "
                                       f"{flag} only")
            if value is None and legacy is None:
                raise click.UsageError(f"Missing option '{flag}'.")
            return function(*args, **{dest: value if value is not None else legacy}, **kwargs)

        command = click.option(old, f"legacy_{dest}", hidden=True, callback=note)(command)
        return click.option(flag, dest, help=help)(command)
    return decorate


def _do_import(kind: str, file: str, name: str, read: FileOptions, *, no_plan: bool = False,
               ossl: dict | None = None) -> None:
    """Import ``file`` as a library or a site (``localsoc.workflow.import_table``) and say what
    was stored."""
    from rich.console import Console

    from localsoc.workflow import import_table, project_parameters

    project = project_root()
    params = project_parameters(project, read.env)
    try:
        grid = read.grid(params["grid"])
        outcome = import_table(
            project, file, name=name, kind=kind, grid=grid, validate_params=params["validate"],
            track=not read.no_dvc, carbon_kind=read.carbon_kind, use_plan=not no_plan,
            ossl_tables={"soillab": None, "soilsite": None, "labels": None, **(ossl or {})},
            **read.importer_options(read.carbon_column))
    except (ValueError, OSError) as error:  # OSError: a file that cannot be read or written
        raise click.ClickException(str(error)) from None
    print_import(Console(), outcome, file, grid, read.carbon_kind)


def print_import(console, outcome, file: str, grid: dict, carbon_kind: str | None) -> None:
    """What an import stored: rows, units, ids, carbon, labelled rows, validation, where."""
    from localsoc.data.schema import band_columns

    report, kind = outcome.report, outcome.kind
    labelled = int(outcome.table["soc"].notna().sum())
    console.print(f"[bold]{kind} {outcome.name}[/]: {len(outcome.table)} rows from {file} "
                  f"({report['spectral_columns']} spectral columns, {report['spectral_convention']}"
                  f" naming, {report['spectra_units']}; {report['source_range_nm'][0]:g}-"
                  f"{report['source_range_nm'][1]:g} nm) -> {len(band_columns(outcome.table))}"
                  f" bands on {grid['start_nm']:g}-{grid['stop_nm']:g} nm every "
                  f"{grid['step_nm']:g} nm")
    console.print(f"  sample ids: column {report['id_column']!r}" if report["id_column"]
                  else f"  sample ids: generated ({outcome.name}-<row>; no id column found)")
    for line in report.get("conversions", []):
        console.print(f"  converted: {line}")
    console.print(f"  carbon: column {report['carbon_column']!r} ({report['carbon_units']})"
                  if report["carbon_column"] else "  carbon: none (unlabelled spectra)")
    for line in report.get("notes", []):
        if line.startswith(("OSSL", "joined", "kept", "carbon from")):
            console.print(f"  {line}")
    console.print(f"  carbon kind: {carbon_kind} carbon (recorded with the table)" if carbon_kind
                  else "  carbon kind: not declared (--carbon-kind organic|total records it)")
    if kind == "site":
        console.print(f"  {labelled} labelled rows (candidates for calibration and test), "
                      f"{len(outcome.table) - labelled} unlabelled rows (spectra to predict)")
    else:
        console.print(f"  {labelled} rows with carbon values")
    print_quarantine(console, outcome.quarantine)
    if outcome.plan_note:
        console.print(f"  {outcome.plan_note}")
    console.print(f"  stored: {outcome.path}; {outcome.dvc}")


def print_quarantine(console, quarantine) -> None:
    """The rows validation would quarantine, grouped by reason (or that every row passes)."""
    if not len(quarantine):
        console.print("  validation: every row passes")
        return
    console.print(f"[yellow]  {len(quarantine)} row(s) would be quarantined by validation:")
    for _, rows in quarantine.groupby(quarantine["failed_expectations"], sort=False):
        shown = ", ".join(str(r) for r in rows["source_row"].head(5))
        more = f" and {len(rows) - 5} more" if len(rows) > 5 else ""
        console.print(f"    {len(rows)} row(s) (rows {shown}{more}): "
                      f"{rows.iloc[0]['quarantine_reason']}")
    console.print("    (validation quarantines them with these reasons when the study runs)")


@main.command(name="import")
@click.argument("file", type=click.Path())  # a directory of .asd files too
@renamed_option("--library", "--as", "the library's name (required)")
@file_options(*STORING)
@ossl_options
def import_library(file, library, read, ossl_lab, ossl_site, labels) -> None:
    """Validate and add a spectral library (wide CSV / Parquet, OSSL naming too).

    \b
    Example:
      localsoc import nirsoil.csv.gz --library nirsoil --spectra absorbance \\
          --carbon-column Ciso --carbon-kind organic --country BE
    """
    _do_import("library", file, library, read,
               ossl={"soillab": ossl_lab, "soilsite": ossl_site, "labels": labels})


@main.command(name="site")
@click.argument("file", type=click.Path())  # a directory of .asd files too
@renamed_option("--site", "--name", "the site's name (required)")
@click.option("--no-plan", is_flag=True,
              help="ignore and remove the site's lab plan (`localsoc plan`): the study then "
                   "picks calibration samples by Kennard-Stone on the labelled rows")
@file_options(*STORING)
@ossl_options
def add_site(file, site, no_plan, read, ossl_lab, ossl_site, labels) -> None:
    """Add a local site: rows with carbon calibrate and test, rows without are predicted.

    With a lab plan (`localsoc plan`) every planned sample needs its lab value, and the study
    calibrates on the planned calibration samples.

    \b
    Example:
      localsoc site geeves_site.csv.gz --site geeves_field --spectra reflectance \\
          --carbon-column TotalCarbon --carbon-kind total --country AU
    """
    _do_import("site", file, site, read, no_plan=no_plan,
               ossl={"soillab": ossl_lab, "soilsite": ossl_site, "labels": labels})


@main.command(name="plan")
@click.argument("file", type=click.Path(dir_okay=False))
@click.option("--site", "site", required=True, help="the site's name (as `localsoc site` will "
              "get it)")
@click.option("--n", "n", type=click.IntRange(min=2), default=None,
              help="calibration samples Kennard-Stone picks (default: split.n_calibration of "
                   "the environment)")
@click.option("--validation", "n_validation", type=click.IntRange(min=0), default=None,
              help="extra validation samples drawn at random (seeded) from the rest (default: "
                   "split.n_validation of the environment, as `localsoc study`)")
@click.option("--out", type=click.Path(dir_okay=False), default=None,
              help="also write the lab request CSV here")
@click.option("--replace", is_flag=True, help="replace the site's existing plan")
@file_options(*READING, *GRID, ignored=(*CARBON, "carbon_kind", "no_dvc"))
@later_campaign_options
def plan(file, site, n, n_validation, out, replace, read) -> None:
    """Choose which of a site's scanned samples go to the lab (no lab values needed).

    Kennard-Stone picks the calibration samples in the study's own space (its preprocessing
    and split settings), plus random validation samples, and writes the lab request
    (sample_id, role, ks_rank) to data/01_raw/imports/plans/SITE.csv. Import the file again
    with the lab values (`localsoc site FILE --site SITE`): the study then calibrates on
    exactly these samples and tests on the rest.

    \b
    Example:
      localsoc plan scans.csv --site my_field --n 30 --validation 20 --out lab_request.csv
    """
    from rich.console import Console

    from localsoc.workflow import make_plan, project_parameters

    project = project_root()
    params = project_parameters(project, read.env)
    split = params["split"]
    try:
        outcome = make_plan(
            project, file, site=site, n=int(n if n is not None else split["n_calibration"]),
            n_validation=int(n_validation if n_validation is not None else
                             split["n_validation"]),
            params=params, grid=read.grid(params["grid"]), replace=replace,
            out=Path(out) if out else None, **read.importer_options(None))
    except (ValueError, OSError) as error:
        raise click.ClickException(str(error)) from None
    print_plan(Console(), outcome, file, int(split["min_test"]))


def print_plan(console, outcome, file: str, min_test: int) -> None:
    """What a lab plan holds, what validation left out, and what to do next."""
    roles = outcome.plan["role"].value_counts()
    site = outcome.site
    console.print(f"[bold]lab plan for site {site}[/]: {int(roles.get('calibration', 0))} "
                  f"calibration samples (Kennard-Stone) and {int(roles.get('validation', 0))} "
                  f"validation samples (random) of {outcome.rows} spectra in {file}")
    if len(outcome.quarantine):
        console.print(f"[yellow]  {len(outcome.quarantine)} spectra fail validation and were "
                      "not planned (rows "
                      + ", ".join(str(r) for r in outcome.quarantine["source_row"].head(10))
                      + ")")
    if outcome.ids_generated:
        console.print("[yellow]  sample ids were generated from row numbers (no id column): "
                      "keep the rows in this order in the file with the lab values, or add a "
                      "sample_id column and plan again")
    if int(roles.get("validation", 0)) < min_test:
        console.print(f"[yellow]  fewer than {min_test} validation samples (split.min_test): "
                      "the study needs that many labelled samples besides the calibration "
                      "ones for its test set; send more to the lab (--validation), or study "
                      "with --no-test (cross-validated figures only)")
    console.print(f"  lab request: {outcome.path}"
                  + (f" (copy: {outcome.copy})" if outcome.copy else ""))
    console.print(f"  next: add the lab values to the file, then `localsoc site FILE --site "
                  f"{site}`")


#: The old `study --profile` values: the environment each named.
PROFILES = {"demo": "demo", "full": "base"}


def _scopes_option(value: str | None) -> list[str] | None:
    """``--scopes global,country`` as a list (checked against the study's scopes)."""
    from localsoc.study import SCOPES

    if value is None:
        return None
    scopes = [s.strip() for s in value.split(",") if s.strip()]
    unknown = [s for s in scopes if s not in SCOPES]
    if unknown or not scopes or len(set(scopes)) != len(scopes):
        raise click.BadParameter(f"{value!r}: give one or more of {', '.join(SCOPES)}, comma-"
                                 "separated, each once (e.g. --scopes global,country)",
                                 param_hint="--scopes")
    return scopes


def _profile_note(ctx, param, value):
    if value is not None:
        click.echo(f"Note: --profile is deprecated; use --env {PROFILES[value]} (the same in "
                   "every command)", err=True)
    return value


@main.command()
@click.option("--site", required=True, help="an imported site")
@click.option("--library", "libraries", multiple=True,
              help="an imported library (repeat for several; default: all)")
@click.option("--n", "n", type=click.IntRange(min=2), default=None,
              help="Kennard-Stone calibration samples (default: split.n_calibration of the "
                   "environment; a site with a plan uses the plan's)")
@click.option("--k", "k", type=click.IntRange(min=2), default=None,
              help="library samples RS-LOCAL selects (default: localise.k of the environment);"
                   " a scope with fewer than 2 k rows is skipped with a warning")
@click.option("--scopes", default=None,
              help="library scopes, comma-separated: global, country (default: study.scopes)")
@click.option("--validation", "n_validation", type=click.IntRange(min=0), default=None,
              help="random validation samples the served interval is calibrated on (default: "
                   "split.n_validation of the environment; 0: none, the interval falls back to "
                   "CV+); a site with a lab plan uses the plan's")
@click.option("--no-test", is_flag=True,
              help="calibrate on every labelled row; report cross-validated figures only")
@env_option
@click.option("--profile", type=click.Choice(sorted(PROFILES)), default=None, hidden=True,
              callback=_profile_note)
def study(site, libraries, n, k, scopes, n_validation, no_test, env, profile) -> None:
    """Split, localise, train, transfer, evaluate and package for one imported site.

    \b
    Example:
      localsoc study --site geeves_field --library nirsoil
    """
    from localsoc.workflow import study_runtime_params

    if profile is not None:
        given = click.get_current_context().get_parameter_source("env")
        if given is click.core.ParameterSource.COMMANDLINE and env != PROFILES[profile]:
            raise click.UsageError(f"--env {env} and --profile {profile} disagree; give --env "
                                   "only")
        env = PROFILES[profile]
    scopes = _scopes_option(scopes)
    project = project_root()
    try:
        params = study_runtime_params(project, site, list(libraries), n, no_test, k=k,
                                      scopes=scopes, n_validation=n_validation)
        seconds = run_through_dvc(project, env, params=params)
    except ValueError as error:
        raise click.ClickException(str(error)) from None
    print_summary(project, seconds)


@main.command()
@click.option("--site", required=True, help="a site of the packaged model")
@click.argument("file", required=False, type=click.Path(dir_okay=False))
@click.option("--out", type=click.Path(dir_okay=False), default=None,
              help="CSV to write (default: data/07_model_output/predictions_<site>.csv)")
@click.option("--field-out", type=click.Path(dir_okay=False), default=None,
              help="field summary CSV to write (default: data/07_model_output/"
                   "field_summary_<site>.csv)")
@click.option("--target", "summary_target", type=click.Choice(["field", "samples"]),
              default="field", show_default=True,
              help="field summary target: field (the spectra are a sample of a larger field) or "
                   "samples (the spectra are the whole population)")
@file_options(*READING, *CARBON, ignored=("carbon_kind", *GRID, "no_dvc"))
def predict(site, file, out, field_out, summary_target, read) -> None:
    """SOC with intervals and domain flags for FILE's spectra (default: the site's unlabelled
    rows), through the same code the prediction service runs; then the field summary: the
    mean SOC of the spectra (and of each stratum, when FILE has a 'stratum' column) with an
    interval that includes the model's error, and the SOC stock when FILE has
    'bulk_density_g_cm3' and 'depth_cm' columns (localsoc.field). No field summary when most
    spectra are outside the model's domain.

    \b
    Examples:
      localsoc predict --site geeves_field                the site's unlabelled scans
      localsoc predict --site geeves_field scans.csv --spectra reflectance
    """
    from rich.console import Console

    start_tensorflow()
    console = Console()
    project = project_root()
    predictor, table, source = _prediction_input(project, site, file, read)
    predictions = _predict(predictor, site, table, source)
    target = Path(out) if out else project / f"data/07_model_output/predictions_{site}.csv"
    target.parent.mkdir(parents=True, exist_ok=True)
    predictions.to_csv(target, index=False)  # before the summary: its failure loses nothing
    print_predictions(console, predictions, source)
    console.print(f"written: {target}")
    if len(predictions) < 2 and summary_target == "field":
        console.print("no field summary: it needs at least 2 spectra (or --target samples)")
        return
    summary = _field_summary(predictor, site, table, predictions, summary_target,
                             units_hint(file, read))
    print_field_summary(console, summary)
    field_target = (Path(field_out) if field_out
                    else project / f"data/07_model_output/field_summary_{site}.csv")
    field_target.parent.mkdir(parents=True, exist_ok=True)
    summary.to_csv(field_target, index=False)
    console.print(f"written: {field_target}")


def _prediction_input(project: Path, site: str, file: str | None, read: FileOptions):
    """(the served bundle's predictor, the canonical table to predict, where it came from):
    FILE on the site's served grid, else the imported site's unlabelled rows."""
    from localsoc.data.importers import import_wide
    from localsoc.workflow import bundle_predictor, imported_path, unlabelled_rows

    try:
        predictor = bundle_predictor(project)
        served = predictor.site(site)
        if file is None:
            if not imported_path(project, "site", site).exists():
                raise ValueError(not_imported(site))
            return predictor, unlabelled_rows(project, site), f"the unlabelled rows of site {site}"
        wavelengths = served.wavelengths_nm
        grid = {"start_nm": float(wavelengths[0]), "stop_nm": float(wavelengths[-1]),
                "step_nm": float(wavelengths[1] - wavelengths[0])}
        # carbon is not used to predict: a file of scans need not have a carbon column (the
        # default 'auto' would look for one)
        carbon = read.carbon_column if read.carbon_column != "auto" else None
        table, _ = import_wide(file, grid=grid, library=site,
                               **read.importer_options(carbon))
    except Exception as error:  # bad input, unknown site, missing bundle: say what to fix
        raise click.ClickException(getattr(error, "message", None) or str(error)) from None
    return predictor, table, str(file)


def not_imported(site: str) -> str:
    """Why `predict --site SITE` without FILE has nothing to predict for a served site that
    was never imported (a demo site, or one imported on another machine)."""
    return (f"site {site} is served, but it was never imported with `localsoc site` here (the "
            "demo's simulated sites never are), so it has no unlabelled rows to predict. Give "
            f"a file of its spectra: `localsoc predict --site {site} FILE`")


def _predict(predictor, site: str, table, source: str):
    """``localsoc.workflow.predict_table`` of ``table``, or a ClickException saying what to
    fix (no spectra, values the model cannot take)."""
    from localsoc.serving.predictor import RequestError
    from localsoc.workflow import predict_table

    if table.empty:
        raise click.ClickException(f"{source}: no spectra to predict")
    try:
        return predict_table(predictor, site, table)
    except (ValueError, RequestError) as error:
        raise click.ClickException(getattr(error, "message", None) or str(error)) from None


def units_hint(file: str | None, read: FileOptions) -> str:
    """What to check when most spectra are outside the model's domain: the units declared."""
    if file is None:
        return ("check the units the site was imported with (`localsoc site FILE --site NAME "
                "--spectra ...`)")
    other = ("reflectance" if read.spectra == "absorbance" else "absorbance")
    return (f"{file} was read as {read.spectra} (--spectra {read.spectra}); if it holds "
            f"{other}, give --spectra {other}")


def _field_summary(predictor, site: str, table, predictions, target: str, hint: str):
    """The field summary table (``localsoc.field.predictions_summary``), or a ClickException
    that says the predictions are written and why there is no summary."""
    from localsoc.field import OutOfDomainError, predictions_summary

    try:
        return predictions_summary(predictor.site(site).entry, table, predictions, target)
    except OutOfDomainError as error:
        raise click.ClickException(f"the predictions are written; no field summary: {error}. "
                                   f"{hint}") from None
    except ValueError as error:
        raise click.ClickException(f"the predictions are written; no field summary: {error}"
                                   ) from None


def print_predictions(console, predictions, source: str) -> None:
    """One line about the predictions: count, SOC mean and range, domain, model."""
    soc = predictions["soc_percent"]
    inside = int(predictions["in_domain"].sum())
    outside = len(predictions) - inside
    console.print(f"{len(predictions)} spectra from {source}: SOC mean {soc.mean():.2f} % "
                  f"(range {soc.min():.2f}-{soc.max():.2f}); {inside} in the model's domain, "
                  f"{outside} flagged; model {predictions['method'].iloc[0]} "
                  f"({predictions['model_version'].iloc[0]})")
    if outside:
        console.print(f"[yellow]{outside} of {len(predictions)} spectra are outside the model's "
                      "domain: their estimates extrapolate (the 'flags' column says why)")


def print_field_summary(console, summary) -> None:
    """The field summary table (``localsoc.field.predictions_summary``) on the console, then
    its notes."""
    from rich.table import Table

    from localsoc.field import METHOD

    level = float(summary["level"].iloc[0])
    table = Table(title=f"Field summary ({summary['target'].iloc[0]} mean, {level:.0%} interval "
                        "including the model's error)")
    for name in ("stratum", "N", "SOC %", "interval", "mean est.", "bias corr.",
                 "sampling s.e.", "model s.e.", "stock t C/ha", "stock interval"):
        table.add_column(name)
    for row in summary.itertuples(index=False):
        has_stock = row.stock_t_ha == row.stock_t_ha  # not NaN
        table.add_row(str(row.stratum), str(row.n_samples), f"{row.soc_percent:.3f}",
                      f"{row.lower:.3f}-{row.upper:.3f}", f"{row.mean_estimate:.3f}",
                      f"{row.bias_correction:+.3f}", f"{row.sampling_se:.3f}",
                      f"{row.model_se:.3f}", f"{row.stock_t_ha:.1f}" if has_stock else "-",
                      f"{row.stock_lower:.1f}-{row.stock_upper:.1f}" if has_stock else "-")
    console.print(table)
    for row in summary.itertuples(index=False):
        if isinstance(row.notes, str) and row.notes:
            console.print(f"[yellow]{row.stratum}: {row.notes}")
    console.print(f"method: {METHOD}")


register_change(main)  # `localsoc change` (localsoc.change_command)

if __name__ == "__main__":
    main()
