"""The new methods' nested estimates are not optimistic where nothing can be learned.

Library and site labels are pure noise (``make_ssl``: SOC drawn independently of the spectra),
so no model can beat the labels' own spread: an honest out-of-fold RMSE of the calibration
samples is about their standard deviation or above. RS-LOCAL still picks library samples whose
noise fits the local labels, and a CV choice (components, spiking weight, GP scores) still fits
the noise of the samples it is scored on: the full-data model's own out-of-fold RMSE (the
un-nested one) is lower. The nested estimate redoes every choice inside the outer folds and is
not below the standard deviation by more than sampling noise allows.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from localsoc.data.schema import spectra_of
from localsoc.methods import family, method
from localsoc.models.ensemble import make_folds
from localsoc.selection import RSLocal
from localsoc.study.nested import nested_site_estimates
from tests.conftest import make_ssl

LOCALISE = {"k": 40, "b": 10, "retain": 0.9, "n_components": 4, "scoring": "response",
            "retain_by": "proportion", "n_jobs": 1, "backend": "native"}
TRAIN = {"pls_max_components": 6, "site_budget": {"folds": 5}, "spiking_weights": [1, 3, 10],
         "gpr": {"max_components": 2, "restarts": 0, "signal_bounds": [1e-3, 1e3],
                 "length_scale_bounds": [1e-2, 1e3], "noise_bounds": [1e-4, 10.0]}}


def noise_replicate(label: str, seed: int) -> tuple[float, float, float]:
    """(nested RMSE, un-nested RMSE, s.d.) of the calibration labels for one method."""
    entry = method(label)
    library = make_ssl(300, seed=1000 + seed)
    local = make_ssl(30, seed=2000 + seed, site="s1", library=None)
    X_n, y_n = spectra_of(local), local["soc"].to_numpy(float)
    ids_n = local["sample_id"].tolist()
    chosen = RSLocal.from_params({**LOCALISE, "progress": False}, seed).fit(
        spectra_of(library), library["soc"].to_numpy(float), X_n, y_n).selected_indices_
    selection = pd.DataFrame({"site": "s1", "scope": "global", "rank": range(len(chosen)),
                              "sample_id": library["sample_id"].iloc[chosen].to_numpy()})
    if entry.data == "n":
        X, y, ids = X_n, y_n, ids_n
    else:
        picked = library.iloc[chosen]
        X = np.vstack([spectra_of(picked), X_n])
        y = np.concatenate([picked["soc"].to_numpy(float), y_n])
        ids = picked["sample_id"].tolist() + ids_n
    module = family(entry.family).implementation()
    model = module.train_site_model(X, y, ids, make_folds(ids, 5, seed), seed, TRAIN, "x",
                                    entry.data, n_local=len(y_n))[0]
    estimates, _, _ = nested_site_estimates(
        "s1", "XX", library, local, local.iloc[:0], selection, make_folds(ids_n, 5, seed),
        [entry], {label: model}, {}, {"localise": LOCALISE, "train": TRAIN, "transfer": {}},
        seed=seed, workers=1)
    cal = estimates.query("role == 'calibration'").set_index("sample_id").loc[ids_n]
    nested = float(np.sqrt(np.mean((cal["estimated"].to_numpy() - y_n) ** 2)))
    unnested = float(np.sqrt(np.mean((np.asarray(model.oof_predictions_)[-len(y_n):]
                                      - y_n) ** 2)))
    return nested, unnested, float(y_n.std())


def assert_not_optimistic(label: str, replicates: int = 6) -> None:
    figures = np.array([noise_replicate(label, seed) for seed in range(replicates)])
    nested, unnested = figures[:, 0] / figures[:, 2], figures[:, 1] / figures[:, 2]
    # an RMSE from 30 samples has ~13 % s.e.; over 4-6 replicates the mean's is ~5-7 %
    assert nested.mean() > 0.9, nested
    assert unnested.mean() < nested.mean(), (unnested, nested)  # the test can tell


def test_spiked_plsr_nested_estimate_is_not_optimistic_on_pure_noise():
    assert_not_optimistic("RS-LOCAL+PLSR g w")


def test_gpr_local_nested_estimate_is_not_optimistic_on_pure_noise():
    assert_not_optimistic("GPR Local", replicates=4)


def test_the_stack_nested_estimate_is_not_optimistic_on_pure_noise():
    """Ten components whose out-of-fold estimates are noise around the labels' mean: weights
    fitted on the samples they score fit that noise (in-sample RMSE below the s.d.); the
    cross-fitted stack's is not below it by more than sampling noise allows."""
    from localsoc.families.stack import convex_weights, cross_fitted

    ratios = []
    for seed in range(20):
        rng = np.random.default_rng(seed)
        y = rng.normal(size=30)
        estimates = rng.normal(scale=0.5, size=(30, 10))
        folds = make_folds(30, 5, seed).assignment
        oof, per_fold, weights = cross_fitted(estimates, y, folds)
        assert np.allclose(per_fold.sum(axis=1), 1) and (per_fold >= 0).all()
        in_sample = estimates @ convex_weights(estimates, y)
        ratios.append([np.sqrt(np.mean((oof - y) ** 2)) / y.std(),
                       np.sqrt(np.mean((in_sample - y) ** 2)) / y.std()])
    nested, optimistic = np.array(ratios).T
    assert optimistic.mean() < nested.mean(), (optimistic, nested)
    assert nested.mean() > 0.95, nested  # 20 replicates: the mean's s.e. is ~3 %
