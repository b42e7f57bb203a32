"""RS-LOCAL: native kernel == NumPy twin == scikit-learn PLS, the iteration rules, errors."""

import sys

import numpy as np
import pytest
from scipy.stats import wasserstein_distance
from sklearn.base import clone
from sklearn.cross_decomposition import PLSRegression
from sklearn.exceptions import NotFittedError
from sklearn.utils.validation import check_is_fitted

from localsoc.selection import RSLocal, draw_subsets, score_subsets
from localsoc.selection._reference import pls1_score
from localsoc.selection.rslocal import sample_scores


def spectra_like(rng, n, n_bands=60, rank=8, offset=1.0):
    """Smooth low-rank 'spectra' with an offset, plus noise; returns (X, latent)."""
    basis = np.cumsum(rng.normal(size=(rank, n_bands)), axis=1) / 10
    latent = rng.normal(size=(n, rank))
    return offset + latent @ basis + 0.01 * rng.normal(size=(n, n_bands)), latent, basis


def two_populations(seed=0, n_library=400, n_local=25, n_bands=60):
    """Library mixing two populations with different X -> y relations; the site follows A."""
    rng = np.random.default_rng(seed)
    X, latent, basis = spectra_like(rng, n_library, n_bands)
    from_a = np.arange(n_library) % 2 == 0
    y_a = 2.0 + 0.8 * latent[:, 0] + 0.4 * latent[:, 1]
    y_b = 4.0 - 0.8 * latent[:, 0] + 0.6 * latent[:, 2]
    y = np.where(from_a, y_a, y_b) + 0.05 * rng.normal(size=n_library)
    local_latent = rng.normal(size=(n_local, basis.shape[0]))
    X_local = 1.0 + local_latent @ basis + 0.01 * rng.normal(size=(n_local, n_bands))
    y_local = 2.0 + 0.8 * local_latent[:, 0] + 0.4 * local_latent[:, 1]
    return X, y, X_local, y_local, from_a


@pytest.fixture(scope="module")
def random_site():
    rng = np.random.default_rng(42)
    X = rng.normal(size=(300, 40)) + 5.0
    y = rng.normal(size=300)
    X_local = rng.normal(size=(12, 40)) + 5.0
    y_local = rng.normal(size=12)
    subsets = np.array([rng.choice(300, 30, replace=False) for _ in range(60)])
    return X, y, X_local, y_local, subsets


# --- the scoring kernel -------------------------------------------------------------------


@pytest.mark.parametrize("scoring", ["response", "reconstruction"])
def test_native_scores_equal_numpy_on_random_data(random_site, scoring):
    X, y, X_local, y_local, subsets = random_site
    native = score_subsets(X, y, X_local, y_local, subsets, 8, scoring, backend="native")
    numpy = score_subsets(X, y, X_local, y_local, subsets, 8, scoring, backend="numpy")
    np.testing.assert_allclose(native, numpy, rtol=1e-8, atol=0)


@pytest.mark.parametrize("scoring", ["response", "reconstruction"])
def test_native_scores_equal_numpy_on_structured_data(scoring):
    X, y, X_local, y_local, _ = two_populations(1)
    subsets = draw_subsets(np.random.default_rng(0), len(X), 40, 50)
    native = score_subsets(X, y, X_local, y_local, subsets, 10, scoring, center=False)
    numpy = score_subsets(X, y, X_local, y_local, subsets, 10, scoring, "numpy", center=False)
    np.testing.assert_allclose(native, numpy, rtol=1e-8, atol=0)


def test_rank_deficient_subsets_stop_early_in_both_backends():
    rng = np.random.default_rng(3)
    X = rng.normal(size=(80, 3)) @ rng.normal(size=(3, 25))  # rank 3, no noise
    y = X @ rng.normal(size=25)
    subsets = draw_subsets(rng, 80, 20, 10)
    native = score_subsets(X, y, X[:5], y[:5], subsets, 6)
    numpy = score_subsets(X, y, X[:5], y[:5], subsets, 6, backend="numpy")
    np.testing.assert_allclose(native, numpy, rtol=1e-6, atol=1e-9)
    assert np.all(native < 1e-6)  # y is linear in X: three factors predict it exactly


