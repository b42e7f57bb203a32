"""The winner rules: the lowest nested calibration RMSE (conf/base), or the simplest model within
one s.e. of it (``simplest_within_one_se``, the rule until 2026-12-07)."""

from __future__ import annotations

import pandas as pd

from localsoc.methods import method
from localsoc.pipelines.evaluate.nodes import WINNER_RULE, WINNER_RULES, choose_winners

CALIBRATION = pd.DataFrame({"site": ["s1"], "country": ["XX"]})
ONE_SE = "simplest_within_one_se"


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
    metrics, winners = choose_winners(table, domains, CALIBRATION, rule=ONE_SE)
    assert winners["s1"]["method"] == "PLSR Local"
    assert winners["s1"]["lowest_cal_rmse"]["method"] == "DTL-Ig"
    assert winners["s1"]["candidates"] == ["DTL-Ig", "PLSR Local"]
    assert winners["s1"]["rule"] == WINNER_RULES[ONE_SE]
    assert metrics.set_index("method")["winner"].to_dict() == {"DTL-Ig": False,
                                                                "PLSR Local": True}


def test_outside_one_standard_error_the_lowest_wins():
    table, domains = _scored({"DTL-Ig": (0.50, 0.05), "PLSR Local": (0.56, 0.06)})
    assert choose_winners(table, domains, CALIBRATION, rule=ONE_SE)[1]["s1"]["method"] == "DTL-Ig"


def test_local_data_before_library_data_among_equally_simple_models():
    table, domains = _scored({"RS-LOCAL+PLSR g": (0.50, 0.05), "PLSR Local": (0.53, 0.05),
                              "Local": (0.49, 0.05)})
    assert choose_winners(table, domains, CALIBRATION, rule=ONE_SE)[1]["s1"]["method"] == "PLSR Local"


def test_mbl_is_scored_but_never_served():
    table, domains = _scored({"MBL g": (0.30, 0.01), "PLSR Local": (0.60, 0.05)})
    winner = choose_winners(table, domains, CALIBRATION)[1]["s1"]
    assert winner["method"] == "PLSR Local" and winner["best_calibration_overall"] == "MBL g"


def test_the_rule_s_own_nested_rmse_pays_for_the_winner_s_curse():
    """Eight CNNs with equally good, independent N(0, 1) residuals on the same 30 samples: the
    winner's nested RMSE is the lowest of eight noisy estimates (optimistic: the true RMSE of
    every model is 1); the rule's own nested RMSE, picking in each outer fold from the other
    folds only, is not."""
    import numpy as np

    from localsoc.models.ensemble import make_folds
    from localsoc.pipelines.evaluate.nodes import selection_nested_rmse

    labels = ["Local", "DTL-Ig", "DTL-Ic", "DTL-Rg", "DTL-Rc", "DTL-IRg", "DTL-IRc",
              "RS-LOCAL+CNN g"]
    labels = [label for label in labels if _known(label)]
    assert len(labels) >= 6
    rng = np.random.default_rng(2006)
    ids = [f"s{i}" for i in range(30)]
    winner_rmse, rule_rmse = [], []
    for repeat in range(150):
        residuals = rng.normal(size=(len(labels), len(ids)))
        calibration = pd.DataFrame([
            {"sample_id": s, "method": label, "observed": 0.0, "estimated": residuals[m, i]}
            for m, label in enumerate(labels) for i, s in enumerate(ids)])
        rmses = np.sqrt((residuals**2).mean(axis=1))
        se = (residuals**2).std(axis=1, ddof=1) / np.sqrt(len(ids)) / (2 * rmses)
        table, _ = _scored({label: (float(rmses[m]), float(se[m]))
                            for m, label in enumerate(labels)})
        folds = make_folds(ids, 5, seed=repeat)
        value, picks = selection_nested_rmse(table, calibration, folds)
        assert len(picks) == 5 and set(picks) <= set(labels)
        winner_rmse.append(rmses.min())
        rule_rmse.append(value)
    assert np.mean(winner_rmse) < 0.9, np.mean(winner_rmse)
    assert abs(np.mean(rule_rmse) - 1.0) < 0.05, np.mean(rule_rmse)


def _known(label: str) -> bool:
    try:
        method(label)
    except (KeyError, ValueError):
        return False
    return method(label).family == "cnn"


