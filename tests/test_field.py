"""The field summary (``localsoc.field``): its arithmetic, and the coverage of its field-mean
interval over simulated fields.

The simulation is not tailored to the method. Each field has its own SOC-spectra relationship
(intercept and slopes unlike the library's), so a model trained mostly on the library has a
bias shared by all the field's estimates; SOC is log-normal and the model linear, so the errors
grow with the SOC level (heteroscedastic) and depend on the spectra. The model is the one the
study serves for CV+: K fold models, each a ridge regression on the library plus the calibration
samples outside its fold; the residuals are those fold models' out-of-fold errors; the served
estimate is the mean of the fold models. The calibration samples are drawn at random from the
scanned samples, or picked by Kennard-Stone from their "spectra" (the study's choice).
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats

from localsoc.field import ALL, difference_mean, field_summary, summary_table

LEVEL = 0.9
N_FIELDS = 600
N_FEATURES = 6
N_LIBRARY = 300
N_POPULATION = 20_000  # the field's soil, of which N_SCANNED samples are scanned
N_SCANNED = 120
N_CALIBRATION = 30
K = 5
RIDGE = 1.0
CALIBRATION_WEIGHT = 4.0  # the local samples count more than library ones (spiking)


def _ridge(X, y, weights):
    design = np.column_stack([np.ones(len(X)), X])
    penalty = RIDGE * np.eye(design.shape[1])
    penalty[0, 0] = 0.0
    scaled = design * weights[:, None]
    return np.linalg.solve(design.T @ scaled + penalty, scaled.T @ y)


def _predict(coef, X):
    return coef[0] + X @ coef[1:]


def simulate_field(rng, library, kennard_stone: bool):
    """(estimates of the scanned samples, signed out-of-fold calibration residuals, true mean of
    the field, true mean of the scanned samples)."""
    X_lib, y_lib, beta_lib = library
    centre = rng.normal(0.0, 0.6, N_FEATURES)
    beta = beta_lib + rng.normal(0.0, 0.08, N_FEATURES)  # the field's own relationship
    intercept = rng.normal(0.5, 0.25)
    X = centre + rng.normal(0.0, 0.7, (N_POPULATION, N_FEATURES))
    y = np.exp(intercept + X @ beta + rng.normal(0.0, 0.2, N_POPULATION))
    scanned = rng.choice(N_POPULATION, N_SCANNED, replace=False)
    X_s, y_s = X[scanned], y[scanned]
    if kennard_stone:
        from localsoc.selection import KennardStone

        cal = KennardStone(n_select=N_CALIBRATION, backend="numpy").fit(X_s).selected_indices_
    else:
        cal = rng.choice(N_SCANNED, N_CALIBRATION, replace=False)
    cal = np.asarray(cal)
    folds = rng.permutation(np.arange(N_CALIBRATION) % K)
    residuals = np.empty(N_CALIBRATION)
    served = np.zeros(N_SCANNED)
    for k in range(K):
        train = cal[folds != k]
        X_train = np.vstack([X_lib, X_s[train]])
        y_train = np.concatenate([y_lib, y_s[train]])
        weights = np.concatenate([np.ones(len(y_lib)), np.full(train.size, CALIBRATION_WEIGHT)])
        coef = _ridge(X_train, y_train, weights)
        held = cal[folds == k]
        residuals[folds == k] = y_s[held] - _predict(coef, X_s[held])
        served += _predict(coef, X_s) / K
    return served, residuals, float(y.mean()), float(y_s.mean())


def _library(rng):
    beta = rng.normal(0.0, 0.25, N_FEATURES)
    X = rng.normal(0.0, 1.0, (N_LIBRARY, N_FEATURES))
    y = np.exp(0.5 + X @ beta + rng.normal(0.0, 0.2, N_LIBRARY))
    return X, y, beta


def coverage(kennard_stone: bool, seed: int) -> dict:
    rng = np.random.default_rng(seed)
    library = _library(rng)
    hits = {"field": [], "samples": [], "naive": []}
    biases, widths = [], []
    for _ in range(N_FIELDS):
        served, residuals, field_mean, scanned_mean = simulate_field(rng, library, kennard_stone)
        for target, truth in (("field", field_mean), ("samples", scanned_mean)):
            summary = field_summary(served, residuals, LEVEL, target=target)[0]
            hits[target].append(summary.soc.lower <= truth <= summary.soc.upper)
            if target == "field":
                widths.append(summary.soc.upper - summary.soc.lower)
        # the interval of the estimates' spread alone (no model error): what the method fixes
        half = stats.t.ppf((1 + LEVEL) / 2, N_SCANNED - 1) * served.std(ddof=1) / math.sqrt(
            N_SCANNED)
        hits["naive"].append(abs(served.mean() - field_mean) <= half)
        biases.append(served.mean() - field_mean)
    return {"coverage": {key: float(np.mean(value)) for key, value in hits.items()},
            "rms_bias": float(np.sqrt(np.mean(np.square(biases)))),
            "mean_width": float(np.mean(widths))}


@pytest.mark.parametrize(("kennard_stone", "seed"), [(False, 11), (True, 12)],
                         ids=["random_calibration", "kennard_stone_calibration"])
def test_field_mean_interval_covers_the_true_mean(kennard_stone, seed):
    result = coverage(kennard_stone, seed)
    print(f"\nfield summary coverage at {LEVEL:.0%} over {N_FIELDS} fields "
          f"({'Kennard-Stone' if kennard_stone else 'random'} calibration): {result}")
    covered = result["coverage"]
    # nominal minus 3 points, for both targets
    assert covered["field"] >= LEVEL - 0.03, result
    assert covered["samples"] >= LEVEL - 0.03, result
    # the simulated model has a real shared bias: the estimates' spread alone misses it
    assert covered["naive"] < 0.6, result
    # and the interval is not trivially wide (a few times the model's bias, not the SOC range)
    assert result["mean_width"] < 6 * result["rms_bias"], result


def test_difference_mean_arithmetic():
    estimates = np.array([1.0, 2.0, 3.0, 4.0])
    residuals = np.array([0.5, -0.1, 0.3, 0.1])
    result = difference_mean(estimates, residuals, 0.9)
    assert result.mean_estimate == pytest.approx(2.5)
    assert result.bias_correction == pytest.approx(0.2)
    assert result.estimate == pytest.approx(2.7)
    sampling = np.var(estimates, ddof=1) / 4
    model = np.var(residuals, ddof=1) / 4
    df = (sampling + model) ** 2 / (sampling**2 / 3 + model**2 / 3)
    half = stats.t.ppf(0.95, df) * math.sqrt(sampling + model)
    assert (result.lower, result.upper) == pytest.approx((2.7 - half, 2.7 + half))
    samples = difference_mean(estimates, residuals, 0.9, fraction=1.0)
    assert samples.sampling_se == 0.0
    assert samples.model_se == pytest.approx(math.sqrt(np.var(residuals, ddof=1) * (1 / 4 + 1 / 4)))
    assert samples.df == pytest.approx(3.0)


def test_strata_and_stock():
    rng = np.random.default_rng(0)
    estimates = rng.uniform(1, 3, 40)
    residuals = rng.normal(0.1, 0.3, 30)
    strata = ["a"] * 20 + ["b"] * 19 + [None]
    density = np.full(40, 1.2)
    depth = np.full(40, 30.0)
    summaries = field_summary(estimates, residuals, 0.9, strata=strata,
                              bulk_density_g_cm3=density, depth_cm=depth)
    assert [s.stratum for s in summaries] == [ALL, "a", "b"]
    assert [s.n_samples for s in summaries] == [40, 20, 19]
    assert summaries[1].soc.mean_estimate == pytest.approx(estimates[:20].mean())
    for summary in summaries:  # a constant bulk density x depth scales the SOC mean
        assert summary.stock.estimate == pytest.approx(36.0 * summary.soc.estimate)
        assert summary.stock.upper == pytest.approx(36.0 * summary.soc.upper)
    depth[3] = np.nan
    partial = field_summary(estimates, residuals, 0.9, bulk_density_g_cm3=density,
                            depth_cm=depth)[0]
    assert partial.stock is None and "1 of 40" in partial.stock_note
    table = summary_table(summaries)
    assert list(table["stratum"]) == [ALL, "a", "b"]


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"estimates": [1.0], "residuals": [0.1, 0.2]}, "at least 2 spectra"),
    ({"estimates": [1.0, 2.0], "residuals": [0.1]}, ">= 2 calibration residuals"),
    ({"estimates": [1.0, np.nan], "residuals": [0.1, 0.2]}, r"estimates\[1\]"),
])
def test_bad_input_says_what_to_fix(kwargs, message):
    with pytest.raises(ValueError, match=message):
        field_summary(**kwargs)


def test_a_stratum_of_one_sample_has_no_interval_and_stops_nothing():
    """A one-sample stratum is reported (its estimate) without an interval; the field and the
    other strata keep theirs."""
    rng = np.random.default_rng(3)
    estimates = rng.normal(2.0, 0.5, 12)
    residuals = rng.normal(0.1, 0.3, 30)
    strata = ["a"] * 6 + ["b"] * 5 + ["lone"]
    summaries = {s.stratum: s for s in field_summary(estimates, residuals, strata=strata)}
    assert set(summaries) == {ALL, "a", "b", "lone"}
    lone = summaries["lone"]
    assert lone.n_samples == 1 and math.isnan(lone.soc.lower) and math.isnan(lone.soc.upper)
    assert lone.soc.estimate == pytest.approx(estimates[-1] + residuals.mean())
    assert "1 sample" in lone.stock_note
    for name in (ALL, "a", "b"):
        assert summaries[name].soc.lower < summaries[name].soc.upper


def _field(n=12, seed=4):
    rng = np.random.default_rng(seed)
    return rng.normal(2.0, 0.5, n), rng.normal(0.1, 0.3, 30)


def test_a_stratum_named_all_is_refused_not_summarised_twice():
    estimates, residuals = _field()
    with pytest.raises(ValueError, match=r"stratum\[6\] is 'all'.*rename"):
        field_summary(estimates, residuals, strata=["a"] * 6 + [" all"] * 6)


@pytest.mark.parametrize("blank", ["", "  ", None])
def test_samples_without_a_stratum_label_are_counted_and_said(blank):
    estimates, residuals = _field()
    summaries = field_summary(estimates, residuals, strata=["a"] * 8 + [blank] * 4)
    assert [(s.stratum, s.n_samples) for s in summaries] == [(ALL, 12), ("a", 8)]
    assert summaries[0].notes == ("4 of 12 samples have no stratum label: they count in the "
                                  "whole field only",)
    assert "4 of 12 samples have no stratum label" in summary_table(summaries)["notes"][0]
    assert summaries[1].notes == ()


@pytest.mark.parametrize(("density", "depth", "note"), [
    (1.2, None, "no depth_cm column (bulk_density_g_cm3 is given)"),
    (None, 30.0, "no bulk_density_g_cm3 column (depth_cm is given)"),
    (None, None, "no bulk_density_g_cm3 and no depth_cm column"),
])
def test_the_stock_note_names_only_what_is_missing(density, depth, note):
    estimates, residuals = _field()
    summary = field_summary(estimates, residuals,
                            bulk_density_g_cm3=None if density is None else [density] * 12,
                            depth_cm=None if depth is None else [depth] * 12)[0]
    assert summary.stock is None and summary.stock_note == note


def test_missing_stock_values_are_named_per_column():
    estimates, residuals = _field()
    density, depth = np.full(12, 1.2), np.full(12, 30.0)
    density[[1, 2]] = np.nan
    summary = field_summary(estimates, residuals, bulk_density_g_cm3=density, depth_cm=depth)[0]
    assert summary.stock_note == "2 of 12 samples lack bulk_density_g_cm3"


def test_a_field_mostly_outside_the_models_domain_gets_no_summary():
    """Reflectance declared as absorbance: every spectrum outside the domain. The summary is
    refused with the count and the likely cause (issue 27, item 4)."""
    from localsoc.field import OutOfDomainError

    estimates, residuals = _field()
    with pytest.raises(OutOfDomainError, match=r"7 of 12 spectra are outside the model's "
                                               r"domain.*units are declared wrongly"):
        field_summary(estimates, residuals, in_domain=[True] * 5 + [False] * 7)
    half = field_summary(estimates, residuals, in_domain=[True] * 6 + [False] * 6)
    assert half[0].n_out_of_domain == 6 and half[0].soc.lower < half[0].soc.upper


def test_a_stratum_mostly_outside_the_domain_is_marked_unusable():
    estimates, residuals = _field()
    flags = [True] * 9 + [False] * 3
    summaries = {s.stratum: s for s in field_summary(
        estimates, residuals, strata=["a"] * 8 + ["b"] * 4, in_domain=flags)}
    outside = summaries["b"]
    assert outside.n_out_of_domain == 3 and math.isnan(outside.soc.lower)
    assert outside.notes == ("unusable: 3 of 4 spectra outside the model's domain (no interval)",)
    assert summaries["a"].n_out_of_domain == 0 and summaries["a"].notes == ()
    assert summaries[ALL].n_out_of_domain == 3


def test_rows_gain_domain_and_notes_columns_only_when_they_say_something():
    """The report's table (rows without domain flags or notes) keeps its columns."""
    estimates, residuals = _field()
    plain = field_summary(estimates, residuals)[0].row()
    assert "n_out_of_domain" not in plain and "notes" not in plain
    flagged = field_summary(estimates, residuals, in_domain=[True] * 12)[0].row()
    assert flagged["n_out_of_domain"] == 0 and "notes" not in flagged
