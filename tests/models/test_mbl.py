"""Memory-based learning: local PLS == sklearn, WA-PLS == a plain loop, no leakage, errors."""

import numpy as np
import pandas as pd
import pytest
from sklearn.cross_decomposition import PLSRegression
from sklearn.decomposition import PCA
from sklearn.exceptions import NotFittedError
from sklearn.utils.estimator_checks import parametrize_with_checks

from localsoc.data.schema import Grid, spectra_of
from localsoc.data.simulate import simulate_ssl
from localsoc.models.mbl import MemoryBasedLearner, _batched_pls, predict_site_mbl
from localsoc.selection import KennardStone
from localsoc.spectra.steps import apply_steps

STEPS = ["absorbance", "snv"]


def latent_data(seed=0, n=300, n_bands=30, noise=0.01):
    """Clustered low-rank spectra with a non-linear (cluster-dependent) X -> y relation."""
    rng = np.random.default_rng(seed)
    cluster = rng.integers(0, 3, n)
    latent = rng.normal(size=(n, 5)) + 3.0 * np.eye(5)[cluster]
    X = latent @ rng.normal(size=(5, n_bands)) + noise * rng.normal(size=(n, n_bands))
    slopes = np.array([[1.0, -0.5], [-0.8, 0.3], [0.2, 1.2]])[cluster]
    y = np.einsum("ij,ij->i", latent[:, :2], slopes) + 0.02 * rng.normal(size=n)
    return X, y


@pytest.fixture(scope="module")
def simulated():
    """A small simulated library and one site split by Kennard-Stone (30 calibration rows)."""
    library, sites = simulate_ssl(2500, seed=3, grid=Grid(400, 2500, 20))
    site = sites.loc[sites["site"] == "usa_site"].reset_index(drop=True)
    X_site = apply_steps(spectra_of(site), STEPS)
    calibration = np.sort(KennardStone(30).fit(X_site).selected_indices_)
    test = np.setdiff1d(np.arange(len(site)), calibration)
    return {
        "library": library,
        "X": apply_steps(spectra_of(library), STEPS),
        "y": library["soc"].to_numpy(np.float64),
        "site": site,
        "X_site": X_site,
        "y_site": site["soc"].to_numpy(np.float64),
        "calibration": calibration,
        "test": test,
    }


def reference_estimate(X_neighbourhood, y_neighbourhood, x_query, low, high, model="wapls"):
    """One local model with sklearn refits per factor count and resemble's WA-PLS weights."""
    high = min(high, len(X_neighbourhood) - 1, X_neighbourhood.shape[1])
    low = min(low, high)
    estimates, weights = [], []
    for a in range(low, high + 1):
        pls = PLSRegression(n_components=a, scale=False).fit(X_neighbourhood, y_neighbourhood)
        estimates.append(pls.predict(x_query[None, :]).ravel()[0])
        reconstruction = pls.inverse_transform(pls.transform(x_query[None, :]))[0]
        residual_rms = np.sqrt(np.mean((x_query - reconstruction) ** 2))
        coefficient_rms = np.sqrt(np.mean(pls.coef_**2))
        weights.append(1.0 / (residual_rms * coefficient_rms))
    if model == "pls":
        return estimates[-1]
    weights = np.array(weights) / np.sum(weights)
    return float(np.dot(weights, estimates))


# ---------------------------------------------------------------------- local PLS kernel


def test_batched_pls_equals_sklearn_refits_for_every_factor_count():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(4, 40, 25)) @ rng.normal(size=(25, 25))
    y = X[:, :, 0] - 0.5 * X[:, :, 3] + 0.1 * rng.normal(size=(4, 40))
    X_query = rng.normal(size=(4, 25))
    predictions, residual_rms, coefficient_rms = _batched_pls(X.copy(), y, X_query, 10)
    for b in range(4):
        for a in range(1, 11):
            pls = PLSRegression(n_components=a, scale=False).fit(X[b], y[b])
            np.testing.assert_allclose(
                predictions[b, a - 1], pls.predict(X_query[b : b + 1]).ravel()[0], rtol=1e-9
            )
            np.testing.assert_allclose(
                coefficient_rms[b, a - 1], np.sqrt(np.mean(pls.coef_**2)), rtol=1e-9
            )
            reconstruction = pls.inverse_transform(pls.transform(X_query[b : b + 1]))[0]
            np.testing.assert_allclose(
                residual_rms[b, a - 1],
                np.sqrt(np.mean((X_query[b] - reconstruction) ** 2)),
                rtol=1e-9,
            )


