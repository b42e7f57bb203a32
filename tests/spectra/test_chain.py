"""Preprocessing chains with parameters: the configuration forms, the new steps' arithmetic
against plain references, clear errors, and MSC's reference fitted on training rows only."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import scipy.signal

from localsoc.data.schema import Grid, spectra_of
from localsoc.data.simulate import default_sites, simulate_ssl
from localsoc.pipelines.preprocess.nodes import fit_preprocessing, preprocess_table
from localsoc.spectra import (
    Detrend,
    MultiplicativeScatterCorrection,
    SavitzkyGolay,
)
from localsoc.spectra.absorbance import absorbance
from localsoc.spectra.steps import apply_steps, describe_steps, fit_steps, parse_steps

CHAIN = [{"absorbance": {}}, {"msc": {}}, {"savgol": {"window": 11, "polyorder": 2, "deriv": 1}},
         {"snv": {}}]


def _spectra(n: int = 40, bands: int = 120, seed: int = 0) -> np.ndarray:
    """Reflectance-like rows: one smooth shape under random gain, offset and noise."""
    rng = np.random.default_rng(seed)
    shape = 0.35 + 0.15 * np.sin(np.linspace(0, 4, bands)) + 0.1 * np.linspace(0, 1, bands)
    return (rng.uniform(0.8, 1.2, (n, 1)) * shape + rng.uniform(-0.03, 0.03, (n, 1))
            + rng.normal(0, 0.002, (n, bands)))


def test_bare_names_are_the_mapping_form_with_defaults():
    X = _spectra()
    bare = apply_steps(X, ["absorbance", "snv"])
    np.testing.assert_array_equal(bare, apply_steps(X, [{"absorbance": {}}, {"snv": None}]))
    np.testing.assert_array_equal(
        bare, apply_steps(X, [{"absorbance": {"base": 10.0}}, {"snv": {"ddof": 1}}]))
    assert describe_steps(["absorbance", "snv"]) == ["absorbance", "snv"]
    # the stored form reads back as itself
    assert parse_steps(parse_steps(CHAIN[2:])) == parse_steps(CHAIN[2:])


def test_the_default_parameters_file_is_todays_chain():
    from tests.conftest import load_params

    steps = load_params()["preprocess"]["steps"]
    assert [step["name"] for step in parse_steps(steps)] == ["absorbance", "snv"]


def test_savgol_is_the_exact_derivative_of_a_quadratic():
    bands = np.arange(50.0)
    X = np.vstack([0.001 * bands**2 + 0.1, 0.002 * bands**2 - 0.01 * bands + 0.3])
    first = apply_steps(X, [{"savgol": {"window": 7, "polyorder": 2, "deriv": 1}}])
    np.testing.assert_allclose(first, np.vstack([0.002 * bands, 0.004 * bands - 0.01]),
                               atol=1e-10)
    smooth = apply_steps(X, [{"savgol": {"window": 7, "polyorder": 2}}])
    np.testing.assert_allclose(smooth, X, atol=1e-12)


def test_detrend_of_order_one_is_scipys_linear_detrend():
    X = _spectra()
    np.testing.assert_allclose(apply_steps(X, [{"detrend": {"order": 1}}]),
                               scipy.signal.detrend(X, axis=1), atol=1e-12)
    quadratic = 0.2 + 0.05 * np.linspace(-1, 1, 30) ** 2
    np.testing.assert_allclose(apply_steps(quadratic[None, :], ["detrend"]), 0, atol=1e-12)


def test_msc_matches_a_per_spectrum_polyfit_on_the_mean():
    X = absorbance(_spectra())
    reference = X.mean(axis=0)
    expected = np.vstack([(row - b) / a for row in X
                          for a, b in [np.polyfit(reference, row, 1)]])
    chain = fit_steps(["msc"], X)
    np.testing.assert_allclose(chain[0]["state"]["reference"], reference, rtol=0, atol=1e-15)
    np.testing.assert_allclose(apply_steps(X, chain), expected, atol=1e-10)


@pytest.mark.parametrize("transformer, step", [
    (SavitzkyGolay(window=9, polyorder=3, deriv=2),
     {"savgol": {"window": 9, "polyorder": 3, "deriv": 2}}),
    (Detrend(order=1), {"detrend": {"order": 1}}),
    (MultiplicativeScatterCorrection(), "msc"),
])
def test_each_step_is_its_transformer(transformer, step):
    X = absorbance(_spectra())
    chain = fit_steps([step], X)
    np.testing.assert_array_equal(apply_steps(X, chain), transformer.fit(X).transform(X))


@pytest.mark.parametrize("steps, fragments", [
    ([{"savgol": {"windw": 11}}], ["step 0 ('savgol')", "unknown parameter(s) ['windw']",
                                   "deriv, polyorder, window"]),
    (["snv", {"savgol": {"window": 10}}], ["step 1 ('savgol')", "window must be an odd"]),
    ([{"savgol": {"window": 5, "polyorder": 2, "deriv": 3}}], ["'savgol'", "deriv must be"]),
    ([{"detrend": {"order": "2"}}], ["'detrend'", "order must be"]),
    ([{"msc": {"reference": [1, 2]}}], ["'msc'", "unknown parameter(s) ['reference']",
                                        "none"]),
    ([{"absorbance": {"base": 1}}], ["'absorbance'", "base must be"]),
    (["smooth"], ["unknown preprocessing step 'smooth'", "savgol"]),
    ([{"snv": {}, "savgol": {}}], ["step 0", "one-key mapping"]),
    ("snv", ["must be a list"]),
])
def test_bad_steps_name_the_step_and_the_key(steps, fragments):
    with pytest.raises(ValueError) as error:
        parse_steps(steps)
    for fragment in fragments:
        assert fragment in str(error.value)


def test_msc_must_be_fitted_before_it_is_applied():
    with pytest.raises(ValueError, match=r"step 1 \('msc'\) needs its state fitted on training"):
        apply_steps(_spectra(), ["absorbance", "msc"])


def test_msc_reference_comes_from_the_training_rows_only():
    """The preprocess stage fits MSC on the library only: the reference is the mean of the
    library's absorbance, whatever the site rows hold, and site rows are corrected against it."""
    library, sites = simulate_ssl(global_size=120, seed=3, grid=Grid(400, 2500, 20),
                                  sites=default_sites()[:1], country_sizes={})
    params = {"steps": CHAIN}
    preprocessing = fit_preprocessing(library, params)
    reference = np.asarray(preprocessing["steps"][1]["state"]["reference"])
    np.testing.assert_allclose(reference, absorbance(spectra_of(library)).mean(axis=0),
                               rtol=0, atol=1e-12)
    everything = absorbance(np.vstack([spectra_of(library), spectra_of(sites)])).mean(axis=0)
    assert np.abs(reference - everything).max() > 1e-4  # the site rows would move it
    assert preprocessing["fitted_on"] == "library_ssl"
    assert preprocessing["fitted_on_rows"] == len(library)
    # the sites are corrected against the library's reference, row by row
    site_spectra = preprocess_table(sites, preprocessing)
    assert isinstance(site_spectra, pd.DataFrame)
    np.testing.assert_array_equal(spectra_of(site_spectra),
                                  apply_steps(spectra_of(sites), preprocessing["steps"]))
    one_row = preprocess_table(sites.iloc[:1], preprocessing)
    np.testing.assert_allclose(spectra_of(one_row), spectra_of(site_spectra)[:1], atol=1e-12)


def test_the_preprocess_stage_fits_the_chain_on_the_library_alone():
    from localsoc.pipelines.preprocess import create_pipeline

    (node,) = [n for n in create_pipeline().nodes if n.name == "fit_preprocessing"]
    assert node.inputs == ["library_ssl", "params:preprocess"]
    users = {n.name: n.inputs for n in create_pipeline().nodes if "preprocessing" in n.inputs}
    assert set(users) == {"preprocess_library", "preprocess_sites"}
