"""bentofile.yaml builds a Bento offline; the Dockerfile passes hadolint."""

from __future__ import annotations

import os
import shutil
import subprocess

import pytest
import yaml

from tests.conftest import PROJECT_ROOT
from tests.serving.conftest import BIN


def test_bentofile_pins_the_service_and_the_tag_file():
    config = yaml.safe_load((PROJECT_ROOT / "bentofile.yaml").read_text())
    assert config["service"] == "localsoc.serving.service:LocalSOCService"
    assert config["python"]["lock_packages"] is False
    assert "data/06_models/bento_tag.txt" in config["include"]


@pytest.mark.slow
def test_bentoml_build_accepts_the_bentofile_offline(project, tmp_path):
    from localsoc.datasets.bento_bundle import stored_model

    _, session_home, tag = project
    # the session's bundle, copied into a fresh home so that the build sees only it
    home = tmp_path / "bentoml"
    stored = stored_model(tag, str(session_home))
    env = {**os.environ, "BENTOML_HOME": str(home), "LOCALSOC_BUNDLE_TAG": tag,
           "BENTOML_DO_NOT_TRACK": "true", "TF_CPP_MIN_LOG_LEVEL": "2",
           "PIP_NO_INDEX": "1"}
    (home / "models").mkdir(parents=True)
    name, version = tag.split(":")
    shutil.copytree(stored.path, home / "models" / name / version)
    (home / "models" / name / "latest").write_text(version)
    done = subprocess.run([str(BIN / "bentoml"), "build", str(PROJECT_ROOT)], env=env,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    bentos = list((home / "bentos" / "localsoc").iterdir())
    built = yaml.safe_load(next(p for p in bentos if p.is_dir()).joinpath("bento.yaml")
                           .read_text())
    assert [m["tag"] for s in built["services"] for m in s["models"]] == [tag]


def test_dockerfile_passes_hadolint():
    done = subprocess.run([str(BIN / "hadolint"), str(PROJECT_ROOT / "Dockerfile")],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stdout + done.stderr
    text = (PROJECT_ROOT / "Dockerfile").read_text()
    assert "USER 10001" in text and "HEALTHCHECK" in text
    assert "localsoc.serving.service:LocalSOCService" in text
