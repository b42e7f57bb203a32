"""A bundle the service cannot serve stops `bentoml serve` at start-up with the reason, instead
of workers that fail and restart while the server runs on and never answers /readyz."""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path

import pytest

from localsoc.serving.bundle import MANIFEST_FILE
from tests.serving.conftest import start_server, stop_server

pytestmark = pytest.mark.slow
#: A good bundle's server answers /readyz in ~15 s on a loaded 2-core VM; a refused one must
#: have exited by then.
EXIT_SECONDS = 90


def bundle_store(home: Path) -> Path:
    """The directory of the (only) bundle model in a BentoML home."""
    manifests = list((home / "models").glob(f"*/*/{MANIFEST_FILE}"))
    assert len(manifests) == 1, manifests
    return manifests[0].parent


def listed_model_file(store: Path) -> Path:
    files = json.loads((store / MANIFEST_FILE).read_text())["files"]
    return store / next(name for name in sorted(files) if "/" in name)


def change_a_model_file(store: Path) -> None:
    path = listed_model_file(store)
    path.write_bytes(path.read_bytes() + b" ")


def delete_a_model_file(store: Path) -> None:
    listed_model_file(store).unlink()


@pytest.mark.parametrize(("tamper", "message"), [
    (change_a_model_file, "changed since it was packaged"),
    (delete_a_model_file, "is missing from"),
])
def test_a_broken_bundle_stops_the_server_at_start_up_with_the_reason(project, tmp_path,
                                                                     tamper, message):
    root, home, _ = project
    shutil.copytree(root / "data", tmp_path / "data")
    shutil.copytree(home, tmp_path / "bentoml")
    tamper(bundle_store(tmp_path / "bentoml"))
    log_path = tmp_path / "server.log"
    process, _ = start_server(tmp_path, tmp_path / "bentoml", log_path)
    deadline = time.monotonic() + EXIT_SECONDS
    try:
        while process.poll() is None and time.monotonic() < deadline:
            time.sleep(0.5)
        log = log_path.read_text()
        assert process.returncode is not None, (
            f"bentoml serve still runs after {EXIT_SECONDS} s:\n{log[-3000:]}")
        assert process.returncode != 0
        assert "BundleIntegrityError" in log and message in log, log[-3000:]
        assert log.count(message) <= 2, "the bundle was read more than once (worker restarts?)"
    finally:
        stop_server(process)
