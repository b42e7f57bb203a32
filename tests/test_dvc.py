"""DVC: dvc.yaml agrees with the Kedro catalog, and the SSL store round-trips through S3."""

from __future__ import annotations

import hashlib
import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from tests.conftest import PROJECT_ROOT, load_params, make_ssl

BIN = Path(sys.executable).parent


def dvc_stages() -> dict:
    return yaml.safe_load((PROJECT_ROOT / "dvc.yaml").read_text())["stages"]


def catalog_paths() -> dict[str, str]:
    catalog = yaml.safe_load((PROJECT_ROOT / "conf/base/catalog.yml").read_text())
    keys = ("filepath", "directory", "path")  # path: a PartitionedDataset
    return {name: next(entry[key] for key in keys if key in entry)
            for name, entry in catalog.items()
            if not name.startswith("_") and any(key in entry for key in keys)}


def _out_path(out) -> str:
    return next(iter(out)) if isinstance(out, dict) else out


def test_committed_dvc_yaml_is_what_the_pipelines_generate():
    from localsoc.dvc_stages import dvc_yaml

    assert (PROJECT_ROOT / "dvc.yaml").read_text() == dvc_yaml(PROJECT_ROOT), (
        "dvc.yaml is stale: run `localsoc dvc-yaml` and commit it")


def _project_copy(root: Path) -> Path:
    for part in ("src", "native", "conf"):
        shutil.copytree(PROJECT_ROOT / part, root / part,
                        ignore=shutil.ignore_patterns("__pycache__", "*.so", "*.c", "local"))
    return root


def test_generated_dvc_yaml_follows_an_added_import(tmp_path):
    """An import added to a node module (even inside a function) becomes a dependency of that
    stage and of no other; a dataset class's module counts for the stages using it."""
    from localsoc.dvc_stages import dvc_yaml

    root = _project_copy(tmp_path / "project")
    before = yaml.safe_load(dvc_yaml(root))["stages"]
    assert "src/localsoc/selection/rslocal.py" not in before["validate"]["deps"]
    nodes = root / "src/localsoc/pipelines/validate/nodes.py"
    nodes.write_text(nodes.read_text() + "\n\ndef _later():\n"
                     "    from localsoc.selection import rslocal  # noqa: F401\n")
    after = yaml.safe_load(dvc_yaml(root))["stages"]
    added = set(after["validate"]["deps"]) - set(before["validate"]["deps"])
    assert "src/localsoc/selection/rslocal.py" in added
    assert "native/rslocal.pyx" in added  # the Cython kernel rslocal imports
    for name in set(before) - {"validate"}:
        assert after[name] == before[name], name
    # every stage writing a model collection depends on its dataset module
    assert "src/localsoc/datasets/model_collection.py" in after["train_sites"]["deps"]
    # the method registry names its families' modules as strings: transfer trains through
    # families.cnn, which imports the search (its training loop) inside a function
    assert "src/localsoc/models/search.py" in after["transfer"]["deps"]


def test_dvc_outs_are_exactly_the_catalog_files_each_pipeline_writes():
    from localsoc.pipeline_registry import register_pipelines

    pipelines = register_pipelines()
    paths = catalog_paths()
    for name, stage in dvc_stages().items():
        assert stage["cmd"] == f"localsoc stage {name}", stage["cmd"]
        outs = {_out_path(o) for key in ("outs", "metrics") for o in stage.get(key, [])}
        written = {paths[d] for d in pipelines[name].all_outputs() if d in paths}
        assert outs == written, f"stage {name}: dvc outs {outs ^ written} disagree with catalog"
        # stage_seconds.json is written by a hook as stages finish: informational, not a dep;
        # library_models_previous is the stage's own output read for reuse (DVC forbids a loop:
        # the output is kept with persist instead)
        inputs = {paths[d] for d in pipelines[name].inputs()
                  if d in paths and d not in ("stage_seconds", "library_models_previous")}
        deps = set(stage["deps"])
        assert inputs <= deps, f"stage {name}: inputs {inputs - deps} missing from deps"
        node_files = {f"src/{n.func.__module__.replace('.', '/')}.py"
                      for n in pipelines[name].nodes}
        assert node_files <= deps, f"stage {name}: its node modules are not deps"
    persisted = [o for o in dvc_stages()["train_library"]["outs"] if isinstance(o, dict)]
    assert {"data/06_models/library_models": {"persist": True}} in persisted