def test_reference_response_equals_sklearn_pls(random_site):
    X, y, X_local, y_local, subsets = random_site
    rows = subsets[0]
    model = PLSRegression(n_components=8, scale=False).fit(X[rows], y[rows])
    expected = np.sqrt(np.mean((y_local - model.predict(X_local).ravel()) ** 2))
    assert pls1_score(X[rows], y[rows], X_local, y_local, 8, 0) == pytest.approx(expected, rel=1e-9)


def test_reference_reconstruction_equals_sklearn_pls_loadings(random_site):
    X, y, X_local, y_local, subsets = random_site
    rows = subsets[1]
    model = PLSRegression(n_components=8, scale=False).fit(X[rows], y[rows])
    centred = X_local - X[rows].mean(axis=0)
    residual = centred - centred @ model.x_rotations_ @ model.x_loadings_.T
    expected = np.sqrt(np.mean(residual**2))
    assert pls1_score(X[rows], y[rows], X_local, y_local, 8, 1) == pytest.approx(expected, rel=1e-9)


@pytest.mark.parametrize("scoring", ["response", "reconstruction"])
def test_float32_mode_is_within_1e4(scoring):
    X, y, X_local, y_local, _ = two_populations(2)
    subsets = draw_subsets(np.random.default_rng(1), len(X), 40, 50)
    exact = score_subsets(X, y, X_local, y_local, subsets, 10, scoring)
    fast = score_subsets(X, y, X_local, y_local, subsets, 10, scoring, dtype="float32")
    np.testing.assert_allclose(fast, exact, rtol=1e-4)


def test_threads_give_the_same_scores(random_site):
    X, y, X_local, y_local, subsets = random_site
    one = score_subsets(X, y, X_local, y_local, subsets, 5, n_jobs=1)
    two = score_subsets(X, y, X_local, y_local, subsets, 5, n_jobs=2)
    np.testing.assert_array_equal(one, two)


def test_centring_does_not_change_the_scores(random_site):
    X, y, X_local, y_local, subsets = random_site
    shifted = score_subsets(X, y, X_local, y_local, subsets, 5, center=True)
    raw = score_subsets(X, y, X_local, y_local, subsets, 5, center=False)
    np.testing.assert_allclose(shifted, raw, rtol=1e-9)


# --- the draws ----------------------------------------------------------------------------


@pytest.mark.parametrize(("pool", "k", "n"), [(5000, 30, 400), (50, 30, 40), (30, 30, 5)])
def test_draws_are_distinct_in_range_and_reproducible(pool, k, n):
    first = draw_subsets(np.random.default_rng(7), pool, k, n)
    again = draw_subsets(np.random.default_rng(7), pool, k, n)
    np.testing.assert_array_equal(first, again)
    assert first.shape == (n, k)
    assert first.min() >= 0 and first.max() < pool
    ordered = np.sort(first, axis=1)
    assert np.all(ordered[:, 1:] != ordered[:, :-1])


@pytest.mark.parametrize("pool", [6, 40])  # both drawing methods
def test_draws_are_uniform_over_subsets(pool):
    k = 2 if pool == 40 else 3
    draws = np.sort(draw_subsets(np.random.default_rng(0), pool, k, 60000), axis=1)
    _, counts = np.unique(draws, axis=0, return_counts=True)
    n_subsets = {6: 20, 40: 780}[pool]
    assert len(counts) == n_subsets
    expected = 60000 / n_subsets
    chi_square = np.sum((counts - expected) ** 2 / expected)
    assert chi_square < n_subsets + 5 * np.sqrt(2 * n_subsets)  # far above chance otherwise


