"""Prediction intervals: CV+, jackknife+, normalised and weighted conformal, clipping, and the
unchanged split-conformal-style half-width of ``conformal_halfwidth``."""

from __future__ import annotations

import math

import numpy as np
import pytest

from localsoc.uncertainty import (
    ShiftWeights,
    clip_interval,
    conformal_halfwidth,
    cv_plus_interval,
    interval_coverage,
    jackknife_plus_interval,
    normalized_halfwidths,
    split_conformal_coverage_law,
    weighted_conformal_halfwidth,
)

# A tiny CV+ example, n = 5 calibration samples in K = 2 folds, m = 2 new points.
Y_CAL = np.array([1.0, 2.0, 3.0, 4.0, 5.0])
OOF_CAL = np.array([1.5, 1.0, 3.25, 6.0, 3.5])  # R = |y - oof| = [0.5, 1.0, 0.25, 2.0, 1.5]
FOLD_OF_CAL = np.array([0, 1, 0, 1, 0])
FOLD_PREDICTIONS_NEW = np.array([[10.0, 20.0],   # fold model 0 at the two new points
                                 [11.0, 18.0]])  # fold model 1


def test_cv_plus_matches_a_hand_computation():
    # New point 1: mu_{-k(i)}(x) = [10, 11, 10, 11, 10]
    #   mu - R = [9.5, 10.0, 9.75, 9.0, 8.5]  -> sorted [8.5, 9.0, 9.5, 9.75, 10.0]
    #   mu + R = [10.5, 12.0, 10.25, 13.0, 11.5] -> sorted [10.25, 10.5, 11.5, 12.0, 13.0]
    # New point 2: mu_{-k(i)}(x) = [20, 18, 20, 18, 20]
    #   mu - R = [19.5, 17.0, 19.75, 16.0, 18.5] -> sorted [16.0, 17.0, 18.5, 19.5, 19.75]
    #   mu + R = [20.5, 19.0, 20.25, 20.0, 21.5] -> sorted [19.0, 20.0, 20.25, 20.5, 21.5]
    # level 0.6 (alpha 0.4): lower rank floor(0.4 * 6) = 2, upper rank ceil(0.6 * 6) = 4
    lower, upper = cv_plus_interval(Y_CAL, OOF_CAL, FOLD_OF_CAL, FOLD_PREDICTIONS_NEW, 0.6)
    np.testing.assert_array_equal(lower, [9.0, 17.0])
    np.testing.assert_array_equal(upper, [12.0, 20.5])
    # level 0.8 (alpha 0.2): lower rank floor(0.2 * 6) = 1, upper rank ceil(0.8 * 6) = 5
    lower, upper = cv_plus_interval(Y_CAL, OOF_CAL, FOLD_OF_CAL, FOLD_PREDICTIONS_NEW, 0.8)
    np.testing.assert_array_equal(lower, [8.5, 16.0])
    np.testing.assert_array_equal(upper, [13.0, 21.5])
    # level 0.5: both ranks 3 -> [9.5, 11.5] and [18.5, 20.25]
    lower, upper = cv_plus_interval(Y_CAL, OOF_CAL, FOLD_OF_CAL, FOLD_PREDICTIONS_NEW, 0.5)
    np.testing.assert_array_equal(lower, [9.5, 18.5])
    np.testing.assert_array_equal(upper, [11.5, 20.25])
    # level 0.9: upper rank ceil(0.9 * 6) = 6 > 5, lower rank 0 -> infinite both ways
    lower, upper = cv_plus_interval(Y_CAL, OOF_CAL, FOLD_OF_CAL, FOLD_PREDICTIONS_NEW, 0.9)
    assert np.all(np.isneginf(lower)) and np.all(np.isposinf(upper))
    # one new point given as a (K,) vector
    lower, upper = cv_plus_interval(Y_CAL, OOF_CAL, FOLD_OF_CAL, FOLD_PREDICTIONS_NEW[:, 0], 0.6)
    np.testing.assert_array_equal(lower, [9.0])
    np.testing.assert_array_equal(upper, [12.0])


