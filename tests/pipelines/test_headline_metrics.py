"""The headline metrics (data/08_reporting/metrics.json, the one file declared as DVC metrics)
as DVC prints them: `dvc metrics show` and `make exp` (`dvc exp show --only-changed --keep ...`)
fit in 120 columns for the demo's three sites, every headline column shown (none cut to an ellipsis)."""

from __future__ import annotations

import json
import os
import shlex
import subprocess
import sys
from pathlib import Path

import yaml

from localsoc.pipelines.evaluate.dvc_outputs import headline_metrics

BIN = Path(sys.executable).parent
SITES = ("china_site", "sweden_site", "usa_site")


def _make_exp_show() -> list[str]:
    """The arguments `make exp` gives `dvc` (the Makefile's EXP_SHOW)."""
    makefile = (Path(__file__).parents[2] / "Makefile").read_text()
    line = next(line for line in makefile.splitlines() if line.startswith("EXP_SHOW :="))
    return shlex.split(line.split(":=", 1)[1])


#: What `make exp` (named in the README) runs to compare experiments.
EXP_SHOW = _make_exp_show()
WIDTH = 120


def winners() -> dict:
    return {site: {"method": "DTL-IRg", "test_metrics": {
        "rmse": 0.249713 + i, "coverage": 0.97647 - i / 10, "drmse": 22.9817 + i}}
        for i, site in enumerate(SITES)}


def test_the_headline_is_per_site_rmse_and_the_mean_coverage_and_drmse():
    headline = headline_metrics(winners())
    assert headline == {"rmse": {"china_site": 0.2497, "sweden_site": 1.2497,
                                 "usa_site": 2.2497},
                        "coverage": 0.876, "drmse": 23.98}
    no_test = {"s": {"method": "Local", "test_metrics": {
        "rmse": float("nan"), "coverage": None, "drmse": float("nan")}}}
    assert headline_metrics(no_test) == {}


def _shown(repo: Path, *args: str) -> list[str]:
    env = {**os.environ, "COLUMNS": str(WIDTH), "DVC_NO_ANALYTICS": "1"}
    done = subprocess.run([str(BIN / "dvc"), *args], cwd=repo, env=env, capture_output=True,
                          text=True, check=True)
    return done.stdout.splitlines()


def test_dvc_prints_the_headline_within_120_columns(tmp_path):
    repo = tmp_path / "project"
    metrics = repo / "data/08_reporting/metrics.json"
    metrics.parent.mkdir(parents=True)
    metrics.write_text(json.dumps(headline_metrics(winners()), indent=2))
    # every parameter of the project's params.yaml, as the real stages declare them
    params = yaml.safe_load((Path(__file__).parents[2] / "params.yaml").read_text())
    (repo / "params.yaml").write_text(yaml.safe_dump(params))
    (repo / "dvc.yaml").write_text(yaml.safe_dump({"stages": {"evaluate": {
        "cmd": "true", "params": sorted(params),
        "metrics": [{"data/08_reporting/metrics.json": {"cache": False}}]}}}))
    for command in (["git", "init", "-q"], [str(BIN / "dvc"), "init", "-q"],
                    ["git", "add", "-A"],
                    ["git", "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "s"]):
        subprocess.run(command, cwd=repo, check=True, capture_output=True)

    for lines in (_shown(repo, "metrics", "show"), _shown(repo, *EXP_SHOW)):
        text = "\n".join(lines)
        assert max(len(line) for line in lines) <= WIDTH, text
        assert "…" not in text, text
        for column in [f"rmse.{site}" for site in SITES] + ["coverage", "drmse"]:
            assert column in text, text
