"""The on-disk layout of a 1D-CNN fold ensemble: the one place that names its files.

A saved ensemble is a directory::

    fold_00.keras ... fold_<K-1>.keras   one Keras model per fold (architecture + weights)
    metadata.json                        ``FoldEnsemble.metadata()``: hyperparameters, folds,
                                         seed, y standardisation per fold, fold RMSEs,
                                         out-of-fold predictions, provenance

The Kedro datasets (``localsoc.datasets``), the serving bundle (``localsoc.serving.bundle``) and
the search's best-trial store (``localsoc.models.tuner``) all read and write through these
functions. Keras is imported when a model is loaded, not when this module is.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

METADATA_FILE = "metadata.json"
FOLD_SUFFIX = ".keras"


def fold_file(fold: int) -> str:
    """The file name of fold ``fold``'s model (``fold_00.keras`` ...)."""
    return f"fold_{int(fold):02d}{FOLD_SUFFIX}"


def save_fold_models(models: Sequence[Any], directory: str | Path, **save_args: Any) -> None:
    """Write each fold model to ``directory/fold_XX.keras`` (the directory must exist)."""
    directory = Path(directory)
    for fold, model in enumerate(models):
        model.save(directory / fold_file(fold), **save_args)


def load_fold_models(directory: str | Path, n_folds: int, **load_args: Any) -> list[Any]:
    """The ``n_folds`` fold models of ``directory``, in fold order (``compile=False`` unless
    ``load_args`` says otherwise). A missing fold file raises ``FileNotFoundError`` naming it."""
    import keras

    directory = Path(directory)
    load_args = {"compile": False, **load_args}
    models = []
    for fold in range(int(n_folds)):
        path = directory / fold_file(fold)
        if not path.is_file():
            raise FileNotFoundError(f"fold ensemble at {directory}: {path.name} is missing")
        models.append(keras.models.load_model(path, **load_args))
    return models


def is_ensemble_directory(directory: str | Path) -> bool:
    return (Path(directory) / METADATA_FILE).is_file()


def save_ensemble(ensemble: Any, directory: str | Path, **save_args: Any) -> None:
    """Write a ``FoldEnsemble`` (fold models + ``metadata.json``) into ``directory``."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    save_fold_models(ensemble.models_, directory, **save_args)
    (directory / METADATA_FILE).write_text(json.dumps(ensemble.metadata(), indent=1))


def load_ensemble(directory: str | Path, **load_args: Any) -> Any:
    """Read the ``FoldEnsemble`` that :func:`save_ensemble` wrote into ``directory``."""
    from localsoc.models.ensemble import FoldEnsemble

    directory = Path(directory)
    path = directory / METADATA_FILE
    if not path.is_file():
        raise FileNotFoundError(
            f"no fold ensemble at {directory}: {METADATA_FILE} is missing (run the pipeline "
            "that trains it, or `dvc pull` it)"
        )
    metadata = json.loads(path.read_text())
    models = load_fold_models(directory, int(metadata["n_folds"]), **load_args)
    return FoldEnsemble.from_metadata(models, metadata)
