"""Gaussian process regression on PLS scores (the idea of resemble's ``fit_gpr``).

A PLS projection (``PLSRegression(scale=False)``) reduces the spectra to a scores; each score is
divided by its standard deviation on the training rows, and scikit-learn's
``GaussianProcessRegressor`` (``normalize_y=True``) fits SOC on them with the kernel
``C * RBF(one length scale per score) + White`` (hyperparameters by marginal likelihood). The
number of scores a is chosen by CV: per fold one A-component PLS (its first a scores are the
a-component model's: NIPALS components are nested), a GP per a, the pooled out-of-fold RMSE
decides (ties: fewer scores). The GP's predictive standard deviation is the spread.

Stored as plain numbers (:class:`PLSGPModel`: per part the PLS centring and rotations, the
score scales, the training scores and SOC, the fitted kernel's log-hyperparameters, no pickles).
Loading rebuilds scikit-learn's GP with those hyperparameters fixed (``optimizer=None``) on the
same scores: the same code computes the served estimates as the trained ones. An *outer-fold
ensemble* holds K parts (one per outer fold of the n) and predicts their mean.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from sklearn.cross_decomposition import PLSRegression
from sklearn.exceptions import ConvergenceWarning
from sklearn.gaussian_process import GaussianProcessRegressor
from sklearn.gaussian_process.kernels import RBF, ConstantKernel, WhiteKernel

from localsoc.models.ensemble import Folds, fold_mean_and_spread


@dataclass(frozen=True)
class GPSettings:
    """``train.gpr``: the most PLS scores tried, optimizer restarts, hyperparameter bounds
    (of the signal variance, the length scales and the noise level, on normalised SOC)."""

    max_components: int
    restarts: int
    signal_bounds: tuple[float, float]
    length_scale_bounds: tuple[float, float]
    noise_bounds: tuple[float, float]

    @classmethod
    def from_params(cls, params: dict) -> GPSettings:
        bounds = [tuple(float(v) for v in params[key])
                  for key in ("signal_bounds", "length_scale_bounds", "noise_bounds")]
        return cls(int(params["max_components"]), int(params["restarts"]), *bounds)


#: Bounds of a GP rebuilt with its stored hyperparameters fixed (``optimizer=None``: unused).
_FIXED = GPSettings(1, 0, (1e-5, 1e5), (1e-5, 1e5), (1e-5, 1e5))


def _kernel(n_scores: int, settings: GPSettings):
    return (ConstantKernel(1.0, settings.signal_bounds)
            * RBF(1.0, settings.length_scale_bounds)
            + WhiteKernel(0.1, settings.noise_bounds))


def _gp(kernel, restarts: int, seed: int, optimise: bool = True) -> GaussianProcessRegressor:
    return GaussianProcessRegressor(kernel, normalize_y=True, n_restarts_optimizer=restarts,
                                    optimizer="fmin_l_bfgs_b" if optimise else None,
                                    random_state=seed)


def _fit_gp(scores, y, settings: GPSettings, seed: int) -> GaussianProcessRegressor:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        return _gp(_kernel(scores.shape[1], settings), settings.restarts, seed).fit(scores, y)


@dataclass
class GPPart:
    """One fitted PLS projection + GP as numbers: scores = ((X - x_mean) @ rotations) / scale."""

    x_mean: np.ndarray
    rotations: np.ndarray
    scale: np.ndarray
    scores: np.ndarray
    y: np.ndarray
    theta: np.ndarray
    _gp: Any = field(default=None, repr=False)

    @classmethod
    def fit(cls, X, y, n_scores: int, settings: GPSettings, seed: int) -> GPPart:
        pls = PLSRegression(n_components=n_scores, scale=False).fit(X, y)
        x_mean = X.mean(axis=0)
        raw = (X - x_mean) @ pls.x_rotations_
        scale = raw.std(axis=0)
        scale[scale == 0] = 1.0
        gp = _fit_gp(raw / scale, y, settings, seed)
        return cls(x_mean, np.asarray(pls.x_rotations_), scale, raw / scale, np.asarray(y),
                   np.asarray(gp.kernel_.theta), gp)

    def transform(self, X) -> np.ndarray:
        return ((np.asarray(X, np.float64) - self.x_mean) @ self.rotations) / self.scale

    def regressor(self) -> GaussianProcessRegressor:
        """scikit-learn's GP with the stored hyperparameters, fitted on the stored scores."""
        if self._gp is None:
            kernel = _kernel(self.scores.shape[1], _FIXED)
            self._gp = _gp(kernel.clone_with_theta(self.theta), 0, 0, optimise=False).fit(
                self.scores, self.y)
        return self._gp

    def predict(self, X, return_std: bool = False):
        return self.regressor().predict(self.transform(X), return_std=return_std)

    def to_dict(self) -> dict:
        return {name: getattr(self, name).tolist()
                for name in ("x_mean", "rotations", "scale", "scores", "y", "theta")}

    @classmethod
    def from_dict(cls, data: dict) -> GPPart:
        return cls(**{name: np.asarray(data[name], np.float64)
                      for name in ("x_mean", "rotations", "scale", "scores", "y", "theta")})