def test_cv_plus_rejects_bad_inputs():
    with pytest.raises(ValueError, match="level"):
        cv_plus_interval(Y_CAL, OOF_CAL, FOLD_OF_CAL, FOLD_PREDICTIONS_NEW, 1.0)
    with pytest.raises(ValueError, match="fold indices"):
        cv_plus_interval(Y_CAL, OOF_CAL, FOLD_OF_CAL + 1, FOLD_PREDICTIONS_NEW, 0.6)
    with pytest.raises(ValueError, match="integer fold"):
        cv_plus_interval(Y_CAL, OOF_CAL, FOLD_OF_CAL.astype(float), FOLD_PREDICTIONS_NEW, 0.6)
    with pytest.raises(ValueError, match="equally long"):
        cv_plus_interval(Y_CAL[:4], OOF_CAL, FOLD_OF_CAL, FOLD_PREDICTIONS_NEW, 0.6)


def _jackknife_plus_by_loops(y, loo, loo_new, level):
    """Barber et al. (2021) eq. for the jackknife+, written out point by point."""
    n = len(y)
    alpha = 1 - level
    lower_rank = math.floor(round(alpha * (n + 1), 9))
    upper_rank = math.ceil(round((1 - alpha) * (n + 1), 9))
    lower, upper = [], []
    for j in range(loo_new.shape[1]):
        minus = sorted(loo_new[i, j] - abs(y[i] - loo[i]) for i in range(n))
        plus = sorted(loo_new[i, j] + abs(y[i] - loo[i]) for i in range(n))
        lower.append(minus[lower_rank - 1])
        upper.append(plus[upper_rank - 1])
    return np.array(lower), np.array(upper)


def test_jackknife_plus_is_cv_plus_with_one_point_per_fold():
    rng = np.random.default_rng(3)
    n, m = 19, 4
    y, loo = rng.normal(size=n), rng.normal(size=n)
    loo_new = rng.normal(size=(n, m))
    for level in (0.8, 0.85, 0.9):  # ranks (n + 1) * level = 16, 17, 18
        jack = jackknife_plus_interval(y, loo, loo_new, level)
        cv = cv_plus_interval(y, loo, np.arange(n), loo_new, level)
        np.testing.assert_array_equal(jack[0], cv[0])
        np.testing.assert_array_equal(jack[1], cv[1])
        by_loops = _jackknife_plus_by_loops(y, loo, loo_new, level)
        np.testing.assert_array_equal(jack[0], by_loops[0])
        np.testing.assert_array_equal(jack[1], by_loops[1])
    # Relabelling the samples (permuting rows and their leave-one-out models) changes nothing.
    order = rng.permutation(n)
    permuted = jackknife_plus_interval(y[order], loo[order], loo_new[order], 0.9)
    np.testing.assert_array_equal(permuted[0], jack[0])
    np.testing.assert_array_equal(permuted[1], jack[1])


def _least_squares(X, y):
    design = np.column_stack([np.ones(len(X)), X])
    return np.linalg.lstsq(design, y, rcond=None)[0]


def _predict(coef, X):
    return coef[0] + X @ coef[1:]


def test_cv_plus_covers_fresh_points_at_its_level():
    rng = np.random.default_rng(20210101)
    n, k, n_test, reps, level = 30, 5, 10, 600, 0.9
    beta = np.array([1.5, -2.0])
    covered, widths = [], []
    for _ in range(reps):
        X = rng.normal(size=(n, 2))
        y = 0.5 + X @ beta + rng.standard_t(df=4, size=n)
        X_new = rng.normal(size=(n_test, 2))
        y_new = 0.5 + X_new @ beta + rng.standard_t(df=4, size=n_test)
        folds = rng.permutation(np.arange(n) % k)
        oof = np.empty(n)
        fold_new = np.empty((k, n_test))
        for fold in range(k):
            held = folds == fold
            coef = _least_squares(X[~held], y[~held])
            oof[held] = _predict(coef, X[held])
            fold_new[fold] = _predict(coef, X_new)
        lower, upper = cv_plus_interval(y, oof, folds, fold_new, level)
        covered.append(interval_coverage(y_new, lower, upper))
        widths.append(np.mean(upper - lower))
    coverage = float(np.mean(covered))
    assert coverage >= level - 0.03, coverage
    assert coverage <= 0.97, coverage  # not trivially wide
    assert np.all(np.isfinite(widths))


