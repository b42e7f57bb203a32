"""The change between two campaigns (``localsoc.change``): simulated coverage and power.

Each simulated field pair has a skewed SOC distribution, a known true change of the field mean,
and a model whose errors share a bias over the field (drawn per field and model) and grow
with SOC (sd 0.04 + 0.08 x SOC), with a part that stays with a location across campaigns. The
90 % interval of ``change_parts`` + ``t_interval`` (the code ``change_interval`` runs, over
replicates at once) must cover the true change in 0.87-0.93 of the pairs; intervals that ignore
the model's error, or treat paired campaigns as independent, are shown to miscover or to be
needlessly wide. Run with ``-s`` to see the table.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from localsoc.change import (
    Campaign,
    Component,
    change_interval,
    change_parts,
    change_summary,
    detectable_change,
    later_campaign_size,
    pair_locations,
    spectral_drift,
    t_interval,
)
from localsoc.field import ALL, OutOfDomainError, difference_mean

PAIRS = 1000  # field pairs per case
N_BASELINE, N_LATER, N_RESIDUALS = 40, 40, 20
TRUE_CHANGE = 0.15  # SOC %, of the field mean
LEVEL = 0.9


def soc(rng, shape) -> np.ndarray:
    """True SOC % of random locations of a field (log-normal, median 1.6 %)."""
    return np.exp(rng.normal(math.log(1.6), 0.3, shape))


def errors(rng, y: np.ndarray, bias: np.ndarray, persistent: np.ndarray | None = None):
    """Signed model errors (observed - estimated): the field's shared bias + an error growing
    with SOC, half of whose variance stays with the location when ``persistent`` is given."""
    z = rng.standard_normal(y.shape)
    if persistent is not None:
        z = math.sqrt(0.5) * persistent + math.sqrt(0.5) * z
    return bias[:, None] + (0.04 + 0.08 * y) * z


def simulate(design: str, two_models: bool, seed: int, pairs: int = PAIRS,
             change: float = TRUE_CHANGE, n_baseline: int = N_BASELINE,
             n_later: int = N_LATER, n_residuals: int = N_RESIDUALS) -> dict:
    """Estimates and residuals of ``pairs`` simulated field pairs (rows)."""
    rng = np.random.default_rng(seed)
    bias_a = rng.normal(0.2, 0.15, pairs)
    bias_b = rng.normal(-0.1, 0.15, pairs) if two_models else bias_a
    y_b = soc(rng, (pairs, n_baseline))
    persistent = rng.standard_normal(y_b.shape)
    if design == "paired":
        y_l = y_b + change + rng.normal(0, 0.08, y_b.shape)
        later_persistent = persistent
    else:
        y_l = soc(rng, (pairs, n_later)) + change + rng.normal(0, 0.08, (pairs, n_later))
        later_persistent = rng.standard_normal(y_l.shape)
    yhat_b = y_b - errors(rng, y_b, bias_a, persistent)
    yhat_l = y_l - errors(rng, y_l, bias_b, later_persistent)
    # validation residuals: random samples of the field when each model was calibrated
    e_a = errors(rng, soc(rng, (pairs, n_residuals)), bias_a)
    e_b = errors(rng, soc(rng, (pairs, n_residuals)) + change, bias_b) if two_models else None
    return {"yhat_b": yhat_b, "yhat_l": yhat_l, "e_a": e_a, "e_b": e_b, "design": design}


def interval(sim: dict, design: str | None = None, model_error: bool = True,
             correct_bias: bool = True, level: float = LEVEL):
    """(estimate, lower, upper) per pair; the variants drop parts of the estimator."""
    t_b, t_l, components = change_parts(sim["yhat_b"], sim["yhat_l"], sim["e_a"], sim["e_b"],
                                        design=design or sim["design"])
    estimate = t_l - t_b if correct_bias else sim["yhat_l"].mean(1) - sim["yhat_b"].mean(1)
    if not model_error:
        components = [c for c in components if "model" not in c.name]
    lower, upper, _ = t_interval(estimate, components, level)
    return estimate, lower, upper


def coverage(lower, upper, truth: float = TRUE_CHANGE) -> float:
    return float(np.mean((lower <= truth) & (truth <= upper)))


def field_summaries_differenced(sim: dict):
    """The naive way with one model: two field summaries (``localsoc.field``), each with the
    model's error, differenced with their variances added (the shared bias counted twice)."""
    rows = []
    for yhat_b, yhat_l, e in zip(sim["yhat_b"][:200], sim["yhat_l"][:200], sim["e_a"][:200],
                                 strict=True):
        b, lat = difference_mean(yhat_b, e, LEVEL), difference_mean(yhat_l, e, LEVEL)
        se = math.hypot(b.sampling_se, b.model_se, lat.sampling_se, lat.model_se)
        half = stats.norm.ppf((1 + LEVEL) / 2) * se
        rows.append((lat.estimate - b.estimate - half, lat.estimate - b.estimate + half))
    return np.array(rows).T


