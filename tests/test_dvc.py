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

from tests.conftest import PROJECT_ROOT, make_ssl

BIN = Path(sys.executable).parent


def dvc_stages() -> dict:
    return yaml.safe_load((PROJECT_ROOT / "dvc.yaml").read_text())["stages"]


def catalog_paths() -> dict[str, str]:
    catalog = yaml.safe_load((PROJECT_ROOT / "conf/base/catalog.yml").read_text())
    return {name: entry.get("filepath", entry.get("directory")) for name, entry in catalog.items()
            if not name.startswith("_") and ("filepath" in entry or "directory" in entry)}


def _out_path(out) -> str:
    return next(iter(out)) if isinstance(out, dict) else out


def test_dvc_outs_are_exactly_the_catalog_files_each_pipeline_writes():
    from localsoc.pipeline_registry import register_pipelines

    pipelines = register_pipelines()
    paths = catalog_paths()
    for name, stage in dvc_stages().items():
        assert stage["cmd"].endswith(f"--pipelines {name}"), stage["cmd"]
        outs = {_out_path(o) for key in ("outs", "metrics", "plots") for o in stage.get(key, [])}
        written = {paths[d] for d in pipelines[name].all_outputs() if d in paths}
        assert outs == written, f"stage {name}: dvc outs {outs ^ written} disagree with catalog"
        # stage_seconds.json is written by a hook as stages finish: informational, not a dep;
        # library_models_previous is the stage's own output read for reuse (DVC forbids a loop)
        inputs = {paths[d] for d in pipelines[name].inputs()
                  if d in paths and d not in ("stage_seconds", "library_models_previous")}
        deps = set(stage["deps"])
        assert inputs <= deps, f"stage {name}: inputs {inputs - deps} missing from deps"


def test_dvc_params_and_deps_exist():
    for name, stage in dvc_stages().items():
        for entry in stage["params"]:
            for file, keys in entry.items():
                params = yaml.safe_load((PROJECT_ROOT / file).read_text())
                for key in keys:
                    node = params
                    for part in key.split("."):
                        assert part in node, f"stage {name}: {file} has no key {key}"
                        node = node[part]
        for dep in stage["deps"]:
            if not dep.startswith("data/") or dep.startswith("data/01_raw/imports"):
                assert (PROJECT_ROOT / dep).exists(), f"stage {name}: dep {dep} does not exist"


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
