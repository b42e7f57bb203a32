"""Kedro dataset for a 1D-CNN fold ensemble: a directory of ``.keras`` files plus metadata.

Layout of ``filepath`` (a local directory; DVC versions it, so no Kedro versioning)::

    fold_00.keras ... fold_<K-1>.keras   one Keras model per fold (architecture + weights)
    metadata.json                        hyperparameters, folds (validation sample ids per fold),
                                         seed, training data hash/version, y standardisation per
                                         fold, fold RMSEs, out-of-fold predictions, provenance

Saving writes into a sibling staging directory and swaps it in, so a failed save leaves the old
ensemble intact. Catalog entry::

    library_cnn:
      type: localsoc.datasets.KerasEnsembleDataset
      filepath: data/06_models/library_cnn
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path, PurePosixPath
from typing import Any

from kedro.io import AbstractDataset, DatasetError

METADATA_FILE = "metadata.json"


def _fold_file(fold: int) -> str:
    return f"fold_{fold:02d}.keras"


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
        return (self._filepath / METADATA_FILE).is_file()

    def _load(self):
        import keras

        from localsoc.models.ensemble import FoldEnsemble

        metadata_path = self._filepath / METADATA_FILE
        if not metadata_path.is_file():
            raise DatasetError(
                f"no fold ensemble at {self._filepath}: {METADATA_FILE} is missing (run the "
                "pipeline that trains it, or `dvc pull` it)"
            )
        metadata = json.loads(metadata_path.read_text())
        models = []
        for fold in range(int(metadata["n_folds"])):
            path = self._filepath / _fold_file(fold)
            if not path.is_file():
                raise DatasetError(f"fold ensemble at {self._filepath}: {path.name} is missing")
            models.append(keras.models.load_model(path, **self._load_args))
        return FoldEnsemble.from_metadata(models, metadata)

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
            for fold, model in enumerate(data.models_):
                model.save(staging / _fold_file(fold), **self._save_args)
            (staging / METADATA_FILE).write_text(json.dumps(data.metadata(), indent=1))
            old = target.with_name(f".{target.name}.old-{os.getpid()}")
            if target.exists():
                target.rename(old)
            staging.rename(target)
            shutil.rmtree(old, ignore_errors=True)
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)
            raise