CASES = [("paired", False, 1), ("independent", False, 2), ("paired", True, 3),
         ("independent", True, 4)]


@pytest.mark.parametrize(("design", "two_models", "seed"), CASES,
                         ids=[f"{d}-{'two' if t else 'one'}-model" for d, t, _ in CASES])
def test_the_interval_covers_the_true_change(design, two_models, seed):
    sim = simulate(design, two_models, seed)
    _, lower, upper = interval(sim)
    measured = coverage(lower, upper)
    print(f"\n{design}, {'two models' if two_models else 'one model'}: coverage {measured:.3f}"
          f" of {PAIRS} field pairs, mean width {np.mean(upper - lower):.3f}")
    assert 0.87 <= measured <= 0.93


def test_leaving_out_the_model_error_or_the_pairing_miscovers_or_widens():
    """What the estimator's parts are for, printed: each variant against the full one."""
    rows = []
    paired_one, paired_two = simulate("paired", False, 11), simulate("paired", True, 12)
    for name, sim, options in (
            ("paired, one model", paired_one, {}),
            ("  as independent (Welch)", paired_one, {"design": "independent"}),
            ("two models", paired_two, {}),
            ("  no model variance", paired_two, {"model_error": False}),
            ("  no model error at all", paired_two, {"model_error": False,
                                                     "correct_bias": False})):
        _, lower, upper = interval(sim, **options)
        rows.append({"interval": name, "coverage": coverage(lower, upper),
                     "mean width": float(np.mean(upper - lower))})
    lower, upper = field_summaries_differenced(paired_one)
    rows.insert(2, {"interval": "  two field summaries differenced", "coverage":
                    coverage(lower, upper), "mean width": float(np.mean(upper - lower))})
    table = pd.DataFrame(rows).set_index("interval")
    print("\n" + table.to_string(float_format="{:.3f}".format))
    full = table.loc["paired, one model"]
    welch = table.loc["  as independent (Welch)"]
    assert welch["coverage"] > 0.97 and welch["mean width"] > 1.5 * full["mean width"]
    summaries = table.loc["  two field summaries differenced"]
    assert summaries["mean width"] > 1.5 * full["mean width"]
    assert table.loc["  no model variance", "coverage"] < 0.8
    assert table.loc["  no model error at all", "coverage"] < 0.5


