"""What DVC shows of a study: the headline metrics (``metrics.json``, the one file declared as
DVC metrics, so that `dvc metrics show` and `dvc exp show --only-changed --keep
'rmse|coverage|drmse'` fit in 120 columns for three sites) and the served models' test estimates
(a file of the `dvc plots show` page). The per-method details (``study_metrics_json``) are a
plain output beside them."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

#: Columns of the served models' test estimates (those the predictions have).
SERVED_COLUMNS = ["site", "method", "sample_id", "observed", "estimated", "lower", "upper"]


def _finite(value) -> bool:
    return value is not None and math.isfinite(float(value))


def headline_metrics(winners: dict) -> dict:
    """The study's headline, a few columns wide: ``rmse``, per site the served model's test
    RMSE; ``coverage``, the mean over the sites of its interval's test coverage; ``drmse``, the
    mean over the sites of its dRMSE against the reference method (Local), %. Which model each
    site serves, and its own coverage, are in study_winners.json. A value no site has (no test
    set) is left out."""
    tests = {site: winner["test_metrics"] for site, winner in sorted(winners.items())}
    out: dict = {"rmse": {site: round(float(test["rmse"]), 4) for site, test in tests.items()
                          if _finite(test["rmse"])}}
    for key, digits in (("coverage", 3), ("drmse", 2)):
        values = [float(test[key]) for test in tests.values() if _finite(test[key])]
        if values:
            out[key] = round(float(np.mean(values)), digits)
    return {key: value for key, value in out.items() if value != {}}


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
