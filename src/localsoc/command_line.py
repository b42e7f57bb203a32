"""The `localsoc` command line: a thin layer over the Kedro pipelines (no logic of its own).

Not named cli.py: Kedro imports `<package>.cli` as project commands and would take its `run`
for `kedro run`.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import click

#: TensorFlow's C++ log level as the user's environment set it (None: not set).
USER_TF_LOG_LEVEL = os.environ.get("TF_CPP_MIN_LOG_LEVEL")
for _name, _value in (
    ("KEDRO_DISABLE_TELEMETRY", "true"),
    ("DVC_NO_ANALYTICS", "1"),
    ("BENTOML_DO_NOT_TRACK", "true"),
    ("TF_CPP_MIN_LOG_LEVEL", "3"),
):
    os.environ.setdefault(_name, _value)


def project_root() -> Path:
    """The Kedro project directory: $LOCALSOC_PROJECT, else the nearest parent with pyproject.toml."""
    if os.environ.get("LOCALSOC_PROJECT"):
        return Path(os.environ["LOCALSOC_PROJECT"]).resolve()
    here = Path.cwd().resolve()
    for candidate in (here, *here.parents):
        if (candidate / "pyproject.toml").exists() and (candidate / "conf").is_dir():
            return candidate
    raise click.ClickException(
        "no LocalSOC project found here or above (a directory with pyproject.toml and conf/); "
        "run from the project, or set LOCALSOC_PROJECT"
    )


def run_stages(
    stages: list[str], env: str, params: dict | None = None, project: Path | None = None
) -> dict[str, float]:
    """Run the named pipelines in order, one Kedro session each; return seconds per stage."""
    from kedro.framework.session import KedroSession
    from kedro.framework.startup import bootstrap_project
    from rich.console import Console

    console = Console(stderr=True)
    project = project or project_root()
    bootstrap_project(project)
    seconds: dict[str, float] = {}
    for number, stage in enumerate(stages, start=1):
        console.rule(f"[bold]stage {number}/{len(stages)}: {stage}")
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
        table = Table(title="Winner per site (nested calibration RMSE, simplest within 1 s.e.; "
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


@click.group()
@click.option("--verbose", is_flag=True,
              help="show TensorFlow's start-up lines (oneDNN, CUDA, absl) on the console")
def main(verbose: bool) -> None:
    """LocalSOC: localise a large soil spectral library to one field's SOC."""
    from localsoc.quiet_start import VERBOSE_ENV

    if verbose:
        os.environ[VERBOSE_ENV] = "1"  # inherited by the Kedro / DVC processes a command starts
        if USER_TF_LOG_LEVEL is None:
            os.environ["TF_CPP_MIN_LOG_LEVEL"] = "0"  # TensorFlow reads it when imported


def start_tensorflow() -> None:
    """Import TensorFlow before a command that needs it: quietly (``localsoc.quiet_start``)
    unless ``localsoc --verbose``."""
    from localsoc.quiet_start import import_tensorflow_quietly

    import_tensorflow_quietly()


STAGE_LOG_VARIABLE = "LOCALSOC_STAGE_LOG"  # where `localsoc stage` notes what ran, for run/study