def _true_components(design: str, two_models: bool, change: float) -> list[Component]:
    """The variance components of the change with the population's variances (what a plan
    takes as known), from one simulated field pair of 200,000 samples a campaign."""
    big = 200_000
    sim = simulate(design, two_models, 99, pairs=1, change=change, n_baseline=big, n_later=big,
                   n_residuals=big)
    if design == "paired":
        sampling = [Component("paired differences", float(np.var(sim["yhat_l"] - sim["yhat_b"]))
                              / N_BASELINE, N_BASELINE - 1)]
    else:
        sampling = [Component(f"{name} sampling", float(np.var(sim[key])) / size, size - 1)
                    for name, key, size in (("baseline", "yhat_b", N_BASELINE),
                                            ("later", "yhat_l", N_LATER))]
    model = ([Component(f"{name} model", float(np.var(sim[key])) / N_RESIDUALS,
                        N_RESIDUALS - 1) for name, key in (("baseline", "e_a"), ("later", "e_b"))]
             if two_models else [])
    return sampling + model


@pytest.mark.parametrize(("design", "two_models"), [("independent", False), ("paired", True)])
def test_the_detectable_change_has_the_stated_power(design, two_models):
    """At the detectable change the one-sided 5 % test rejects 'no change' in 80 % of
    simulated pairs (within 0.05); the power curve around it is printed."""
    mdc = detectable_change(_true_components(design, two_models, TRUE_CHANGE))
    curve = {}
    for factor in (0.5, 1.0, 1.5):
        sim = simulate(design, two_models, 21, pairs=4000, change=factor * mdc)
        t_b, t_l, components = change_parts(sim["yhat_b"], sim["yhat_l"], sim["e_a"],
                                            sim["e_b"], design=design)
        lower, _, _ = t_interval(t_l - t_b, components, level=1 - 2 * 0.05)
        curve[factor] = float(np.mean(lower > 0))  # the one-sided 5 % test rejects
    print(f"\n{design}, {'two models' if two_models else 'one model'}: detectable change "
          f"{mdc:.3f} % SOC; power at 0.5/1/1.5 x: "
          + ", ".join(f"{p:.3f}" for p in curve.values()))
    assert abs(curve[1.0] - 0.8) <= 0.05
    assert curve[0.5] < curve[1.0] < curve[1.5]


def test_change_interval_states_its_parts():
    rng = np.random.default_rng(0)
    baseline = rng.normal(1.5, 0.3, 30)
    later = baseline + 0.2 + rng.normal(0, 0.05, 30)
    residuals = rng.normal(0.1, 0.2, 20)
    one = change_interval(baseline, later, residuals, design="paired")
    assert one.bias_correction == pytest.approx(0.0) and one.model_se == 0.0
    assert one.estimate == pytest.approx(np.mean(later - baseline))
    assert one.df == pytest.approx(29)
    two = change_interval(baseline, later, residuals, residuals + 0.3, design="paired")
    assert two.bias_correction == pytest.approx(0.3)
    assert two.model_se == pytest.approx(math.sqrt(2 * np.var(residuals, ddof=1) / 20))
    assert two.upper - two.lower > one.upper - one.lower
    # a stock: the bias correction stays as far as the mean weights differ
    weights_b, weights_l = np.full(30, 1.3 * 30), np.full(30, 1.2 * 30)
    stock = change_interval(baseline, later, residuals, design="paired",
                            baseline_weights=weights_b, later_weights=weights_l)
    assert stock.bias_correction == pytest.approx((36.0 - 39.0) * residuals.mean())
    assert stock.model_se == pytest.approx(3.0 * residuals.std(ddof=1) / math.sqrt(20))


def test_a_later_campaign_is_sized_for_its_target():
    rng = np.random.default_rng(1)
    baseline, residuals = rng.normal(1.5, 0.3, 40), rng.normal(0.0, 0.2, 20)
    needed, table = later_campaign_size(baseline, residuals, 0.2)
    assert table.set_index("n_later").loc[needed, "detectable_change"] <= 0.2
    smaller = later_campaign_size(baseline, residuals, 0.2)[1]
    assert (smaller["detectable_change"].diff().dropna() < 0).all()
    paired, _ = later_campaign_size(baseline, residuals, 0.2, design="paired", correlation=0.8)
    assert paired < needed
    assert later_campaign_size(baseline, residuals, 0.001, design="paired")[0] is None


