"""Kedro hooks: record how long each pipeline (stage) ran, for the report and BENCHMARKS.md."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from kedro.framework.hooks import hook_impl

from localsoc.datasets.atomic import write_text

STAGE_SECONDS_FILE = Path("data/08_reporting/stage_seconds.json")


class StageTimerHooks:
    """Write ``{stage: seconds}`` to data/08_reporting/stage_seconds.json after every run."""

    def __init__(self) -> None:
        self._started: dict[str, float] = {}

    @staticmethod
    def _stage(run_params: dict[str, Any]) -> str:
        names = run_params.get("pipeline_names") or [run_params.get("pipeline_name")]
        names = [n for n in names if n]
        return "+".join(names) if names else "__default__"

    @hook_impl
    def before_pipeline_run(self, run_params: dict[str, Any]) -> None:
        self._started[self._stage(run_params)] = time.perf_counter()

    @hook_impl
    def after_pipeline_run(self, run_params: dict[str, Any]) -> None:
        stage = self._stage(run_params)
        started = self._started.pop(stage, None)
        if started is None:
            return
        path = Path(run_params.get("project_path") or ".") / STAGE_SECONDS_FILE
        try:
            seconds = json.loads(path.read_text()) if path.exists() else {}
        except ValueError:  # not JSON: start afresh rather than fail the run
            seconds = {}
        seconds[stage] = round(time.perf_counter() - started, 2)
        write_text(path, json.dumps(seconds, indent=2))  # whole, or the previous file
