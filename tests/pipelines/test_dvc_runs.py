"""DVC is the path of record: `localsoc run` goes through `dvc repro`, reruns only what changed,
experiments change the parameters stages read, and the declared plots render.

One DVC project (a git repository) is made from the finished test study: its outputs are
recorded with `dvc commit` under the parameters `localsoc run --env test` writes, so the tests
start from a recorded run without training a second study.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import yaml

from tests.conftest import BENTOML_HOME_FILE, PROJECT_ROOT

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def dvc_project(study_project, tmp_path_factory):
    root, _ = study_project
    repo = tmp_path_factory.mktemp("dvc_study") / "repo"
    shutil.copytree(root, repo, symlinks=True)
    shutil.rmtree(repo / "src")
    for part in ("src", "native"):
        shutil.copytree(PROJECT_ROOT / part, repo / part,
                        ignore=shutil.ignore_patterns("__pycache__", "*.so", "*.c", "*.html"))
    for name in ("dvc.yaml", ".gitignore", ".dvcignore"):
        shutil.copy(PROJECT_ROOT / name, repo / name)
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
           "DVC_NO_ANALYTICS": "1", "KEDRO_DISABLE_TELEMETRY": "true",
           "BENTOML_DO_NOT_TRACK": "true", "TF_CPP_MIN_LOG_LEVEL": "3",
           "BENTOML_HOME": (root / BENTOML_HOME_FILE).read_text(),
           "GIT_AUTHOR_NAME": "test", "GIT_AUTHOR_EMAIL": "test@example.org",
           "GIT_COMMITTER_NAME": "test", "GIT_COMMITTER_EMAIL": "test@example.org"}

    def run(*args, check=True):
        done = subprocess.run(args, cwd=repo, env=env, capture_output=True, text=True)
        if check:
            assert done.returncode == 0, f"{args}:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
        return done.stdout + done.stderr

    from localsoc.dvc_stages import write_params

    run("git", "init", "-q")
    run("dvc", "init", "-q")
    shutil.copytree(PROJECT_ROOT / ".dvc/plots", repo / ".dvc/plots")  # templates, offline page
    run("dvc", "config", "plots.html_template", "plots/offline.html")
    write_params(repo, "test")
    run("dvc", "commit", "--force", "--quiet")
    return repo, run


def localsoc(run, *args) -> tuple[str, set[str]]:
    output = run(sys.executable, "-m", "localsoc.command_line", *args)
    ran = {line.split("'")[1] for line in output.splitlines() if line.startswith("Running stage")}
    return output, ran


def test_a_run_with_nothing_changed_reruns_no_stage(dvc_project):
    repo, run = dvc_project
    assert "up to date" in run("dvc", "status").lower()
    output, ran = localsoc(run, "run", "--env", "test")
    assert ran == set()
    assert "Nothing changed since the last run" in output
    assert "Winner per site" in output  # the summary of the recorded run is still printed
    assert "up to date" in run("dvc", "status").lower()


def test_one_parameter_change_reruns_exactly_the_dependent_stages(dvc_project):
    """conf/ edited, `localsoc run` (the default command): params.yaml changes, DVC reruns
    evaluate and what reads its outputs (report, package); nothing upstream."""
    repo, run = dvc_project
    params_file = repo / "conf/base/parameters_evaluate.yml"
    params = yaml.safe_load(params_file.read_text())
    params["evaluate"]["interval_level"] = 0.8
    params_file.write_text(yaml.safe_dump(params))
    _, ran = localsoc(run, "run", "--env", "test")
    assert ran == {"evaluate", "report", "package"}
    metrics = pd.read_csv(repo / "data/08_reporting/study_metrics.csv")
    assert (metrics["interval_level"] == 0.8).all()
    lock = yaml.safe_load((repo / "dvc.lock").read_text())
    assert lock["stages"]["evaluate"]["params"]["params.yaml"]["evaluate"]["interval_level"] == 0.8
    headline = json.loads(run("dvc", "metrics", "show", "--json"))
    headline = headline[""]["data"]["data/08_reporting/metrics.json"]["data"]
    assert "china_site" in headline["rmse"] and {"coverage", "drmse"} <= set(headline)
    assert "up to date" in run("dvc", "status").lower()


def test_an_experiment_changes_what_the_stages_compute(dvc_project):
    """`dvc exp run -S evaluate.interval_level=0.7`: the stages read params.yaml, so evaluate
    reruns (and what reads its outputs), nothing upstream retrains, the intervals are 70 %
    ones, and `dvc exp show` lists the experiment's (different) metrics. (A parameter of the
    evaluate stage, not of training: the experiment reruns three stages, not the whole study;
    0.7, not the 0.8 that the test above already set, so the experiment changes something.)"""
    repo, run = dvc_project
    run("git", "add", "-A")
    run("git", "commit", "-q", "-m", "recorded test study")
    base_metrics = json.loads((repo / "data/08_reporting/method_metrics.json").read_text())
    output = run("dvc", "exp", "run", "-S", "evaluate.interval_level=0.7", "--name", "level70")
    assert "Running stage 'evaluate'" in output
    assert "Running stage 'train_sites'" not in output
    winners = json.loads((repo / "data/08_reporting/study_winners.json").read_text())
    levels = {site: record["interval_level"] for site, record in winners.items()
              if isinstance(record, dict) and "interval_level" in record}
    assert levels and set(levels.values()) == {0.7}, levels
    shown = json.loads(run("dvc", "exp", "show", "--json"))
    experiments = [exp for entry in shown for group in entry.get("experiments") or []
                   for exp in group["revs"] if exp.get("name") == "level70"]
    assert len(experiments) == 1
    experiment = experiments[0].get("data", experiments[0])  # DVC 3 puts them at the top
    assert set(experiment["metrics"]) == {"data/08_reporting/metrics.json"}  # the headline
    assert experiment["params"]["params.yaml"]["data"]["evaluate"]["interval_level"] == 0.7
    metrics = json.loads((repo / "data/08_reporting/method_metrics.json").read_text())
    assert metrics != base_metrics


def test_every_declared_plot_renders(dvc_project):
    repo, run = dvc_project
    out = repo.parent / "plots"
    run("dvc", "plots", "show", "--out", str(out))
    page = (out / "index.html").read_text()
    plots = yaml.safe_load((repo / "dvc.yaml").read_text())["plots"]
    assert plots
    for plot in plots:
        name, spec = next(iter(plot.items()))
        if spec is None:  # a directory of images: each PNG is on the page
            images = sorted(p.name for p in (repo / name).glob("*.png"))
            assert images, f"no images in {name}"
            for image in images:
                assert image in page, f"{name}/{image} is not on the plots page"
        else:
            assert json.dumps(spec["title"])[1:-1] in page, f"plot {name!r} is not on the page"
