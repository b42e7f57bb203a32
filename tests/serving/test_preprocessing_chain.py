"""A preprocessing chain with parameters and fitted state (MSC) through package, bundle and the
service's predictor: the served estimates are the evaluate stage's."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from localsoc.data.schema import Grid, spectra_of, wavelengths_of
from localsoc.data.simulate import default_sites, simulate_ssl
from localsoc.pipelines.evaluate.nodes import evaluate_sites
from localsoc.pipelines.package.nodes import package_winners
from localsoc.pipelines.preprocess.nodes import fit_preprocessing, preprocess_table
from localsoc.serving.bundle import MANIFEST_FILE, BundleError, read_bundle, write_bundle
from localsoc.serving.predictor import BundlePredictor
from tests.serving.study import EVALUATE, N_CALIBRATION, PACKAGE, VALIDATE, plsr

GRID = {"start_nm": 400, "stop_nm": 2500, "step_nm": 20}
# no SNV after MSC here: SNV undoes any per-spectrum affine map, MSC's included, so the
# reference would have no effect on the estimates and the tests below could not fail
CHAIN = [{"absorbance": {}}, {"msc": {}},
         {"savgol": {"window": 11, "polyorder": 2, "deriv": 1}}, {"detrend": {"order": 1}}]
SITE = "sweden_site"


@pytest.fixture(scope="module")
def chain_study(tmp_path_factory):
    library, sites = simulate_ssl(global_size=150, seed=11, grid=Grid(**GRID),
                                  sites=[s for s in default_sites() if s.site_id == SITE],
                                  country_sizes={})
    preprocessing = fit_preprocessing(library, {"steps": CHAIN})
    spectra = preprocess_table(sites, preprocessing)
    calibration = spectra.head(N_CALIBRATION).reset_index(drop=True)
    test = spectra.iloc[N_CALIBRATION:].reset_index(drop=True)
    models = {f"{SITE}/plsr_local": plsr(spectra_of(calibration),
                                         calibration["soc"].to_numpy(np.float64),
                                         calibration["sample_id"].astype(str).tolist())}
    selection = pd.DataFrame(columns=["site", "scope", "sample_id", "rank"])
    predictions, _, winners = evaluate_sites(calibration, test, calibration.iloc[0:0], selection,
                                             {}, models, {}, EVALUATE)
    bundle = package_winners(winners, predictions, {}, models, {}, library, sites, GRID,
                             preprocessing, VALIDATE, PACKAGE)
    directory = tmp_path_factory.mktemp("chain_bundle")
    write_bundle(bundle, directory)
    return {"library": library, "sites": sites, "preprocessing": preprocessing,
            "predictions": predictions, "winners": winners, "directory": directory,
            "bundle": bundle}


def test_the_bundle_ships_the_fitted_chain(chain_study):
    stored = json.loads((chain_study["directory"] / MANIFEST_FILE).read_text())
    chain = stored["sites"][SITE]["preprocessing"]
    assert [step["name"] for step in chain] == ["absorbance", "msc", "savgol", "detrend"]
    assert chain[2]["params"] == {"window": 11, "polyorder": 2, "deriv": 1}
    assert chain == chain_study["preprocessing"]["steps"]  # the library-fitted reference
    assert len(chain[1]["state"]["reference"]) == len(wavelengths_of(chain_study["sites"]))


def test_served_estimates_are_the_evaluate_estimates(chain_study):
    predictor = BundlePredictor(read_bundle(chain_study["directory"]), "localsoc_bundle:test")
    method = chain_study["winners"][SITE]["method"]
    recorded = chain_study["predictions"]
    rows = recorded.loc[(recorded["site"] == SITE) & (recorded["method"] == method)
                        & (recorded["role"] == "test")].reset_index(drop=True)
    assert len(rows) > 10
    raw = chain_study["sites"].set_index("sample_id").loc[rows["sample_id"]].reset_index()
    answer = predictor.answer(SITE, wavelengths_of(raw).tolist(), spectra_of(raw).tolist())
    estimate = np.array([p.soc_percent for p in answer.predictions])
    np.testing.assert_allclose(estimate, rows["estimated"], rtol=0, atol=1e-6)
    np.testing.assert_allclose([p.t2 for p in answer.predictions], rows["t2"], rtol=1e-9)
    labels = predictor.sites_document()["sites"][0]["preprocessing"]
    assert labels[2] == "savgol(window=11, polyorder=2, deriv=1)"
    assert labels[1].startswith("msc [fitted: reference of")


def test_a_served_chain_with_another_reference_gives_other_estimates(chain_study):
    """The service uses the bundle's reference, not one of its own: a changed reference moves
    the estimates (so the test above could fail)."""
    bundle = read_bundle(chain_study["directory"])
    entry = bundle.manifest["sites"][SITE]
    reference = np.asarray(entry["preprocessing"][1]["state"]["reference"])
    # a wiggle of 5 % of its range (an affine change would only rescale every estimate's input)
    wiggle = 0.05 * np.ptp(reference) * np.sin(np.linspace(0, 6 * np.pi, reference.size))
    entry["preprocessing"][1]["state"]["reference"] = (reference + wiggle).tolist()
    changed = BundlePredictor(bundle, "t")
    original = BundlePredictor(read_bundle(chain_study["directory"]), "t")
    raw = chain_study["sites"].iloc[N_CALIBRATION:N_CALIBRATION + 5]
    args = (SITE, wavelengths_of(raw).tolist(), spectra_of(raw).tolist())
    a = [p.soc_percent for p in original.answer(*args).predictions]
    b = [p.soc_percent for p in changed.answer(*args).predictions]
    assert np.abs(np.subtract(a, b)).max() > 1e-3


def test_an_unfitted_or_mismatched_chain_is_refused(chain_study):
    bundle = read_bundle(chain_study["directory"])
    entry = bundle.manifest["sites"][SITE]
    del entry["preprocessing"][1]["state"]
    with pytest.raises(BundleError, match=r"'msc'\) needs its state fitted"):
        BundlePredictor(bundle, "t")
    with pytest.raises(ValueError, match="cannot be shipped.*'msc'"):
        package_winners(chain_study["winners"], chain_study["predictions"], {},
                        chain_study["bundle"].models | {}, {}, chain_study["library"],
                        chain_study["sites"], GRID, {"steps": CHAIN}, VALIDATE, {})
