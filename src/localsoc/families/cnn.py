"""The 1D-CNN family: Keras-Tuner searches over K-fold CV, kept as fold ensembles.

Stored in the fold-ensemble layout of ``localsoc.models.fold_files`` (``fold_XX.keras`` +
``metadata.json``). Library models are searched once per library scope and reused across runs
when the data and settings are unchanged; site models (Local on n, DTL-I on k + n) are searched
per site on the folds the train stage stores. Served through the NumPy/graph fast path of
``localsoc.serving.inference`` (the same network, the same preprocessing functions).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pandas as pd

from localsoc.models import fold_files
from localsoc.study import utc_now


class FoldEnsembleStore:
    """Save and load a ``FoldEnsemble`` in the fold-ensemble layout."""

    model_format = "fold_ensemble"
    marker = fold_files.METADATA_FILE

    def owns(self, model: Any) -> bool:
        from localsoc.models.ensemble import FoldEnsemble

        return isinstance(model, FoldEnsemble)

    def save(self, model: Any, folder: Path, **save_args: Any) -> None:
        fold_files.save_ensemble(model, folder, **save_args)

    def load(self, folder: Path, **load_args: Any) -> Any:
        return fold_files.load_ensemble(folder, **load_args)


STORE = FoldEnsembleStore()


def search(X, y, ids, folds, budget: dict, params: dict, seed: int, label: str):
    """One Keras-Tuner search (``params``: ``params:train``) on the given folds."""
    from localsoc.models.search import search_cnn

    return search_cnn(
        X,
        y,
        folds=folds,
        budget=budget,
        seed=seed,
        tuner=params["tuner"],
        space=params["space"] or None,
        sample_ids=ids,
        progress=bool(params["progress"]),
        threads=params["threads"],
        project_name=label.replace("/", "_"),
        distributed=params["distributed"] or None,  # Keras-Tuner chief/worker mode
    )


def train_site_model(X, y, ids, folds, seed: int, params: dict, label: str, dataset: str,
                     n_local: int | None = None):
    """The site-budget search of one site data set; (fold ensemble, trial table)
    (``n_local`` unused)."""
    result = search(X, y, ids, folds, dict(params["site_budget"]), params, seed, label)
    result.ensemble.info["trained_at"] = utc_now()
    return result.ensemble, result.trials.copy()


def library_params(params: dict, label: str) -> dict:
    """``params`` (``params:train``) for the library model searched as ``label``
    (``library_global`` or ``library_country_<code>``), after ``train.library_by_scope``:
    its entries ``country`` (every country library) and then the model's own key (``global``,
    ``country_CN``, ...) merge their budget keys over ``library_budget``, key by key, and a
    ``space`` in them replaces ``train.space`` (the search-space overrides) for that library."""
    key = label.removeprefix("library_")
    budget, space = dict(params["library_budget"]), params["space"]
    for name in ("country" if key.startswith("country_") else None, key):
        entry = dict((params["library_by_scope"] or {}).get(name) or {})
        space = entry.pop("space", space)
        budget.update(entry)
    return {**params, "library_budget": budget, "space": space}


def reusable_library_model(previous, X, y, ids, params: dict, seed: int) -> bool:
    """Whether a stored library model was trained on exactly this data with these settings."""
    if previous is None or getattr(previous, "training_data_hash", None) is None:
        return False
    from localsoc.models.cnn1d import resolve_search_space
    from localsoc.models.ensemble import as_spectra, as_target, data_hash
    from localsoc.models.training import resolve_budget

    info = previous.info or {}
    return (
        # hashed as search_cnn hashes its inputs (float32 spectra)
        previous.training_data_hash == data_hash(as_spectra(X), as_target(y, len(ids)), ids)
        and previous.seed == seed
        and info.get("tuner") == params["tuner"]
        and info.get("budget") == resolve_budget(dict(params["library_budget"]))
        and info.get("space") == resolve_search_space(params["space"] or None)
    )


def train_library_model(X, y, ids, seed: int, params: dict, label: str, previous=None):
    """The library-budget search of one library scope (budget and space: :func:`library_params`),
    or the stored model when reusable.

    Returns (fold ensemble, trial table, reused).
    """
    from localsoc.models.ensemble import make_folds

    params = library_params(params, label)
    if bool(params["reuse_library_models"]) and reusable_library_model(
            previous, X, y, ids, params, seed):
        trials = pd.DataFrame([{"status": "REUSED", "cv_rmse": previous.cv_rmse_}])
        return previous, trials, True
    budget = dict(params["library_budget"])
    folds = make_folds(ids, int(budget["folds"]), seed)
    result = search(X, y, ids, folds, budget, params, seed, label)
    return result.ensemble, result.trials.copy(), False


def _transfer_recipe(info: dict, base, base_data):
    """(fold model builder, fine-tune settings, y scaling per fold, base fold per fold) of a
    transfer model refitted on outer folds: each fold fine-tunes the base library fold model
    that fits that fold's training locals (``base_data[f]``) best, frozen at the same depth."""
    import keras

    from localsoc.models.training import TrainingSettings
    from localsoc.models.transfer import freeze_layers, select_base_model

    if base is None or base_data is None:
        raise ValueError("refitting a transfer model needs its base library model and each "
                         "outer fold's training locals")
    chosen = [select_base_model(base, X, y)[0] for X, y in base_data]
    depth = int(info["depth"])
    y_scaling = [(float(base.y_mean_[b]), float(base.y_scale_[b])) for b in chosen]

    def make_model(fold: int):
        fresh = keras.models.clone_model(base.models_[chosen[fold]])
        fresh.set_weights(base.models_[chosen[fold]].get_weights())
        freeze_layers(fresh, depth)
        return fresh

    return make_model, TrainingSettings(**info["fine_tune"]), y_scaling, chosen