def test_sample_scores_average_the_subsets_that_held_each_sample():
    positions = np.array([[0, 1], [1, 2], [0, 2]])
    means, counts = sample_scores(positions, np.array([1.0, 2.0, 4.0]), 4)
    np.testing.assert_array_equal(counts, [2, 2, 2, 0])
    np.testing.assert_allclose(means[:3], [2.5, 1.5, 3.0])
    assert np.isnan(means[3])


# --- the iterations -----------------------------------------------------------------------

FAST = {"k": 20, "b": 12, "retain": 0.8, "n_components": 4}


def test_native_and_numpy_select_the_same_samples():
    X, y, X_local, y_local, _ = two_populations(3, n_library=200)
    native = RSLocal(**FAST, random_state=5).fit(X, y, X_local, y_local)
    numpy = RSLocal(**FAST, random_state=5, backend="numpy").fit(X, y, X_local, y_local)
    np.testing.assert_array_equal(native.selected_indices_, numpy.selected_indices_)
    np.testing.assert_allclose(native.scores_, numpy.scores_, rtol=1e-8)
    assert len(native.history_) == len(numpy.history_)
    for native_row, numpy_row in zip(native.history_, numpy.history_, strict=True):
        assert native_row == pytest.approx(numpy_row, rel=1e-8)


def test_native_and_numpy_agree_on_random_data_with_reconstruction():
    rng = np.random.default_rng(4)
    X, y = rng.normal(size=(150, 30)), rng.normal(size=150)
    X_local, y_local = rng.normal(size=(10, 30)), rng.normal(size=10)
    params = dict(FAST, scoring="reconstruction", random_state=2)
    native = RSLocal(**params).fit(X, y, X_local, y_local)
    numpy = RSLocal(**params, backend="numpy").fit(X, y, X_local, y_local)
    np.testing.assert_array_equal(native.selected_indices_, numpy.selected_indices_)


def test_seed_fixes_the_selection_and_another_seed_changes_it():
    X, y, X_local, y_local, _ = two_populations(4, n_library=300)
    first = RSLocal(**FAST, random_state=1).fit(X, y, X_local, y_local).selected_indices_
    again = RSLocal(**FAST, random_state=1).fit(X, y, X_local, y_local).selected_indices_
    other = RSLocal(**FAST, random_state=2).fit(X, y, X_local, y_local).selected_indices_
    np.testing.assert_array_equal(first, again)
    assert not np.array_equal(np.sort(first), np.sort(other))


def test_selection_comes_from_the_population_that_matches_the_site():
    X, y, X_local, y_local, from_a = two_populations(0, n_library=600)
    model = RSLocal(k=40, b=40, retain=0.9, n_components=5, random_state=0).fit(
        X, y, X_local, y_local
    )
    selected = model.selected_indices_
    assert from_a[selected].mean() >= 0.8  # half the library is from A
    assert wasserstein_distance(y[selected], y_local) < 0.5 * wasserstein_distance(y, y_local)


def test_history_follows_the_rules():
    X, y, X_local, y_local, _ = two_populations(5, n_library=300)
    model = RSLocal(k=30, b=20, retain=0.9, n_components=4, random_state=0).fit(
        X, y, X_local, y_local
    )
    history = model.history_
    sizes = [row["pool_size"] for row in history]
    assert sizes[0] == 300 and sizes[-1] <= 30 * 1.1 < sizes[-2]
    for row, next_row in zip(history[:-1], history[1:], strict=True):
        assert row["n_dropped"] == min(max(1, round(row["pool_size"] * 0.1)), row["pool_size"] - 30)
        assert next_row["pool_size"] == row["pool_size"] - row["n_dropped"]
        assert row["n_subsets"] == round(row["pool_size"] * 20 / 30)
    assert history[-1]["n_dropped"] == 0
    assert model.n_iter_ == len(history)
    assert all(row["best_subset_score"] <= row["subset_score_median"] for row in history)
    assert model.best_subset_score_ == min(row["best_subset_score"] for row in history)
    assert np.all(np.diff(model.scores_) >= 0)  # best first
    assert len(set(model.selected_indices_)) == 30