def test_batched_pls_survives_an_exhausted_rank():
    rng = np.random.default_rng(1)
    base = rng.normal(size=(1, 6, 20))
    X = np.concatenate([base, base], axis=1)  # 12 rows, rank 5 after centring
    y = rng.normal(size=(1, 6))
    y = np.concatenate([y, y], axis=1)
    predictions, residual_rms, coefficient_rms = _batched_pls(X.copy(), y, X[0, :1], 10)
    assert np.isfinite(predictions).all() and np.isfinite(coefficient_rms).all()
    # factors beyond the rank add nothing: the estimate stops changing
    np.testing.assert_allclose(predictions[0, 5:], predictions[0, 4], rtol=1e-8)
    reference = PLSRegression(n_components=5, scale=False).fit(X[0], y[0])
    np.testing.assert_allclose(predictions[0, 4], reference.predict(X[0, :1]).ravel()[0],
                               rtol=1e-8)


# ---------------------------------------------------------------------- neighbours and space


@pytest.mark.parametrize("metric", ["mahalanobis", "euclidean", "correlation"])
def test_neighbours_are_the_brute_force_nearest(metric):
    X, y = latent_data(2)
    model = MemoryBasedLearner(k=20, metric=metric, pca_components=4, random_state=0).fit(X, y)
    queries = X[:7] + 0.05
    distances, indices = model.kneighbors(queries)
    if metric == "correlation":
        centred = X - X.mean(axis=1, keepdims=True)
        q = queries - queries.mean(axis=1, keepdims=True)
        r = (q @ centred.T) / np.outer(np.linalg.norm(q, axis=1), np.linalg.norm(centred, axis=1))
        full = (1 - r) / 2
    else:
        pca = PCA(n_components=4).fit(X)
        scores, query_scores = pca.transform(X), pca.transform(queries)
        if metric == "mahalanobis":
            scale = np.sqrt(pca.explained_variance_)
            scores, query_scores = scores / scale, query_scores / scale
        full = np.sqrt(((query_scores[:, None, :] - scores[None, :, :]) ** 2).sum(axis=2))
    expected = np.argsort(full, axis=1, kind="stable")[:, :20]
    np.testing.assert_array_equal(indices, expected)
    np.testing.assert_allclose(distances, np.take_along_axis(full, expected, axis=1),
                               rtol=1e-7, atol=1e-10)
    assert np.all(np.diff(distances, axis=1) >= 0)


def test_components_by_explained_variance_match_sklearn_pca():
    X, y = latent_data(3, noise=0.2)
    ratio = PCA().fit(X).explained_variance_ratio_
    for share in (0.5, 0.9, 0.99):
        model = MemoryBasedLearner(k=10, explained_variance=share, random_state=0).fit(X, y)
        expected = int(np.argmax(np.cumsum(ratio) >= share)) + 1
        assert model.n_components_ == expected
        np.testing.assert_allclose(model.explained_variance_ratio_, ratio[:expected], rtol=1e-8)


def test_optimal_components_follow_the_nearest_neighbour_soc_agreement():
    X, y = latent_data(4, n=200, noise=0.3)
    model = MemoryBasedLearner(k=10, pca_components="opc", validation_size=50,
                               random_state=0).fit(X, y)
    assert model.n_components_ == int(np.argmin(model.opc_rmsd_)) + 1
    # brute force for c = 2: nearest other library sample of each validation target
    pca = PCA(n_components=2).fit(X)
    scores = pca.transform(X) / np.sqrt(pca.explained_variance_)
    targets = model.validation_indices_
    distances = ((scores[targets, None, :] - scores[None, :, :]) ** 2).sum(axis=2)
    distances[np.arange(len(targets)), targets] = np.inf
    nearest = np.argmin(distances, axis=1)
    expected = np.sqrt(np.mean((y[nearest] - y[targets]) ** 2))
    np.testing.assert_allclose(model.opc_rmsd_[1], expected, rtol=1e-10)


