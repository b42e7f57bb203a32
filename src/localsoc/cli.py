"""The `localsoc` command line: a thin layer over the Kedro pipelines (no logic of its own)."""

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
    import pandas as pd
    from rich.console import Console
    from rich.table import Table

    console = Console()
    summary = pd.read_csv(project / "data/08_reporting/data_summary.csv")
    table = Table(title="LocalSOC data summary (SOC in %)")
    columns = ["set", "kind", "samples", "quarantined", "calibration", "test",
               "mean", "sd", "min", "median", "max"]
    for column in columns:
        table.add_column(column, justify="left" if column in ("set", "kind") else "right")
    for row in summary.to_dict("records"):
        cells = []
        for column in columns:
            value = row.get(column)
            if isinstance(value, float):
                cells.append("" if value != value else f"{value:.2f}")
            else:
                cells.append(str(value))
        table.add_row(*cells)
    console.print(table)
    timing = ", ".join(f"{k} {v:.1f} s" for k, v in seconds.items())
    console.print(f"Stage times: {timing}; total {sum(seconds.values()):.1f} s")
    console.print(f"Validation report: {project / 'data/08_reporting/validation_report.json'}")
    console.print(f"Quarantine tables: {project / 'data/02_intermediate'}/*_quarantine.csv")


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
    seconds = run_stages(stages, env, project=project)
    times_path = project / "data/08_reporting/stage_seconds.json"
    times_path.write_text(json.dumps(seconds, indent=2))
    print_summary(project, seconds)


if __name__ == "__main__":
    main()
