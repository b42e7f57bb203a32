"""Accuracy metrics of SOC estimates (all in SOC %, estimate minus observed where signed).

- RMSE: sqrt(mean((yhat - y)^2)).
- Mean error (bias): mean(yhat - y); positive means over-estimation.
- Lin's concordance correlation coefficient (Lin 1989):
  2 s_xy / (s_x^2 + s_y^2 + (mean_x - mean_y)^2), with population (1/n) moments.
- R2: 1 - SS_res / SS_tot (coefficient of determination, can be negative).
- RPIQ: (Q3 - Q1) of the observed values / RMSE (Bellon-Maurel et al. 2010).
- dRMSE: (RMSE_local - RMSE_model) / RMSE_local x 100; positive means better than Local.
"""

from __future__ import annotations

import numpy as np


def _pair(observed, estimated) -> tuple[np.ndarray, np.ndarray]:
    y = np.asarray(observed, dtype=np.float64).ravel()
    yhat = np.asarray(estimated, dtype=np.float64).ravel()
    if y.shape != yhat.shape:
        raise ValueError(f"observed has {y.size} values but estimated has {yhat.size}")
    if y.size == 0:
        raise ValueError("metrics need at least one observed/estimated pair")
    if not (np.isfinite(y).all() and np.isfinite(yhat).all()):
        raise ValueError("observed and estimated values must be finite")
    return y, yhat


def rmse(observed, estimated) -> float:
    y, yhat = _pair(observed, estimated)
    return float(np.sqrt(np.mean((yhat - y) ** 2)))


def mean_error(observed, estimated) -> float:
    y, yhat = _pair(observed, estimated)
    return float(np.mean(yhat - y))


def lins_ccc(observed, estimated) -> float:
    y, yhat = _pair(observed, estimated)
    mean_y, mean_yhat = y.mean(), yhat.mean()
    covariance = np.mean((y - mean_y) * (yhat - mean_yhat))
    denominator = y.var() + yhat.var() + (mean_y - mean_yhat) ** 2
    if denominator == 0:
        return 1.0
    return float(2.0 * covariance / denominator)


def r2(observed, estimated) -> float:
    y, yhat = _pair(observed, estimated)
    total = np.sum((y - y.mean()) ** 2)
    if total == 0:
        return float("nan")
    return float(1.0 - np.sum((y - yhat) ** 2) / total)


def rpiq(observed, estimated) -> float:
    y, yhat = _pair(observed, estimated)
    q1, q3 = np.quantile(y, [0.25, 0.75])
    error = rmse(y, yhat)
    return float("inf") if error == 0 else float((q3 - q1) / error)


def delta_rmse(rmse_local: float, rmse_model: float) -> float:
    if not rmse_local > 0:
        raise ValueError(f"the Local model's RMSE must be positive; got {rmse_local}")
    return float((rmse_local - rmse_model) / rmse_local * 100.0)


def all_metrics(observed, estimated) -> dict[str, float]:
    """RMSE, ME, Lin's CCC, R2 and RPIQ of one set of estimates."""
    return {
        "rmse": rmse(observed, estimated),
        "me": mean_error(observed, estimated),
        "ccc": lins_ccc(observed, estimated),
        "r2": r2(observed, estimated),
        "rpiq": rpiq(observed, estimated),
    }