def test_split_conformal_on_validation_samples_covers_where_kennard_stone_residuals_do_not():
    """The evaluate stage's validation interval: a model fitted on Kennard-Stone-like extremes,
    its half-width from m = 20 random validation samples of the field: coverage of new random
    samples between the level and level + 1/(m + 1) (+ simulation error). The same model's
    half-width from its out-of-fold residuals on the extremes misses the level by far (here it
    under-covers: a line fitted to the extremes of a curved relation is biased in the field's
    interior, which the extremes' own residuals do not show)."""
    rng = np.random.default_rng(20260204)
    n, m, n_new, reps, level = 30, 20, 50, 800, 0.9
    covered, covered_extremes = [], []
    for _ in range(reps):
        x = rng.normal(size=400)
        y = 1.0 + 0.8 * x + 0.3 * x**2 + rng.normal(scale=0.3, size=400)
        order = np.argsort(np.abs(x))
        extremes, interior = order[-n:], rng.permutation(order[:-n])
        validation, new = interior[:m], interior[m:m + n_new]
        coef = _least_squares(x[extremes, None], y[extremes])
        half = conformal_halfwidth(y[validation], _predict(coef, x[validation, None]), level)
        estimate = _predict(coef, x[new, None])
        covered.append(interval_coverage(y[new], estimate - half, estimate + half))
        oof = np.empty(n)
        folds = np.arange(n) % 5
        for fold in range(5):
            held = folds == fold
            fold_coef = _least_squares(x[extremes][~held, None], y[extremes][~held])
            oof[held] = _predict(fold_coef, x[extremes][held, None])
        half_ks = conformal_halfwidth(y[extremes], oof, level)
        covered_extremes.append(interval_coverage(y[new], estimate - half_ks, estimate + half_ks))
    coverage = float(np.mean(covered))
    assert level - 0.015 <= coverage <= level + 1 / (m + 1) + 0.015, coverage
    assert abs(float(np.mean(covered_extremes)) - level) > 0.3, np.mean(covered_extremes)


def test_coverage_law_matches_a_hand_computation():
    """m = 20 at 90 %: the half-width is the 19th smallest residual, and the covered share of
    the population is Beta(19, 2), whose CDF is 20 x^19 - 19 x^20 in closed form."""
    law = split_conformal_coverage_law(20, 0.9)
    assert (law.m, law.rank) == (20, 19)
    assert law.mean == pytest.approx(19 / 21)
    for quantile, value in ((0.05, law.q05), (0.95, law.q95)):
        assert 20 * value**19 - 19 * value**20 == pytest.approx(quantile, abs=1e-9)
    assert law.below(0.83) == pytest.approx(20 * 0.83**19 - 19 * 0.83**20)
    # m = 9 is the smallest finite 90 % interval: its largest residual, Beta(9, 1) = x^9
    assert split_conformal_coverage_law(9, 0.9).below(0.8) == pytest.approx(0.8**9)
    assert "Beta(19, 2)" in law.sentence() and "percentile 0.78-0.98" in law.sentence()
    for too_few in (0, 8):
        with pytest.raises(ValueError, match="too few"):
            split_conformal_coverage_law(too_few, 0.9)