def refit_folds(model, fold_data, params: dict, seed: int, base=None, base_data=None):
    """The model's recipe trained again on each outer fold's own training data.

    A searched model (Local, DTL-I): its architecture and training hyperparameters (the
    search's best trial) with its search budget's epochs, patience and early-stopping share. A
    transfer model (DTL-R, DTL-IR): the fold model of ``base`` with the lowest RMSE on that
    outer fold's training locals ``base_data[f]`` = (X, y) (the base fold is chosen again
    without the held-out fold's labels), fine-tuned at the same frozen depth with the same
    settings and that base fold's ``y`` scaling. The architecture and the frozen depth stay
    those chosen on all n. Returns (per fold: (predictions of its arrays, {"epochs": run,
    "base_fold": chosen}), build) where ``build(folds, oof)`` makes the outer-fold ensemble (a
    ``FoldEnsemble`` whose fold k is the model refitted without outer fold k).
    """
    import numpy as np

    from localsoc.models.cnn1d import fold_builder
    from localsoc.models.runtime import configure_tensorflow
    from localsoc.models.training import fit_fold_models, resolve_budget
    from localsoc.models.tuner import trial_settings

    configure_tensorflow(params["threads"], True)
    info = model.info or {}
    y_scaling, chosen = None, [None] * len(fold_data)
    if info.get("kind") == "transfer":
        make_model, settings, y_scaling, chosen = _transfer_recipe(info, base, base_data)
    else:
        hp, space = dict(model.hyperparameters), info.get("space")
        settings = trial_settings(hp, space, resolve_budget(info.get("budget")
                                                            or params["site_budget"]))
        make_model = fold_builder(hp, model.n_bands, space)

    fold_data = [(np.asarray(X, np.float32), np.asarray(y, np.float64),
                  [np.asarray(A, np.float32) for A in to_predict])
                 for X, y, to_predict in fold_data]
    models, means, scales, epochs, predictions = fit_fold_models(
        make_model, fold_data, settings, seed=seed, y_scaling=y_scaling)

    def build(folds, oof, extra=None):
        from localsoc.models.ensemble import FoldEnsemble

        return FoldEnsemble(
            models_=models, y_mean_=means, y_scale_=scales, folds=folds,
            hyperparameters=dict(model.hyperparameters), seed=int(seed), oof_predictions_=oof,
            info={**dict(extra or {}), "kind": "outer_fold_ensemble", "recipe_of": info_kind,
                  "base_folds": chosen, "depth": info.get("depth"), "trained_at": utc_now()})

    info_kind = info.get("kind")
    return [(p, {"epochs": e, "base_fold": b})
            for p, e, b in zip(predictions, epochs, chosen, strict=True)], build


def serving_predictor(model: Any) -> Any:
    """The NumPy/graph fast path of the ensemble (``LOCALSOC_CNN_BACKEND``: auto, numpy or
    tensorflow; default auto)."""
    from localsoc.serving.inference import fast_predictor

    return fast_predictor(model, os.environ.get("LOCALSOC_CNN_BACKEND", "auto"))