def test_dvc_params_and_deps_exist():
    """Every stage's parameter key is in params.yaml (the demo's, committed) and in the
    parameters Kedro resolves for any environment; every code dependency exists."""
    from localsoc.dvc_stages import params_document

    committed = yaml.safe_load((PROJECT_ROOT / "params.yaml").read_text())
    assert committed == params_document(PROJECT_ROOT, "demo"), (
        "params.yaml differs from conf/demo: run `make run` (or `localsoc run`) and commit it")
    for env in ("base", "demo", "test"):
        document = params_document(PROJECT_ROOT, env)
        for name, stage in dvc_stages().items():
            for key in stage["params"]:
                node = document
                for part in key.split("."):
                    assert part in node, f"stage {name}: env {env} has no parameter {key}"
                    node = node[part]
    for name, stage in dvc_stages().items():
        for dep in stage["deps"]:
            if not dep.startswith("data/") or dep.startswith("data/01_raw/imports"):
                assert (PROJECT_ROOT / dep).exists(), f"stage {name}: dep {dep} does not exist"


def test_plots_name_templates_of_the_offline_page():
    """Every plot's template is a Vega-Lite file of .dvc/plots/ with DVC's data anchor, and the
    page DVC fills (.dvc/config's plots.html_template) holds its scripts (no CDN)."""
    import configparser
    import json

    plots = yaml.safe_load((PROJECT_ROOT / "dvc.yaml").read_text())["plots"]
    for plot in plots:
        spec = next(iter(plot.values()))
        if spec is None:
            continue
        template = PROJECT_ROOT / ".dvc/plots" / f"{spec['template']}.json"
        assert template.is_file(), f"{spec['title']}: no template {template}"
        assert "<DVC_METRIC_DATA>" in json.dumps(json.loads(template.read_text()))
    config = configparser.ConfigParser()
    config.read(PROJECT_ROOT / ".dvc/config")
    page = (PROJECT_ROOT / ".dvc" / config["plots"]["html_template"]).read_text()
    assert "{plot_divs}" in page and "{scripts}" not in page  # {scripts}: DVC's CDN tags
    assert "cdn." not in page and "/* vega-embed " in page


def test_params_file_round_trips_to_the_stage(tmp_path):
    """What `localsoc run/study` writes is what `localsoc stage` reads: the environment and the
    resolved parameters with the run's own choices merged."""
    from localsoc.dvc_stages import read_params, write_params

    root = _project_copy(tmp_path / "project")
    runtime = {"split": {"n_calibration": 12}, "ingest": {"source": "files", "sites": ["f"]}}
    write_params(root, "test", runtime)
    env, params = read_params(root)
    assert env == "test"
    assert params["split"]["n_calibration"] == 12
    assert params["ingest"]["sites"] == ["f"]
    assert params["split"]["min_test"] == load_params("test")["split"]["min_test"]
    (root / "params.yaml").write_text("grid: {}\n")
    with pytest.raises(ValueError, match="run.env"):
        read_params(root)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture
def s3_server():
    port = _free_port()
    proc = subprocess.Popen(
        [str(BIN / "moto_server"), "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    endpoint = f"http://127.0.0.1:{port}"
    deadline = time.time() + 30
    while time.time() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                break
        except OSError:
            time.sleep(0.2)
    else:
        proc.kill()
        pytest.fail("moto_server did not start")
    yield endpoint
    proc.terminate()
    proc.wait(timeout=10)


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_raw_ssls_push_and_pull_through_s3(tmp_path, s3_server, monkeypatch):
    import boto3

    for key, value in {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
                       "AWS_DEFAULT_REGION": "us-east-1", "DVC_NO_ANALYTICS": "1"}.items():
        monkeypatch.setenv(key, value)
    boto3.client("s3", endpoint_url=s3_server).create_bucket(Bucket="localsoc-ssl")

    repo = tmp_path / "repo"
    (repo / "data/01_raw").mkdir(parents=True)
    env = {**os.environ, "PATH": f"{BIN}:{os.environ['PATH']}"}

    def run(*args, cwd=repo):
        done = subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True)
        assert done.returncode == 0, f"{args}: {done.stdout}\n{done.stderr}"
        return done.stdout

    run("git", "init", "-q")
    run("dvc", "init", "-q")
    shutil.copy(PROJECT_ROOT / ".dvc/config", repo / ".dvc/config")  # the project's remotes
    run("dvc", "remote", "modify", "--local", "ssl_s3", "endpointurl", s3_server)

    library = repo / "data/01_raw/library_raw.parquet"
    sites = repo / "data/01_raw/sites_raw.parquet"
    make_ssl(200, seed=5).to_parquet(library)
    make_ssl(40, seed=6, site="field", library=None).to_parquet(sites)
    before = {p: _sha(p) for p in (library, sites)}
    run("dvc", "add", str(library.relative_to(repo)), str(sites.relative_to(repo)))
    run("dvc", "push", "-r", "ssl_s3")

    objects = boto3.client("s3", endpoint_url=s3_server).list_objects_v2(Bucket="localsoc-ssl")
    assert objects.get("KeyCount", 0) >= 2

    library.unlink()
    sites.unlink()
    shutil.rmtree(repo / ".dvc/cache")
    run("dvc", "pull", "-r", "ssl_s3")
    assert {p: _sha(p) for p in (library, sites)} == before
