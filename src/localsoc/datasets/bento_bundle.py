"""Kedro dataset for the serving bundle: saved to the BentoML model store, its tag to a file.

Saving writes the :class:`localsoc.serving.bundle.ServingBundle` (models, ``bundle.json`` with
each file's SHA-256) as a new version of the store model ``model_name`` and writes the new tag
(``name:version``) to ``filepath``. The version pins the bundle (``sha256-`` and the first hex
digits of the SHA-256 of ``bundle.json``: ``localsoc.serving.bundle.pinned_version``), so the tag
file, which DVC records, names what the store must hold; the store also keeps the full SHA-256
in the model's metadata. The same winners give the same bundle bytes, so the same tag: model
archives get fixed times (``localsoc.datasets.stable_archives``) and what describes the run, not
the models (when each was trained, when it was packaged, the git commit), goes to the store's
metadata (``packaged_at``, ``trained_at`` per site, ``code_commit``) instead of ``bundle.json``.
Loading reads the tag from ``filepath``, verifies every hash against both and loads the models.
Catalog entry::

    serving_bundle:
      type: localsoc.datasets.bento_bundle.BentoBundleDataset
      filepath: data/06_models/bento_tag.txt
      model_name: localsoc_bundle

The store is BentoML's (``$BENTOML_HOME`` as set when saving or loading, default ``~/bentoml``)
unless ``home`` names another directory (``localsoc.datasets.bentoml_store``). This is the only
place where Kedro talks to the BentoML store.
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path, PurePosixPath
from typing import Any

from kedro.io import AbstractDataset, DatasetError

from localsoc.datasets.atomic import write_text
from localsoc.datasets.bentoml_store import store_options
from localsoc.datasets.run_info import without_run_info
from localsoc.provenance import code_version
from localsoc.serving.bundle import (
    ServingBundle,
    pinned_version,
    read_stored_bundle,
    write_bundle,
)
from localsoc.study import utc_now

DEFAULT_MODEL_NAME = "localsoc_bundle"


def stored_model(tag: str, home: str | None = None):
    """The BentoML store model of ``tag`` (``name:version`` or ``name:latest``)."""
    import bentoml

    try:
        return bentoml.models.get(tag, **store_options(home))
    except bentoml.exceptions.NotFound as error:
        raise DatasetError(
            f"the BentoML store has no model {tag!r} ({error}); run the package stage "
            "(localsoc run --pipeline package) or set BENTOML_HOME to the store that has it"
        ) from None


def load_stored_bundle(tag: str, home: str | None = None, load_models: bool = True) -> ServingBundle:
    """Verify (``read_stored_bundle``: against the store's record) and load a store model's
    bundle."""
    model = stored_model(tag, home)
    bundle = read_stored_bundle(model, load_models)
    bundle.manifest["tag"] = str(model.tag)
    return bundle


class BentoBundleDataset(AbstractDataset):
    """Saves a ``ServingBundle`` to the BentoML model store; loads the one named in ``filepath``.

    Args:
        filepath: the text file that receives the saved bundle's tag (``name:version``).
        model_name: the store model's name.
        home: a BentoML home directory to use instead of BentoML's configured one.
        labels: extra BentoML labels of the saved model.
        load_models: False loads the verified manifest only (no model is loaded; what the
            report's model cards need).
        metadata: free-form, for Kedro plugins; not used here.
    """

    def __init__(
        self,
        *,
        filepath: str,
        model_name: str = DEFAULT_MODEL_NAME,
        home: str | None = None,
        labels: dict[str, str] | None = None,
        load_models: bool = True,
        metadata: dict[str, Any] | None = None,
    ) -> None:
        self._filepath = Path(filepath)
        self._model_name = model_name
        self._home = home
        self._labels = dict(labels or {})
        self._load_models = bool(load_models)
        self.metadata = metadata

    def _describe(self) -> dict[str, Any]:
        return {
            "filepath": str(PurePosixPath(self._filepath)),
            "model_name": self._model_name,
            "home": self._home,
        }

    def _exists(self) -> bool:
        return self._filepath.is_file()

    def tag(self) -> str:
        if not self._filepath.is_file():
            raise DatasetError(
                f"no bundle tag at {self._filepath}; run the package stage first"
            )
        return self._filepath.read_text().strip()

    def _load(self) -> ServingBundle:
        return load_stored_bundle(self.tag(), self._home, self._load_models)

    def _save(self, data: ServingBundle) -> None:
        import bentoml

        if not isinstance(data, ServingBundle):
            raise DatasetError(
                f"BentoBundleDataset saves a ServingBundle, got {type(data).__name__}"
            )
        manifest = data.manifest
        with (tempfile.TemporaryDirectory(prefix="localsoc_bundle_") as staging,
              without_run_info(data.models) as run_info):
            digest = write_bundle(data, staging)
            labels = {
                "project": "localsoc",
                "format": manifest["format"].replace("/", "-"),
                "data_version": str(manifest.get("data_version")),
                **self._labels,
            }
            bento_metadata = {
                "bundle_format": manifest["format"],
                "bundle_sha256": digest,
                "sites": ",".join(sorted(manifest["sites"])),
                "packaged_at": utc_now(),
                "trained_at": {site: info["trained_at"] for site, info in run_info.items()
                               if "trained_at" in info},
                "code_version": manifest.get("code_version"),
                "code_commit": code_version(),
                "data_version": manifest.get("data_version"),
            }
            tag = f"{self._model_name}:{pinned_version(digest)}"
            if not self._stored(tag):
                with bentoml.models.create(tag, labels=labels, metadata=bento_metadata,
                                           **store_options(self._home)) as model:
                    shutil.copytree(staging, model.path, dirs_exist_ok=True)
        write_text(self._filepath, tag + "\n")

    def _stored(self, tag: str) -> bool:
        """Whether the store already holds ``tag``, verified (the same ``bundle.json``, saved
        again); a changed copy under that tag is a ``BundleIntegrityError``."""
        try:
            model = stored_model(tag, self._home)
        except DatasetError:
            return False
        read_stored_bundle(model, load_models=False)
        return True
