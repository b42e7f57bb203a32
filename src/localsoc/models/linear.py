"""A fitted linear SOC model (PLSR) as plain data: x_mean, coefficients, intercept.

``predict(X) = (X - x_mean) @ coef + intercept``, exactly what ``PLSRegression.predict`` computes
(bit for bit, tested), from public attributes only: ``x_mean`` is ``PLSRegressionCV.x_mean_``,
``coef`` and ``intercept`` its refitted ``PLSRegression``'s ``coef_`` and ``intercept_``. Stored
without pickles so the serving bundle can carry it. Out-of-fold predictions and the
cross-validated choice of components travel with it.

An *outer-fold ensemble* (``from_folds``, what the nested stage serves for a PLSR method) keeps
the K outer-fold models as ``fold_coef`` / ``fold_intercept`` (``predict_folds``: fold k's
estimate ``X @ fold_coef[k] + fold_intercept[k]``) and predicts their mean, which is again one
linear model (``coef`` = the mean coefficients, ``x_mean`` = 0); ``folds`` are the outer folds
of the calibration samples, for CV+ intervals.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from localsoc.models.ensemble import Folds
from localsoc.models.pls import PLSRegressionCV


@dataclass(eq=False)
class LinearModel:
    x_mean: np.ndarray
    coef: np.ndarray
    intercept: float
    n_components: int
    sample_ids: list[str]
    oof_predictions_: np.ndarray
    cv_rmse_by_components: list[float] = field(default_factory=list)
    info: dict[str, Any] = field(default_factory=dict)
    fold_coef: np.ndarray | None = None  # (K, n_bands): an outer-fold ensemble's models
    fold_intercept: np.ndarray | None = None  # (K,)
    folds: Folds | None = None  # the outer folds of sample_ids

    @classmethod
    def from_folds(cls, fitted: list[PLSRegressionCV], folds: Folds, oof_predictions,
                   info: dict | None = None) -> LinearModel:
        """The outer-fold ensemble of K fitted PLSR models (one per fold of ``folds``, which
        holds the calibration sample ids); ``oof_predictions``: each sample's estimate by its
        own outer fold's model."""
        coef = np.stack([np.asarray(f.estimator_.coef_, np.float64).reshape(-1) for f in fitted])
        intercept = np.array([float(np.ravel(f.estimator_.intercept_)[0])
                              - float(np.asarray(f.x_mean_, np.float64) @ c)
                              for f, c in zip(fitted, coef, strict=True)])
        return cls(
            x_mean=np.zeros(coef.shape[1]), coef=coef.mean(axis=0),
            intercept=float(intercept.mean()),
            n_components=int(round(np.mean([f.n_components_ for f in fitted]))),
            sample_ids=[str(s) for s in folds.sample_ids],
            oof_predictions_=np.asarray(oof_predictions, dtype=np.float64),
            info={**dict(info or {}),
                  "fold_n_components": [int(f.n_components_) for f in fitted]},
            fold_coef=coef, fold_intercept=intercept, folds=folds,
        )

    def predict_folds(self, X) -> np.ndarray:
        """Estimates of every outer-fold model, ``(K, n_samples)`` (an outer-fold ensemble)."""
        if self.fold_coef is None:
            raise AttributeError("this linear model is not an outer-fold ensemble")
        X = np.asarray(X, dtype=np.float64)
        if X.ndim != 2 or X.shape[1] != self.n_bands:
            raise ValueError(f"expected spectra with {self.n_bands} bands; got shape {X.shape}")
        return self.fold_coef @ X.T + self.fold_intercept[:, None]

    @classmethod
    def from_pls(cls, fitted: PLSRegressionCV, sample_ids, info: dict | None = None) -> LinearModel:
        estimator = fitted.estimator_
        return cls(
            x_mean=np.asarray(fitted.x_mean_, dtype=np.float64).copy(),
            coef=np.asarray(estimator.coef_, dtype=np.float64).reshape(-1).copy(),
            intercept=float(np.ravel(estimator.intercept_)[0]),
            n_components=int(fitted.n_components_),
            sample_ids=[str(s) for s in sample_ids],
            oof_predictions_=np.asarray(fitted.oof_predictions_, dtype=np.float64),
            cv_rmse_by_components=[float(v) for v in fitted.cv_rmse_],
            info=dict(info or {}),
        )

    @property
    def n_bands(self) -> int:
        return int(self.coef.size)

    @property
    def cv_rmse_(self) -> float:
        return float(self.cv_rmse_by_components[self.n_components - 1])

    def predict(self, X, return_std: bool = False):
        X = np.asarray(X, dtype=np.float64)
        if X.ndim != 2 or X.shape[1] != self.n_bands:
            raise ValueError(f"expected spectra with {self.n_bands} bands; got shape {X.shape}")
        estimate = (X - self.x_mean) @ self.coef + self.intercept
        if return_std:
            spread = (self.predict_folds(X).std(axis=0) if self.fold_coef is not None
                      else np.zeros_like(estimate))
            return estimate, spread
        return estimate

    def to_dict(self) -> dict:
        return {
            "format": "localsoc.linear_model/1",
            "x_mean": self.x_mean.tolist(),
            "coef": self.coef.tolist(),
            "intercept": self.intercept,
            "n_components": self.n_components,
            "sample_ids": self.sample_ids,
            "oof_predictions": self.oof_predictions_.tolist(),
            "cv_rmse_by_components": self.cv_rmse_by_components,
            "info": self.info,
            **({} if self.fold_coef is None else {
                "fold_coef": self.fold_coef.tolist(),
                "fold_intercept": self.fold_intercept.tolist(),
                "folds": self.folds.to_dict()}),
        }

    def check(self) -> LinearModel:
        """Raise ``ValueError`` naming the array whose shape does not match ``coef`` or whose
        values are not all finite; return self."""
        n = self.coef.size
        shapes = {"x_mean": (self.x_mean, (n,))}
        if self.fold_coef is not None or self.fold_intercept is not None:
            k = -1 if self.fold_coef is None or self.fold_coef.ndim != 2 else self.fold_coef.shape[0]
            shapes["fold_coef"] = (self.fold_coef, (k, n))
            shapes["fold_intercept"] = (self.fold_intercept, (k,))
        if self.coef.ndim != 1 or n == 0:
            raise ValueError(f"coef must be a non-empty vector; it has shape {self.coef.shape}")
        for name, (values, shape) in shapes.items():
            have = None if values is None else np.shape(values)
            if have != shape:
                raise ValueError(f"coef has {n} values but {name} has shape {have} "
                                 f"(expected {shape})")
        arrays = {"coef": self.coef, "intercept": np.asarray(self.intercept),
                  **{name: values for name, (values, _) in shapes.items()}}
        for name, values in arrays.items():
            bad = ~np.isfinite(np.asarray(values, dtype=np.float64))
            if bad.any():
                raise ValueError(f"{name} is not finite ({int(bad.sum())} value(s) NaN or "
                                 "infinite)")
        return self

    @classmethod
    def from_dict(cls, data: dict) -> LinearModel:
        """The model of ``to_dict``, checked (``check``): shapes agree and values are finite."""
        if data.get("format") != "localsoc.linear_model/1":
            raise ValueError(f"not a localsoc linear model: format {data.get('format')!r}")
        return cls(
            x_mean=np.asarray(data["x_mean"], dtype=np.float64),
            coef=np.asarray(data["coef"], dtype=np.float64),
            intercept=float(data["intercept"]),
            n_components=int(data["n_components"]),
            sample_ids=list(data["sample_ids"]),
            oof_predictions_=np.asarray(data["oof_predictions"], dtype=np.float64),
            cv_rmse_by_components=list(data["cv_rmse_by_components"]),
            info=dict(data.get("info") or {}),
            fold_coef=(None if data.get("fold_coef") is None
                       else np.asarray(data["fold_coef"], dtype=np.float64)),
            fold_intercept=(None if data.get("fold_intercept") is None
                            else np.asarray(data["fold_intercept"], dtype=np.float64)),
            folds=None if data.get("folds") is None else Folds.from_dict(data["folds"]),
        ).check()