def test_coverage_law_is_what_validation_draws_give():
    """Draw m validation residuals from a known population, compute the validation half-width,
    and measure the exact share of the population it covers: over many draws that share
    follows the law's quantiles (continuous residuals: no ties)."""
    rng = np.random.default_rng(7)
    m, level, reps = 20, 0.9, 4000
    law = split_conformal_coverage_law(m, level)
    shares = np.empty(reps)  # residuals |N(0, 1)|: the share +-h covers is erf(h / sqrt 2)
    for r in range(reps):
        residuals = np.abs(rng.normal(size=m))
        half = conformal_halfwidth(residuals, np.zeros(m), level)
        shares[r] = math.erf(half / math.sqrt(2))
    assert float(np.mean(shares)) == pytest.approx(law.mean, abs=0.004)
    assert float(np.quantile(shares, 0.05)) == pytest.approx(law.q05, abs=0.01)
    assert float(np.quantile(shares, 0.95)) == pytest.approx(law.q95, abs=0.005)
    assert float(np.mean(shares < 0.83)) == pytest.approx(law.below(0.83), abs=0.015)


def test_normalized_score_covers_under_heteroscedastic_noise():
    rng = np.random.default_rng(2018)
    n_train, n_cal, n_test, reps, level = 30, 30, 20, 500, 0.9

    def draw(size):
        x = rng.uniform(-2.0, 2.0, size=size)
        sigma = 0.1 + x**2  # known difficulty
        return x, 1.0 + 2.0 * x + sigma * rng.normal(size=size), sigma

    covered, covered_plain_hard, covered_hard = [], [], []
    for _ in range(reps):
        x_train, y_train, _ = draw(n_train)
        x_cal, y_cal, s_cal = draw(n_cal)
        x_new, y_new, s_new = draw(n_test)
        coef = _least_squares(x_train[:, None], y_train)
        est_cal, est_new = _predict(coef, x_cal[:, None]), _predict(coef, x_new[:, None])
        half = normalized_halfwidths(y_cal, est_cal, s_cal, s_new, level)
        inside = (y_new >= est_new - half) & (y_new <= est_new + half)
        plain = conformal_halfwidth(y_cal, est_cal, level)
        inside_plain = np.abs(y_new - est_new) <= plain
        hard = s_new > 2.0
        covered.append(inside.mean())
        covered_hard.extend(inside[hard])
        covered_plain_hard.extend(inside_plain[hard])
    assert float(np.mean(covered)) >= level - 0.03, np.mean(covered)
    # It adapts: on the hardest points the plain interval under-covers, the normalised does not.
    assert float(np.mean(covered_hard)) >= level - 0.05, np.mean(covered_hard)
    assert float(np.mean(covered_plain_hard)) < level - 0.1, np.mean(covered_plain_hard)


def test_normalized_halfwidths_guard_and_reduce_to_the_plain_score():
    y = np.array([0.0, 0.0, 0.0, 0.0])
    oof = np.array([1.0, -2.0, 3.0, 4.0])
    # Difficulties 1, 2, 0, -1 -> sigma = max(d, 0) + 0.01 * median([1, 2, 0, 0]) = d+ + 0.005
    # scores = [1/1.005, 2/2.005, 3/0.005, 4/0.005]; level 0.5: rank ceil(5 * 0.5) = 3 -> 600
    half = normalized_halfwidths(y, oof, [1.0, 2.0, 0.0, -1.0], [0.0, -5.0, 1.0], 0.5)
    np.testing.assert_allclose(half, [600 * 0.005, 600 * 0.005, 600 * 1.005])
    assert np.all(half > 0)
    # All difficulties zero -> sigma = 1 everywhere -> exactly conformal_halfwidth.
    half = normalized_halfwidths(y, oof, np.zeros(4), np.zeros(2), 0.5)
    np.testing.assert_array_equal(half, [conformal_halfwidth(y, oof, 0.5)] * 2)
    # A constant difficulty gives the plain half-width (up to rounding).
    half = normalized_halfwidths(y, oof, np.full(4, 0.3), np.full(3, 0.3), 0.5)
    np.testing.assert_allclose(half, conformal_halfwidth(y, oof, 0.5), rtol=1e-12)
    assert np.all(np.isinf(normalized_halfwidths(y, oof, np.ones(4), np.ones(2), 0.9)))
    with pytest.raises(ValueError, match="finite"):
        normalized_halfwidths(y, oof, [1.0, np.nan, 1.0, 1.0], [1.0], 0.5)
    with pytest.raises(ValueError, match="one value per calibration"):
        normalized_halfwidths(y, oof, [1.0, 1.0], [1.0], 0.5)


