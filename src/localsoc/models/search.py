"""Automated 1D-CNN search: Keras-Tuner over K-fold cross-validation.

``search_cnn`` drives a Keras-Tuner oracle (Bayesian optimisation by default; Hyperband and random
search as options) whose objective, ``cv_rmse``, is the mean validation RMSE over the K folds of a
fixed ``Folds`` (made once per data set and reused by every model on that data). Every trial
trains K fresh models: ``y`` is standardised on the training folds, an inner random split of the
training folds (``validation_fraction``) drives early stopping, and the held-out fold is only
predicted. The result carries the best hyperparameters, a per-trial table (CV RMSE, seconds) and
the best trial's ``FoldEnsemble`` with its out-of-fold predictions.

Budget (a dict the pipeline passes; unknown keys are an error): ``trials``, ``max_epochs``,
``patience``, ``folds`` (K when ``folds`` is not given), ``validation_fraction``,
``initial_points`` (Bayesian random start; default ``trials // 4`` in 2..10), ``hyperband_factor``,
``max_consecutive_failed_trials``. Hyperband sets each trial's epochs itself (up to
``max_epochs``) and trains every trial from scratch (no warm start from earlier rounds).

Keras-Tuner state goes to ``directory/project_name``. ``resume=False`` (default) wipes it first
(Keras-Tuner's own default would silently resume old trials); ``resume=True`` continues a killed
or shorter search, after checking that the data, folds, seed, tuner and space are the same. With
``directory=None`` a temporary directory is used and removed afterwards.

Determinism: with the same seed and data the oracle proposes the same trials, and on CPU every
fold model gets the same initial weights, shuffling and inner split, so the metrics repeat
exactly (``localsoc.models.runtime.configure_tensorflow`` turns on TensorFlow's op
determinism). Not removed: GPU kernels without a deterministic implementation raise under op
determinism (turn it off with ``deterministic=False`` there) and results differ between CPU and
GPU and between oneDNN builds.

This module is the search itself (its arguments, resume checks and result). What to open for
what: the training loop of a trial and the budget's defaults and checks,
``localsoc.models.training``; the hypermodel, tuner, oracles, best-trial store and trial table,
``localsoc.models.tuner``; TensorFlow threads and devices, ``localsoc.models.runtime``; several
processes sharing one search, ``localsoc.models.distributed_search``.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import keras
import numpy as np
import pandas as pd
from tqdm.auto import tqdm

from localsoc.models import distributed_search
from localsoc.models.cnn1d import resolve_search_space
from localsoc.models.ensemble import (
    FoldEnsemble,
    Folds,
    as_spectra,
    as_target,
    data_hash,
    make_folds,
)
from localsoc.models.runtime import configure_tensorflow
from localsoc.models.training import resolve_budget
from localsoc.models.tuner import (
    TUNERS,
    CNN1DHyperModel,
    CrossValidationTuner,
    LoggingStream,
    load_best_outcome,
    make_oracle,
    train_trial,
    trial_table,
)

__all__ = ["TUNERS", "SearchResult", "search_cnn"]

logger = logging.getLogger(__name__)

_STATE_FILE = "localsoc_search.json"


# --------------------------------------------------------------------------------------------
# The public search


@dataclass
class SearchResult:
    """What a search found: the best hyperparameters, every trial, the best fold ensemble."""

    best_hyperparameters: dict[str, Any]
    trials: pd.DataFrame
    ensemble: FoldEnsemble
    tuner: str
    directory: str | None = None
    tensorflow: dict[str, Any] = field(default_factory=dict)

    @property
    def cv_rmse(self) -> float:
        return self.ensemble.cv_rmse_

    @property
    def oof_predictions(self) -> np.ndarray:
        return self.ensemble.oof_predictions_


def search_cnn(
    X: Any,
    y: Any,
    *,
    folds: Folds | None = None,
    budget: Mapping[str, Any] | None = None,
    seed: int = 0,
    directory: str | os.PathLike | None = None,
    tuner: str = "bayesian",
    resume: bool = False,
    progress: bool = True,
    space: Mapping[str, Any] | None = None,
    sample_ids: Sequence | None = None,
    data_version: str | None = None,
    project_name: str = "cnn1d_search",
    threads: int | None = None,
    deterministic: bool = True,
    distributed: Mapping[str, Any] | None = None,
) -> SearchResult:
    """Search 1D-CNN architectures and training settings by K-fold CV RMSE.

    ``X``: preprocessed spectra ``(n, n_bands)``; ``y``: targets ``(n,)``. ``folds``: the data
    set's fixed folds (rows in the order of ``X``); ``None`` makes ``budget["folds"]`` folds from
    ``sample_ids`` (default ``0..n-1``) and ``seed``. ``space``: overrides of
    ``localsoc.models.cnn1d.DEFAULT_SEARCH_SPACE``. See the module docstring for the budget,
    ``directory`` and ``resume``.

    ``distributed``: ``{"enabled": True, "oracle_ip", "oracle_port", "directory",
    "wait_timeout_s"}`` (``train.distributed``) makes this call Keras-Tuner's chief: workers
    started with ``python -m localsoc.models.distributed_search`` run the trials, and the result
    is what a single-process search returns. The ``KERASTUNER_*`` variables with
    ``KERASTUNER_TUNER_ID=chief`` do the same. See ``localsoc.models.distributed_search``.
    """
    budget = resolve_budget(budget)
    space = resolve_search_space(space)
    if tuner not in TUNERS:
        raise ValueError(f"tuner must be one of {list(TUNERS)}, got {tuner!r}")
    X = as_spectra(X)
    y = as_target(y, X.shape[0])
    if folds is None:
        folds = make_folds(
            sample_ids if sample_ids is not None else X.shape[0], int(budget["folds"]), seed
        )
    elif not isinstance(folds, Folds):
        raise TypeError(f"folds must be a Folds (see make_folds), got {type(folds).__name__}")
    if folds.n_samples != X.shape[0]:
        raise ValueError(f"folds cover {folds.n_samples} samples but X has {X.shape[0]} rows")
    if sample_ids is not None and not np.array_equal(
        folds.sample_ids, np.asarray([str(s) for s in sample_ids], dtype=object)
    ):
        raise ValueError("sample_ids differ from the folds' sample ids (or their order)")
    distributed_settings = distributed_search.resolve_distributed(distributed, directory)
    if distributed_settings is not None:
        directory = distributed_settings.directory  # shared with the workers
    if resume and directory is None:
        raise ValueError("resume=True needs the directory of the search to resume")

    tf_info = configure_tensorflow(threads, deterministic)
    hash_ = data_hash(X, y, folds.sample_ids)
    state = {
        "training_data_hash": hash_,
        "folds": folds.to_dict(),
        "seed": int(seed),
        "tuner": tuner,
        "space": space,
    }

    with contextlib.ExitStack() as stack:
        if directory is None:
            directory = stack.enter_context(tempfile.TemporaryDirectory(prefix="cnn1d_search_"))
            kept_directory = None
        else:
            directory = Path(directory)
            directory.mkdir(parents=True, exist_ok=True)
            kept_directory = str(directory)
        project_dir = Path(directory) / project_name
        state_file = project_dir / _STATE_FILE
        if resume and state_file.exists():
            stored = json.loads(state_file.read_text())
            changed = [key for key in state if stored.get(key) != json.loads(json.dumps(state[key]))]
            if changed:
                raise ValueError(
                    f"resume=True, but the search in {project_dir} was run with other {changed}; "
                    "pass resume=False to start over, or another directory"
                )

        oracle = make_oracle(tuner, budget, seed)
        hypermodel = CNN1DHyperModel(X.shape[1], space)
        data = {
            "X": X,
            "y": y,
            "folds": folds,
            "budget": budget,
            "space": space,
            "seed": int(seed),
            "n_bands": X.shape[1],
        }
        keras.utils.set_random_seed(int(seed))
        with contextlib.ExitStack() as role:
            if distributed_settings is not None:
                role.enter_context(distributed_search.tuner_environment(
                    "chief", distributed_settings.oracle_ip, distributed_settings.oracle_port))
            role.enter_context(contextlib.redirect_stdout(LoggingStream()))
            cv_tuner = CrossValidationTuner(
                oracle,
                hypermodel,
                data=data,
                directory=str(directory),
                project_name=project_name,
                overwrite=not resume,
            )
        project_dir.mkdir(parents=True, exist_ok=True)
        state_file.write_text(json.dumps(state))
        done = sum(
            1 for t in cv_tuner.oracle.trials.values() if t.status in ("COMPLETED", "FAILED")
        )
        with tqdm(
            total=int(budget["trials"]),
            initial=min(done, int(budget["trials"])),
            desc=f"CNN search ({tuner}, {folds.n_splits}-fold)",
            unit="trial",
            disable=not progress,
            leave=True,
        ) as bar:
            cv_tuner.progress_bar = bar
            with contextlib.redirect_stdout(LoggingStream()):
                if distributed_settings is None:
                    cv_tuner.search(verbose=0)
                else:  # the chief: workers run the trials
                    distributed_search.serve_search(
                        cv_tuner, data, tuner, hash_, distributed_settings, bar
                    )
            cv_tuner.progress_bar = None

        best_trials = cv_tuner.oracle.get_best_trials(1)
        if not best_trials or best_trials[0].score is None:
            raise RuntimeError(
                f"no trial of the search in {project_dir} completed; see the trial messages "
                "there (a model diverged on every try?)"
            )
        best = best_trials[0]
        best_values = dict(best.hyperparameters.values)
        outcome = load_best_outcome(project_dir, best.trial_id)
        if outcome is None:  # e.g. resumed after a kill between training and saving
            logger.info("retraining the fold models of best trial %s", best.trial_id)
            outcome = train_trial(best_values, data)
        trials = trial_table(cv_tuner)

    ensemble = FoldEnsemble(
        models_=outcome.models,
        y_mean_=outcome.y_mean,
        y_scale_=outcome.y_scale,
        folds=folds,
        hyperparameters=best_values,
        seed=int(seed),
        oof_predictions_=outcome.oof_predictions,
        fold_rmse_=outcome.fold_rmse,
        training_data_hash=hash_,
        data_version=data_version,
        info={
            "kind": "search",
            "tuner": tuner,
            "trial_id": best.trial_id,
            "budget": budget,
            "space": space,
            "epochs": list(outcome.epochs),
            "keras_version": keras.__version__,
            "backend": keras.backend.backend(),
        },
    )
    return SearchResult(
        best_hyperparameters=best_values,
        trials=trials,
        ensemble=ensemble,
        tuner=tuner,
        directory=kept_directory,
        tensorflow=tf_info,
    )

