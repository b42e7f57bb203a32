"""Distributed CNN search: Keras-Tuner's own chief/worker mode behind ``search_cnn``.

Keras-Tuner runs one search across processes when ``KERASTUNER_TUNER_ID``,
``KERASTUNER_ORACLE_IP`` and ``KERASTUNER_ORACLE_PORT`` are set: the *chief* holds the oracle
and serves it over gRPC; every *worker* asks it for a trial, runs it and reports the score.
Here:

* the chief is the ordinary pipeline run (or any ``search_cnn`` call) with
  ``distributed={"enabled": True, "oracle_ip": ..., "oracle_port": ..., "directory": ...}``
  (``train.distributed`` in ``conf/base/parameters_train.yml``), or with the three Keras-Tuner
  variables set (``KERASTUNER_TUNER_ID=chief``) and ``LOCALSOC_TUNING_DIRECTORY``. It runs no
  trial itself. For every search it writes the search's data (spectra, targets, folds, budget,
  space, seed) to ``directory/<project_name>/`` and names the search in
  ``directory/localsoc_current_search.json``, serves the oracle until the budget is spent, then
  reads the best trial's stored fold models, exactly as a single-process search does;
* a worker (``python -m localsoc.models.distributed_search --directory DIR``, one per GPU or
  machine, ``KERASTUNER_TUNER_ID=tuner1``, ``tuner2``, ...) waits for a search to be named,
  joins it, runs trials until the oracle says stop, and waits for the next one. So one set of
  workers serves every search of a pipeline run (library models, Local, DTL-I) in turn.

``directory`` must be one file system seen by the chief and every worker (the same path; NFS,
EFS, Filestore, Lustre): the search's data go out through it and the trials' fold models come
back through it. If the best trial's models are missing there, the chief retrains that trial
(one more trial's time) instead of failing. One chief per directory at a time.

Not covered: a worker that dies mid-trial leaves that trial "running" in the oracle forever
(Keras-Tuner has no heartbeat); the chief then waits, or raises after ``wait_timeout_s``
without any trial starting or ending. Restart the worker with the same ``KERASTUNER_TUNER_ID``:
the oracle hands it the same trial again.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import socket
import time
import uuid
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import keras
import numpy as np
from tqdm.auto import tqdm

from localsoc.models import keras_tuner_adapter as kt_adapter
from localsoc.models.runtime import configure_tensorflow
from localsoc.models.tuner import (
    CNN1DHyperModel,
    CrossValidationTuner,
    LoggingStream,
    make_oracle,
    worker_best_dir,
)

logger = logging.getLogger(__name__)

__all__ = [
    "DISTRIBUTED_KEYS",
    "DistributedSettings",
    "WorkerTuner",
    "main",
    "resolve_distributed",
    "run_worker",
]

POINTER_FILE = "localsoc_current_search.json"
WORKERS_DIR = "localsoc_workers"
TASK_ARRAYS = "localsoc_task.npz"
TASK_FILE = "localsoc_task.json"
DIRECTORY_VARIABLE = "LOCALSOC_TUNING_DIRECTORY"
TUNER_VARIABLES = ("KERASTUNER_TUNER_ID", "KERASTUNER_ORACLE_IP", "KERASTUNER_ORACLE_PORT")
DISTRIBUTED_KEYS = ("enabled", "oracle_ip", "oracle_port", "directory", "wait_timeout_s")
_WILDCARD_ADDRESSES = ("0.0.0.0", "::", "[::]", "")


@dataclass(frozen=True)
class DistributedSettings:
    """Where the chief serves its oracle and where chief and workers share files."""

    directory: Path
    oracle_ip: str = "127.0.0.1"
    oracle_port: int = 8000
    wait_timeout_s: float | None = None
    poll_s: float = 0.25
    grace_s: float = 1.0
    linger_s: float = 30.0  # after the last trial: how long to wait for every worker's STOPPED

    @property
    def advertised_ip(self) -> str:
        """The address workers are told (the host name when the chief listens everywhere)."""
        if self.oracle_ip in _WILDCARD_ADDRESSES:
            return socket.getfqdn()
        return self.oracle_ip


def resolve_distributed(
    distributed: Mapping[str, Any] | None, directory: str | os.PathLike | None = None
) -> DistributedSettings | None:
    """Chief settings from ``distributed`` (``train.distributed``) or the environment.

    ``None`` for a single-process search. The environment is read only when ``distributed`` is
    not enabled: ``KERASTUNER_TUNER_ID=chief`` with ``KERASTUNER_ORACLE_IP``/``_PORT`` makes a
    chief (directory: ``directory`` or ``$LOCALSOC_TUNING_DIRECTORY``); any other tuner id is a
    worker, which runs ``python -m localsoc.models.distributed_search``, never ``search_cnn``.
    """
    settings = dict(distributed or {})
    unknown = sorted(set(settings) - set(DISTRIBUTED_KEYS))
    if unknown:
        raise ValueError(
            f"unknown train.distributed key(s) {unknown}; known keys: {list(DISTRIBUTED_KEYS)}"
        )
    if settings.get("enabled"):
        chosen = settings.get("directory") or directory or os.environ.get(DIRECTORY_VARIABLE)
        if not chosen:
            raise ValueError(
                "train.distributed.enabled is true but no directory is set; set "
                "train.distributed.directory to a directory the chief and every worker share "
                "(the same path on each machine)"
            )
        port = int(settings.get("oracle_port") or 8000)
        if not 0 < port < 65536:
            raise ValueError(f"train.distributed.oracle_port must be in 1..65535, got {port}")
        wait = settings.get("wait_timeout_s")
        return DistributedSettings(
            directory=Path(chosen),
            oracle_ip=str(settings.get("oracle_ip") or "127.0.0.1"),
            oracle_port=port,
            wait_timeout_s=None if wait is None else float(wait),
        )
    if "KERASTUNER_ORACLE_IP" not in os.environ:
        return None
    if not kt_adapter.is_chief_environment():  # Keras-Tuner's own reading of the variables
        raise RuntimeError(
            f"KERASTUNER_TUNER_ID={os.environ['KERASTUNER_TUNER_ID']!r} makes this process a "
            "Keras-Tuner worker, but search_cnn runs the chief. Start workers with "
            "`python -m localsoc.models.distributed_search --directory <shared directory>`; "
            "run the pipeline with KERASTUNER_TUNER_ID=chief (or unset the KERASTUNER_* "
            "variables for a single-process search)"
        )
    chosen = directory or os.environ.get(DIRECTORY_VARIABLE)
    if not chosen:
        raise ValueError(
            "KERASTUNER_TUNER_ID=chief is set but no shared directory: set "
            f"{DIRECTORY_VARIABLE} (or train.distributed.directory) to a directory the chief "
            "and every worker share"
        )
    return DistributedSettings(
        directory=Path(chosen),
        oracle_ip=os.environ["KERASTUNER_ORACLE_IP"],
        oracle_port=int(os.environ["KERASTUNER_ORACLE_PORT"]),
    )


@contextlib.contextmanager
def tuner_environment(tuner_id: str, ip: str, port: int) -> Iterator[None]:
    """The three Keras-Tuner variables set for the duration (Keras-Tuner reads them when a
    tuner is made and when it searches); the previous values restored afterwards."""
    saved = {name: os.environ.get(name) for name in TUNER_VARIABLES}
    os.environ.update(
        KERASTUNER_TUNER_ID=str(tuner_id), KERASTUNER_ORACLE_IP=str(ip),
        KERASTUNER_ORACLE_PORT=str(int(port)),
    )
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


# --------------------------------------------------------------------------------------------
# Files shared by the chief and the workers


def _write_json(path: Path, payload: Mapping[str, Any]) -> None:
    """Atomic on one file system: readers see the old or the new file, never half of one."""
    staging = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    staging.write_text(json.dumps(payload, indent=1))
    os.replace(staging, path)


def _read_json(path: Path) -> dict[str, Any] | None:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def write_task(project_dir: Path, data: Mapping[str, Any], tuner: str, search_id: str,
               data_hash: str) -> None:
    """What a worker needs to run this search's trials: the data and the search's settings."""
    folds = data["folds"]
    np.savez(
        project_dir / TASK_ARRAYS,
        X=data["X"],
        y=data["y"],
        sample_ids=np.asarray(folds.sample_ids, dtype=str),
        assignment=folds.assignment,
    )
    _write_json(
        project_dir / TASK_FILE,
        {
            "search_id": search_id,
            "tuner": tuner,
            "budget": dict(data["budget"]),
            "space": data["space"],
            "seed": int(data["seed"]),
            "folds_seed": folds.seed,
            "training_data_hash": data_hash,
        },
    )


def read_task(project_dir: Path) -> tuple[dict[str, Any], str, str]:
    """(the tuner's ``data`` dict, tuner kind, search id) of the search in ``project_dir``."""
    from localsoc.models.ensemble import Folds, data_hash

    info = json.loads((project_dir / TASK_FILE).read_text())
    with np.load(project_dir / TASK_ARRAYS) as arrays:
        X, y = arrays["X"], arrays["y"]
        folds = Folds(arrays["sample_ids"].astype(object), arrays["assignment"], info["folds_seed"])
    if data_hash(X, y, folds.sample_ids) != info["training_data_hash"]:
        raise RuntimeError(
            f"the search data in {project_dir} do not match their hash (a half-written file, or "
            "two chiefs sharing one directory?)"
        )
    data = {
        "X": X,
        "y": y,
        "folds": folds,
        "budget": info["budget"],
        "space": info["space"],
        "seed": int(info["seed"]),
        "n_bands": int(X.shape[1]),
    }
    return data, info["tuner"], info["search_id"]


def current_search(directory: Path) -> dict[str, Any] | None:
    """The search the chief serves now (``state`` "running"), the last one, or None."""
    return _read_json(Path(directory) / POINTER_FILE)


def _report_worker(directory: Path, tuner_id: str, **state: Any) -> None:
    folder = Path(directory) / WORKERS_DIR
    folder.mkdir(parents=True, exist_ok=True)
    _write_json(
        folder / f"{tuner_id}.json",
        {"tuner_id": tuner_id, "host": socket.gethostname(), "pid": os.getpid(),
         "time": time.time(), **state},
    )


def ready_workers(directory: str | os.PathLike) -> list[dict[str, Any]]:
    """The workers that have reported to ``directory`` (one dict each; ``state``: idle,
    running, stopped)."""
    folder = Path(directory) / WORKERS_DIR
    found = [_read_json(path) for path in sorted(folder.glob("*.json"))] if folder.exists() else []
    return [entry for entry in found if entry]


# --------------------------------------------------------------------------------------------
# The chief


def _start_oracle_server(oracle, settings: DistributedSettings):
    """Keras-Tuner's oracle service (``kt_adapter.add_oracle_service``) on a gRPC server.

    Keras-Tuner's own ``start_server`` polls its exit condition every 20 s, never stops the
    server (so the next search of the same process could not bind the port) and shows no
    progress; the service and the protocol are the same.
    """
    from concurrent import futures

    import grpc

    server = grpc.server(futures.ThreadPoolExecutor(max_workers=1))
    servicer = kt_adapter.add_oracle_service(server, oracle)
    address = f"{settings.oracle_ip}:{settings.oracle_port}"
    try:
        bound = server.add_insecure_port(address)
    except RuntimeError as error:
        bound, cause = 0, error
    else:
        cause = None
    if not bound:
        raise RuntimeError(
            f"the chief cannot serve the Keras-Tuner oracle on {address} (port in use, or not "
            "an address of this machine); set train.distributed.oracle_port / oracle_ip"
        ) from cause
    server.start()
    return server, servicer


def serve_search(cv_tuner, data: Mapping[str, Any], tuner: str, data_hash: str,
                 settings: DistributedSettings, bar=None) -> None:
    """Run one search as the chief: publish it, serve the oracle until its budget is spent.

    Returns when every trial has ended and no worker is running one; raises the oracle's own
    error after too many consecutive failed trials, and ``TimeoutError`` after
    ``wait_timeout_s`` seconds without a trial starting or ending.
    """
    directory = Path(settings.directory)
    search_id = uuid.uuid4().hex
    write_task(Path(cv_tuner.project_dir), data, tuner, search_id, data_hash)
    cv_tuner.save()
    server, servicer = _start_oracle_server(cv_tuner.oracle, settings)
    pointer = {
        "search_id": search_id,
        "project_name": cv_tuner.project_name,
        "oracle_ip": settings.advertised_ip,
        "oracle_port": int(settings.oracle_port),
        "state": "running",
        "started": time.time(),
    }
    _write_json(directory / POINTER_FILE, pointer)
    logger.info(
        "chief: search %s served on %s:%s; workers in %s: %d",
        cv_tuner.project_name, settings.oracle_ip, settings.oracle_port, directory,
        len(ready_workers(directory)),
    )
    state = "failed"
    try:
        _serve_until_done(cv_tuner, servicer, settings, bar)
        state = "finished"
    finally:
        _write_json(directory / POINTER_FILE, {**pointer, "state": state, "ended": time.time()})
        time.sleep(settings.grace_s)  # a worker that read "running" just now gets STOPPED
        server.stop(grace=settings.grace_s).wait()
    logger.info("chief: search %s finished (%d trials)", cv_tuner.project_name,
                len(cv_tuner.oracle.trials))


def _serve_until_done(cv_tuner, servicer, settings: DistributedSettings, bar) -> None:
    """Poll the oracle until the budget is spent and no trial runs (then linger for the
    workers), keeping ``bar`` current; ``TimeoutError`` after ``wait_timeout_s`` idle."""
    oracle = cv_tuner.oracle
    max_trials = int(oracle.max_trials) if oracle.max_trials else None
    last_change, last_seen, done_since = time.monotonic(), None, None
    while True:
        time.sleep(settings.poll_s)
        trials = list(oracle.trials.values())
        ongoing = list(oracle.ongoing_trials.values())
        ended = sum(1 for t in trials if t.status in ("COMPLETED", "FAILED"))
        seen = (len(trials), ended, len(ongoing))
        if seen != last_seen:
            last_seen, last_change = seen, time.monotonic()
            if bar is not None:
                bar.n = min(ended, bar.total or ended)
                bar.refresh()
        kt_adapter.check_consecutive_failures(oracle)  # as the single-process search does
        exhausted = kt_adapter.service_stop_requested(servicer) or (
            max_trials is not None and ended >= max_trials
        )
        if exhausted and not ongoing:
            # Every trial has ended; give the workers that ran one a moment to hear STOPPED.
            done_since = done_since or time.monotonic()
            if not oracle.tuner_ids or time.monotonic() - done_since > settings.linger_s:
                return
        elif (
            settings.wait_timeout_s is not None
            and time.monotonic() - last_change > settings.wait_timeout_s
        ):
            raise _idle_chief(cv_tuner.project_name, settings, ended, len(ongoing))


def _idle_chief(project_name: str, settings: DistributedSettings, ended: int,
                running: int) -> TimeoutError:
    directory = Path(settings.directory)
    return TimeoutError(
        f"chief: no trial of search {project_name} started or ended in "
        f"{settings.wait_timeout_s:.0f} s ({ended} ended, {running} running); "
        f"workers seen in {directory}: {len(ready_workers(directory))}. Start "
        "workers with `python -m localsoc.models.distributed_search --directory "
        f"{directory}` (KERASTUNER_TUNER_ID=tuner1, ...) or raise "
        "train.distributed.wait_timeout_s"
    )


# --------------------------------------------------------------------------------------------
# The worker


class _SearchEnded(Exception):
    """The chief no longer serves the search this worker joined."""


class WorkerTuner(CrossValidationTuner):
    """Runs trials of the chief's search; saves its best outcome to its own folder
    (``best_trial.<tuner id>``) so that workers never write the same files."""

    def __init__(self, *args, still_served: Callable[[], bool], **kwargs):
        self._still_served = still_served
        super().__init__(*args, **kwargs)
        self.best_dir_name = worker_best_dir(self.tuner_id)
        self.trials_run = 0

    def pre_create_trial(self):
        # Before every request: a search the chief has closed is never joined (its port
        # may be serving the next search by the time the request would arrive).
        if not self._still_served():
            raise _SearchEnded

    def on_trial_end(self, trial):
        super().on_trial_end(trial)
        self.trials_run += 1


def _run_one_search(directory: Path, pointer: Mapping[str, Any], tuner_id: str,
                    oracle_ip: str, oracle_port: int, progress: bool) -> int:
    """Join the chief's search named by ``pointer``; returns the trials this worker ran."""
    project_name = pointer["project_name"]
    project_dir = directory / project_name
    data, tuner_kind, search_id = read_task(project_dir)
    if search_id != pointer["search_id"]:
        raise _SearchEnded  # the chief has moved on to another search
    oracle = make_oracle(tuner_kind, data["budget"], data["seed"])
    hypermodel = CNN1DHyperModel(data["n_bands"], data["space"])

    def still_served() -> bool:
        now = current_search(directory) or {}
        return now.get("search_id") == search_id and now.get("state") == "running"

    keras.utils.set_random_seed(int(data["seed"]))
    with tuner_environment(tuner_id, oracle_ip, oracle_port), \
            contextlib.redirect_stdout(LoggingStream()):
        tuner = WorkerTuner(
            oracle,
            hypermodel,
            data=data,
            directory=str(directory),
            project_name=project_name,
            overwrite=False,  # only the chief wipes the project directory
            still_served=still_served,
        )
        with tqdm(desc=f"{tuner_id}: {project_name}", unit="trial", disable=not progress) as bar:
            tuner.progress_bar = bar
            try:
                tuner.search(verbose=0)
            except _SearchEnded:
                pass
    return tuner.trials_run


def run_worker(
    directory: str | os.PathLike,
    *,
    tuner_id: str | None = None,
    oracle_ip: str | None = None,
    oracle_port: int | None = None,
    idle_timeout_s: float | None = None,
    max_searches: int | None = None,
    threads: int | None = None,
    deterministic: bool = True,
    progress: bool = False,
    poll_s: float = 1.0,
) -> int:
    """Serve the chief's searches in ``directory`` one after another; returns how many.

    ``tuner_id``, ``oracle_ip``, ``oracle_port`` default to ``KERASTUNER_TUNER_ID``,
    ``KERASTUNER_ORACLE_IP`` and ``KERASTUNER_ORACLE_PORT``; the address falls back to the one
    the chief published. Stops after ``max_searches`` searches, or after ``idle_timeout_s``
    seconds without one (``None``: runs until stopped).
    """
    directory = Path(directory)
    tuner_id = _worker_id(tuner_id or os.environ.get("KERASTUNER_TUNER_ID"))
    oracle_ip = oracle_ip or os.environ.get("KERASTUNER_ORACLE_IP")
    oracle_port = oracle_port or os.environ.get("KERASTUNER_ORACLE_PORT")
    directory.mkdir(parents=True, exist_ok=True)
    tensorflow = configure_tensorflow(threads, deterministic)
    logger.info("worker %s: %s; watching %s", tuner_id, tensorflow, directory)

    served: set[str] = set()
    pointer = current_search(directory)
    if pointer and pointer.get("state") != "running":
        served.add(pointer["search_id"])
    count, trials, idle_since = 0, 0, time.monotonic()
    _report_worker(directory, tuner_id, state="idle", searches=0, trials=0)
    try:
        while max_searches is None or count < max_searches:
            pointer = current_search(directory)
            if pointer and pointer.get("state") == "running" and (
                pointer["search_id"] not in served
            ):
                served.add(pointer["search_id"])
                ip = oracle_ip or pointer["oracle_ip"]
                port = int(oracle_port or pointer["oracle_port"])
                _report_worker(directory, tuner_id, state="running", searches=count,
                               trials=trials, search=pointer["project_name"])
                trials += _join_search(directory, pointer, tuner_id, ip, port, progress)
                count += 1
                _report_worker(directory, tuner_id, state="idle", searches=count, trials=trials)
                idle_since = time.monotonic()
                continue
            if idle_timeout_s is not None and time.monotonic() - idle_since > idle_timeout_s:
                logger.info("worker %s: no search for %.0f s; stopping", tuner_id, idle_timeout_s)
                break
            time.sleep(poll_s)
    finally:
        _report_worker(directory, tuner_id, state="stopped", searches=count, trials=trials)
    return count


def _worker_id(tuner_id: str | None) -> str:
    """The worker's Keras-Tuner id, checked (set, and not a chief's)."""
    if not tuner_id:
        raise ValueError(
            "a worker needs a tuner id: set KERASTUNER_TUNER_ID (tuner1, tuner2, ...) or pass "
            "--tuner-id"
        )
    if "chief" in tuner_id:
        raise ValueError(
            f"tuner id {tuner_id!r} contains 'chief', which Keras-Tuner reserves for the chief; "
            "name workers tuner1, tuner2, ..."
        )
    return tuner_id


def _join_search(directory: Path, pointer: Mapping[str, Any], tuner_id: str, ip: str,
                 port: int, progress: bool) -> int:
    """The trials this worker ran in the search ``pointer`` names (0 when the search ended
    before it joined, or its chief went away)."""
    import grpc

    try:
        ran = _run_one_search(directory, pointer, tuner_id, ip, port, progress)
    except _SearchEnded:
        ran = 0
    except grpc.RpcError as error:  # the chief went away mid-search
        logger.warning("worker %s: search %s lost its chief: %s", tuner_id,
                       pointer["project_name"], error)
        ran = 0
    logger.info("worker %s: search %s done, %d trial(s) here",
                tuner_id, pointer["project_name"], ran)
    return ran


def main(argv: list[str] | None = None) -> int:
    """``python -m localsoc.models.distributed_search --directory DIR``: a tuner worker."""
    import argparse

    parser = argparse.ArgumentParser(
        prog="python -m localsoc.models.distributed_search",
        description="A Keras-Tuner worker for LocalSOC's CNN searches: runs trials of every "
        "search a chief publishes in DIRECTORY (KERASTUNER_TUNER_ID, KERASTUNER_ORACLE_IP, "
        "KERASTUNER_ORACLE_PORT as in Keras-Tuner; see docs/scaling_out.md).",
    )
    parser.add_argument("--directory", default=os.environ.get(DIRECTORY_VARIABLE),
                        help=f"the chief's shared directory (default ${DIRECTORY_VARIABLE})")
    parser.add_argument("--tuner-id", help="default $KERASTUNER_TUNER_ID (tuner1, tuner2, ...)")
    parser.add_argument("--oracle-ip", help="default $KERASTUNER_ORACLE_IP, else the chief's")
    parser.add_argument("--oracle-port", type=int,
                        help="default $KERASTUNER_ORACLE_PORT, else the chief's")
    parser.add_argument("--idle-timeout", type=float, default=None,
                        help="stop after this many seconds without a search (default: never)")
    parser.add_argument("--max-searches", type=int, default=None,
                        help="stop after serving this many searches (default: never)")
    parser.add_argument("--threads", type=int, default=None,
                        help="TensorFlow intra-op threads (default: all cores)")
    parser.add_argument("--poll", type=float, default=1.0, help="seconds between looks")
    parser.add_argument("--no-determinism", action="store_true",
                        help="turn TensorFlow op determinism off (GPU kernels without one)")
    parser.add_argument("--progress", action="store_true", help="a progress bar per search")
    args = parser.parse_args(argv)
    if not args.directory:
        parser.error(f"--directory (or ${DIRECTORY_VARIABLE}) is required")
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    run_worker(
        args.directory,
        tuner_id=args.tuner_id,
        oracle_ip=args.oracle_ip,
        oracle_port=args.oracle_port,
        idle_timeout_s=args.idle_timeout,
        max_searches=args.max_searches,
        threads=args.threads,
        deterministic=not args.no_determinism,
        progress=args.progress,
        poll_s=args.poll,
    )
    return 0


if __name__ == "__main__":  # pragma: no cover - exercised through a subprocess in the tests
    raise SystemExit(main())