# Stored regression example for conformal_halfwidth: the values below were produced by the
# function as it was before this module gained CV+ (commit c7d16e7); they must not change.
STORED_OBSERVED = [2.31, 0.87, 1.54, 3.02, 0.66, 1.91, 2.48, 1.13, 0.95, 2.77, 1.68, 0.72, 1.36,
                   2.05, 1.49, 0.58, 3.31]
STORED_OOF = [2.05, 1.12, 1.49, 2.61, 0.94, 1.77, 2.83, 1.02, 1.21, 2.39, 1.75, 0.69, 1.58, 2.22,
              1.31, 0.91, 2.86]
STORED_HALFWIDTHS = {0.5: 0.2500000000000001, 0.7: 0.33000000000000007,
                     0.8: 0.3799999999999999, 0.9: 0.4500000000000002, 0.95: math.inf}


def test_conformal_halfwidth_keeps_its_old_values_bit_for_bit():
    for level, expected in STORED_HALFWIDTHS.items():
        assert conformal_halfwidth(STORED_OBSERVED, STORED_OOF, level) == expected, level


def test_weighted_quantile_with_equal_weights_is_the_unweighted_one():
    rng = np.random.default_rng(7)
    for n in (1, 5, 9, 17, 30, 101):
        residuals = np.abs(rng.normal(size=n))
        for level in (0.5, 0.7, 0.8, 0.9, 0.95):
            plain = conformal_halfwidth(residuals, np.zeros(n), level)
            assert weighted_conformal_halfwidth(residuals, np.ones(n), 1.0, level) == plain
            scaled = weighted_conformal_halfwidth(residuals, np.full(n, 0.25), 0.25, level)
            assert scaled == plain  # powers of two: the cumulative sums stay exact
    # A hand example: residuals 1..4 with weights 1, 1, 1, 5.
    # w_new = 1: total 9, target 0.5 * 9 = 4.5; cumulative [1, 2, 3, 8] -> first >= 4.5 is 4.
    # w_new = 10: total 18, target 9 > 8 -> the point mass at +inf -> inf.
    assert weighted_conformal_halfwidth([1, 2, 3, 4], [1, 1, 1, 5], 1.0, 0.5) == 4.0
    assert math.isinf(weighted_conformal_halfwidth([1, 2, 3, 4], [1, 1, 1, 5], 10.0, 0.5))
    both = weighted_conformal_halfwidth([4, 3, 2, 1], [5, 1, 1, 1], [1.0, 10.0], 0.5)
    np.testing.assert_array_equal(both, [4.0, np.inf])
    # Down-weighting the large residual moves the quantile down: w = (1, 1, 1, 0.1), w_new 0.1,
    # total 3.2, target 1.6 -> cumulative [1, 2, ...] -> 2.
    assert weighted_conformal_halfwidth([1, 2, 3, 4], [1, 1, 1, 0.1], 0.1, 0.5) == 2.0
    with pytest.raises(ValueError, match="non-negative"):
        weighted_conformal_halfwidth([1, 2], [1, -1], 1.0, 0.5)
    with pytest.raises(ValueError, match="all be zero"):
        weighted_conformal_halfwidth([1, 2], [0, 0], 0.0, 0.5)


def test_clip_interval_keeps_soc_non_negative():
    lower, upper = clip_interval([-1.0, 0.5, -3.0], [2.0, 1.0, -0.5])
    np.testing.assert_array_equal(lower, [0.0, 0.5, 0.0])
    np.testing.assert_array_equal(upper, [2.0, 1.0, 0.0])
    lower, upper = clip_interval([-1.0, 0.5], [2.0, 1.0], minimum=0.75)
    np.testing.assert_array_equal(lower, [0.75, 0.75])
    np.testing.assert_array_equal(upper, [2.0, 1.0])


