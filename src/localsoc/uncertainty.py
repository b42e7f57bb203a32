"""Prediction intervals from out-of-fold residuals, and the applicability domain of a model.

Intervals (split-conformal on out-of-fold residuals, the "CV+"-style jackknife of Barber et al.
2021 with a symmetric absolute-residual score): with residuals r_i = |y_i - yhat_oof_i| of the
n calibration samples and level 1 - alpha, the half-width is the ceil((n + 1)(1 - alpha))-th
smallest r_i (infinite when that rank exceeds n). Under exchangeability of the calibration and
new samples the interval yhat +- q covers the truth with probability >= 1 - alpha.

Applicability domain: a PCA fitted on the model's training spectra; Hotelling's T2 in the
retained components and the Q (squared reconstruction) residual. Thresholds are empirical
quantiles of the training samples' own T2 and Q at ``quantile`` (default 0.99). A spectrum is
in the domain when both statistics are at or below their thresholds.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np


def conformal_halfwidth(observed, oof_estimated, level: float = 0.9) -> float:
    """Half-width of the split-conformal interval at ``level`` from out-of-fold residuals."""
    if not 0 < level < 1:
        raise ValueError(f"level must be in (0, 1); got {level}")
    y = np.asarray(observed, dtype=np.float64).ravel()
    yhat = np.asarray(oof_estimated, dtype=np.float64).ravel()
    if y.shape != yhat.shape or y.size == 0:
        raise ValueError("observed and out-of-fold estimates must be non-empty and equally long")
    residuals = np.sort(np.abs(y - yhat))
    rank = math.ceil((y.size + 1) * level)
    return float("inf") if rank > y.size else float(residuals[rank - 1])


def interval_coverage(observed, lower, upper) -> float:
    """Share of observed values inside [lower, upper]."""
    y = np.asarray(observed, dtype=np.float64)
    return float(np.mean((y >= np.asarray(lower)) & (y <= np.asarray(upper))))


@dataclass
class ApplicabilityDomain:
    """PCA-based T2 / Q applicability domain, stored as plain arrays (no pickles)."""

    mean: np.ndarray
    components: np.ndarray  # (n_components, n_bands)
    variances: np.ndarray  # per component
    t2_limit: float
    q_limit: float

    @classmethod
    def fit(cls, spectra, n_components: int = 5, quantile: float = 0.99) -> ApplicabilityDomain:
        X = np.asarray(spectra, dtype=np.float64)
        if X.ndim != 2 or X.shape[0] < 3:
            raise ValueError("the applicability domain needs at least 3 training spectra")
        n_components = int(min(n_components, X.shape[0] - 1, X.shape[1]))
        mean = X.mean(axis=0)
        _, singular, vt = np.linalg.svd(X - mean, full_matrices=False)
        components = vt[:n_components]
        variances = singular[:n_components] ** 2 / (X.shape[0] - 1)
        variances = np.where(variances > 0, variances, np.finfo(float).tiny)
        domain = cls(mean, components, variances, np.inf, np.inf)
        t2, q = domain.statistics(X)
        domain.t2_limit = float(np.quantile(t2, quantile))
        domain.q_limit = float(np.quantile(q, quantile))
        return domain

    def statistics(self, spectra) -> tuple[np.ndarray, np.ndarray]:
        X = np.atleast_2d(np.asarray(spectra, dtype=np.float64)) - self.mean
        scores = X @ self.components.T
        t2 = np.sum(scores**2 / self.variances, axis=1)
        residual = X - scores @ self.components
        q = np.sum(residual**2, axis=1)
        return t2, q

    def in_domain(self, spectra) -> np.ndarray:
        t2, q = self.statistics(spectra)
        return (t2 <= self.t2_limit) & (q <= self.q_limit)

    def to_dict(self) -> dict:
        return {
            "mean": self.mean.tolist(),
            "components": self.components.tolist(),
            "variances": self.variances.tolist(),
            "t2_limit": self.t2_limit,
            "q_limit": self.q_limit,
        }

    @classmethod
    def from_dict(cls, data: dict) -> ApplicabilityDomain:
        return cls(
            np.asarray(data["mean"], dtype=np.float64),
            np.asarray(data["components"], dtype=np.float64),
            np.asarray(data["variances"], dtype=np.float64),
            float(data["t2_limit"]),
            float(data["q_limit"]),
        )
