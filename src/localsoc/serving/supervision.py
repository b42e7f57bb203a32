"""A watchdog in the process that runs `bentoml serve`: the server stops, non-zero, when a worker
cannot serve, so that a supervisor (compose's ``restart``, systemd, Kubernetes) restarts or
alerts instead of a server that half-serves or accepts connections that nobody answers.

BentoML's process manager (circus) restarts a worker that exits, however often it fails (a
worker that cannot load a changed bundle fails again at each restart), and gives up on it after
a few quick failures while the server process runs on; in a container it restarts none. Here:

- a worker that cannot load the verified bundle calls ``report_failure`` with the reason before
  it exits: the other workers answer ``/readyz`` with 503 from then on (``server_failure``), and
  the watchdog stops the server;
- the watchdog (``start_watchdog``, a thread started by the service's deployment hook, before any
  worker) checks every ``POLL_S`` for a reported failure and for fewer live workers than
  configured for longer than ``$LOCALSOC_WORKER_GRACE_S`` (default ``DEFAULT_GRACE_S``); either stops the workers (SIGTERM, SIGKILL after
  ``STOP_S``) and exits with ``EXIT_STATUS``, the reason on standard error.

Workers learn where to report from ``$LOCALSOC_SERVER_STATE`` (a directory the watchdog creates;
the workers inherit the variable). Without it (the service run in-process, e.g. by tests through
``to_asgi``) nothing is reported and nothing exits.
"""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
import threading
import time
from pathlib import Path

import psutil

STATE_VARIABLE = "LOCALSOC_SERVER_STATE"
FAILURE_FILE = "worker_failure.txt"
#: The command-line mark of a BentoML worker process (``_bentoml_impl.worker.service``).
WORKER_MODULE = "_bentoml_impl.worker.service"
POLL_S = 0.5
STOP_S = 10.0
EXIT_STATUS = 3
#: Seconds a server may run with fewer live workers than configured (a restart takes ~1 s).
DEFAULT_GRACE_S = 15.0


def grace_seconds(environ: dict[str, str] | None = None) -> float:
    """``$LOCALSOC_WORKER_GRACE_S`` (default ``DEFAULT_GRACE_S``); ``ValueError`` if unusable."""
    text = (os.environ if environ is None else environ).get("LOCALSOC_WORKER_GRACE_S", "")
    try:
        seconds = float(text.strip()) if text.strip() else DEFAULT_GRACE_S
    except ValueError:
        raise ValueError(f"LOCALSOC_WORKER_GRACE_S={text!r} is not a number") from None
    if not 0 < seconds < float("inf"):
        raise ValueError(f"LOCALSOC_WORKER_GRACE_S ({seconds:g}) must be a number of seconds "
                         "above 0")
    return seconds


def report_failure(reason: str) -> None:
    """Record, for the watchdog and the other workers, that this worker cannot serve."""
    directory = os.environ.get(STATE_VARIABLE)
    if not directory or not Path(directory).is_dir():
        return
    staging = Path(directory) / f".{FAILURE_FILE}.{os.getpid()}"
    staging.write_text(f"worker {os.getpid()}: {reason}\n")
    staging.replace(Path(directory) / FAILURE_FILE)


def server_failure() -> str | None:
    """The reported reason a worker of this server cannot serve, or None."""
    directory = os.environ.get(STATE_VARIABLE)
    if not directory:
        return None
    try:
        return (Path(directory) / FAILURE_FILE).read_text().strip() or None
    except OSError:
        return None


def live_workers(parent: psutil.Process) -> int:
    """How many BentoML worker processes of ``parent`` are alive."""
    count = 0
    for child in parent.children(recursive=True):
        try:
            if child.status() != psutil.STATUS_ZOMBIE and WORKER_MODULE in child.cmdline():
                count += 1
        except psutil.Error:
            continue
    return count


def stop_server(reason: str, directory: Path) -> None:
    """Stop every child of this process and exit with ``EXIT_STATUS``, ``reason`` on stderr."""
    print(f"localsoc: stopping the server (exit {EXIT_STATUS}): {reason}", file=sys.stderr,
          flush=True)
    children = psutil.Process().children(recursive=True)
    for child in children:
        try:
            child.terminate()
        except psutil.Error:
            pass
    _, alive = psutil.wait_procs(children, timeout=STOP_S)
    for child in alive:
        try:
            child.kill()
        except psutil.Error:
            pass
    shutil.rmtree(directory, ignore_errors=True)
    os._exit(EXIT_STATUS)  # the arbiter's own shutdown would wait for workers for a day


def watch(directory: Path, workers: int, grace_s: float) -> None:
    """The watchdog's loop (see the module notes); returns only by exiting the process."""
    parent = psutil.Process()
    short_since: float | None = None
    while True:
        time.sleep(POLL_S)
        failure = server_failure()
        if failure is not None:
            stop_server(f"a worker cannot serve: {failure}", directory)
        alive = live_workers(parent)
        if alive >= workers:
            short_since = None
            continue
        short_since = time.monotonic() if short_since is None else short_since
        if time.monotonic() - short_since > grace_s:
            stop_server(f"{alive} of {workers} workers alive for more than {grace_s:g} s "
                        "(killed, crashed, or not restarted)", directory)


def start_watchdog(workers: int, grace_s: float) -> Path:
    """Start the watchdog thread in this process (the one that starts the workers) and set
    ``$LOCALSOC_SERVER_STATE`` for the workers; returns the state directory."""
    directory = Path(tempfile.mkdtemp(prefix="localsoc-server-"))
    os.environ[STATE_VARIABLE] = str(directory)
    threading.Thread(target=watch, args=(directory, workers, grace_s), daemon=True,
                     name="localsoc-watchdog").start()
    return directory
