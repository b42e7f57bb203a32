"""Kennard-Stone selection of calibration samples (Kennard & Stone 1969, Technometrics 11:137).

Classic variant: start from the two most distant samples (the farthest pair), then repeatedly
add the sample whose distance to its nearest already-selected sample is largest. Ties go to the
lowest index (for the pair: the lexicographically smallest ``(i, j)`` with ``i < j``).

Distances are Euclidean on the spectra as given (``metric="euclidean"``) or Mahalanobis in PCA
space (``metric="mahalanobis"``): Euclidean on the whitened principal-component scores of X
(centred X = U S V^T; scores U[:, :m] * sqrt(N - 1), each with unit sample variance), with
m = ``n_components`` or, when None, every component whose singular value exceeds
``S[0] * max(N, p) * eps`` (the numerical rank).

Memory: never an N x N matrix. The farthest pair is found block by block (about 32 MB of
scratch per block plus one centred copy of X): a BLAS screen ``|a|^2 + |b|^2 - 2 a.b`` keeps
every pair within a proven rounding bound of the largest screened value, and those candidates
are re-measured with the exact arithmetic of the selection loop, so the pair is the exact
maximum of the distances the loop itself uses. Rows are screened in decreasing distance from
the centroid and the screen stops when the triangle inequality rules out every pair left. The
selection loop keeps O(N) vectors: the distance of every sample to its nearest pick, and its
distances to the first two picks, with which the compiled loop (``native/kennard_stone.pyx``)
skips rows the triangle inequality proves unchanged. Its NumPy twin (``_reference.py``) is the
plain loop and selects the same samples bit for bit.
"""

from __future__ import annotations

import importlib
import numbers
import os

import numpy as np
from sklearn.base import BaseEstimator
from sklearn.utils.validation import validate_data
from threadpoolctl import ThreadpoolController

from localsoc.selection._reference import exact_squared_distances, kennard_stone_reference

BUILD_COMMAND = (
    "make setup  (or: pip install --no-build-isolation --no-deps -e . in the project root)"
)
_SCREEN_ELEMENTS = 4_000_000  # floats per screening block (about 32 MB)
_SCREEN_ROWS = 128  # small blocks let the triangle-inequality stop come early


def _native_module():
    """The compiled kernel; ImportError with the build command when it is missing."""
    try:
        module = importlib.import_module("localsoc._native.kennard_stone")
    except ImportError as error:
        raise ImportError(
            "The compiled Kennard-Stone kernel localsoc._native.kennard_stone is not built. "
            f"Build it with: {BUILD_COMMAND}. Or pass backend='numpy' to use the (slower) NumPy "
            "reference explicitly."
        ) from error
    return module


def resolve_n_jobs(n_jobs: int | None) -> int:
    """Threads for an ``n_jobs`` value (joblib convention: None -> 1, -1 -> every core)."""
    if n_jobs is None:
        return 1
    if isinstance(n_jobs, bool) or not isinstance(n_jobs, numbers.Integral) or n_jobs == 0:
        raise ValueError(f"n_jobs must be a non-zero integer or None; got {n_jobs!r}.")
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        cores = os.cpu_count() or 1
    return int(n_jobs) if n_jobs > 0 else max(1, cores + 1 + int(n_jobs))


_THREADPOOLS: list[ThreadpoolController] = []


def limit_blas_threads(n_threads: int):
    """Context manager holding BLAS to ``n_threads`` (a cached controller: ~10 us per use).

    Multithreaded BLAS on small products loses badly on a shared 2-core machine, and BLAS
    threads inside parallel workers oversubscribe the cores, so selection code caps them.
    """
    if not _THREADPOOLS:
        _THREADPOOLS.append(ThreadpoolController())
    return _THREADPOOLS[0].limit(limits=n_threads, user_api="blas")


def check_finite(X: np.ndarray, name: str, what: str = "spectra") -> None:
    """ValueError naming the rows when X holds NaN or infinity."""
    finite = np.isfinite(X)
    if not finite.all():
        bad_rows = np.flatnonzero(~finite.reshape(len(X), -1).all(axis=1))
        raise ValueError(
            f"{name} contains NaN or infinite (inf) values in {bad_rows.size} row(s) (first: "
            f"{bad_rows[:5].tolist()}); remove or impute those {what} first."
        )


