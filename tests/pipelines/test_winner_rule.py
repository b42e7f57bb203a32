"""The winner rule: lowest nested calibration RMSE, the simplest model within one s.e. of it."""

from __future__ import annotations

import pandas as pd

from localsoc.methods import method
from localsoc.pipelines.evaluate.nodes import WINNER_RULE, choose_winners

CALIBRATION = pd.DataFrame({"site": ["s1"], "country": ["XX"]})


def _scored(rows: dict[str, tuple[float, float]]) -> tuple[pd.DataFrame, dict]:
    table = pd.DataFrame([{
        "site": "s1", "method": label, "family": method(label).family, "model_key": label,
        "trained_on": method(label).data, "n_test": 10, "rmse": 1.0, "me": 0.0, "ccc": 0.5,
        "r2": 0.2, "rpiq": 2.0, "drmse": 0.0, "coverage": 0.9, "mean_width": 1.0,
        "cal_rmse": value, "cal_rmse_se": se, "cal_rmse_unnested": value, "interval_level": 0.9,
        "interval_halfwidth": 0.5, "interval": "cv_plus",
        "collection": method(label).collection} for label, (value, se) in rows.items()])
    domains = {"s1": {label: {"domain": {}, "interval": {}} for label in rows}}
    return table, domains


def test_a_simpler_model_within_one_standard_error_wins():
    table, domains = _scored({"DTL-Ig": (0.50, 0.05), "PLSR Local": (0.54, 0.06)})
    metrics, winners = choose_winners(table, domains, CALIBRATION)
    assert winners["s1"]["method"] == "PLSR Local"
    assert winners["s1"]["lowest_cal_rmse"]["method"] == "DTL-Ig"
    assert winners["s1"]["candidates"] == ["DTL-Ig", "PLSR Local"]
    assert winners["s1"]["rule"] == WINNER_RULE
    assert metrics.set_index("method")["winner"].to_dict() == {"DTL-Ig": False,
                                                                "PLSR Local": True}


def test_outside_one_standard_error_the_lowest_wins():
    table, domains = _scored({"DTL-Ig": (0.50, 0.05), "PLSR Local": (0.56, 0.06)})
    assert choose_winners(table, domains, CALIBRATION)[1]["s1"]["method"] == "DTL-Ig"


def test_local_data_before_library_data_among_equally_simple_models():
    table, domains = _scored({"RS-LOCAL+PLSR g": (0.50, 0.05), "PLSR Local": (0.53, 0.05),
                              "Local": (0.49, 0.05)})
    assert choose_winners(table, domains, CALIBRATION)[1]["s1"]["method"] == "PLSR Local"


def test_mbl_is_scored_but_never_served():
    table, domains = _scored({"MBL g": (0.30, 0.01), "PLSR Local": (0.60, 0.05)})
    winner = choose_winners(table, domains, CALIBRATION)[1]["s1"]
    assert winner["method"] == "PLSR Local" and winner["best_calibration_overall"] == "MBL g"