def score_curve(X, y, cv, settings: GPSettings, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(pooled out-of-fold RMSE with 1..A scores, the out-of-fold estimates (A, n)) over ``cv``
    ((train, held-out) index pairs)."""
    X, y = np.asarray(X, np.float64), np.asarray(y, np.float64)
    smallest = min(len(train) for train, _ in cv)
    n_max = min(settings.max_components, smallest - 2, X.shape[1])
    if n_max < 1:
        raise ValueError(f"the smallest training fold has {smallest} rows: too few for a GP")
    oof = np.full((n_max, len(y)), np.nan)
    for train, held in cv:
        pls = PLSRegression(n_components=n_max, scale=False).fit(X[train], y[train])
        mean = X[train].mean(axis=0)
        raw_train = (X[train] - mean) @ pls.x_rotations_
        raw_held = (X[held] - mean) @ pls.x_rotations_
        scale = raw_train.std(axis=0)
        scale[scale == 0] = 1.0
        for a in range(1, n_max + 1):
            gp = _fit_gp(raw_train[:, :a] / scale[:a], y[train], settings, seed)
            oof[a - 1, held] = gp.predict(raw_held[:, :a] / scale[:a])
    if np.isnan(oof).any():
        raise ValueError("the CV folds must hold out every row once")
    return np.sqrt(np.mean((oof - y) ** 2, axis=1)), oof


def fit_pls_gp_cv(X, y, cv, settings: GPSettings, seed: int) -> tuple[GPPart, np.ndarray,
                                                                     np.ndarray]:
    """(the GP on the CV-chosen number of PLS scores fitted on all rows, the CV curve, the
    out-of-fold estimates with that number)."""
    X, y = np.asarray(X, np.float64), np.asarray(y, np.float64)
    curve, oof = score_curve(X, y, cv, settings, seed)
    best = int(np.argmin(curve))
    return GPPart.fit(X, y, best + 1, settings, seed), curve, oof[best]


@dataclass(eq=False)
class PLSGPModel:
    """A fitted GP-on-PLS-scores model (one part) or an outer-fold ensemble (K parts, one per
    outer fold of ``folds``). ``predict(X, return_std=True)``: the parts' mean estimate and the
    spread sqrt(mean GP variance + variance of the parts' means)."""

    parts: list[GPPart]
    sample_ids: list[str]
    oof_predictions_: np.ndarray
    cv_rmse_by_components: list[float] = field(default_factory=list)
    info: dict[str, Any] = field(default_factory=dict)
    folds: Folds | None = None

    @property
    def n_bands(self) -> int:
        return int(self.parts[0].x_mean.size)

    def _check(self, X) -> np.ndarray:
        X = np.asarray(X, dtype=np.float64)
        if X.ndim != 2 or X.shape[1] != self.n_bands:
            raise ValueError(f"expected spectra with {self.n_bands} bands; got shape {X.shape}")
        return X

    def predict_folds(self, X) -> np.ndarray:
        """Each part's estimate, ``(K, n_samples)`` (an outer-fold ensemble)."""
        if self.folds is None:
            raise AttributeError("this GP model is not an outer-fold ensemble")
        X = self._check(X)
        return np.stack([part.predict(X) for part in self.parts])

    def predict(self, X, return_std: bool = False):
        X = self._check(X)
        means, stds = zip(*(part.predict(X, return_std=True) for part in self.parts),
                          strict=True)
        estimate, between = fold_mean_and_spread(np.stack(means))
        if not return_std:
            return estimate
        return estimate, np.sqrt(np.mean(np.stack(stds) ** 2, axis=0) + between ** 2)

    def to_dict(self) -> dict:
        return {
            "format": "localsoc.pls_gp_model/1", "parts": [p.to_dict() for p in self.parts],
            "sample_ids": self.sample_ids, "oof_predictions": self.oof_predictions_.tolist(),
            "cv_rmse_by_components": self.cv_rmse_by_components, "info": self.info,
            "folds": None if self.folds is None else self.folds.to_dict(),
        }

    @classmethod
    def from_dict(cls, data: dict) -> PLSGPModel:
        if data.get("format") != "localsoc.pls_gp_model/1":
            raise ValueError(f"not a localsoc GP model: format {data.get('format')!r}")
        return cls([GPPart.from_dict(p) for p in data["parts"]], list(data["sample_ids"]),
                   np.asarray(data["oof_predictions"], np.float64),
                   list(data["cv_rmse_by_components"]), dict(data.get("info") or {}),
                   None if data.get("folds") is None else Folds.from_dict(data["folds"]))