# ---------------------------------------------------------------------- local models


@pytest.mark.parametrize("local_model", ["wapls", "pls"])
def test_predictions_equal_a_plain_loop_with_sklearn(local_model):
    X, y = latent_data(5)
    X_spike, y_spike = X[:8] + 0.01, y[:8] + 0.1
    model = MemoryBasedLearner(
        k=[15, 30], local_model=local_model, min_factors=2, max_factors=6, spike=True,
        validation="library", validation_size=40, random_state=0,
    ).fit(X, y, X_spike=X_spike, y_spike=y_spike)
    queries = X[100:104] + 0.02
    estimates, diagnostics = model.predict(queries, return_diagnostics=True)
    _, indices = model.kneighbors(queries)
    high = 6 if local_model == "wapls" else model.n_factors_
    low = 2 if local_model == "wapls" else model.n_factors_
    for i, query in enumerate(queries):
        X_near = np.vstack([X[indices[i]], X_spike])
        y_near = np.concatenate([y[indices[i]], y_spike])
        expected = reference_estimate(X_near, y_near, query, low, high, local_model)
        np.testing.assert_allclose(estimates[i], expected, rtol=1e-8)
    assert (diagnostics["k"] == model.k_).all() and (diagnostics["n_spike"] == 8).all()
    assert diagnostics["factors"].between(2, 6).all()
    if local_model == "pls":
        assert (diagnostics["factors"] == model.n_factors_).all()


def test_library_validation_leaves_each_target_out_and_picks_the_lowest_rmse():
    X, y = latent_data(6, n=200)
    model = MemoryBasedLearner(k=[10, 25, 60], min_factors=2, max_factors=5,
                               validation_size=12, random_state=1).fit(X, y)
    table = model.validation_
    assert list(table["k"]) == [10, 25, 60]
    assert model.k_ == int(table["k"][table["rmse"].idxmin()])
    targets = model.validation_indices_
    # nearest 26 of each target include itself first; drop it: the 25 others
    _, indices = model.kneighbors(X[targets], n_neighbors=26)
    assert (indices[:, 0] == targets).all()
    errors = [
        reference_estimate(X[indices[i, 1:]], y[indices[i, 1:]], X[t], 2, 5) - y[t]
        for i, t in enumerate(targets)
    ]
    np.testing.assert_allclose(table.loc[table["k"] == 25, "rmse"].iloc[0],
                               np.sqrt(np.mean(np.square(errors))), rtol=1e-8)


def test_pls_chooses_k_and_factor_count_jointly():
    X, y = latent_data(7, n=200)
    model = MemoryBasedLearner(k=[20, 40], local_model="pls", min_factors=1, max_factors=6,
                               validation_size=50, random_state=0).fit(X, y)
    table = model.validation_
    assert len(table) == 2 * 6
    best = table.loc[table["rmse"].idxmin()]
    assert (model.k_, model.n_factors_) == (int(best["k"]), int(best["factors"]))


# ---------------------------------------------------------------------- the study's claims


def test_mbl_beats_a_global_plsr_at_a_local_site(simulated):
    d = simulated
    X_test, y_test = d["X_site"][d["test"]], d["y_site"][d["test"]]
    global_pls = PLSRegression(n_components=15, scale=False).fit(d["X"], d["y"])
    global_rmse = np.sqrt(np.mean((global_pls.predict(X_test).ravel() - y_test) ** 2))
    model = MemoryBasedLearner(k=[50, 100], pca_components="opc", random_state=0)
    model.fit(d["X"], d["y"])
    mbl_rmse = np.sqrt(np.mean((model.predict(X_test) - y_test) ** 2))
    assert mbl_rmse < 0.7 * global_rmse
    cal = d["calibration"]
    spiked = MemoryBasedLearner(k=[50, 100], pca_components="opc", spike=True, random_state=0)
    spiked.fit(d["X"], d["y"], X_spike=d["X_site"][cal], y_spike=d["y_site"][cal])
    spiked_rmse = np.sqrt(np.mean((spiked.predict(X_test) - y_test) ** 2))
    assert spiked_rmse < 0.7 * global_rmse


