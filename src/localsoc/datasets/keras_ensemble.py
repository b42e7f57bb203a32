"""Kedro dataset for a 1D-CNN fold ensemble: a directory of ``.keras`` files plus metadata.

``filepath`` is a local directory (DVC versions it, so no Kedro versioning) in the layout of
``localsoc.models.fold_files`` (``fold_XX.keras`` per fold + ``metadata.json``).

Saving writes into a sibling staging directory and swaps it in, so a failed save leaves the old
ensemble intact. Catalog entry::

    library_cnn:
      type: localsoc.datasets.KerasEnsembleDataset
      filepath: data/06_models/library_cnn
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path, PurePosixPath
from typing import Any

from kedro.io import AbstractDataset, DatasetError

from localsoc.datasets.atomic import replace_path
from localsoc.datasets.stable_archives import fix_archive_times
from localsoc.models import fold_files


class KerasEnsembleDataset(AbstractDataset):
    """Loads and saves a ``localsoc.models.ensemble.FoldEnsemble``.

    Args:
        filepath: directory of the ensemble (created on save).
        load_args: passed to ``keras.models.load_model`` (default ``{"compile": False}``; the
            models are for prediction and fine-tuning, which compiles afresh).
        save_args: passed to ``keras.Model.save``.
        metadata: free-form, for Kedro plugins; not used here.
    """

    DEFAULT_LOAD_ARGS: dict[str, Any] = {"compile": False}
    DEFAULT_SAVE_ARGS: dict[str, Any] = {}

    def __init__(
        self,
        *,
        filepath: str,
        load_args: dict[str, Any] | None = None,
        save_args: dict[str, Any] | None = None,
        metadata: dict[str, Any] | None = None,
    ) -> None:
        if "://" in str(filepath) and not str(filepath).startswith("file://"):
            raise DatasetError(
                f"KerasEnsembleDataset keeps ensembles on the local file system; got {filepath!r}"
                " (push remote copies with DVC)"
            )
        self._filepath = Path(str(filepath).removeprefix("file://"))
        self._load_args = {**self.DEFAULT_LOAD_ARGS, **(load_args or {})}
        self._save_args = {**self.DEFAULT_SAVE_ARGS, **(save_args or {})}
        self.metadata = metadata

    def _describe(self) -> dict[str, Any]:
        return {
            "filepath": str(PurePosixPath(self._filepath)),
            "load_args": self._load_args,
            "save_args": self._save_args,
        }

    def _exists(self) -> bool:
        return fold_files.is_ensemble_directory(self._filepath)

    def _load(self):
        try:
            return fold_files.load_ensemble(self._filepath, **self._load_args)
        except FileNotFoundError as error:
            raise DatasetError(str(error)) from None

    def _save(self, data) -> None:
        from localsoc.models.ensemble import FoldEnsemble

        if not isinstance(data, FoldEnsemble):
            raise DatasetError(
                f"KerasEnsembleDataset saves a FoldEnsemble, got {type(data).__name__}"
            )
        target = self._filepath
        target.parent.mkdir(parents=True, exist_ok=True)
        staging = target.with_name(f".{target.name}.saving-{os.getpid()}")
        shutil.rmtree(staging, ignore_errors=True)
        staging.mkdir()
        try:
            fold_files.save_ensemble(data, staging, **self._save_args)
            fix_archive_times(staging)  # the same ensemble gives the same bytes (dvc.lock)
            replace_path(staging, target)
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)
            raise
