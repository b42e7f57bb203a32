"""Kedro dataset for a named collection of fitted models (one subdirectory per model).

Keys are paths such as ``global`` or ``china_site/dtl_ig``. A 1D-CNN fold ensemble is stored
with :class:`KerasEnsembleDataset` (``metadata.json`` + ``fold_XX.keras``); a linear model (PLSR)
as ``linear_model.json``. Saving replaces the whole collection directory (DVC versions it).
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path, PurePosixPath
from typing import Any

from kedro.io import AbstractDataset, DatasetError

from localsoc.datasets.keras_ensemble import METADATA_FILE, KerasEnsembleDataset

LINEAR_FILE = "linear_model.json"


class ModelCollectionDataset(AbstractDataset):
    def __init__(self, *, filepath: str, metadata: dict[str, Any] | None = None) -> None:
        self._filepath = Path(filepath)
        self.metadata = metadata

    def _describe(self) -> dict[str, Any]:
        return {"filepath": str(PurePosixPath(self._filepath))}

    def _exists(self) -> bool:
        return self._filepath.is_dir()

    def keys(self) -> list[str]:
        found = []
        for marker in (METADATA_FILE, LINEAR_FILE):
            for path in self._filepath.rglob(marker):
                if not any(part.startswith(".") for part in path.relative_to(self._filepath).parts):
                    found.append(path.parent.relative_to(self._filepath).as_posix())
        return sorted(found)

    def _load(self) -> dict[str, Any]:
        from localsoc.models.linear import LinearModel

        if not self._filepath.is_dir():
            raise DatasetError(f"no model collection at {self._filepath}; run the pipeline first")
        models: dict[str, Any] = {}
        for key in self.keys():
            folder = self._filepath / key
            if (folder / LINEAR_FILE).is_file():
                models[key] = LinearModel.from_dict(json.loads((folder / LINEAR_FILE).read_text()))
            else:
                models[key] = KerasEnsembleDataset(filepath=str(folder)).load()
        return models

    def _save(self, data: dict[str, Any]) -> None:
        from localsoc.models.ensemble import FoldEnsemble
        from localsoc.models.linear import LinearModel

        if not isinstance(data, dict):
            raise DatasetError(f"a model collection is a dict of models; got {type(data).__name__}")
        staging = self._filepath.with_name(f".{self._filepath.name}.saving")
        shutil.rmtree(staging, ignore_errors=True)
        staging.mkdir(parents=True)
        try:
            for key, model in data.items():
                if ".." in PurePosixPath(key).parts or key.startswith("/"):
                    raise DatasetError(f"model key {key!r} must be a relative path")
                folder = staging / key
                if isinstance(model, LinearModel):
                    folder.mkdir(parents=True)
                    (folder / LINEAR_FILE).write_text(json.dumps(model.to_dict()))
                elif isinstance(model, FoldEnsemble):
                    KerasEnsembleDataset(filepath=str(folder)).save(model)
                else:
                    raise DatasetError(f"model {key!r}: cannot store a {type(model).__name__}")
            shutil.rmtree(self._filepath, ignore_errors=True)
            staging.rename(self._filepath)
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)
            raise


class OptionalModelCollectionDataset(ModelCollectionDataset):
    """The same collection, read as ``{}`` when it does not exist yet (for reuse checks)."""

    def _load(self) -> dict[str, Any]:
        if not self._filepath.is_dir():
            return {}
        return super()._load()

    def _save(self, data: dict[str, Any]) -> None:
        raise DatasetError("this is a read-only view of a previous run's models")
