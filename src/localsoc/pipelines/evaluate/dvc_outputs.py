"""What DVC shows of a study: the headline metrics (``metrics.json``, the one file declared as
DVC metrics, so `dvc metrics show` and `dvc exp show` stay a few columns wide) and the served
models' test estimates (a file of the `dvc plots show` page). The per-method details
(``study_metrics_json``) are a plain output beside them."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

#: Columns of the served models' test estimates (those the predictions have).
SERVED_COLUMNS = ["site", "method", "sample_id", "observed", "estimated", "lower", "upper"]


def _rounded(value, digits: int):
    if value is None or not math.isfinite(float(value)):
        return None
    return round(float(value), digits)


def headline_metrics(winners: dict) -> dict:
    """Per site (a key each): the served model (``winner``), its test RMSE (``rmse``) and its
    interval's test coverage (``coverage``); ``mean_drmse``: the mean over the sites of the
    served models' dRMSE against the reference method (Local), %. A value a site does not have
    (no test set) is left out."""
    out: dict = {}
    drmse = []
    for site, winner in sorted(winners.items()):
        test = winner["test_metrics"]
        row = {"winner": winner["method"], "rmse": _rounded(test["rmse"], 4),
               "coverage": _rounded(test["coverage"], 3)}
        out[site] = {k: v for k, v in row.items() if v is not None}
        if _rounded(test["drmse"], 4) is not None:
            drmse.append(float(test["drmse"]))
    if drmse:
        out["mean_drmse"] = round(float(np.mean(drmse)), 2)
    return out


def served_test_predictions(predictions: pd.DataFrame, winners: dict) -> pd.DataFrame:
    """The test rows of each site's served model (the winner): site, method, sample id,
    observed and estimated SOC and the interval (lower, upper), sites in name order."""
    columns = [c for c in SERVED_COLUMNS if c in predictions.columns]
    parts = [predictions.loc[(predictions["site"] == site)
                             & (predictions["method"] == winner["method"])
                             & (predictions["role"] == "test"), columns]
             for site, winner in sorted(winners.items())]
    if not parts:
        return pd.DataFrame(columns=columns)
    return pd.concat(parts, ignore_index=True)
