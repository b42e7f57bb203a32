"""Atomic saves: a killed run leaves every output file either whole and new or as it was.

``AtomicSave`` makes a Kedro file dataset write to a hidden staging path beside its target
(``.<name>.saving-<pid>-<random>``), flush it to disk and then put it in place with
``os.replace`` (a directory: the old one renamed aside, the new one renamed in, the old one
removed). A run killed during a save leaves at most a hidden staging leftover, never a 0-byte or
half-written output; ``replace_path`` is the same step for the project's own datasets, and
``remove_stale_staging`` removes the leftovers of writers that are no longer running.

The catalog's file datasets are these subclasses of kedro-datasets' (``CSVDataset``,
``ParquetDataset``, ``JSONDataset``, ``TextDataset``, ``MatplotlibDataset``).
"""

from __future__ import annotations

import os
import re
import shutil
import uuid
from pathlib import Path, PurePosixPath
from typing import Any

from kedro_datasets.json import JSONDataset as _JSONDataset
from kedro_datasets.matplotlib import MatplotlibDataset as _MatplotlibDataset
from kedro_datasets.pandas import CSVDataset as _CSVDataset
from kedro_datasets.pandas import ParquetDataset as _ParquetDataset
from kedro_datasets.text import TextDataset as _TextDataset

#: A name ``staging_path`` gives: ``.<target name>.saving-<writer's pid>-<8 hex digits>``,
#: with ``.old`` for a directory moved aside by ``replace_path``.
STAGING_NAME = re.compile(r"^\.(?P<target>.+)\.saving-(?P<pid>\d+)-[0-9a-f]{8}(?:\.old)?$")


def staging_path(target: str | Path) -> Path:
    """A hidden path beside ``target`` for writing it (never taken for the output itself)."""
    target = Path(target)
    return target.with_name(f".{target.name}.saving-{os.getpid()}-{uuid.uuid4().hex[:8]}")


def _running(pid: int) -> bool:
    """Whether process ``pid`` exists on this machine (ours included: this process may be
    holding a staged file, as ``localsoc.workflow.store_table`` holds the previous table)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by another user
        return True
    return True


def stale_staging(directory: str | Path, target: str | None = None) -> list[Path]:
    """The staging leftovers in ``directory`` (of ``target``'s name only, when given) whose
    writer is no longer running: names that ``staging_path`` gives (``STAGING_NAME``), with the
    pid of a process that has ended. Leftovers of a live writer and other hidden files are not
    listed."""
    directory = Path(directory)
    if not directory.is_dir():
        return []
    stale = []
    for path in sorted(directory.iterdir()):
        match = STAGING_NAME.match(path.name)
        if match is None or (target is not None and match["target"] != target):
            continue
        if not _running(int(match["pid"])):
            stale.append(path)
    return stale


def remove_stale_staging(directory: str | Path, target: str | None = None) -> list[Path]:
    """Remove ``stale_staging(directory, target)`` (a killed write's leftovers); returns them."""
    stale = stale_staging(directory, target)
    for path in stale:
        remove_path(path)
    return stale


def _fsync(path: Path) -> None:
    files = [path] if path.is_file() else [p for p in path.rglob("*") if p.is_file()]
    for name in (*files, path.parent):
        descriptor = os.open(name, os.O_RDONLY)
        try:
            os.fsync(descriptor)
        finally:
            os.close(descriptor)


def remove_path(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        path.unlink(missing_ok=True)


def replace_path(staged: Path, target: Path) -> None:
    """Put ``staged`` (a file or a directory, written completely) at ``target``."""
    _fsync(staged)
    if staged.is_dir() and target.exists():
        aside = staging_path(target)
        old = aside.with_name(aside.name + ".old")
        target.rename(old)
        staged.rename(target)
        remove_path(old)
    else:
        os.replace(staged, target)


def write_text(path: str | Path, text: str) -> None:
    """``Path.write_text``, atomically."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    staged = staging_path(path)
    try:
        staged.write_text(text)
        replace_path(staged, path)
    finally:
        remove_path(staged)


class AtomicSave:
    """Mixin for a kedro-datasets file dataset (``_filepath`` on the local file system)."""

    _filepath: PurePosixPath

    def save(self, data: Any) -> None:
        target = Path(str(self._filepath))
        target.parent.mkdir(parents=True, exist_ok=True)
        remove_stale_staging(target.parent, target.name)  # of a killed run
        staged = staging_path(target)
        self._filepath = PurePosixPath(str(staged))
        try:
            super().save(data)
            replace_path(staged, target)
        finally:
            self._filepath = PurePosixPath(str(target))
            remove_path(staged)  # only left by a failed save
            invalidate = getattr(self, "_invalidate_cache", None)
            if invalidate is not None:
                invalidate()


class CSVDataset(AtomicSave, _CSVDataset):
    """``pandas.CSVDataset``, saved atomically."""


class ParquetDataset(AtomicSave, _ParquetDataset):
    """``pandas.ParquetDataset``, saved atomically."""


class JSONDataset(AtomicSave, _JSONDataset):
    """``json.JSONDataset``, saved atomically."""


class TextDataset(AtomicSave, _TextDataset):
    """``text.TextDataset``, saved atomically."""


class MatplotlibDataset(AtomicSave, _MatplotlibDataset):
    """``matplotlib.MatplotlibDataset`` (a figure, or a dict of them as a directory), saved
    atomically: a dict replaces the whole directory; an empty dict leaves an empty directory
    (a stage with nothing to draw, e.g. every library scope skipped)."""

    def save(self, data: Any) -> None:
        if isinstance(data, dict) and not data:
            target = Path(str(self._filepath))
            target.parent.mkdir(parents=True, exist_ok=True)
            staged = staging_path(target)
            try:
                staged.mkdir()
                replace_path(staged, target)
            finally:
                remove_path(staged)
            return
        super().save(data)