def farthest_pair(X: np.ndarray) -> tuple[int, int, float]:
    """The two most distant rows of X (exact, blockwise, never an N x N matrix).

    Returns ``(i, j, squared_distance)`` with ``i < j``; ties go to the lexicographically
    smallest pair. Distances use the same exact arithmetic as the Kennard-Stone loop.

    Rows are visited in decreasing distance r from the centroid, each block against the rows
    after it, and the scan stops once ``(r_a + r_b)^2`` for the next two rows (the triangle
    inequality's bound on every pair not yet seen) is below the best pair found: on clustered or
    low-rank spectra only a fraction of the pairs is screened; at worst all N(N-1)/2 are.
    """
    X = np.ascontiguousarray(X, dtype=np.float64)
    n, p = X.shape
    if n < 2:
        raise ValueError(f"the farthest pair needs at least 2 samples; got n_samples = {n}.")
    order, radii, columns = _screen_columns(X)
    # |screened - exact| <= gamma * 16 * max|x|^2 covers the BLAS dot, the centring and the
    # exact loop's own rounding; keeping every pair within twice that of the running maximum
    # cannot lose the true maximum.
    eps = np.finfo(np.float64).eps
    gamma = (p + 8) * eps / (1 - (p + 8) * eps)
    tolerance = 4.0 * gamma * 16.0 * float(columns[:, p + 1].max())  # max |x - mean|^2
    tolerance += np.finfo(np.float64).tiny
    block = max(1, min(n, _SCREEN_ROWS, _SCREEN_ELEMENTS // n))
    running_max = -np.inf
    best = (-1.0, (0, 1))
    for start in range(0, n - 1, block):
        bound = (radii[start] + radii[start + 1]) ** 2 * (1 + 1e-12)
        if bound < running_max - tolerance:
            break  # no pair among the rows left can reach the best one
        screened = _screen_block(columns, start, min(n, start + block))
        row_max = screened.max(axis=1)
        block_max = float(row_max.max())
        if block_max < running_max - tolerance:
            continue
        running_max = max(running_max, block_max)
        near_rows = np.flatnonzero(row_max >= running_max - tolerance)
        pair_rows, pair_columns = np.nonzero(screened[near_rows] >= running_max - tolerance)
        del screened
        a = order[near_rows[pair_rows] + start]
        b = order[pair_columns + start]
        best = _exact_best(X, np.minimum(a, b), np.maximum(a, b), best)
    best_squared, best_pair = best
    return best_pair[0], best_pair[1], best_squared


def _screen_columns(X: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(visiting order: rows by decreasing distance from the centroid, those distances, the
    screen's columns ``[b - mean, 1, |b - mean|^2]`` in visiting order)."""
    n, p = X.shape
    mean = X.mean(axis=0)
    chunks = [slice(begin, begin + 8192) for begin in range(0, n, 8192)]  # O(chunk) temporaries
    squared_norms = np.empty(n)
    for rows_in in chunks:
        centred = X[rows_in] - mean
        squared_norms[rows_in] = np.einsum("ij,ij->i", centred, centred)
    order = np.argsort(-squared_norms, kind="stable")
    radii = np.sqrt(squared_norms[order])
    columns = np.empty((n, p + 2))
    for rows_in in chunks:
        columns[rows_in, :p] = X[order[rows_in]] - mean
    columns[:, p] = 1.0
    columns[:, p + 1] = squared_norms[order]
    return order, radii, columns


def _screen_block(columns: np.ndarray, start: int, stop: int) -> np.ndarray:
    """Screened squared distances of the rows ``start:stop`` (visiting order) to every row
    from ``start`` on; pairs not after their row are ``-inf``. One GEMM gives
    ``|a|^2 + |b|^2 - 2 a.b`` directly: rows ``[-2a, |a|^2, 1]`` times the columns."""
    p = columns.shape[1] - 2
    rows = np.empty((stop - start, p + 2))
    rows[:, :p] = -2.0 * columns[start:stop, :p]
    rows[:, p] = columns[start:stop, p + 1]
    rows[:, p + 1] = 1.0
    screened = rows @ columns[start:].T  # block rows against the rows after them
    screened[:, : stop - start][np.tri(stop - start, dtype=bool)] = -np.inf
    return screened


def _exact_best(
    X: np.ndarray, first: np.ndarray, second: np.ndarray, best: tuple[float, tuple[int, int]]
) -> tuple[float, tuple[int, int]]:
    """``best`` (squared distance, pair) updated with the exact distances of the candidate
    pairs ``(first, second)``; ties to the lexicographically smallest pair."""
    best_squared, best_pair = best
    for chunk in range(0, first.size, 65536):
        i, j = first[chunk : chunk + 65536], second[chunk : chunk + 65536]
        exact = exact_squared_distances(X[i], X[j])
        top = np.flatnonzero(exact == exact.max())
        pick = top[np.lexsort((j[top], i[top]))[0]]  # lexicographically smallest pair
        pair = (int(i[pick]), int(j[pick]))
        if exact[pick] > best_squared or (exact[pick] == best_squared and pair < best_pair):
            best_squared, best_pair = float(exact[pick]), pair
    return best_squared, best_pair


def whitened_scores(X: np.ndarray, n_components: int | None) -> np.ndarray:
    """Whitened principal-component scores of X (unit sample variance per component)."""
    n, p = X.shape
    centred = X - X.mean(axis=0)
    left, singular, _ = np.linalg.svd(centred, full_matrices=False)
    rank = int(np.sum(singular > singular[0] * max(n, p) * np.finfo(np.float64).eps)) if n else 0
    if rank == 0:
        raise ValueError(
            "X has no variance (all spectra are identical), so Mahalanobis distances are "
            "undefined; use metric='euclidean' or check the input."
        )
    if n_components is None:
        n_components = rank
    elif n_components > rank:
        raise ValueError(
            f"n_components={n_components} exceeds the numerical rank of X ({rank}); "
            f"use n_components <= {rank} or None (all non-degenerate components)."
        )
    return np.ascontiguousarray(left[:, :n_components] * np.sqrt(n - 1))


class KennardStone(BaseEstimator):
    """Kennard-Stone sample selection (classic max-min variant, ties to the lowest index).

    Parameters
    ----------
    n_select : int, default 30
        Number of samples to select, 2 <= n_select <= n_samples.
    metric : {"euclidean", "mahalanobis"}, default "euclidean"
        Euclidean on X, or Euclidean on whitened PCA scores of X (Mahalanobis in PCA space).
    n_components : int or None, default None
        PCA components for ``metric="mahalanobis"`` (None: the numerical rank). Ignored for
        Euclidean.
    backend : {"native", "numpy"}, default "native"
        The compiled loop, or its NumPy twin (same selection, slower). A missing build raises
        ImportError; there is no silent fallback.
    n_jobs : int or None, default 1
        Threads (-1: every core): OpenMP threads of the native loop and the BLAS thread cap
        for the farthest-pair screen and the PCA.

    Attributes
    ----------
    selected_indices_ : ndarray of shape (n_select,)
        Row indices in the order they were selected (the farthest pair first).
    min_distances_ : ndarray of shape (n_select,)
        Distance from each pick to its nearest earlier pick; entry 0 repeats the farthest-pair
        distance (entry 1). Non-increasing from entry 1 on.
    n_components_ : int or None
        PCA components used (Mahalanobis), None for Euclidean.
    n_features_in_ : int
    """

    def __init__(
        self,
        n_select: int = 30,
        metric: str = "euclidean",
        n_components: int | None = None,
        backend: str = "native",
        n_jobs: int | None = 1,
    ):
        self.n_select = n_select
        self.metric = metric
        self.n_components = n_components
        self.backend = backend
        self.n_jobs = n_jobs

    def _check_parameters(self, n_samples: int) -> None:
        if self.metric not in ("euclidean", "mahalanobis"):
            raise ValueError(f"metric must be 'euclidean' or 'mahalanobis'; got {self.metric!r}.")
        if self.backend not in ("native", "numpy"):
            raise ValueError(f"backend must be 'native' or 'numpy'; got {self.backend!r}.")
        if n_samples < 2:
            raise ValueError(
                f"Kennard-Stone needs at least 2 samples; got n_samples = {n_samples}."
            )
        n_select = self.n_select
        if isinstance(n_select, bool) or not isinstance(n_select, numbers.Integral):
            raise ValueError(f"n_select must be an integer; got {n_select!r}.")
        if n_select < 2:
            raise ValueError(
                f"n_select={n_select} is too small: the classic Kennard-Stone start is a pair, "
                "so select at least 2 samples."
            )
        if n_select > n_samples:
            raise ValueError(
                f"n_select={n_select} is larger than the number of samples ({n_samples}); "
                f"select at most {n_samples} or pass more spectra."
            )
        if self.n_components is not None and (
            isinstance(self.n_components, bool)
            or not isinstance(self.n_components, numbers.Integral)
            or self.n_components < 1
        ):
            raise ValueError(
                f"n_components must be a positive integer or None; got {self.n_components!r}."
            )
        resolve_n_jobs(self.n_jobs)

    def fit(self, X, y=None):
        """Select ``n_select`` rows of X. ``y`` is ignored (present for pipeline use)."""
        shape = np.shape(X)
        if len(shape) != 2:
            raise ValueError(
                f"X must be a 2-D array (samples x features); got an array of shape {shape}. "
                "Reshape one spectrum with X.reshape(1, -1) or one feature with X.reshape(-1, 1)."
            )
        X = validate_data(
            self, X, dtype=np.float64, order="C", ensure_all_finite=False, ensure_min_samples=1
        )
        check_finite(X, "X")
        self._check_parameters(X.shape[0])
        module = _native_module() if self.backend == "native" else None
        n_threads = resolve_n_jobs(self.n_jobs)
        n_select = int(self.n_select)

        with limit_blas_threads(n_threads):
            if self.metric == "mahalanobis":
                space = whitened_scores(X, self.n_components)
                self.n_components_ = space.shape[1]
            else:
                space = X
                self.n_components_ = None
            first, second, _ = farthest_pair(space)
            if module is not None:
                selected = np.empty(n_select, dtype=np.intp)
                selected_squared = np.empty(n_select, dtype=np.float64)
                scratch = np.empty(space.shape[0], dtype=np.float64)
                pivots = np.empty((2, space.shape[0]), dtype=np.float64)
                module.select(
                    space, first, second, selected, selected_squared, scratch, pivots, n_threads
                )
            else:
                selected, selected_squared = kennard_stone_reference(space, first, second, n_select)
        self.selected_indices_ = selected
        self.min_distances_ = np.sqrt(selected_squared)
        return self

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.requires_fit = True
        tags.input_tags.allow_nan = False
        tags.target_tags.required = False
        return tags
