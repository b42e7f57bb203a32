"""Kennard-Stone: native loop == NumPy twin, exact farthest pair, the classic rule, errors."""

import sys

import numpy as np
import pytest
from scipy.spatial.distance import cdist, pdist, squareform
from sklearn.base import clone
from sklearn.utils.estimator_checks import parametrize_with_checks

from localsoc.selection import KennardStone, farthest_pair
from localsoc.selection._reference import exact_squared_distances


def both_backends(X, **params):
    native = KennardStone(backend="native", **params).fit(X)
    numpy = KennardStone(backend="numpy", **params).fit(X)
    return native, numpy


def naive_kennard_stone(X, n_select):
    """Independent textbook version with the full distance matrix (small data only)."""
    distances = cdist(X, X)
    first, second = np.unravel_index(np.argmax(np.triu(distances, 1)), distances.shape)
    selected = [int(first), int(second)]
    while len(selected) < n_select:
        nearest = distances[:, selected].min(axis=1)
        nearest[selected] = -1
        selected.append(int(np.argmax(nearest)))
    return np.array(selected)


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("shape", [(60, 5), (120, 211), (40, 3)])
def test_native_equals_numpy_on_random_data(seed, shape):
    X = np.random.default_rng(seed).normal(size=shape)
    native, numpy = both_backends(X, n_select=min(25, shape[0]))
    np.testing.assert_array_equal(native.selected_indices_, numpy.selected_indices_)
    np.testing.assert_array_equal(native.min_distances_, numpy.min_distances_)


def test_matches_naive_full_matrix_version():
    X = np.random.default_rng(5).normal(size=(80, 12))
    selection = KennardStone(n_select=30).fit(X).selected_indices_
    np.testing.assert_array_equal(selection, naive_kennard_stone(X, 30))


@pytest.mark.parametrize("n_select", [2, 10, 64])
def test_ties_and_duplicates_break_to_the_lowest_index(n_select):
    rng = np.random.default_rng(3)
    lattice = rng.integers(0, 3, size=(48, 4)).astype(float)  # many exactly equal distances
    X = np.vstack([lattice, lattice[:16]])  # exact duplicate rows as well
    native, numpy = both_backends(X, n_select=n_select)
    np.testing.assert_array_equal(native.selected_indices_, numpy.selected_indices_)
    selection = native.selected_indices_
    # the pair is the lexicographically first among the exactly farthest pairs
    squared = squareform(pdist(X, "sqeuclidean"))
    i, j = np.argwhere(np.triu(squared, 1) == squared.max())[0]
    assert tuple(selection[:2]) == (i, j)
    # every later pick is the lowest index among the max-min candidates
    for step in range(2, n_select):
        nearest = squared[:, selection[:step]].min(axis=1)
        nearest[selection[:step]] = -1
        assert selection[step] == np.flatnonzero(nearest == nearest.max())[0]


def test_selecting_all_samples_gives_a_permutation():
    X = np.random.default_rng(4).normal(size=(30, 6))
    native, numpy = both_backends(X, n_select=30)
    np.testing.assert_array_equal(native.selected_indices_, numpy.selected_indices_)
    assert sorted(native.selected_indices_) == list(range(30))


def test_two_identical_samples_and_all_duplicates():
    X = np.ones((5, 3))
    native, numpy = both_backends(X, n_select=5)
    np.testing.assert_array_equal(native.selected_indices_, [0, 1, 2, 3, 4])
    np.testing.assert_array_equal(numpy.selected_indices_, [0, 1, 2, 3, 4])
    np.testing.assert_array_equal(native.min_distances_, np.zeros(5))


def test_min_distances_follow_the_max_min_rule():
    X = np.random.default_rng(6).normal(size=(200, 8))
    model = KennardStone(n_select=40).fit(X)
    distances = model.min_distances_
    assert (
        distances[0]
        == distances[1]
        == pytest.approx(
            np.linalg.norm(X[model.selected_indices_[0]] - X[model.selected_indices_[1]])
        )
    )
    assert np.all(np.diff(distances[1:]) <= 0)
    assert len(set(model.selected_indices_)) == 40


@pytest.mark.parametrize("seed", range(4))
def test_farthest_pair_matches_brute_force(seed):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(300, 7)) + 50.0  # an offset: the screen works on centred data
    squared = squareform(pdist(X, "sqeuclidean"))
    expected = np.unravel_index(np.argmax(np.triu(squared, 1)), squared.shape)
    i, j, value = farthest_pair(X)
    assert (i, j) == tuple(expected)
    assert value == exact_squared_distances(X[[i]], X[j])[0]


def brute_force_pair(X):
    """Exact maximum over all pairs in the kernel's arithmetic, ties to the smallest (i, j)."""
    i, j = np.triu_indices(len(X), 1)
    exact = exact_squared_distances(X[i], X[j])
    first = np.flatnonzero(exact == exact.max())[0]  # triu order is lexicographic
    return int(i[first]), int(j[first]), float(exact[first])


def datasets():
    rng = np.random.default_rng(21)
    lattice = rng.integers(0, 3, size=(90, 4)).astype(float)
    basis = np.cumsum(rng.normal(size=(3, 50)), axis=1)
    return {
        "gaussian": rng.normal(size=(120, 9)),
        "low-rank spectra": 0.7 + rng.normal(size=(150, 3)) @ basis / 30,
        "lattice with duplicates": np.vstack([lattice, lattice[:30]]),
        "two clusters": np.vstack([rng.normal(size=(60, 5)), 8 + rng.normal(size=(60, 5))]),
    }