def test_final_pick_is_the_k_lowest_mean_scores_of_the_final_iteration():
    X, y, X_local, y_local, _ = two_populations(6, n_library=60)
    k, b = 50, 30  # 60 <= k * 1.2: the first iteration is the final one
    model = RSLocal(k=k, b=b, retain=0.8, n_components=4, random_state=9).fit(
        X, y, X_local, y_local
    )
    assert model.n_iter_ == 1
    positions = draw_subsets(np.random.default_rng(9), 60, k, round(60 * b / k))
    scores = score_subsets(X, y, X_local, y_local, positions, 4)
    means, _ = sample_scores(positions, scores, 60)
    expected = np.argsort(means, kind="stable")[:k]
    np.testing.assert_array_equal(model.selected_indices_, expected)
    np.testing.assert_allclose(model.scores_, means[expected], rtol=1e-12)


def test_whole_library_when_k_equals_its_size():
    X, y, X_local, y_local, _ = two_populations(7, n_library=30)
    model = RSLocal(k=30, b=5, n_components=3, random_state=0).fit(X, y, X_local, y_local)
    assert sorted(model.selected_indices_) == list(range(30))


def test_quantile_retention_drops_about_the_tail():
    X, y, X_local, y_local, _ = two_populations(8, n_library=300)
    model = RSLocal(**dict(FAST, retain_by="quantile"), random_state=0).fit(X, y, X_local, y_local)
    first = model.history_[0]
    assert 0.1 * 300 <= first["n_dropped"] <= 0.3 * 300
    assert model.history_[-1]["pool_size"] <= 20 * 1.2


def test_never_drawn_samples_are_kept():
    X, y, X_local, y_local, _ = two_populations(9, n_library=200)
    model = RSLocal(k=20, b=0.5, retain=0.8, n_components=3, random_state=0).fit(
        X, y, X_local, y_local
    )
    first = model.history_[0]
    assert first["n_never_drawn"] > 100  # 5 subsets of 20 from 200
    assert first["n_dropped"] <= first["pool_size"] - first["n_never_drawn"]


def test_float32_mode_overlaps_the_float64_selection():
    X, y, X_local, y_local, _ = two_populations(10, n_library=300)
    exact = RSLocal(**FAST, random_state=3).fit(X, y, X_local, y_local)
    fast = RSLocal(**FAST, random_state=3, dtype="float32").fit(X, y, X_local, y_local)
    overlap = len(set(exact.selected_indices_) & set(fast.selected_indices_)) / FAST["k"]
    assert overlap >= 0.8


def test_progress_bar_shows_the_pool(capsys):
    X, y, X_local, y_local, _ = two_populations(11, n_library=100)
    RSLocal(**FAST, random_state=0, progress=True).fit(X, y, X_local, y_local)
    assert "RS-LOCAL" in capsys.readouterr().err


def test_n_jobs_does_not_change_the_selection():
    X, y, X_local, y_local, _ = two_populations(12, n_library=200)
    one = RSLocal(**FAST, random_state=0, n_jobs=1).fit(X, y, X_local, y_local)
    two = RSLocal(**FAST, random_state=0, n_jobs=2).fit(X, y, X_local, y_local)
    np.testing.assert_array_equal(one.selected_indices_, two.selected_indices_)


class ChunkedRSLocal(RSLocal):
    """What a Dask or joblib executor does: score each iteration in row chunks."""

    def _score_batch(self, prepared, subsets, n_threads):
        chunks = [
            score_subsets(
                *prepared,
                subsets[start : start + 7],
                self.n_components,
                self.scoring,
                dtype=self.dtype,
                center=False,
            )
            for start in range(0, len(subsets), 7)
        ]
        return np.concatenate(chunks)


@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_an_executor_scoring_chunks_selects_the_same_samples(dtype):
    X, y, X_local, y_local, _ = two_populations(14, n_library=200)
    whole = RSLocal(**FAST, random_state=4, dtype=dtype).fit(X, y, X_local, y_local)
    chunked = ChunkedRSLocal(**FAST, random_state=4, dtype=dtype).fit(X, y, X_local, y_local)
    np.testing.assert_array_equal(whole.selected_indices_, chunked.selected_indices_)
    np.testing.assert_array_equal(whole.scores_, chunked.scores_)