def test_neighbourhoods_never_contain_the_site_test_rows(simulated):
    d = simulated
    cal, test = d["calibration"], d["test"]
    model = MemoryBasedLearner(k=40, spike=True, random_state=0)
    model.fit(d["X"], d["y"], X_spike=d["X_site"][cal], y_spike=d["y_site"][cal])
    _, indices = model.kneighbors(d["X_site"][test], include_spike=True)
    reference_ids = np.concatenate([
        d["library"]["sample_id"].astype(str).to_numpy(),
        d["site"]["sample_id"].astype(str).to_numpy()[cal],
    ])
    neighbour_ids = reference_ids[indices]
    test_ids = set(d["site"]["sample_id"].astype(str).to_numpy()[test])
    calibration_ids = set(d["site"]["sample_id"].astype(str).to_numpy()[cal])
    allowed = set(d["library"]["sample_id"].astype(str)) | calibration_ids
    assert set(neighbour_ids.ravel()) <= allowed
    assert not set(neighbour_ids.ravel()) & test_ids
    assert indices.shape == (len(test), 40 + len(cal))
    for row in neighbour_ids:  # every calibration sample in every neighbourhood
        assert calibration_ids <= set(row)


def test_spike_out_of_fold_estimates_never_see_their_own_sample(simulated):
    d = simulated
    cal = d["calibration"][:10]
    X_spike, y_spike = d["X_site"][cal], d["y_site"][cal]
    model = MemoryBasedLearner(k=[30, 60], spike=True, random_state=0)
    model.fit(d["X"], d["y"], X_spike=X_spike, y_spike=y_spike)
    assert model.validation_mode_ == "spike"
    for i in (0, 4, 9):
        others = np.delete(np.arange(10), i)
        without = MemoryBasedLearner(k=model.k_, spike=True, validation="library",
                                     validation_size=5, random_state=0)
        without.fit(d["X"], d["y"], X_spike=X_spike[others], y_spike=y_spike[others])
        np.testing.assert_allclose(model.oof_predictions_[i], without.predict(X_spike[i : i + 1]),
                                   rtol=1e-9)


def test_same_seed_same_result_and_threads_do_not_change_it(simulated):
    d = simulated
    X_test = d["X_site"][d["test"]]

    def run(seed, n_jobs=1):
        model = MemoryBasedLearner(k=[30, 80], validation_size=60, random_state=seed,
                                   n_jobs=n_jobs).fit(d["X"], d["y"])
        return model, model.predict(X_test)

    first, estimates = run(11)
    second, again = run(11, n_jobs=2)
    np.testing.assert_array_equal(estimates, again)
    np.testing.assert_array_equal(first.validation_indices_, second.validation_indices_)
    pd.testing.assert_frame_equal(first.validation_, second.validation_)
    other, _ = run(12)
    assert not np.array_equal(first.validation_indices_, other.validation_indices_)


def test_dissimilarity_score_flags_spectra_outside_the_library():
    X, y = latent_data(8)
    model = MemoryBasedLearner(k=20, pca_components=4, random_state=0).fit(X, y)
    inside = X[:5] + 0.01
    # 10 standard deviations along the last retained component: far outside the library
    outside = X[:5] + 10.0 * model.pca_scale_[-1] * model.pca_rotation_[:, -1]
    _, near = model.predict(inside, return_diagnostics=True)
    _, far = model.predict(outside, return_diagnostics=True)
    assert 0.5 < near["dissimilarity_score"].median() < 1.5
    assert far["dissimilarity_score"].min() > 3 * near["dissimilarity_score"].median()
    assert (far["distance_min"] <= far["distance_mean"]).all()
    assert (far["distance_mean"] <= far["distance_max"]).all()
    assert list(near.columns) == ["estimate", "k", "n_spike", "distance_min", "distance_mean",
                                  "distance_max", "dissimilarity_score", "factors"]