def test_locations_pair_by_id_and_by_coordinates():
    baseline = pd.DataFrame({"sample_id": ["a", "b", "c"], "lat": [50.0, 50.001, 50.002],
                             "lon": [4.0, 4.0, 4.0]})
    later = pd.DataFrame({"sample_id": ["c", "a", "x"], "lat": [50.00201, 50.0, 51.0],
                          "lon": [4.0, 4.00005, 4.0]})
    rows_b, rows_l, note = pair_locations(baseline, later, "id")
    assert rows_b.tolist() == [0, 2] and rows_l.tolist() == [1, 0]
    assert "1 of 3 baseline" in note and "1 of 3 later" in note
    rows_b, rows_l, _ = pair_locations(baseline, later, "coordinates")
    assert rows_b.tolist() == [0, 2] and rows_l.tolist() == [1, 0]
    with pytest.raises(ValueError, match=r"sample_id 'a' \(row 1\)"):
        pair_locations(baseline.assign(sample_id=["a", "a", "c"]), later, "id")
    with pytest.raises(ValueError, match="no lat values"):
        pair_locations(baseline.drop(columns="lat"), later, "coordinates")


def test_spectral_drift_is_flagged_and_a_campaign_mostly_outside_is_refused():
    rng = np.random.default_rng(2)
    q_b = rng.gamma(4.0, 0.1, 40)
    assert not spectral_drift(q_b, q_b * rng.uniform(0.9, 1.1, 40), paired=True).flagged
    assert spectral_drift(q_b, q_b * 1.5, paired=True).flagged
    assert spectral_drift(q_b, rng.gamma(4.0, 0.15, 40), paired=False).flagged
    estimates = rng.normal(1.5, 0.3, 40)
    residuals = rng.normal(0, 0.2, 20)
    baseline = Campaign(estimates, residuals, "m", q=q_b, in_domain=np.ones(40, bool),
                        strata=["n", "s"] * 20)
    later = Campaign(estimates + 0.1, residuals, "m", q=q_b * 1.5,
                     in_domain=np.arange(40) >= 5, strata=["n", "s"] * 20)
    summaries = change_summary(baseline, later, design="paired")
    assert [s.stratum for s in summaries] == [ALL, "n", "s"]
    whole = summaries[0]
    assert "spectral_drift" in whole.flags and whole.n_out_of_domain_later == 5
    assert any("drifted" in note for note in whole.notes)
    assert whole.soc.estimate == pytest.approx(0.1)
    outside = Campaign(estimates + 0.1, residuals, "m", in_domain=np.arange(40) >= 30)
    with pytest.raises(OutOfDomainError, match="30 of 40 later spectra"):
        change_summary(baseline, outside, design="paired")


def test_the_change_table_renders_as_a_report_section():
    from localsoc.change import markdown_section, summary_table

    rng = np.random.default_rng(4)
    estimates = rng.normal(1.5, 0.3, 30)
    residuals = rng.normal(0, 0.2, 20)
    summaries = change_summary(
        Campaign(estimates, residuals, "m", strata=["n", "s"] * 15,
                 bulk_density_g_cm3=np.full(30, 1.3), depth_cm=np.full(30, 30.0)),
        Campaign(estimates + 0.2, residuals, "m", bulk_density_g_cm3=np.full(30, 1.3),
                 depth_cm=np.full(30, 30.0)), design="paired")
    text = markdown_section(summary_table(summaries), "field_x")
    assert text.startswith("## Change: field_x")
    rows = [line for line in text.splitlines() if line.startswith("| ") and "stratum" not in line]
    assert [row.split(" | ")[0] for row in rows] == ["| all", "| n", "| s"]
    assert "+0.200" in rows[0] and "+7.80" in rows[0]  # 0.2 % x 1.3 g/cm3 x 30 cm