def test_spectrum_difficulty_kinds():
    from localsoc.uncertainty import level_offset, spectrum_difficulty

    domain, estimate = np.array([1.0, 2.0, 1.5]), np.array([0.5, -1.0, 3.0])
    offset = level_offset([0.2, 0.4, -0.3, 1.0])  # median of (0.2, 0.4, 0, 1.0)
    assert offset == pytest.approx(0.3)
    np.testing.assert_array_equal(spectrum_difficulty("domain", domain, estimate, offset), domain)
    np.testing.assert_allclose(spectrum_difficulty("level", domain, estimate, offset),
                               [0.8, 0.3, 3.3])
    np.testing.assert_allclose(spectrum_difficulty("domain_level", domain, estimate, offset),
                               [0.8, 0.6, 4.95])
    assert level_offset([-1.0, 0.0]) == 1.0
    with pytest.raises(ValueError, match="unknown difficulty"):
        spectrum_difficulty("spread", domain, estimate, offset)


def _shifted_spectra(rng, scores):
    """20-band "spectra" whose first direction carries the score (what the classifier sees)."""
    pattern = np.sin(np.linspace(0, 3, 20))
    return scores[:, None] * pattern + 0.05 * rng.normal(size=(len(scores), 20))


def test_shift_weights_are_near_one_without_shift_and_favour_target_like_spectra():
    rng = np.random.default_rng(7)
    same = ShiftWeights.fit(_shifted_spectra(rng, rng.normal(size=200)),
                            _shifted_spectra(rng, rng.normal(size=200)), n_components=2)
    w = same(_shifted_spectra(rng, rng.normal(size=200)))
    assert 0.7 < float(np.median(w)) < 1.4
    # calibration spread wide (extremes), target narrow: central spectra weigh more
    shift = ShiftWeights.fit(_shifted_spectra(rng, rng.uniform(-3, 3, 300)),
                             _shifted_spectra(rng, rng.uniform(-1, 1, 300)), n_components=2)
    centre, edge = shift(_shifted_spectra(rng, np.zeros(5))), shift(_shifted_spectra(rng, np.full(5, 2.8)))
    assert centre.min() > 3 * edge.max()
    assert (shift(_shifted_spectra(rng, np.linspace(-3, 3, 50))) > 0).all()


def test_weighted_conformal_covers_the_target_under_covariate_shift():
    """Residuals grow with |x|; calibration x spread wide (as Kennard-Stone's extremes), the
    target x narrow: the unweighted quantile over-covers the target, the weighted one comes
    close to the level (the weights are estimated, so only approximately)."""
    rng = np.random.default_rng(2019)
    level, plain_cov, weighted_cov = 0.9, [], []
    for _ in range(60):
        x_cal, x_new = rng.uniform(-3, 3, 60), rng.normal(0, 0.8, 200)
        r_cal = (0.2 + np.abs(x_cal)) * rng.normal(size=60)
        r_new = (0.2 + np.abs(x_new)) * rng.normal(size=200)
        shift = ShiftWeights.fit(_shifted_spectra(rng, x_cal), _shifted_spectra(rng, x_new),
                                 n_components=2)
        half = weighted_conformal_halfwidth(np.abs(r_cal), shift(_shifted_spectra(rng, x_cal)),
                                            shift(_shifted_spectra(rng, x_new)), level)
        weighted_cov.append(np.mean(np.abs(r_new) <= half))
        plain_cov.append(np.mean(np.abs(r_new) <= conformal_halfwidth(np.abs(r_cal), 0 * r_cal,
                                                                      level)))
    assert float(np.mean(plain_cov)) > 0.97, np.mean(plain_cov)
    assert abs(float(np.mean(weighted_cov)) - level) < 0.04, np.mean(weighted_cov)