def test_site_helper_returns_out_of_fold_calibration_and_test_estimates(simulated):
    d = simulated
    library = d["library"].copy()
    site = d["site"].copy()
    band_names = [c for c in library.columns if c.startswith("nm_")]
    library[band_names] = d["X"]
    site[band_names] = d["X_site"]
    library.loc[library.index[:5], "soc"] = np.nan  # unlabelled rows are dropped
    calibration, test = site.iloc[d["calibration"]], site.iloc[d["test"]]
    result = predict_site_mbl(library, calibration, test, k=[40, 80], random_state=0)
    assert result.model.n_library_ == len(library) - 5
    assert list(result.calibration["sample_id"]) == list(calibration["sample_id"].astype(str))
    np.testing.assert_array_equal(result.calibration["estimated"], result.model.oof_predictions_)
    assert list(result.test["sample_id"]) == list(test["sample_id"].astype(str))
    assert {"observed", "estimated", "dissimilarity_score", "factors"} <= set(result.test.columns)
    np.testing.assert_array_equal(result.test["estimated"],
                                  result.model.predict(spectra_of(test)))


# ---------------------------------------------------------------------- bad input


def test_bad_input_gives_clear_errors():
    X, y = latent_data(9, n=60)
    with pytest.raises(ValueError, match=r"k=\[60\] is larger than the library allows"):
        MemoryBasedLearner(k=60).fit(X, y)
    with pytest.raises(ValueError, match=r"k=\[100\].*library has 60 samples"):
        MemoryBasedLearner(k=[10, 100]).fit(X, y)
    with pytest.raises(ValueError, match="positive integer or a list"):
        MemoryBasedLearner(k=0).fit(X, y)
    model = MemoryBasedLearner(k=10, random_state=0).fit(X, y)
    with pytest.raises(ValueError, match="X has 29 features.*library's wavelength grid"):
        model.predict(X[:, :29])
    with pytest.raises(ValueError, match="X_spike has 29 bands but the library has 30"):
        MemoryBasedLearner(k=10, spike=True).fit(X, y, X_spike=X[:5, :29], y_spike=y[:5])
    with pytest.raises(ValueError, match="X_spike has 5 rows but y_spike has 4"):
        MemoryBasedLearner(k=10, spike=True).fit(X, y, X_spike=X[:5], y_spike=y[:4])
    with pytest.raises(ValueError, match="spike=True needs the spiking samples"):
        MemoryBasedLearner(k=10, spike=True).fit(X, y)
    with pytest.raises(ValueError, match="spike=False"):
        MemoryBasedLearner(k=10).fit(X, y, X_spike=X[:5], y_spike=y[:5])
    bad = X.copy()
    bad[3, 2] = np.nan
    with pytest.raises(ValueError, match=r"X \(the library spectra\) contains NaN.*\[3\]"):
        MemoryBasedLearner(k=10).fit(bad, y)
    with pytest.raises(ValueError, match=r"X contains NaN.*impute"):
        model.predict(bad[:5])
    with pytest.raises(ValueError, match="X_spike contains NaN"):
        MemoryBasedLearner(k=10, spike=True).fit(X, y, X_spike=bad[:5], y_spike=y[:5])
    bad_y = y.copy()
    bad_y[7] = np.nan
    with pytest.raises(ValueError, match="drop unlabelled library rows"):
        MemoryBasedLearner(k=10).fit(X, bad_y)
    with pytest.raises(ValueError, match="metric must be one of"):
        MemoryBasedLearner(k=10, metric="cosine").fit(X, y)
    with pytest.raises(ValueError, match="min_factors .* must not exceed max_factors"):
        MemoryBasedLearner(k=10, min_factors=8, max_factors=4).fit(X, y)
    with pytest.raises(ValueError, match="pca_components=31 exceeds the numerical rank"):
        MemoryBasedLearner(k=10, pca_components=31).fit(X, y)
    with pytest.raises(ValueError, match="validation='spike' needs"):
        MemoryBasedLearner(k=10, validation="spike").fit(X, y)
    with pytest.raises(NotFittedError):
        MemoryBasedLearner().predict(X)


@parametrize_with_checks([MemoryBasedLearner(k=5, min_factors=1, max_factors=3,
                                             validation_size=20, random_state=0)])
def test_sklearn_compatible_estimator(estimator, check):
    """Each of scikit-learn's check_* functions raises AssertionError when the contract breaks."""
    check(estimator)
