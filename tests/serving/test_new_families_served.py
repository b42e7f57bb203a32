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
