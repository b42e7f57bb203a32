"""A fitted linear SOC model (PLSR) as plain data: x_mean, coefficients, intercept.

``predict(X) = (X - x_mean) @ coef + intercept``, exactly what ``PLSRegression.predict`` computes
(bit for bit, tested), from public attributes only: ``x_mean`` is ``PLSRegressionCV.x_mean_``,
``coef`` and ``intercept`` its refitted ``PLSRegression``'s ``coef_`` and ``intercept_``. Stored
without pickles so the serving bundle can carry it. Out-of-fold predictions and the
cross-validated choice of components travel with it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

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
            return estimate, np.zeros_like(estimate)
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
        }

    @classmethod
    def from_dict(cls, data: dict) -> LinearModel:
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
        )
