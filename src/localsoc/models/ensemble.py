"""Cross-validation folds and the fold ensemble (the fitted 1D-CNN predictor).

``Folds`` fixes which samples are validated in which fold; it is made once per data set
(``make_folds``), stored with sample ids, and reused by every model trained on that data.
``FoldEnsemble`` holds the K fold models of one architecture, each with the standardisation of
``y`` fitted on its own training folds; ``predict`` returns the mean over fold models and, on
request, their spread. Its out-of-fold predictions are kept for choosing winners and calibrating
intervals. Saving and loading go through ``localsoc.datasets.KerasEnsembleDataset``.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

#: Spectra predicted per call of a fold model (bounds memory for large sets).
PREDICT_CHUNK = 1024


def fold_mean_and_spread(per_fold: np.ndarray, return_std: bool = True):
    """A fold ensemble's prediction from its ``(n_folds, n_samples)`` per-fold predictions.

    The mean over folds and, with ``return_std``, the (population) standard deviation over folds
    per sample: ``(mean, std)``; without it, the mean alone. Every predictor of a fold ensemble
    (``FoldEnsemble`` and the serving paths of ``localsoc.serving.inference``) returns this.
    """
    mean = per_fold.mean(axis=0)
    if return_std:
        return mean, per_fold.std(axis=0)
    return mean


@dataclass(frozen=True, eq=False)
class Folds:
    """K-fold assignment of samples: ``assignment[i]`` is the validation fold of row ``i``.

    ``sample_ids`` are strings, unique, in row order; ``seed`` is the seed that made the folds
    (``None`` if they were given).
    """

    sample_ids: np.ndarray
    assignment: np.ndarray
    seed: int | None = None

    def __post_init__(self) -> None:
        ids = np.asarray([str(s) for s in np.asarray(self.sample_ids).ravel()], dtype=object)
        assignment = np.asarray(self.assignment, dtype=np.int64).ravel()
        if ids.shape != assignment.shape:
            raise ValueError(
                f"folds: {ids.size} sample ids but {assignment.size} fold numbers; give one "
                "fold number per sample"
            )
        if len(set(ids.tolist())) != ids.size:
            raise ValueError("folds: sample ids must be unique")
        if assignment.size and assignment.min() < 0:
            raise ValueError("folds: fold numbers must be >= 0")
        n_splits = int(assignment.max()) + 1 if assignment.size else 0
        counts = np.bincount(assignment, minlength=n_splits)
        if n_splits < 2 or (counts == 0).any():
            raise ValueError(
                f"folds: need >= 2 folds, each with >= 1 sample; got sizes {counts.tolist()}"
            )
        object.__setattr__(self, "sample_ids", ids)
        object.__setattr__(self, "assignment", assignment)

    @property
    def n_splits(self) -> int:
        return int(self.assignment.max()) + 1

    @property
    def n_samples(self) -> int:
        return int(self.assignment.size)

    def split(self) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """(train rows, validation rows) per fold, in fold order."""
        rows = np.arange(self.n_samples)
        for fold in range(self.n_splits):
            mask = self.assignment == fold
            yield rows[~mask], rows[mask]

    def validation_ids(self) -> list[list[str]]:
        return [self.sample_ids[self.assignment == k].tolist() for k in range(self.n_splits)]

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready: seed, number of folds and the sample ids validated in each fold."""
        return {
            "n_splits": self.n_splits,
            "seed": self.seed,
            "sample_ids": self.sample_ids.tolist(),
            "validation_sample_ids": self.validation_ids(),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Folds:
        try:
            groups = data["validation_sample_ids"]
        except KeyError:
            raise ValueError("folds: the dict needs 'validation_sample_ids'") from None
        fold_of = {str(s): k for k, ids in enumerate(groups) for s in ids}
        ids = [str(s) for s in data.get("sample_ids", list(fold_of))]
        missing = [s for s in ids if s not in fold_of]
        if missing:
            raise ValueError(f"folds: sample ids {missing[:5]} are in no validation fold")
        return cls(np.asarray(ids, dtype=object), [fold_of[s] for s in ids], data.get("seed"))

    def aligned_to(self, sample_ids: Sequence) -> Folds:
        """The same folds for rows in another order (every id must be known)."""
        position = {s: i for i, s in enumerate(self.sample_ids.tolist())}
        ids = [str(s) for s in sample_ids]
        unknown = [s for s in ids if s not in position]
        if unknown:
            raise ValueError(f"folds: sample ids {unknown[:5]} are not in these folds")
        return Folds(np.asarray(ids, dtype=object), self.assignment[[position[s] for s in ids]],
                     self.seed)

    def __eq__(self, other: object) -> bool:
        return (
            isinstance(other, Folds)
            and np.array_equal(self.sample_ids, other.sample_ids)
            and np.array_equal(self.assignment, other.assignment)
        )

    __hash__ = None  # type: ignore[assignment]


def make_folds(sample_ids: Sequence | int, n_splits: int = 10, seed: int = 0) -> Folds:
    """Shuffled K-fold assignment (sizes differ by at most one), reproducible from ``seed``.

    ``sample_ids``: the ids in row order, or the number of rows (ids are then ``0..n-1``).
    """
    if isinstance(sample_ids, (int, np.integer)):
        sample_ids = np.arange(int(sample_ids))
    ids = np.asarray(sample_ids).ravel()
    n_splits = int(n_splits)
    if not 2 <= n_splits <= ids.size:
        raise ValueError(
            f"n_splits must be between 2 and the number of samples ({ids.size}); got {n_splits}"
        )
    rng = np.random.default_rng(seed)
    assignment = np.empty(ids.size, dtype=np.int64)
    assignment[rng.permutation(ids.size)] = np.arange(ids.size) % n_splits
    return Folds(ids, assignment, int(seed))


def data_hash(X: np.ndarray, y: np.ndarray, sample_ids: Sequence | None = None) -> str:
    """SHA-256 of the training data (float64 spectra, targets and sample ids)."""
    digest = hashlib.sha256()
    X = np.ascontiguousarray(X, dtype=np.float64)
    digest.update(str(X.shape).encode())
    digest.update(X.tobytes())
    digest.update(np.ascontiguousarray(y, dtype=np.float64).tobytes())
    if sample_ids is not None:
        digest.update("\x1f".join(str(s) for s in sample_ids).encode())
    return digest.hexdigest()


def as_spectra(X: Any, n_bands: int | None = None, name: str = "X") -> np.ndarray:
    """``X`` as a finite float32 ``(n, n_bands)`` array, or a ``ValueError`` saying what is off."""
    X = np.asarray(X, dtype=np.float32)
    if X.ndim != 2:
        raise ValueError(f"{name} must be a 2-D array (samples x bands); got shape {X.shape}")
    if n_bands is not None and X.shape[1] != n_bands:
        raise ValueError(f"{name} has {X.shape[1]} bands; the model expects {n_bands}")
    if not np.isfinite(X).all():
        raise ValueError(f"{name} holds NaN or infinite values; clean or drop those spectra")
    return X


def as_target(y: Any, n_samples: int, name: str = "y") -> np.ndarray:
    y = np.asarray(y, dtype=np.float64).ravel()
    if y.size != n_samples:
        raise ValueError(f"{name} has {y.size} values for {n_samples} spectra")
    if not np.isfinite(y).all():
        raise ValueError(f"{name} holds NaN or infinite values; drop unlabelled samples first")
    return y


def predict_model(model: Any, X: np.ndarray) -> np.ndarray:
    """Raw (standardised) output of one Keras model, chunked, as a 1-D float64 array."""
    if X.shape[0] == 0:
        return np.empty(0)
    parts = [
        np.asarray(model(X[start : start + PREDICT_CHUNK], training=False))
        for start in range(0, X.shape[0], PREDICT_CHUNK)
    ]
    return np.concatenate(parts).reshape(-1).astype(np.float64)


def rmse(y_true: np.ndarray, y_pred: np.ndarray) -> float:
    return float(np.sqrt(np.mean((np.asarray(y_true) - np.asarray(y_pred)) ** 2)))


@dataclass(eq=False)
class FoldEnsemble:
    """The K fold models of one architecture; predicts their mean (in ``y`` units).

    ``models_[k]`` outputs standardised ``y``: prediction = ``y_mean_[k] + y_scale_[k] * z``.
    ``oof_predictions_[i]`` is the prediction of row ``i`` of the training data by the model that
    did not see it (``folds`` fixes which); ``fold_rmse_`` are the per-fold validation RMSEs.
    """

    models_: list
    y_mean_: np.ndarray
    y_scale_: np.ndarray
    folds: Folds
    hyperparameters: dict[str, Any]
    seed: int | None = None
    oof_predictions_: np.ndarray | None = None
    fold_rmse_: np.ndarray | None = None
    training_data_hash: str | None = None
    data_version: str | None = None
    info: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.y_mean_ = np.asarray(self.y_mean_, dtype=np.float64).ravel()
        self.y_scale_ = np.asarray(self.y_scale_, dtype=np.float64).ravel()
        k = len(self.models_)
        if k == 0 or self.y_mean_.size != k or self.y_scale_.size != k:
            raise ValueError(
                f"fold ensemble: {k} models, {self.y_mean_.size} y means, "
                f"{self.y_scale_.size} y scales; give one of each per fold"
            )
        if self.oof_predictions_ is not None:
            self.oof_predictions_ = np.asarray(self.oof_predictions_, dtype=np.float64).ravel()
        if self.fold_rmse_ is not None:
            self.fold_rmse_ = np.asarray(self.fold_rmse_, dtype=np.float64).ravel()

    @property
    def n_folds(self) -> int:
        return len(self.models_)

    @property
    def n_bands(self) -> int:
        return int(self.models_[0].input_shape[-1])

    @property
    def cv_rmse_(self) -> float:
        """Mean validation RMSE over folds (the search objective)."""
        if self.fold_rmse_ is None:
            raise AttributeError("this ensemble has no fold RMSEs")
        return float(np.mean(self.fold_rmse_))

    def predict_folds(self, X: Any) -> np.ndarray:
        """Predictions of every fold model, ``(n_folds, n_samples)``, in ``y`` units."""
        X = as_spectra(X, self.n_bands)
        return np.stack(
            [
                mean + scale * predict_model(model, X)
                for model, mean, scale in zip(self.models_, self.y_mean_, self.y_scale_, strict=True)
            ]
        )

    def predict(self, X: Any, return_std: bool = False):
        """Mean over fold models; with ``return_std``, also their standard deviation per sample."""
        return fold_mean_and_spread(self.predict_folds(X), return_std)

    def metadata(self) -> dict[str, Any]:
        """Everything but the Keras models, JSON-ready (what ``metadata.json`` holds)."""
        return {
            "format": "localsoc.fold_ensemble/1",
            "n_folds": self.n_folds,
            "n_bands": self.n_bands,
            "hyperparameters": _jsonable(self.hyperparameters),
            "folds": self.folds.to_dict(),
            "seed": self.seed,
            "training_data_hash": self.training_data_hash,
            "data_version": self.data_version,
            "y_mean": self.y_mean_.tolist(),
            "y_scale": self.y_scale_.tolist(),
            "fold_rmse": None if self.fold_rmse_ is None else self.fold_rmse_.tolist(),
            "oof_predictions": (
                None if self.oof_predictions_ is None else self.oof_predictions_.tolist()
            ),
            "info": _jsonable(self.info),
        }

    @classmethod
    def from_metadata(cls, models: list, metadata: Mapping[str, Any]) -> FoldEnsemble:
        if metadata.get("format") != "localsoc.fold_ensemble/1":
            raise ValueError(
                f"metadata format {metadata.get('format')!r} is not localsoc.fold_ensemble/1"
            )
        return cls(
            models_=list(models),
            y_mean_=metadata["y_mean"],
            y_scale_=metadata["y_scale"],
            folds=Folds.from_dict(metadata["folds"]),
            hyperparameters=dict(metadata["hyperparameters"]),
            seed=metadata.get("seed"),
            oof_predictions_=metadata.get("oof_predictions"),
            fold_rmse_=metadata.get("fold_rmse"),
            training_data_hash=metadata.get("training_data_hash"),
            data_version=metadata.get("data_version"),
            info=dict(metadata.get("info") or {}),
        )


def _jsonable(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, np.generic):
        return value.item()
    return value
