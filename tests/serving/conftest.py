"""Session fixtures of the serving tests: one tiny study, one bundle, one real server.

The BentoML store lives in a temporary BENTOML_HOME, never the user's. The server is
``bentoml serve`` on a free port of 127.0.0.1, started once per session and stopped at the end.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pandas as pd
import pytest

BIN = Path(sys.executable).parent
SERVER_START_SECONDS = 180


@pytest.fixture(scope="session")
def study():
    """Two simulated sites, their models, the evaluate node's outputs and the package bundle."""
    from tests.serving.study import build_study, simulate_sites

    sites_ssl = simulate_sites()
    return {"sites_ssl": sites_ssl, **build_study(sites_ssl)}


@pytest.fixture(scope="session")
def recorded_predictions(study, tmp_path_factory) -> pd.DataFrame:
    """The evaluate step's predictions as the catalog stores them (CSV) and reads them back."""
    path = tmp_path_factory.mktemp("evaluate") / "study_predictions.csv"
    study["predictions"].to_csv(path, index=False)
    return pd.read_csv(path)


@pytest.fixture(scope="session")
def project(study, tmp_path_factory):
    """A project directory with the bundle saved to its own BentoML home; (root, home, tag)."""
    from tests.serving.study import save_bundle

    root = tmp_path_factory.mktemp("serving_project")
    tag = save_bundle(study["bundle"], root)
    return root, root / "bentoml", tag


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


#: Settings of the service's HTTP edges that a test server never inherits from the caller.
EDGE_SETTINGS = ("LOCALSOC_API_KEY", "LOCALSOC_MAX_CONCURRENCY", "LOCALSOC_REQUEST_TIMEOUT_S",
                 "LOCALSOC_BODY_TIMEOUT_S", "LOCALSOC_HEADER_TIMEOUT_S")


def start_server(root: Path, home: Path, log_path: Path,
                 settings: dict[str, str] | None = None) -> tuple[subprocess.Popen, str]:
    """``bentoml serve`` of the service from ``home``'s bundle, in ``root``, on a free port of
    127.0.0.1, its output to ``log_path``, with the environment ``settings`` on top of the
    defaults: (process, base URL). Stop it with ``stop_server``."""
    port = free_port()
    env = {key: value for key, value in os.environ.items() if key not in EDGE_SETTINGS}
    env.update({"BENTOML_HOME": str(home), "BENTOML_DO_NOT_TRACK": "true",
                "TF_CPP_MIN_LOG_LEVEL": "2", "LOCALSOC_THREADS": "1", "LOCALSOC_WORKERS": "1",
                **(settings or {})})
    env.pop("LOCALSOC_BUNDLE_TAG", None)  # the service must find the tag in the project's file
    env.pop("LOCALSOC_PROJECT", None)
    with open(log_path, "w") as log:
        process = subprocess.Popen(
            [str(BIN / "bentoml"), "serve", "localsoc.serving.service:LocalSOCService",
             "--host", "127.0.0.1", "--port", str(port)],
            cwd=root, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
        )
    return process, f"http://127.0.0.1:{port}"


def stop_server(process: subprocess.Popen) -> None:
    if process.poll() is None:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=10)


def wait_until_ready(process: subprocess.Popen, url: str, log_path: Path) -> None:
    """Return once the server answers /readyz; fail the test if it exits or takes too long."""
    deadline = time.monotonic() + SERVER_START_SECONDS
    while True:
        if process.poll() is not None:
            pytest.fail(f"bentoml serve exited ({process.returncode}):\n"
                        f"{log_path.read_text()[-3000:]}")
        try:
            if httpx.get(f"{url}/readyz", timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        if time.monotonic() > deadline:
            pytest.fail(f"bentoml serve not ready in {SERVER_START_SECONDS} s:\n"
                        f"{log_path.read_text()[-3000:]}")
        time.sleep(0.5)


@contextlib.contextmanager
def running_server(root: Path, home: Path, log_path: Path,
                   settings: dict[str, str] | None = None) -> Iterator[str]:
    """The base URL of a ready ``start_server`` server, stopped on leaving the block."""
    process, url = start_server(root, home, log_path, settings)
    try:
        wait_until_ready(process, url, log_path)
        yield url
    finally:
        stop_server(process)


@pytest.fixture(scope="session")
def server(project):
    """Base URL of ``bentoml serve`` running the service from the project's bundle."""
    root, home, _ = project
    with running_server(root, home, root / "server.log") as url:
        yield url


@pytest.fixture(scope="session")
def client(server):
    with httpx.Client(base_url=server, timeout=60) as session:
        yield session
