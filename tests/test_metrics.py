"""Metrics, intervals and the applicability domain against hand-computed values."""

from __future__ import annotations

import math

import numpy as np
import pytest

from localsoc.metrics import all_metrics, delta_rmse, lins_ccc, mean_error, r2, rmse, rpiq
from localsoc.uncertainty import ApplicabilityDomain, conformal_halfwidth, interval_coverage

OBSERVED = [1.0, 2.0, 3.0, 4.0]
ESTIMATED = [1.5, 1.5, 3.5, 4.5]


def test_metrics_match_hand_computed_values():
    # errors: +0.5, -0.5, +0.5, +0.5
    assert rmse(OBSERVED, ESTIMATED) == pytest.approx(0.5)
    assert mean_error(OBSERVED, ESTIMATED) == pytest.approx(0.25)
    # SS_res = 4 * 0.25 = 1.0; SS_tot = 5.0
    assert r2(OBSERVED, ESTIMATED) == pytest.approx(0.8)
    # Q1 = 1.75, Q3 = 3.25 (linear quantiles) -> IQR 1.5 / RMSE 0.5
    assert rpiq(OBSERVED, ESTIMATED) == pytest.approx(3.0)
    # Lin's CCC by hand: mean_y = 2.5, mean_e = 2.75; var_y = 1.25, var_e = 1.6875;
    # cov = mean((y - 2.5) * (e - 2.75)) = (1.875 + 0.625 + 0.375 + 2.625) / 4 = 1.375
    # CCC = 2 * 1.375 / (1.25 + 1.6875 + 0.0625) = 2.75 / 3.0
    assert lins_ccc(OBSERVED, ESTIMATED) == pytest.approx(2.75 / 3.0)
    assert delta_rmse(0.46, 0.28) == pytest.approx((0.46 - 0.28) / 0.46 * 100)


def test_ccc_penalises_bias_that_pearson_ignores():
    y = np.array([1.0, 2.0, 3.0, 4.0])
    assert lins_ccc(y, y) == pytest.approx(1.0)
    assert np.corrcoef(y, y + 1)[0, 1] == pytest.approx(1.0)
    assert lins_ccc(y, y + 1) < 0.8


def test_metric_input_errors():
    with pytest.raises(ValueError, match="observed has 2 values but estimated has 3"):
        rmse([1, 2], [1, 2, 3])
    with pytest.raises(ValueError, match="finite"):
        rmse([1, np.nan], [1, 2])
    with pytest.raises(ValueError, match="positive"):
        delta_rmse(0.0, 1.0)
    assert set(all_metrics(OBSERVED, ESTIMATED)) == {"rmse", "me", "ccc", "r2", "rpiq"}


def test_conformal_halfwidth_is_the_right_order_statistic():
    observed = np.zeros(9)
    oof = np.arange(1, 10, dtype=float)  # |residuals| = 1..9
    # level 0.8: rank ceil(10 * 0.8) = 8 -> 8.0
    assert conformal_halfwidth(observed, oof, 0.8) == 8.0
    # level 0.95: rank ceil(10 * 0.95) = 10 > 9 -> infinite
    assert math.isinf(conformal_halfwidth(observed, oof, 0.95))
    with pytest.raises(ValueError, match="level"):
        conformal_halfwidth(observed, oof, 1.2)


def test_conformal_intervals_reach_their_level_on_exchangeable_data():
    rng = np.random.default_rng(0)
    coverage = []
    for _ in range(300):
        cal_resid = rng.normal(size=30)
        test_resid = rng.normal(size=200)
        half = conformal_halfwidth(cal_resid, np.zeros(30), 0.9)
        coverage.append(interval_coverage(test_resid, -half, half))
    assert 0.89 <= float(np.mean(coverage)) <= 0.95
    assert interval_coverage([1, 2, 3], [0, 2.5, 2], [1, 3, 4]) == pytest.approx(2 / 3)


def test_applicability_domain_flags_spectra_unlike_the_training_set():
    rng = np.random.default_rng(1)
    basis = rng.normal(size=(3, 50))
    train = rng.normal(size=(200, 3)) @ basis + 0.01 * rng.normal(size=(200, 50))
    domain = ApplicabilityDomain.fit(train, n_components=3, quantile=0.99)
    assert domain.in_domain(train).mean() >= 0.98
    similar = rng.normal(size=(50, 3)) @ basis + 0.01 * rng.normal(size=(50, 50))
    foreign = similar + rng.normal(size=(50, 50))  # new directions -> large Q
    assert domain.in_domain(similar).mean() > 0.8
    assert domain.in_domain(foreign).mean() < 0.1
    restored = ApplicabilityDomain.from_dict(domain.to_dict())
    assert np.array_equal(restored.in_domain(foreign), domain.in_domain(foreign))