@pytest.mark.parametrize("name", list(datasets()))
@pytest.mark.parametrize("rows_per_block", [1, 7, None])
def test_farthest_pair_blockwise_with_early_stop_equals_brute_force(
    monkeypatch, name, rows_per_block
):
    import localsoc.selection.kennard_stone as module

    X = datasets()[name]
    if rows_per_block is not None:
        monkeypatch.setattr(module, "_SCREEN_ELEMENTS", len(X) * rows_per_block)
    assert farthest_pair(X) == brute_force_pair(X)


@pytest.mark.parametrize("name", list(datasets()))
def test_native_loop_skipping_rows_by_the_triangle_bound_equals_numpy(name):
    X = datasets()[name]
    native, numpy = both_backends(X, n_select=len(X) // 2)
    np.testing.assert_array_equal(native.selected_indices_, numpy.selected_indices_)
    np.testing.assert_array_equal(native.min_distances_, numpy.min_distances_)


def test_exact_distances_are_bitwise_the_kernel_arithmetic():
    from localsoc._native import kennard_stone as native

    X = np.random.default_rng(2).normal(size=(50, 13))
    out = np.empty(50)
    native.squared_distances_to(X, 7, out, 1)
    np.testing.assert_array_equal(out, exact_squared_distances(X, X[7]))


def test_mahalanobis_native_equals_numpy_and_is_affine_invariant():
    rng = np.random.default_rng(8)
    X = rng.normal(size=(150, 6)) @ rng.normal(size=(6, 6))
    native, numpy = both_backends(X, n_select=20, metric="mahalanobis")
    np.testing.assert_array_equal(native.selected_indices_, numpy.selected_indices_)
    assert native.n_components_ == 6
    mixed = X @ rng.normal(size=(6, 6)) + 3.0  # an invertible linear map and a shift
    moved = KennardStone(n_select=20, metric="mahalanobis").fit(mixed)
    np.testing.assert_array_equal(moved.selected_indices_, native.selected_indices_)
    euclidean = KennardStone(n_select=20).fit(X)
    assert not np.array_equal(euclidean.selected_indices_, native.selected_indices_)


def test_mahalanobis_with_fewer_components():
    X = np.random.default_rng(10).normal(size=(100, 30))
    native, numpy = both_backends(X, n_select=15, metric="mahalanobis", n_components=4)
    np.testing.assert_array_equal(native.selected_indices_, numpy.selected_indices_)
    assert native.n_components_ == 4


def test_threads_do_not_change_the_selection():
    X = np.random.default_rng(11).normal(size=(1500, 20))
    one = KennardStone(n_select=25, n_jobs=1).fit(X).selected_indices_
    two = KennardStone(n_select=25, n_jobs=2).fit(X).selected_indices_
    np.testing.assert_array_equal(one, two)


def test_accepts_a_dataframe_and_records_feature_names():
    pd = pytest.importorskip("pandas")
    X = np.random.default_rng(12).normal(size=(20, 3))
    frame = pd.DataFrame(X, columns=["nm_400", "nm_410", "nm_420"])
    model = KennardStone(n_select=5).fit(frame)
    np.testing.assert_array_equal(
        model.selected_indices_, KennardStone(n_select=5).fit(X).selected_indices_
    )
    assert list(model.feature_names_in_) == ["nm_400", "nm_410", "nm_420"]


@pytest.mark.parametrize(
    ("X", "params", "message"),
    [
        (np.zeros((5, 3)), {"n_select": 6}, "larger than the number of samples"),
        (np.zeros((5, 3)), {"n_select": 1}, "at least 2"),
        (np.zeros((5, 3)), {"n_select": 2.5}, "n_select must be an integer"),
        (np.array([[0.0, np.nan], [1.0, 2.0], [3, 4]]), {"n_select": 2}, "NaN"),
        (np.array([[0.0, np.inf], [1.0, 2.0], [3, 4]]), {"n_select": 2}, "inf"),
        (np.zeros(5), {"n_select": 2}, "2-D"),
        (np.zeros((2, 2, 2)), {"n_select": 2}, "2-D"),
        (np.zeros((1, 3)), {"n_select": 2}, "at least 2 samples"),
        (np.eye(4), {"n_select": 2, "metric": "cosine"}, "metric"),
        (np.eye(4), {"n_select": 2, "backend": "fortran"}, "backend"),
        (np.eye(4), {"n_select": 2, "n_jobs": 0}, "n_jobs"),
        (np.eye(4), {"n_select": 2, "metric": "mahalanobis", "n_components": 9}, "rank"),
        (np.ones((4, 2)), {"n_select": 2, "metric": "mahalanobis"}, "no variance"),
    ],
)
def test_bad_input_is_a_clear_value_error(X, params, message):
    with pytest.raises(ValueError, match=message):
        KennardStone(**params).fit(X)


def test_missing_build_raises_import_error_with_the_build_command(monkeypatch):
    monkeypatch.setitem(sys.modules, "localsoc._native.kennard_stone", None)
    with pytest.raises(ImportError, match="pip install --no-build-isolation"):
        KennardStone(n_select=2).fit(np.eye(3))
    # the NumPy twin is only used when asked for
    assert KennardStone(n_select=2, backend="numpy").fit(np.eye(3)).selected_indices_.size == 2


def test_estimator_contract():
    model = KennardStone(n_select=4, metric="mahalanobis")
    assert clone(model).get_params() == model.get_params()
    X = np.random.default_rng(13).normal(size=(10, 3))
    assert model.fit(X) is model
    assert model.n_features_in_ == 3


@parametrize_with_checks([KennardStone(n_select=2)])
def test_sklearn_compatible_estimator(estimator, check):
    """Each of scikit-learn's check_* functions raises AssertionError when the contract breaks."""
    check(estimator)
