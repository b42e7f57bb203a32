"""Byte-identical model files: the same model saved twice gives the same bytes.

A Keras ``.keras`` file is a zip archive whose entries carry the time they were written, and
whose ``metadata.json`` records ``date_saved`` and whose ``config.json`` numbers the objects
layers share (a dtype policy) by their memory address (``shared_object_id``); the weights
themselves (``model.weights.h5``) are the same bytes for the same weights. DVC hashes every output, so without this step each
run of the same code, data and seed changes ``dvc.lock``. :func:`fix_archive_times` rewrites
every zip archive under a directory with one fixed time (:data:`FIXED_TIME`, the zip format's
epoch), that ``date_saved`` and the shared objects numbered 1, 2, ... in the order they first
appear; entries keep their order, names, compression and other contents.
"""

from __future__ import annotations

import json
import zipfile
from pathlib import Path

from localsoc.datasets.atomic import replace_path, staging_path

#: The time every archive entry gets: 1980-01-01 00:00:00, the earliest a zip entry can hold.
FIXED_TIME = (1980, 1, 1, 0, 0, 0)
#: The files rewritten: Keras model archives (zip).
ARCHIVE_SUFFIXES = (".keras",)
KERAS_METADATA = "metadata.json"
KERAS_CONFIG = "config.json"
SHARED_ID = "shared_object_id"


def numbered_shared_objects(config: object, numbers: dict | None = None) -> object:
    """``config`` with every ``shared_object_id`` (a memory address) replaced by 1, 2, ... in
    the order the ids first appear; the same id gets the same number, so what is shared stays
    shared."""
    numbers = {} if numbers is None else numbers
    if isinstance(config, dict):
        return {key: (numbers.setdefault(value, len(numbers) + 1) if key == SHARED_ID
                      else numbered_shared_objects(value, numbers))
                for key, value in config.items()}
    if isinstance(config, list):
        return [numbered_shared_objects(value, numbers) for value in config]
    return config


def _entry_bytes(archive: zipfile.ZipFile, info: zipfile.ZipInfo) -> bytes:
    data = archive.read(info)
    if info.filename == KERAS_CONFIG:
        return json.dumps(numbered_shared_objects(json.loads(data))).encode()
    if info.filename != KERAS_METADATA:
        return data
    metadata = json.loads(data)
    if "date_saved" not in metadata:
        return data
    metadata["date_saved"] = "{:04d}-{:02d}-{:02d}@{:02d}:{:02d}:{:02d}".format(*FIXED_TIME)
    return json.dumps(metadata).encode()


def fix_zip_times(path: str | Path) -> None:
    """Rewrite the zip archive at ``path`` with every entry dated :data:`FIXED_TIME` (and a
    Keras ``metadata.json``'s ``date_saved`` likewise), atomically."""
    path = Path(path)
    with zipfile.ZipFile(path) as archive:
        entries = [(info, _entry_bytes(archive, info)) for info in archive.infolist()]
    staged = staging_path(path)
    try:
        with zipfile.ZipFile(staged, "w") as out:
            for info, data in entries:
                fixed = zipfile.ZipInfo(info.filename, date_time=FIXED_TIME)
                fixed.compress_type = info.compress_type
                fixed.external_attr = info.external_attr
                fixed.create_system = 3  # unix, whatever system wrote it
                out.writestr(fixed, data)
        replace_path(staged, path)
    finally:
        staged.unlink(missing_ok=True)


def fix_archive_times(directory: str | Path) -> list[Path]:
    """:func:`fix_zip_times` on every model archive (:data:`ARCHIVE_SUFFIXES`) under
    ``directory``; returns them."""
    archives = sorted(p for p in Path(directory).rglob("*")
                      if p.suffix in ARCHIVE_SUFFIXES and p.is_file())
    for archive in archives:
        fix_zip_times(archive)
    return archives
