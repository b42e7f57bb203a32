"""A GPR or spiked-PLSR winner is bundled, read back and served as it was trained."""

from __future__ import annotations

import copy

import numpy as np
import pytest

from localsoc.data.schema import spectra_of
from localsoc.families import gpr, spiked_plsr
from localsoc.models.ensemble import make_folds
from localsoc.pipelines.package.nodes import package_winners
from localsoc.serving.bundle import read_bundle, write_bundle
from localsoc.serving.predictor import BundlePredictor
from tests.serving.study import GRID, PACKAGE, PREPROCESS, VALIDATE

TRAIN = {"gpr": {"max_components": 3, "restarts": 0, "signal_bounds": [1e-3, 1e3],
                 "length_scale_bounds": [1e-2, 1e3], "noise_bounds": [1e-4, 10.0]},
         "pls_max_components": 5, "spiking_weights": [1, 3]}


@pytest.mark.parametrize("kind", ["gpr", "plsr_spiked"])
def test_a_new_family_winner_is_served_as_trained(study, tmp_path, kind):
    site, key = "sweden_site", "sweden_site/plsr_local"
    rows = study["calibration"].loc[study["calibration"]["site"] == site]
    X, y = spectra_of(rows), rows["soc"].to_numpy(np.float64)
    ids = rows["sample_id"].astype(str).tolist()
    module = gpr if kind == "gpr" else spiked_plsr
    model, _ = module.train_site_model(X, y, ids, make_folds(ids, 4, 0), 0, TRAIN, "x", "n",
                                       n_local=len(y) // 2)
    winners = copy.deepcopy(study["winners"])
    winners[site]["family"] = kind
    models = {**study["models"], key: model}
    bundle = package_winners(winners, study["predictions"], {}, models, {},
                             study["calibration"].iloc[0:0], study["sites_ssl"], GRID,
                             PREPROCESS, VALIDATE, PACKAGE)
    assert bundle.site(site)["family"] == kind
    write_bundle(bundle, tmp_path / "bundle")
    loaded = read_bundle(tmp_path / "bundle")
    served = BundlePredictor(loaded, "test").sites[site].predictor
    for a, b in zip(served.predict(X, return_std=True), model.predict(X, return_std=True),
                    strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-8, atol=1e-10)


def test_a_stack_winner_serves_the_estimates_it_was_scored_on(study, tmp_path):
    from localsoc.families import plsr
    from localsoc.methods import method
    from localsoc.pipelines.evaluate.nodes import (
        choose_winners,
        predict_sites,
        score_sites,
        site_spectra,
        winner_record,
    )
    from localsoc.study.nested import nested_site_estimates
    from tests.serving.study import EVALUATE

    site = "sweden_site"
    calibration = study["calibration"].loc[study["calibration"]["site"] == site]
    test = study["test"].loc[study["test"]["site"] == site]
    X, y = spectra_of(calibration), calibration["soc"].to_numpy(np.float64)
    ids = calibration["sample_id"].astype(str).tolist()
    folds = make_folds(ids, 4, 0)
    models = {f"{site}/plsr_local": plsr.train_site_model(X, y, ids, folds, 0, TRAIN, "x",
                                                           "n")[0],
              f"{site}/gpr_local": gpr.train_site_model(X, y, ids, folds, 0, TRAIN, "x", "n")[0]}
    library, selection = calibration.iloc[0:0], study["calibration"].iloc[0:0][["site"]]
    selection = selection.assign(scope=[], sample_id=[], rank=[])
    labels = {"PLSR Local": f"{site}/plsr_local", "GPR Local": f"{site}/gpr_local"}
    _, _, outer = nested_site_estimates(  # the outer-fold ensembles the nested stage makes
        site, None, library, calibration, test, selection, folds,
        [method(label) for label in labels], {label: models[key] for label, key in
                                              labels.items()},
        {}, {"localise": {}, "train": {**TRAIN, "site_budget": {"folds": 3}}, "transfer": {}},
        seed=0)
    nested = {key: outer[label] for label, key in labels.items()}
    sites = site_spectra(calibration, test, library, selection)
    estimates = predict_sites(sites, {}, models, {}, None, nested)
    predictions, scored, domains = score_sites(estimates, calibration, test, library,
                                               selection, EVALUATE)
    table, winners = choose_winners(scored, domains, calibration, predictions)
    best = table.loc[table["method"] == "Stack"].iloc[0]
    winners[site] = {"site": site, "country": winners[site]["country"],
                     **winner_record(table, best, best, table.iloc[[0]], (np.nan, []),
                                     domains[site]["Stack"])}
    bundle = package_winners(winners, predictions, {}, models, {}, library,
                             study["sites_ssl"], GRID, PREPROCESS, VALIDATE, PACKAGE, nested)
    assert bundle.site(site)["family"] == "stack"
    write_bundle(bundle, tmp_path / "bundle")
    served = BundlePredictor(read_bundle(tmp_path / "bundle"), "test").sites[site].predictor
    scored_rows = predictions.query("method == 'Stack' and role in ['test', 'validation']")
    scored_rows = scored_rows.set_index("sample_id")
    np.testing.assert_allclose(served.predict(spectra_of(test)),
                               scored_rows.loc[test["sample_id"], "estimated"], rtol=1e-9)
    weights = bundle.models[site].weights
    assert np.isclose(weights.sum(), 1) and (weights >= 0).all()
