"""Automated 1D-CNN search: Keras-Tuner over K-fold cross-validation.

``search_cnn`` drives a Keras-Tuner oracle (Bayesian optimisation by default; Hyperband and random
search as options) whose objective, ``cv_rmse``, is the mean validation RMSE over the K folds of a
fixed ``Folds`` (made once per data set and reused by every model on that data). Every trial
trains K fresh models: ``y`` is standardised on the training folds, an inner random split of the
training folds (``validation_fraction``) drives early stopping, and the held-out fold is only
predicted. The result carries the best hyperparameters, a per-trial table (CV RMSE, epochs; no
wall-clock times, so the same seed and data give the same table), the trials' seconds and
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
from collections.abc import Iterator, Mapping, Sequence
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
from localsoc.models.training import config_or_settings, resolve_budget
from localsoc.models.tuner import (
    TIMING_COLUMNS,
    TUNERS,
    CNN1DHyperModel,
    CrossValidationTuner,
    LoggingStream,
    load_best_outcome,
    make_oracle,
    train_trial,
    trial_table,
)

__all__ = ["TUNERS", "SearchConfig", "SearchResult", "search_cnn"]

logger = logging.getLogger(__name__)

_STATE_FILE = "localsoc_search.json"


# --------------------------------------------------------------------------------------------
# The public search


@dataclass
class SearchResult:
    """What a search found: the best hyperparameters, every trial (``trials``: no wall-clock
    columns), the best fold ensemble; ``timings``: seconds per trial (``trial_id``,
    ``seconds``), for benchmarks and logs, never a tracked output."""

    best_hyperparameters: dict[str, Any]
    trials: pd.DataFrame
    ensemble: FoldEnsemble
    tuner: str
    directory: str | None = None
    tensorflow: dict[str, Any] = field(default_factory=dict)
    timings: pd.DataFrame = field(default_factory=pd.DataFrame)

    @property
    def cv_rmse(self) -> float:
        return self.ensemble.cv_rmse_

    @property
    def oof_predictions(self) -> np.ndarray:
        return self.ensemble.oof_predictions_


@dataclass(frozen=True)
class SearchConfig:
    """How one search runs: budget, seed, tuner, space, state directory, TensorFlow settings.

    ``budget``: see the module docstring (``None``: ``localsoc.models.training.DEFAULT_BUDGET``).
    ``tuner``: a key of ``TUNERS``. ``space``: overrides of
    ``localsoc.models.cnn1d.DEFAULT_SEARCH_SPACE``. ``directory``, ``resume``, ``project_name``:
    where the Keras-Tuner state lives and whether an earlier search there is continued.
    ``threads``, ``deterministic``: ``localsoc.models.runtime.configure_tensorflow``.
    ``distributed``: ``train.distributed`` (``localsoc.models.distributed_search``).
    """

    budget: Mapping[str, Any] | None = None
    seed: int = 0
    tuner: str = "bayesian"
    space: Mapping[str, Any] | None = None
    directory: str | os.PathLike | None = None
    resume: bool = False
    progress: bool = True
    project_name: str = "cnn1d_search"
    data_version: str | None = None
    threads: int | None = None
    deterministic: bool = True
    distributed: Mapping[str, Any] | None = None

    @classmethod
    def from_params(
        cls, params: Mapping[str, Any], budget: Mapping[str, Any], seed: int, label: str
    ) -> SearchConfig:
        """The search of one data set from ``params:train`` (``tuner``, ``space``, ``progress``,
        ``threads``, ``distributed``), one of its budgets, a seed and a label (the project name,
        ``/`` replaced by ``_``)."""
        return cls(
            budget=budget,
            seed=seed,
            tuner=params["tuner"],
            space=params["space"] or None,
            progress=bool(params["progress"]),
            threads=params["threads"],
            project_name=label.replace("/", "_"),
            distributed=params["distributed"] or None,  # Keras-Tuner chief/worker mode
        )


def search_cnn(
    X: Any,
    y: Any,
    config: SearchConfig | None = None,
    *,
    folds: Folds | None = None,
    sample_ids: Sequence | None = None,
    **settings: Any,
) -> SearchResult:
    """Search 1D-CNN architectures and training settings by K-fold CV RMSE.

    ``X``: preprocessed spectra ``(n, n_bands)``; ``y``: targets ``(n,)``. ``config``: a
    ``SearchConfig``, or its fields as keywords (``settings``). ``folds``: the data set's fixed
    folds (rows in the order of ``X``); ``None`` makes ``budget["folds"]`` folds from
    ``sample_ids`` (default ``0..n-1``) and the seed. See the module docstring for the budget,
    ``directory`` and ``resume``.

    ``config.distributed``: ``{"enabled": True, "oracle_ip", "oracle_port", "directory",
    "wait_timeout_s"}`` (``train.distributed``) makes this call Keras-Tuner's chief: workers
    started with ``python -m localsoc.models.distributed_search`` run the trials, and the result
    is what a single-process search returns. The ``KERASTUNER_*`` variables with
    ``KERASTUNER_TUNER_ID=chief`` do the same. See ``localsoc.models.distributed_search``.
    """
    config = config_or_settings(SearchConfig, config, settings)
    budget = resolve_budget(config.budget)
    space = resolve_search_space(config.space)
    if config.tuner not in TUNERS:
        raise ValueError(f"tuner must be one of {list(TUNERS)}, got {config.tuner!r}")
    X, y, folds = _search_data(X, y, folds, sample_ids, int(budget["folds"]), config.seed)
    distributed = distributed_search.resolve_distributed(config.distributed, config.directory)
    directory = config.directory if distributed is None else distributed.directory
    if config.resume and directory is None:
        raise ValueError("resume=True needs the directory of the search to resume")

    tf_info = configure_tensorflow(config.threads, config.deterministic)
    hash_ = data_hash(X, y, folds.sample_ids)
    data = {"X": X, "y": y, "folds": folds, "budget": budget, "space": space,
            "seed": int(config.seed), "n_bands": X.shape[1]}
    with _search_directory(directory) as (root, kept_directory):
        project_dir = root / config.project_name
        cv_tuner = _open_search(config, data, hash_, root, distributed)
        _run_trials(cv_tuner, config, data, hash_, distributed)
        trial_id, best_values, outcome = _best_trial(cv_tuner, project_dir, data)
        table = trial_table(cv_tuner)
    timings = table[["trial_id", *TIMING_COLUMNS]].copy()
    trials = table.drop(columns=list(TIMING_COLUMNS))

    info = {"kind": "search", "tuner": config.tuner, "trial_id": trial_id, "budget": budget,
            "space": space}
    ensemble = _fold_ensemble(outcome, folds, best_values, config, hash_, info)
    return SearchResult(best_hyperparameters=best_values, trials=trials, ensemble=ensemble,
                        tuner=config.tuner, directory=kept_directory, tensorflow=tf_info,
                        timings=timings)


# --------------------------------------------------------------------------------------------
# The steps of a search


def _search_data(
    X: Any, y: Any, folds: Folds | None, sample_ids: Sequence | None, n_folds: int, seed: int
) -> tuple[np.ndarray, np.ndarray, Folds]:
    """Validated spectra and targets and the folds (made from ``sample_ids`` when ``None``)."""
    X = as_spectra(X)
    y = as_target(y, X.shape[0])
    if folds is None:
        folds = make_folds(sample_ids if sample_ids is not None else X.shape[0], n_folds, seed)
    elif not isinstance(folds, Folds):
        raise TypeError(f"folds must be a Folds (see make_folds), got {type(folds).__name__}")
    if folds.n_samples != X.shape[0]:
        raise ValueError(f"folds cover {folds.n_samples} samples but X has {X.shape[0]} rows")
    if sample_ids is not None and not np.array_equal(
        folds.sample_ids, np.asarray([str(s) for s in sample_ids], dtype=object)
    ):
        raise ValueError("sample_ids differ from the folds' sample ids (or their order)")
    return X, y, folds


@contextlib.contextmanager
def _search_directory(
    directory: str | os.PathLike | None,
) -> Iterator[tuple[Path, str | None]]:
    """(root of the Keras-Tuner state, the directory kept afterwards or ``None``): a temporary
    directory, removed on exit, when ``directory`` is ``None``."""
    if directory is None:
        with tempfile.TemporaryDirectory(prefix="cnn1d_search_") as temporary:
            yield Path(temporary), None
        return
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    yield directory, str(directory)


def _open_search(
    config: SearchConfig,
    data: Mapping[str, Any],
    hash_: str,
    root: Path,
    distributed: distributed_search.DistributedSettings | None,
) -> CrossValidationTuner:
    """The search's tuner under ``root/project_name``, its state file written (with
    ``resume``: after checking that the stored search ran on the same data and settings)."""
    state = {
        "training_data_hash": hash_,
        "folds": data["folds"].to_dict(),
        "seed": int(config.seed),
        "tuner": config.tuner,
        "space": data["space"],
    }
    project_dir = root / config.project_name
    if config.resume:
        _check_resume(project_dir, state)
    cv_tuner = _make_tuner(config, data, root, distributed)
    project_dir.mkdir(parents=True, exist_ok=True)
    (project_dir / _STATE_FILE).write_text(json.dumps(state))
    return cv_tuner


def _check_resume(project_dir: Path, state: Mapping[str, Any]) -> None:
    """Raise when the stored search in ``project_dir`` ran with other data or settings."""
    state_file = project_dir / _STATE_FILE
    if not state_file.exists():
        return
    stored = json.loads(state_file.read_text())
    changed = [key for key in state if stored.get(key) != json.loads(json.dumps(state[key]))]
    if changed:
        raise ValueError(
            f"resume=True, but the search in {project_dir} was run with other {changed}; "
            "pass resume=False to start over, or another directory"
        )


def _make_tuner(
    config: SearchConfig,
    data: Mapping[str, Any],
    root: Path,
    distributed: distributed_search.DistributedSettings | None,
) -> CrossValidationTuner:
    """The oracle and the cross-validation tuner (as the chief when ``distributed``)."""
    oracle = make_oracle(config.tuner, data["budget"], config.seed)
    hypermodel = CNN1DHyperModel(data["n_bands"], data["space"])
    keras.utils.set_random_seed(int(config.seed))
    with contextlib.ExitStack() as role:
        if distributed is not None:
            role.enter_context(distributed_search.tuner_environment(
                "chief", distributed.oracle_ip, distributed.oracle_port))
        role.enter_context(contextlib.redirect_stdout(LoggingStream()))
        return CrossValidationTuner(
            oracle,
            hypermodel,
            data=data,
            directory=str(root),
            project_name=config.project_name,
            overwrite=not config.resume,
        )


def _run_trials(
    cv_tuner: CrossValidationTuner,
    config: SearchConfig,
    data: Mapping[str, Any],
    hash_: str,
    distributed: distributed_search.DistributedSettings | None,
) -> None:
    """Run the budget's trials (those not done yet), here or on the workers."""
    n_trials = int(data["budget"]["trials"])
    done = sum(1 for t in cv_tuner.oracle.trials.values() if t.status in ("COMPLETED", "FAILED"))
    with tqdm(
        total=n_trials,
        initial=min(done, n_trials),
        desc=f"CNN search ({config.tuner}, {data['folds'].n_splits}-fold)",
        unit="trial",
        disable=not config.progress,
        leave=True,
    ) as bar:
        cv_tuner.progress_bar = bar
        with contextlib.redirect_stdout(LoggingStream()):
            if distributed is None:
                cv_tuner.search(verbose=0)
            else:  # the chief: workers run the trials
                distributed_search.serve_search(
                    cv_tuner, data, config.tuner, hash_, distributed, bar
                )
        cv_tuner.progress_bar = None


def _best_trial(
    cv_tuner: CrossValidationTuner, project_dir: Path, data: Mapping[str, Any]
) -> tuple[str, dict[str, Any], Any]:
    """(trial id, hyperparameter values, fold models) of the best trial; its stored fold models,
    or trained again when they are missing."""
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
    return best.trial_id, best_values, outcome


def _fold_ensemble(
    outcome: Any,
    folds: Folds,
    best_values: dict[str, Any],
    config: SearchConfig,
    hash_: str,
    info: dict[str, Any],
) -> FoldEnsemble:
    """The best trial's fold models as a ``FoldEnsemble`` (``info`` plus the training facts)."""
    return FoldEnsemble(
        models_=outcome.models,
        y_mean_=outcome.y_mean,
        y_scale_=outcome.y_scale,
        folds=folds,
        hyperparameters=best_values,
        seed=int(config.seed),
        oof_predictions_=outcome.oof_predictions,
        fold_rmse_=outcome.fold_rmse,
        training_data_hash=hash_,
        data_version=config.data_version,
        info={
            **info,
            "epochs": list(outcome.epochs),
            "keras_version": keras.__version__,
            "backend": keras.backend.backend(),
        },
    )