def test_the_rule_s_nested_rmse_with_numeric_sample_ids_read_back_from_csv():
    """study_predictions is a CSV: numeric sample ids come back as integers, the folds hold
    strings; the rule's nested RMSE must match them all the same."""
    import io

    import numpy as np

    rng = np.random.default_rng(0)
    ids = [str(1000 + i) for i in range(20)]
    labels = ["PLSR Local", "Local"]
    table, domains = _scored({label: (1.0, 0.1) for label in labels})
    predictions = pd.DataFrame([
        {"site": "s1", "method": label, "role": "calibration", "sample_id": s,
         "observed": 0.0, "estimated": rng.normal()} for label in labels for s in ids])
    calibration = pd.DataFrame({"site": "s1", "country": "XX", "sample_id": ids})
    expected = choose_winners(table, domains, calibration, predictions)[1]["s1"]
    buffer = io.StringIO()
    predictions.to_csv(buffer, index=False)
    buffer.seek(0)
    read_back = pd.read_csv(buffer)
    assert read_back["sample_id"].dtype.kind == "i"
    winner = choose_winners(table, domains, calibration, read_back)[1]["s1"]
    assert winner["cal_rmse_selection"] is not None
    assert winner["cal_rmse_selection"] == expected["cal_rmse_selection"]
    assert winner["selection_picks"] == expected["selection_picks"]


def test_the_new_families_take_their_place_in_the_simplicity_order():
    # spiked PLSR is as simple as PLSR: among equally simple, local data first, then RMSE
    table, domains = _scored({"RS-LOCAL+PLSR g w": (0.50, 0.05), "PLSR Local": (0.53, 0.05),
                              "GPR Local": (0.48, 0.05)})
    assert choose_winners(table, domains, CALIBRATION, rule=ONE_SE)[1]["s1"]["method"] == "PLSR Local"
    table, domains = _scored({"RS-LOCAL+PLSR g w": (0.50, 0.05), "RS-LOCAL+PLSR g": (0.52, 0.05),
                              "GPR Local": (0.49, 0.05)})
    assert choose_winners(table, domains, CALIBRATION, rule=ONE_SE)[1]["s1"]["method"] == "RS-LOCAL+PLSR g w"
    # a GP better than every linear model by more than one s.e. wins (as simple as a CNN)
    table, domains = _scored({"GPR Local": (0.40, 0.03), "PLSR Local": (0.55, 0.05)})
    assert choose_winners(table, domains, CALIBRATION, rule=ONE_SE)[1]["s1"]["method"] == "GPR Local"
    # the stack, the least simple, wins only when it is better by more than one s.e.
    table, domains = _scored({"Stack": (0.50, 0.04), "PLSR Local": (0.53, 0.05)})
    assert choose_winners(table, domains, CALIBRATION, rule=ONE_SE)[1]["s1"]["method"] == "PLSR Local"
    table, domains = _scored({"Stack": (0.40, 0.04), "PLSR Local": (0.53, 0.05)})
    assert choose_winners(table, domains, CALIBRATION, rule=ONE_SE)[1]["s1"]["method"] == "Stack"


def test_the_default_rule_serves_the_lowest_nested_rmse():
    """conf/base's rule: no one-s.e. step; the simplicity order only breaks exact ties."""
    table, domains = _scored({"DTL-Ig": (0.50, 0.05), "PLSR Local": (0.54, 0.06),
                              "Stack": (0.49, 0.05)})
    metrics, winners = choose_winners(table, domains, CALIBRATION)
    assert winners["s1"]["method"] == "Stack"
    assert winners["s1"]["candidates"] == ["Stack"]
    assert winners["s1"]["rule"] == WINNER_RULE == WINNER_RULES["lowest"]
    table, domains = _scored({"DTL-Ig": (0.50, 0.05), "PLSR Local": (0.50, 0.06)})
    assert choose_winners(table, domains, CALIBRATION)[1]["s1"]["method"] == "PLSR Local"


def test_an_unknown_rule_is_refused_with_the_known_ones():
    import pytest

    table, domains = _scored({"PLSR Local": (0.50, 0.05)})
    with pytest.raises(ValueError, match="simplest_within_one_se"):
        choose_winners(table, domains, CALIBRATION, rule="best_on_test")
