"""The watchdog's parts that run without a server: the failure report, the grace setting and the
count of live workers (the watchdog on a real `bentoml serve`: test_service_startup.py)."""

from __future__ import annotations

import subprocess
import sys

import psutil
import pytest

from localsoc.serving import supervision


def test_a_reported_failure_is_seen_by_every_process_of_the_server(tmp_path, monkeypatch):
    monkeypatch.delenv(supervision.STATE_VARIABLE, raising=False)
    supervision.report_failure("not under a server: nothing recorded")
    assert supervision.server_failure() is None
    monkeypatch.setenv(supervision.STATE_VARIABLE, str(tmp_path))
    assert supervision.server_failure() is None
    supervision.report_failure("BundleIntegrityError: bundle file x changed")
    assert supervision.server_failure().endswith("BundleIntegrityError: bundle file x changed")
    assert [p.name for p in tmp_path.iterdir()] == [supervision.FAILURE_FILE]


@pytest.mark.parametrize(("text", "seconds"), [("", supervision.DEFAULT_GRACE_S), ("2.5", 2.5)])
def test_the_grace_period_comes_from_the_environment(text, seconds):
    assert supervision.grace_seconds({"LOCALSOC_WORKER_GRACE_S": text}) == seconds


@pytest.mark.parametrize("text", ["soon", "0", "-1", "inf"])
def test_a_grace_period_that_cannot_be_used_is_refused(text):
    with pytest.raises(ValueError, match="LOCALSOC_WORKER_GRACE_S"):
        supervision.grace_seconds({"LOCALSOC_WORKER_GRACE_S": text})


def test_live_workers_counts_the_worker_processes_only():
    marked = [sys.executable, "-c", "import time; time.sleep(30)", supervision.WORKER_MODULE]
    other = [sys.executable, "-c", "import time; time.sleep(30)"]
    # servers that other tests of the session keep running are children of this process too
    before = supervision.live_workers(psutil.Process())
    children = [subprocess.Popen(marked), subprocess.Popen(marked), subprocess.Popen(other)]
    try:
        assert supervision.live_workers(psutil.Process()) == before + 2
        children[0].kill()
        children[0].wait()
        assert supervision.live_workers(psutil.Process()) == before + 1
    finally:
        for child in children:
            child.kill()
            child.wait()