def run_through_dvc(project: Path, env: str, params: dict | None = None,
                    stages: list[str] | None = None, force: bool = False) -> dict[str, float]:
    """Run the study's stages with `dvc repro`: write params.yaml (the resolved parameters of
    ``env`` with ``params`` merged), regenerate dvc.yaml from the pipelines if it is stale, and
    let DVC run the stages whose code, data or parameters changed (all of ``stages`` with
    ``force``); dvc.lock records each. Returns seconds per stage that ran (empty: up to date).

    A project that is not a DVC repository (no .dvc/) runs the stages in this process instead,
    and says so: nothing is recorded."""
    import subprocess
    import sys
    import tempfile

    from rich.console import Console

    start_tensorflow()  # quietly, before the pipelines (dvc.yaml's generator) import it
    from localsoc.dvc_stages import DVC_FILE, dvc_yaml, write_params
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
    text = dvc_yaml(project)
    dvc_file = project / DVC_FILE
    if not dvc_file.exists() or dvc_file.read_text() != text:
        from localsoc.datasets.atomic import write_text

        write_text(dvc_file, text)
        console.print(f"{DVC_FILE} written from the pipelines (`localsoc dvc-yaml`)")
    command = [sys.executable, "-m", "dvc", "repro"]
    if force:
        command.append("--force")
    if stages:
        command += ["--single-item", *stages]
    with tempfile.TemporaryDirectory() as scratch:
        log = Path(scratch) / "stages.log"
        environment = {**os.environ, STAGE_LOG_VARIABLE: str(log),
                       "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
        console.rule("[bold]dvc repro")
        done = subprocess.run(command, cwd=project, env=environment)
        seconds = {}
        if log.exists():
            for line in log.read_text().splitlines():
                name, value = line.rsplit(" ", 1)
                seconds[name] = float(value)
    if done.returncode != 0:
        raise click.ClickException(
            f"`dvc repro` failed (exit {done.returncode}); the message above names the stage. "
            "Fix it and run again: the stages that finished are recorded and are not rerun")
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


@main.command()
@click.option("--env", default="demo", show_default=True, help="Kedro environment under conf/")
@click.option(
    "--pipeline", "pipelines", multiple=True,
    help="only these stages, if changed (default: every stage, in order)"
)
@click.option("--force", is_flag=True, help="run the stages even if nothing changed")
def run(env: str, pipelines: tuple[str, ...], force: bool) -> None:
    """Run the study stages through DVC (only what changed) and print the summary.

    With ``--pipeline`` after `localsoc study`, the study's own choices (site, libraries, n,
    grid) recorded in params.yaml are kept, so the stages rerun for the same study."""
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


@main.command()
@click.argument("name")
def stage(name: str) -> None:
    """Run one stage with the parameters of params.yaml (what each dvc.yaml stage calls)."""
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


@main.command(name="dvc-yaml")
@click.option("--check", is_flag=True, help="exit 1 if dvc.yaml differs instead of writing it")
def write_dvc_yaml(check: bool) -> None:
    """Write dvc.yaml from the pipeline registry, the catalog and the source imports."""
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


def _import_options(spectra, carbon_column, carbon_units, om_factor, id_column, country,
                    country_column, lat_column, lon_column, narrow_grid_ok) -> dict:
    options = {"spectra": spectra, "carbon_column": carbon_column or None,
               "carbon_units": carbon_units, "id_column": id_column, "country": country,
               "country_column": country_column, "lat_column": lat_column,
               "lon_column": lon_column, "narrow_grid_ok": narrow_grid_ok}
    if om_factor is not None:
        options["om_factor"] = om_factor
    return options


def import_options(function):
    """Options shared by `import` and `site`: how to read the file."""
    for option in reversed([
        click.option("--spectra", type=click.Choice(["reflectance", "percent_reflectance",
                                                     "absorbance", "auto"]),
                     default="auto", show_default=True,
                     help="what the spectral columns hold (absorbance must be declared)"),
        click.option("--carbon-column", default="auto", show_default=True,
                     help="column with the lab carbon values ('' for none; auto: soc, else "
                          "OSSL's organic carbon column, named in the report)"),
        click.option("--carbon-units", type=click.Choice(["percent", "g_per_kg",
                                                          "organic_matter_percent",
                                                          "organic_matter_g_per_kg"]),
                     default="percent", show_default=True),
        click.option("--om-factor", type=float, default=None,
                     help="organic matter to organic carbon factor (default 1.724)"),
        click.option("--carbon-kind", type=click.Choice(["organic", "total"]), default=None,
                     help="what the carbon column measures: organic carbon, or total carbon "
                          "(organic + carbonate; e.g. dry combustion of untreated soil). "
                          "Recorded with the table; the study warns when a site and a "
                          "library differ"),
        click.option("--id-column", default=None,
                     help="column with sample ids (default: one named sample_id, id, "
                          "id.layer_uuid_txt or id.layer_local_c; else generated)"),
        click.option("--country", default=None, help="ISO country code for every row"),
        click.option("--country-column", default=None, help="column with ISO country codes"),
        click.option("--lat-column", default=None),
        click.option("--lon-column", default=None),
        click.option("--grid-start", type=float, default=None, help="grid start, nm"),
        click.option("--grid-stop", type=float, default=None, help="grid end, nm"),
        click.option("--grid-step", type=float, default=None, help="grid step, nm"),
        click.option("--narrow-grid-ok", is_flag=True,
                     help="import on the part of the grid the file covers"),
        click.option("--no-dvc", is_flag=True, help="do not `dvc add` the imported table"),
        click.option("--env", default="base", show_default=True,
                     help="Kedro environment whose grid and validation settings apply"),
    ]):
        function = option(function)
    return function


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


def _do_import(kind, file, name, spectra, carbon_column, carbon_units, om_factor, carbon_kind,
               id_column, country, country_column, lat_column, lon_column, grid_start,
               grid_stop, grid_step, narrow_grid_ok, no_dvc, env, no_plan=False, ossl_lab=None,
               ossl_site=None, labels=None):
    from rich.console import Console

    from localsoc.workflow import grid_from_options, import_table, project_parameters

    console = Console()
    project = project_root()
    params = project_parameters(project, env)
    grid = grid_from_options(grid_start, grid_stop, grid_step, params["grid"])
    try:
        outcome = import_table(
            project, file, name=name, kind=kind, grid=grid, validate_params=params["validate"],
            track=not no_dvc, carbon_kind=carbon_kind, use_plan=not no_plan,
            ossl_tables={"soillab": ossl_lab, "soilsite": ossl_site, "labels": labels},
            **_import_options(spectra, carbon_column, carbon_units, om_factor, id_column,
                              country, country_column, lat_column, lon_column, narrow_grid_ok),
        )
    except (ValueError, OSError) as error:  # OSError: a file that cannot be read or written
        raise click.ClickException(str(error)) from None
    report = outcome.report
    labelled = int(outcome.table["soc"].notna().sum())
    console.print(f"[bold]{kind} {outcome.name}[/]: {len(outcome.table)} rows from {file} "
                  f"({report['spectral_columns']} spectral columns, {report['spectral_convention']}"
                  f" naming, {report['spectra_units']}; {report['source_range_nm'][0]:g}-"
                  f"{report['source_range_nm'][1]:g} nm) -> {len(band_columns_of(outcome.table))}"
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
    if len(outcome.quarantine):
        console.print(f"[yellow]  {len(outcome.quarantine)} row(s) would be quarantined by "
                      "validation:")
        reasons = outcome.quarantine["failed_expectations"]
        for _, rows in outcome.quarantine.groupby(reasons, sort=False):
            first = rows.iloc[0]
            shown = ", ".join(str(r) for r in rows["source_row"].head(5))
            more = f" and {len(rows) - 5} more" if len(rows) > 5 else ""
            console.print(f"    {len(rows)} row(s) (rows {shown}{more}): "
                          f"{first['quarantine_reason']}")
        console.print("    (validation quarantines them with these reasons when the study runs)")
    else:
        console.print("  validation: every row passes")
    if outcome.plan_note:
        console.print(f"  {outcome.plan_note}")
    console.print(f"  stored: {outcome.path}; {outcome.dvc}")


def band_columns_of(table):
    from localsoc.data.schema import band_columns

    return band_columns(table)


@main.command(name="import")
@click.argument("file", type=click.Path())  # a directory of .asd files too
@click.option("--as", "name", required=True, help="the library's name")
@import_options
@ossl_options
def import_library(file, name, **options) -> None:
    """Validate and add a spectral library (wide CSV / Parquet, OSSL naming too)."""
    _do_import("library", file, name, **options)


@main.command(name="site")
@click.argument("file", type=click.Path())  # a directory of .asd files too
@click.option("--name", "name", required=True, help="the site's name")
@click.option("--no-plan", is_flag=True,
              help="ignore and remove the site's lab plan (`localsoc plan`): the study then "
                   "picks calibration samples by Kennard-Stone on the labelled rows")
@import_options
@ossl_options
def add_site(file, name, no_plan, **options) -> None:
    """Add a local site: rows with carbon calibrate and test, rows without are predicted.

    With a lab plan (`localsoc plan`) every planned sample needs its lab value, and the study
    calibrates on the planned calibration samples."""
    _do_import("site", file, name, no_plan=no_plan, **options)


@main.command(name="plan")
@click.argument("file", type=click.Path(dir_okay=False))
@click.option("--site", "site", required=True, help="the site's name (as `localsoc site` will "
              "get it)")
@click.option("--n", "n", type=click.IntRange(min=2), default=None,
              help="calibration samples Kennard-Stone picks (default: split.n_calibration)")
@click.option("--validation", "n_validation", type=click.IntRange(min=0), default=0,
              show_default=True,
              help="extra validation samples drawn at random (seeded) from the rest")
@click.option("--out", type=click.Path(dir_okay=False), default=None,
              help="also write the lab request CSV here")
@click.option("--replace", is_flag=True, help="replace the site's existing plan")
@import_options
def plan(file, site, n, n_validation, out, replace, spectra, carbon_column, carbon_units,
         om_factor, carbon_kind, id_column, country, country_column, lat_column, lon_column,
         grid_start, grid_stop, grid_step, narrow_grid_ok, no_dvc, env) -> None:
    """Choose which of a site's scanned samples go to the lab (no lab values needed).

    Kennard-Stone picks the calibration samples in the study's own space (its preprocessing
    and split settings), optionally plus random validation samples, and writes the lab
    request (sample_id, role, ks_rank) to data/01_raw/imports/plans/SITE.csv. Import the
    file again with the lab values (`localsoc site FILE --name SITE`): the study then
    calibrates on exactly these samples and tests on the rest."""
    from rich.console import Console

    from localsoc.workflow import grid_from_options, make_plan, project_parameters

    console = Console()
    project = project_root()
    params = project_parameters(project, env)
    grid = grid_from_options(grid_start, grid_stop, grid_step, params["grid"])
    try:
        outcome = make_plan(
            project, file, site=site,
            n=int(n if n is not None else params["split"]["n_calibration"]),
            n_validation=n_validation, params=params, grid=grid, replace=replace,
            out=Path(out) if out else None,
            **_import_options(spectra, None, carbon_units, om_factor, id_column, country,
                              country_column, lat_column, lon_column, narrow_grid_ok))
    except (ValueError, OSError) as error:
        raise click.ClickException(str(error)) from None
    roles = outcome.plan["role"].value_counts()
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
    min_test = int(params["split"]["min_test"])
    if int(roles.get("validation", 0)) < min_test:
        console.print(f"[yellow]  fewer than {min_test} validation samples (split.min_test): "
                      "the study needs that many labelled samples besides the calibration "
                      "ones for its test set; send more to the lab (--validation), or study "
                      "with --no-test (cross-validated figures only)")
    console.print(f"  lab request: {outcome.path}"
                  + (f" (copy: {outcome.copy})" if outcome.copy else ""))
    console.print(f"  next: add the lab values to the file, then `localsoc site FILE --name "
                  f"{site}`")


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
@click.option("--profile", type=click.Choice(sorted(PROFILES)), default="demo",
              show_default=True, help="search budgets: demo (CPU minutes) or full (GPU)")
@click.option("--no-test", is_flag=True,
              help="calibrate on every labelled row; report cross-validated figures only")
@click.option("--env", default=None, help="a Kedro environment instead of the profile's")
def study(site, libraries, n, k, scopes, n_validation, profile, no_test, env) -> None:
    """Split, localise, train, transfer, evaluate and package for one imported site."""
    from localsoc.workflow import study_runtime_params

    scopes = _scopes_option(scopes)
    project = project_root()
    try:
        params = study_runtime_params(project, site, list(libraries), n, no_test, k=k,
                                      scopes=scopes, n_validation=n_validation)
    except ValueError as error:
        raise click.ClickException(str(error)) from None
    try:
        seconds = run_through_dvc(project, env or PROFILES[profile], params=params)
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
              default="field",
              show_default=True,
              help="field summary target: field (the spectra are a sample of a larger field) or "
                   "samples (the spectra are the whole population)")
@import_options
def predict(site, file, out, field_out, summary_target, spectra, carbon_column, carbon_units,
            om_factor, carbon_kind, id_column, country, country_column, lat_column, lon_column,
            grid_start, grid_stop, grid_step, narrow_grid_ok, no_dvc, env) -> None:
    """SOC with intervals and domain flags for FILE's spectra (default: the site's unlabelled
    rows), through the same code the prediction service runs; then the field summary: the
    mean SOC of the spectra (and of each stratum, when FILE has a 'stratum' column) with an
    interval that includes the model's error, and the SOC stock when FILE has
    'bulk_density_g_cm3' and 'depth_cm' columns (localsoc.field)."""
    from rich.console import Console

    from localsoc.data.importers import import_wide
    from localsoc.workflow import bundle_predictor, field_table, predict_table, unlabelled_rows

    start_tensorflow()
    console = Console()
    project = project_root()
    try:
        predictor = bundle_predictor(project)
        served = predictor.site(site)
        if file is None:
            table = unlabelled_rows(project, site)
            source = f"the unlabelled rows of site {site}"
        else:
            wavelengths = served.wavelengths_nm
            table, _ = import_wide(
                file, grid={"start_nm": float(wavelengths[0]), "stop_nm": float(wavelengths[-1]),
                            "step_nm": float(wavelengths[1] - wavelengths[0])}, library=site,
                # carbon is not used to predict: a file of scans need not have a carbon
                # column (the default 'auto' would look for one)
                **_import_options(spectra, carbon_column if carbon_column != "auto" else None,
                                  carbon_units, om_factor, id_column, country, country_column,
                                  lat_column, lon_column, narrow_grid_ok))
            source = str(file)
        if table.empty:
            raise ValueError(f"{source}: no spectra to predict")
        predictions = predict_table(predictor, site, table)
    except Exception as error:  # bad input, unknown site, missing bundle: say what to fix
        message = getattr(error, "message", None) or str(error)
        raise click.ClickException(message) from None
    target = Path(out) if out else project / f"data/07_model_output/predictions_{site}.csv"
    target.parent.mkdir(parents=True, exist_ok=True)
    predictions.to_csv(target, index=False)  # before the summary: its failure loses nothing
    try:
        summary = (field_table(predictor, site, table, predictions, summary_target)
                   if len(predictions) >= 2 or summary_target == "samples" else None)
    except Exception as error:
        message = getattr(error, "message", None) or str(error)
        console.print(f"written: {target}")
        raise click.ClickException(f"the predictions are written; no field summary: {message}"
                                   ) from None
    inside = int(predictions["in_domain"].sum())
    console.print(f"{len(predictions)} spectra from {source}: SOC mean "
                  f"{predictions['soc_percent'].mean():.2f} % (range "
                  f"{predictions['soc_percent'].min():.2f}-{predictions['soc_percent'].max():.2f})"
                  f"; {inside} in the model's domain, {len(predictions) - inside} flagged; "
                  f"model {predictions['method'].iloc[0]} ({predictions['model_version'].iloc[0]})")
    console.print(f"written: {target}")
    if summary is None:
        console.print("no field summary: it needs at least 2 spectra (or --target samples)")
        return
    print_field_summary(console, summary)
    field_target = (Path(field_out) if field_out
                    else project / f"data/07_model_output/field_summary_{site}.csv")
    field_target.parent.mkdir(parents=True, exist_ok=True)
    summary.to_csv(field_target, index=False)
    console.print(f"written: {field_target}")


def print_field_summary(console, summary) -> None:
    """The field summary table (``localsoc.workflow.field_table``) on the console."""
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
    console.print(f"method: {METHOD}")


if __name__ == "__main__":
    main()
