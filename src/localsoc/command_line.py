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

for _name, _value in (
    ("KEDRO_DISABLE_TELEMETRY", "true"),
    ("DVC_NO_ANALYTICS", "1"),
    ("BENTOML_DO_NOT_TRACK", "true"),
    ("TF_CPP_MIN_LOG_LEVEL", "2"),
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


def print_summary(project: Path, seconds: dict[str, float]) -> None:
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
        columns = ["set", "kind", "samples", "quarantined", "calibration", "test",
                   "mean", "sd", "min", "median", "max"]
        for column in columns:
            table.add_column(column, justify="left" if column in ("set", "kind") else "right")
        for row in summary.to_dict("records"):
            table.add_row(*[_cell(row.get(column)) for column in columns])
        console.print(table)
    study_table = reporting / "study_table.md"
    if study_table.exists() and "evaluate" in seconds:
        console.rule("[bold]Models on each site's untouched test set (paper's Table 3 layout)")
        console.print(Markdown(study_table.read_text()))
        winners = json.loads((reporting / "study_winners.json").read_text())
        table = Table(title="Winner per site (chosen on calibration OOF RMSE, not the test set)")
        for column in ("site", "winner", "cal. RMSE", "test RMSE", "dRMSE %", "best on test"):
            table.add_column(column)
        for site, winner in sorted(winners.items()):
            table.add_row(site, winner["method"], f"{winner['cal_rmse']:.3f}",
                          f"{winner['test_metrics']['rmse']:.3f}",
                          f"{winner['test_metrics']['drmse']:+.1f}", winner["best_on_test"])
        console.print(table)
    timing = ", ".join(f"{k} {v:.1f} s" for k, v in seconds.items())
    console.print(f"Stage times: {timing}; total {sum(seconds.values()):.1f} s")
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
def main() -> None:
    """LocalSOC: localise a large soil spectral library to one field's SOC."""


@main.command()
@click.option("--env", default="demo", show_default=True, help="Kedro environment under conf/")
@click.option(
    "--pipeline", "pipelines", multiple=True, help="run only these stages (default: all, in order)"
)
def run(env: str, pipelines: tuple[str, ...]) -> None:
    """Run the study stages and print the summary."""
    from localsoc.pipeline_registry import STAGES

    stages = list(pipelines) or list(STAGES)
    unknown = [s for s in stages if s not in STAGES]
    if unknown:
        raise click.BadParameter(f"unknown stage(s) {unknown}; stages are {list(STAGES)}")
    project = project_root()
    times = project / "data/08_reporting/stage_seconds.json"
    if not pipelines:
        times.unlink(missing_ok=True)  # a full run records its own stage times afresh
    seconds = run_stages(stages, env, project=project)
    print_summary(project, seconds)


if __name__ == "__main__":
    main()
