"""Kedro dataset for a named collection of fitted models (one subdirectory per model).

Keys are paths such as ``global`` or ``china_site/dtl_ig``. Each model is saved and loaded by
the store of its family in the method registry (``localsoc.methods``): a 1D-CNN fold ensemble
in the ``localsoc.models.fold_files`` layout, a PLSR model as ``linear_model.json``, and any
family registered later the same way. Saving replaces the whole collection directory (DVC
versions it); model archives are rewritten with fixed times
(``localsoc.datasets.stable_archives``) and the time each model was trained goes to the run log
beside the directory (``<directory>.run.json``, not a DVC output; ``localsoc.datasets.run_info``),
so the same models give byte-identical files.
"""

from __future__ import annotations

import shutil
from pathlib import Path, PurePosixPath
from typing import Any

from kedro.io import AbstractDataset, DatasetError

from localsoc.datasets.atomic import replace_path
from localsoc.datasets.run_info import (
    read_run_log,
    run_log_path,
    with_run_info,
    without_run_info,
    write_run_log,
)
from localsoc.datasets.stable_archives import fix_archive_times


class ModelCollectionDataset(AbstractDataset):
    def __init__(self, *, filepath: str, metadata: dict[str, Any] | None = None) -> None:
        self._filepath = Path(filepath)
        self.metadata = metadata

    def _describe(self) -> dict[str, Any]:
        return {"filepath": str(PurePosixPath(self._filepath))}

    def _exists(self) -> bool:
        return self._filepath.is_dir()

    def _stored(self) -> dict[str, Any]:
        """Model key -> the store whose marker file is in that key's folder."""
        from localsoc.methods import stored_families

        found: dict[str, Any] = {}
        for family in stored_families():
            store = family.store
            for path in self._filepath.rglob(store.marker):
                relative = path.relative_to(self._filepath)
                if any(part.startswith(".") for part in relative.parts):
                    continue
                key = relative.parent.as_posix()
                if key in found and found[key] is not store:
                    raise DatasetError(f"model collection {self._filepath}: {key} holds models "
                                       "of two families")
                found[key] = store
        return dict(sorted(found.items()))

    def keys(self) -> list[str]:
        return list(self._stored())

    def _load(self) -> dict[str, Any]:
        if not self._filepath.is_dir():
            raise DatasetError(f"no model collection at {self._filepath}; run the pipeline first")
        try:
            models = {key: store.load(self._filepath / key)
                      for key, store in self._stored().items()}
        except FileNotFoundError as error:
            raise DatasetError(str(error)) from None
        with_run_info(models, read_run_log(run_log_path(self._filepath)).get("models") or {})
        return models

    def _save(self, data: dict[str, Any]) -> None:
        from localsoc.methods import family_of_model

        if not isinstance(data, dict):
            raise DatasetError(f"a model collection is a dict of models; got {type(data).__name__}")
        staging = self._filepath.with_name(f".{self._filepath.name}.saving")
        shutil.rmtree(staging, ignore_errors=True)
        staging.mkdir(parents=True)
        try:
            with without_run_info(data) as run_info:  # the same models give the same bytes
                for key, model in data.items():
                    if ".." in PurePosixPath(key).parts or key.startswith("/"):
                        raise DatasetError(f"model key {key!r} must be a relative path")
                    try:
                        store = family_of_model(model).store
                    except TypeError as error:
                        raise DatasetError(f"model {key!r}: {error}") from None
                    store.save(model, staging / key)
            fix_archive_times(staging)  # and so do their archives (dvc.lock)
            replace_path(staging, self._filepath)
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)
            raise
        write_run_log(run_log_path(self._filepath), {"models": run_info})


class OptionalModelCollectionDataset(ModelCollectionDataset):
    """The same collection, read as ``{}`` when it does not exist yet (for reuse checks)."""

    def _load(self) -> dict[str, Any]:
        if not self._filepath.is_dir():
            return {}
        return super()._load()

    def _save(self, data: dict[str, Any]) -> None:
        raise DatasetError("this is a read-only view of a previous run's models")