# --- contract and errors ------------------------------------------------------------------


def test_estimator_contract():
    model = RSLocal(**FAST, random_state=0)
    assert clone(model).get_params() == model.get_params()
    assert model.set_params(k=25).k == 25
    with pytest.raises(NotFittedError):
        check_is_fitted(model)
    X, y, X_local, y_local, _ = two_populations(13, n_library=100)
    assert model.fit(X, y, X_local, y_local) is model
    check_is_fitted(model)
    assert model.n_features_in_ == X.shape[1]
    assert "RSLocal(" in repr(model)


def bad_inputs():
    rng = np.random.default_rng(0)
    X, y = rng.normal(size=(50, 10)), rng.normal(size=50)
    Xl, yl = rng.normal(size=(5, 10)), rng.normal(size=5)
    with_nan = X.copy()
    with_nan[3, 2] = np.nan
    y_inf = yl.copy()
    y_inf[0] = np.inf
    ok = {"k": 20, "n_components": 5}
    return [
        ((X, y, Xl, yl), {"k": 60}, "larger than the library"),
        ((X, y, Xl[:2], yl[:2]), ok, "at least 3 local samples"),
        ((with_nan, y, Xl, yl), ok, "X_library contains NaN"),
        ((X, y, Xl, y_inf), ok, "y_local contains NaN or infinite"),
        ((X, y, Xl[:, :8], yl), ok, "8 bands but X_library has 10"),
        ((X, y[:40], Xl, yl), ok, "y_library has 40 values"),
        ((X[0], y, Xl, yl), ok, "X_library must be a 2-D array"),
        ((X, y, Xl, yl), {"k": 20, "n_components": 20}, "at most k - 1 = 19"),
        ((X[:, :4], y, Xl[:, :4], yl), {"k": 20, "n_components": 5}, "number of bands"),
        ((X, y, Xl, yl), dict(ok, retain=1.0), "retain must be strictly between 0 and 1"),
        ((X, y, Xl, yl), dict(ok, b=0), "b must be a positive number"),
        ((X, y, Xl, yl), dict(ok, scoring="r2"), "scoring must be one of"),
        ((X, y, Xl, yl), dict(ok, retain_by="median"), "retain_by must be one of"),
        ((X, y, Xl, yl), dict(ok, dtype="float16"), "dtype must be one of"),
        ((X, y, Xl, yl), dict(ok, dtype="float32", backend="numpy"), "native-only"),
        ((X, y, Xl, yl), dict(ok, n_jobs=0), "n_jobs"),
        ((X, y, Xl, yl), {"k": 1.5}, "k must be an integer"),
    ]


@pytest.mark.parametrize(("arrays", "params", "message"), bad_inputs())
def test_bad_input_is_a_clear_value_error(arrays, params, message):
    with pytest.raises(ValueError, match=message):
        RSLocal(**params).fit(*arrays)


def test_score_subsets_rejects_bad_subsets(random_site):
    X, y, X_local, y_local, _ = random_site
    with pytest.raises(ValueError, match="outside the library"):
        score_subsets(X, y, X_local, y_local, np.array([[0, 1, 300]]), 1)
    with pytest.raises(ValueError, match="2-D integer array"):
        score_subsets(X, y, X_local, y_local, np.array([0.0, 1.0, 2.0]), 1)


def test_missing_build_raises_import_error_with_the_build_command(monkeypatch, random_site):
    X, y, X_local, y_local, subsets = random_site
    monkeypatch.setitem(sys.modules, "localsoc._native.rslocal", None)
    with pytest.raises(ImportError, match="pip install --no-build-isolation"):
        score_subsets(X, y, X_local, y_local, subsets, 3)
    with pytest.raises(ImportError, match="make setup"):
        RSLocal(**FAST).fit(X, y, X_local, y_local)
