"""RS-LOCAL: select the library samples that help predict one local site (instance transfer).

After Lobsey, Viscarra Rossel, Roudier & Hedley (2017, Eur. J. Soil Sci. 68:840-852), the
``rslocal()`` function of the resemble R package. One iteration, on the surviving pool P:

1. Draw B = round(|P| * b / k) subsets of k samples, each without replacement, from P
   (``round`` is Python's: halves to even). The draws are made here, once per iteration, from a
   ``numpy.random.Generator`` seeded by ``random_state``, and handed to the scoring kernel, so
   the native kernel and its NumPy twin score the very same subsets.
2. Fit PLS1 with ``n_components`` factors on each subset (X and y centred, no scaling: as
   ``sklearn.cross_decomposition.PLSRegression(scale=False)``; NIPALS, equations in
   ``native/rslocal.pyx``). Fewer factors are used only if a subset's rank runs out.
3. Score each subset:

   * ``"response"`` (default): RMSE of its predictions of the local SOC,
     ``sqrt(mean_i (y_local_i - yhat_i)^2)``;
   * ``"reconstruction"`` (the R default): how well the subset's PLS space reproduces the
     local spectra. With the subset means ``x_mean``, weights W, loadings P and rotations
     ``R = W (P^T W)^{-1}``: ``E = (X_local - x_mean) - (X_local - x_mean) R P^T`` and the score
     is ``sqrt(mean(E^2))`` over all n x p entries. It does not use ``y_local``.

4. Each pool sample's score = mean score of the subsets that contained it.
5. Drop the worst: ``retain_by="proportion"`` drops round(|P| * (1 - retain)) samples (at least
   one); ``retain_by="quantile"`` drops the samples whose score is above the ``retain``
   quantile of the pool's scores (at least the single worst). Never more than |P| - k.
   Samples never drawn this iteration have no score and are kept. Scores reset every iteration.
6. Stop rule and final pick: an iteration whose pool already satisfies
   |P| <= k * (1 + (1 - retain)) is the last; it is scored like any other but drops nothing, and
   the k pool samples with the lowest mean scores of that final iteration are returned (best
   first; ties to the lower library index; never-drawn samples, which the draw sizes make
   vanishingly rare, rank first, as "kept"). A library of at most that size is therefore scored
   exactly once.

Before scoring, X_library and X_local are both shifted by the library's band means (float64).
PLS with centring is unchanged by a common shift; it only keeps the kernel's arithmetic away
from cancellation (and makes the float32 mode usable on raw absorbance).

The scoring step (:func:`score_subsets`) is a pure function of the arrays and an index matrix;
an executor may split an iteration's subsets into chunks and score them anywhere.
``executor="dask"`` does so on a Dask cluster (``dask.distributed``): the prepared arrays are
scattered to every worker once per fit, each iteration's index matrix is cut into chunks of
``chunk_size`` subsets, one task per chunk, and the scores are gathered in order. The draws and
the pruning stay here, so the selection is identical to the local run for the same seed.
"""

from __future__ import annotations

import contextlib
import importlib
import math
import numbers
from collections.abc import Mapping
from typing import Any

import numpy as np
from sklearn.base import BaseEstimator

from localsoc.selection._reference import RECONSTRUCTION, RESPONSE, score_subsets_reference
from localsoc.selection.kennard_stone import (
    BUILD_COMMAND,
    check_finite,
    limit_blas_threads,
    resolve_n_jobs,
)

SCORINGS = {"response": RESPONSE, "reconstruction": RECONSTRUCTION}
DTYPES = {"float64": np.float64, "float32": np.float32}
EXECUTORS = ("local", "dask")
MIN_DASK_CHUNK = 64  # subsets per Dask task when chunk_size is None (a task has an overhead)


def _native_module():
    """The compiled kernel; ImportError with the build command when it is missing."""
    try:
        module = importlib.import_module("localsoc._native.rslocal")
    except ImportError as error:
        raise ImportError(
            "The compiled RS-LOCAL kernel localsoc._native.rslocal is not built. "
            f"Build it with: {BUILD_COMMAND}. Or pass backend='numpy' to use the (much slower) "
            "NumPy reference explicitly."
        ) from error
    return module


def _as_matrix(X, name: str) -> np.ndarray:
    shape = np.shape(X)
    if len(shape) != 2:
        raise ValueError(
            f"{name} must be a 2-D array (samples x bands); got an array of shape {shape}."
        )
    try:
        X = np.asarray(X)
        if X.dtype not in (np.float32, np.float64):  # float32 stays: no copy of a prepared library
            X = X.astype(np.float64)
    except (TypeError, ValueError) as error:
        raise ValueError(f"{name} must hold numbers (reflectance or absorbance): {error}") from None
    check_finite(X, name)
    return X


def _as_vector(y, name: str, n_rows: int, rows_of: str) -> np.ndarray:
    y = np.asarray(y, dtype=np.float64)
    if y.ndim == 2 and y.shape[1] == 1:
        y = y[:, 0]
    if y.ndim != 1:
        raise ValueError(f"{name} must be 1-D (one SOC value per sample); got shape {y.shape}.")
    if len(y) != n_rows:
        raise ValueError(
            f"{name} has {len(y)} values but {rows_of} has {n_rows} rows; pass one SOC value "
            "per spectrum, in the same order."
        )
    if not np.isfinite(y).all():
        bad = np.flatnonzero(~np.isfinite(y))
        raise ValueError(
            f"{name} contains NaN or infinite values at {bad.size} position(s) (first: "
            f"{bad[:5].tolist()}); drop unlabelled samples before RS-LOCAL."
        )
    return y


def validate_site_data(X_library, y_library, X_local, y_local):
    """The four arrays checked (X as float32 or float64, y as float64), or a ValueError that
    says what to fix."""
    X_library = _as_matrix(X_library, "X_library")
    X_local = _as_matrix(X_local, "X_local")
    y_library = _as_vector(y_library, "y_library", len(X_library), "X_library")
    y_local = _as_vector(y_local, "y_local", len(X_local), "X_local")
    if X_local.shape[1] != X_library.shape[1]:
        raise ValueError(
            f"X_local has {X_local.shape[1]} bands but X_library has {X_library.shape[1]}; "
            "bring both to the same wavelength grid first."
        )
    if len(X_local) < 3:
        raise ValueError(
            f"RS-LOCAL needs at least 3 local samples (n_local >= 3) to score subsets; got "
            f"{len(X_local)}."
        )
    return X_library, y_library, X_local, y_local


def _check_choice(value, name: str, choices) -> None:
    if value not in choices:
        raise ValueError(f"{name} must be one of {sorted(choices)}; got {value!r}.")


def _check_pls_size(n_components, subset_size: int, n_bands: int) -> None:
    if isinstance(n_components, bool) or not isinstance(n_components, numbers.Integral):
        raise ValueError(f"n_components must be a positive integer; got {n_components!r}.")
    if n_components < 1:
        raise ValueError(f"n_components must be at least 1; got {n_components}.")
    if n_components > subset_size - 1:
        raise ValueError(
            f"n_components={n_components} must be at most k - 1 = {subset_size - 1}: a PLS fit "
            f"on k={subset_size} centred samples has at most k - 1 factors. Lower n_components "
            "or raise k."
        )
    if n_components > n_bands:
        raise ValueError(
            f"n_components={n_components} must be at most the number of bands ({n_bands})."
        )


def _check_kernel(scoring: str, backend: str, dtype: str) -> None:
    _check_choice(scoring, "scoring", SCORINGS)
    _check_choice(backend, "backend", ("native", "numpy"))
    _check_choice(dtype, "dtype", DTYPES)
    if backend == "numpy" and dtype != "float64":
        raise ValueError("dtype='float32' is a native-only fast mode; use backend='native'.")


def _as_subsets(subsets, n_library: int) -> np.ndarray:
    """``subsets`` as a 2-D integer array of library rows, or a ValueError."""
    subsets = np.asarray(subsets)
    if subsets.ndim != 2 or not np.issubdtype(subsets.dtype, np.integer):
        raise ValueError(
            f"subsets must be a 2-D integer array (one subset of library row indices per row); "
            f"got dtype {subsets.dtype} and shape {subsets.shape}."
        )
    if subsets.size and (subsets.min() < 0 or subsets.max() >= n_library):
        raise ValueError(
            f"subsets hold row indices outside the library (valid: 0 to {n_library - 1})."
        )
    return subsets


def score_subsets(
    X_library,
    y_library,
    X_local,
    y_local,
    subsets,
    n_components: int = 10,
    scoring: str = "response",
    backend: str = "native",
    n_jobs: int | None = 1,
    dtype: str = "float64",
    center: bool = True,
) -> np.ndarray:
    """Score arbitrary library subsets: one PLS1 fit per row of ``subsets``.

    Parameters
    ----------
    X_library, y_library : library spectra (K, p) and SOC (K,).
    X_local, y_local : local calibration spectra (n, p) and SOC (n,), n >= 3.
    subsets : int array (B, k) of library row indices, each row one subset (no repeats
        expected within a row; they are not checked).
    n_components : PLS factors per fit, 1 <= n_components <= min(k - 1, p).
    scoring : "response" or "reconstruction" (see the module docstring).
    backend : "native" (compiled, OpenMP over subsets) or "numpy" (the reference twin).
    n_jobs : OpenMP threads for the native backend (-1: every core).
    dtype : "float64" or "float32" (native only; the fast mode: scores differ from float64
        ones in the last digits, see BENCHMARKS.md).
    center : shift both X arrays by the library's band means first (results are unchanged
        mathematically; pass False when the arrays are already prepared, e.g. by a chunked
        executor that shifted them once).

    Returns
    -------
    scores : float64 array (B,), lower is better.
    """
    _check_kernel(scoring, backend, dtype)
    X_library, y_library, X_local, y_local = validate_site_data(
        X_library, y_library, X_local, y_local
    )
    subsets = _as_subsets(subsets, len(X_library))
    _check_pls_size(n_components, subsets.shape[1], X_library.shape[1])
    n_threads = resolve_n_jobs(n_jobs)
    if center:
        band_means = X_library.mean(axis=0, dtype=np.float64)
        X_library = X_library - band_means
        X_local = X_local - band_means
    prepared = _prepare(X_library, y_library, X_local, y_local, DTYPES[dtype])
    return _score_prepared(
        prepared,
        np.ascontiguousarray(subsets, dtype=np.intp),
        n_components,
        SCORINGS[scoring],
        backend,
        n_threads,
    )


def _prepare(X_library, y_library, X_local, y_local, dtype) -> tuple[np.ndarray, ...]:
    return tuple(
        np.ascontiguousarray(array, dtype=dtype)
        for array in (X_library, y_library, X_local, y_local)
    )


def _score_prepared(
    prepared: tuple[np.ndarray, ...],
    subsets: np.ndarray,
    n_components: int,
    scoring_code: int,
    backend: str,
    n_threads: int,
) -> np.ndarray:
    """Score validated, contiguous arrays (the inner call an executor would distribute)."""
    if backend == "numpy":
        with limit_blas_threads(1):
            return score_subsets_reference(*prepared, subsets, n_components, scoring_code)
    module = _native_module()
    scores = np.empty(len(subsets), dtype=np.float64)
    module.score_subsets(*prepared, subsets, int(n_components), scoring_code, scores, n_threads)
    if np.isnan(scores).any():
        raise MemoryError("the RS-LOCAL kernel could not allocate its per-thread scratch buffer.")
    return scores


def draw_subsets(
    rng: np.random.Generator, pool_size: int, subset_size: int, n_subsets: int
) -> np.ndarray:
    """``n_subsets`` uniform random subsets of ``subset_size`` positions in ``range(pool_size)``.

    Each row is drawn without replacement and is uniform over the k-subsets of the pool, all in
    vectorised calls (deterministic for a given generator state):

    * pools under 4k: the first k entries of an independent random permutation of the pool per
      row (``rng.permuted``);
    * larger pools: all entries drawn with replacement, then every repeated entry (all but the
      first occurrence of a value in its row) redrawn, until no row has a repeat. Given its size,
      the set of distinct values at every round is uniform by symmetry, so the final row is too.
    """
    if subset_size > pool_size:
        raise ValueError(f"cannot draw {subset_size} distinct samples from a pool of {pool_size}.")
    if pool_size < 4 * subset_size:
        rows = np.broadcast_to(np.arange(pool_size, dtype=np.intp), (n_subsets, pool_size))
        return np.ascontiguousarray(rng.permuted(rows, axis=1)[:, :subset_size])
    positions = rng.integers(0, pool_size, size=(n_subsets, subset_size), dtype=np.intp)
    ordered = np.sort(positions, axis=1)
    pending = np.flatnonzero((ordered[:, 1:] == ordered[:, :-1]).any(axis=1))
    while pending.size:
        block = positions[pending]
        order = np.argsort(block, axis=1, kind="stable")
        ordered = np.take_along_axis(block, order, axis=1)
        repeat = np.zeros(block.shape, dtype=bool)
        repeat[:, 1:] = ordered[:, 1:] == ordered[:, :-1]
        rows, columns = np.nonzero(repeat)
        block[rows, order[rows, columns]] = rng.integers(0, pool_size, size=rows.size)
        positions[pending] = block
        pending = pending[np.unique(rows)]
    return positions


def sample_scores(positions: np.ndarray, subset_scores: np.ndarray, pool_size: int):
    """Mean subset score per pool position and how many subsets held it (0: never drawn)."""
    counts = np.bincount(positions.ravel(), minlength=pool_size)
    totals = np.bincount(
        positions.ravel(), weights=np.repeat(subset_scores, positions.shape[1]), minlength=pool_size
    )
    with np.errstate(invalid="ignore", divide="ignore"):
        means = totals / counts
    return means, counts


def _ranking(means: np.ndarray, counts: np.ndarray) -> np.ndarray:
    """Pool positions best first: never drawn, then by mean score; ties to the lower position."""
    key = np.where(counts > 0, means, -np.inf)
    return np.argsort(key, kind="stable")


class RSLocal(BaseEstimator):
    """RS-LOCAL instance selection from a spectral library for one local site.

    Parameters
    ----------
    k : int, default 100
        Samples to select (and the subset size).
    b : float, default 40
        Mean number of subsets each pool sample appears in per iteration (B = round(|P| b / k));
        above 40 for stable scores.
    retain : float, default 0.95
        Share kept per iteration (0 < retain < 1).
    n_components : int, default 10
        PLS factors per subset fit, at most min(k - 1, bands).
    scoring : {"response", "reconstruction"}, default "response"
    retain_by : {"proportion", "quantile"}, default "proportion"
    random_state : int, numpy Generator or None
        Seed of the subset draws (None: fresh entropy, not reproducible).
    n_jobs : int or None, default 1
        OpenMP threads of the native kernel (-1: every core).
    backend : {"native", "numpy"}, default "native"
        Compiled kernel or its NumPy twin; same draws, same selection. No silent fallback.
    dtype : {"float64", "float32"}, default "float64"
        "float32" is the native fast mode: half the memory, scores that differ from float64
        ones in the last digits (BENCHMARKS.md). Because the pool is pruned on ranks, the
        selection can drift from the float64 one as far as another seed's would
        (bench/rslocal.py); use it for speed studies, not for the study itself.
    progress : bool, default False
        A tqdm bar over iterations (pool size in the postfix).
    executor : {"local", "dask"}, default "local"
        Where each iteration's subsets are scored: in this process, or as tasks on a Dask
        cluster (``dask.distributed``; every worker needs LocalSOC installed). Same selection.
    scheduler_address : str or None, default None
        With ``executor="dask"``: the scheduler, e.g. ``"tcp://scheduler:8786"``; None uses the
        running ``dask.distributed.Client`` of this process.
    chunk_size : int or None, default None
        Subsets per Dask task; None: an iteration's subsets split in two chunks per worker
        thread, at least 64 subsets each. Each task uses ``n_jobs`` OpenMP threads.

    Attributes
    ----------
    selected_indices_ : ndarray (k,) of library row indices, best first.
    scores_ : ndarray (k,) their mean subset scores in the final iteration.
    history_ : list of dict, one per iteration: ``iteration``, ``pool_size``, ``n_subsets``,
        ``best_subset_score``, ``subset_score_q25``, ``subset_score_median``,
        ``subset_score_q75``, ``subset_score_max``, ``n_never_drawn``, ``n_dropped``
        (``pandas.DataFrame(history_)`` gives a table).
    best_subset_indices_ : ndarray (k,) library rows of the best-scoring subset seen.
    best_subset_score_ : float
    n_iter_ : int
    n_features_in_ : int
    """

    def __init__(
        self,
        k: int = 100,
        b: float = 40,
        retain: float = 0.95,
        n_components: int = 10,
        scoring: str = "response",
        retain_by: str = "proportion",
        random_state=None,
        n_jobs: int | None = 1,
        backend: str = "native",
        dtype: str = "float64",
        progress: bool = False,
        executor: str = "local",
        scheduler_address: str | None = None,
        chunk_size: int | None = None,
    ):
        self.k = k
        self.b = b
        self.retain = retain
        self.n_components = n_components
        self.scoring = scoring
        self.retain_by = retain_by
        self.random_state = random_state
        self.n_jobs = n_jobs
        self.backend = backend
        self.dtype = dtype
        self.progress = progress
        self.executor = executor
        self.scheduler_address = scheduler_address
        self.chunk_size = chunk_size

    @classmethod
    def from_params(cls, params: Mapping[str, Any], random_state: int,
                    progress: bool | None = None) -> RSLocal:
        """An RS-LOCAL with the ``localise`` parameters of the study (``k``, ``b``, ``retain``,
        ``n_components``, ``scoring``, ``retain_by``, ``n_jobs``, ``backend``, ``progress``,
        ``executor``, ``scheduler_address``, ``chunk_size``); other keys are ignored."""
        return cls(
            k=int(params["k"]),
            b=float(params["b"]),
            retain=float(params["retain"]),
            n_components=int(params["n_components"]),
            scoring=params["scoring"],
            retain_by=params["retain_by"],
            random_state=int(random_state),
            n_jobs=int(params["n_jobs"]),
            backend=params["backend"],
            progress=bool(params.get("progress", True)) if progress is None else progress,
            executor=params.get("executor", "local"),
            scheduler_address=params.get("scheduler_address"),
            chunk_size=params.get("chunk_size"),
        )

    def _check_parameters(self, n_library: int, n_bands: int) -> None:
        _check_choice(self.scoring, "scoring", SCORINGS)
        _check_choice(self.retain_by, "retain_by", ("proportion", "quantile"))
        _check_kernel(self.scoring, self.backend, self.dtype)
        k = self.k
        if isinstance(k, bool) or not isinstance(k, numbers.Integral) or k < 2:
            raise ValueError(f"k must be an integer >= 2 (samples to select); got {k!r}.")
        if k > n_library:
            raise ValueError(
                f"k={k} is larger than the library ({n_library} samples); lower k or use a "
                "larger library."
            )
        if isinstance(self.b, bool) or not isinstance(self.b, numbers.Real) or not self.b > 0:
            raise ValueError(f"b must be a positive number (about 40 or more); got {self.b!r}.")
        if (
            isinstance(self.retain, bool)
            or not isinstance(self.retain, numbers.Real)
            or not 0 < self.retain < 1
        ):
            raise ValueError(f"retain must be strictly between 0 and 1; got {self.retain!r}.")
        _check_pls_size(self.n_components, k, n_bands)
        resolve_n_jobs(self.n_jobs)
        _check_choice(self.executor, "executor", EXECUTORS)
        if self.chunk_size is not None and (
            isinstance(self.chunk_size, bool)
            or not isinstance(self.chunk_size, numbers.Integral)
            or self.chunk_size < 1
        ):
            raise ValueError(
                f"chunk_size must be a positive integer (subsets per Dask task) or None; got "
                f"{self.chunk_size!r}."
            )

    def fit(self, X_library, y_library, X_local, y_local):
        """Select ``k`` library rows for the local site given by (X_local, y_local)."""
        X_library, y_library, X_local, y_local = validate_site_data(
            X_library, y_library, X_local, y_local
        )
        n_library, n_bands = X_library.shape
        self._check_parameters(n_library, n_bands)
        if self.backend == "native":
            _native_module()
        n_threads = resolve_n_jobs(self.n_jobs)
        k, retain = int(self.k), float(self.retain)
        band_means = X_library.mean(axis=0, dtype=np.float64)
        prepared = _prepare(
            X_library - band_means, y_library, X_local - band_means, y_local, DTYPES[self.dtype]
        )
        del X_library, X_local
        stop_size = k * (1 + (1 - retain))
        bar = self._progress_bar(n_library, k, retain, stop_size)
        executor = contextlib.ExitStack()
        try:
            if self.executor == "dask":
                self._dask_scorer = executor.enter_context(
                    _DaskScorer.open(self, prepared, n_threads)
                )
            selected, scores, history, best_subset, best_score = self._prune(
                prepared, n_library, n_threads, stop_size, bar
            )
        finally:
            self._dask_scorer = None
            executor.close()
            if bar is not None:
                bar.close()

        self.selected_indices_ = selected
        self.scores_ = scores
        self.history_ = history
        self.best_subset_indices_ = best_subset
        self.best_subset_score_ = best_score
        self.n_iter_ = len(history)
        self.n_features_in_ = n_bands
        return self

    def _prune(self, prepared, n_library: int, n_threads: int, stop_size: float, bar):
        """The iterations (steps 1-6 of the module docstring) on the prepared arrays: (selected
        library rows best first, their mean scores, the history, the best subset, its score)."""
        k = int(self.k)
        rng = np.random.default_rng(self.random_state)
        pool = np.arange(n_library, dtype=np.intp)
        history: list[dict] = []
        best_score, best_subset = np.inf, None
        while True:
            final = pool.size <= stop_size
            n_subsets = max(1, round(pool.size * self.b / k))
            positions = draw_subsets(rng, pool.size, k, n_subsets)
            subsets = pool[positions]
            scores = self._score_batch(prepared, subsets, n_threads)
            means, counts = sample_scores(positions, scores, pool.size)
            ranking = _ranking(means, counts)
            best = int(np.argmin(scores))
            if scores[best] < best_score:
                best_score, best_subset = float(scores[best]), subsets[best].copy()
            dropped = ranking[:0] if final else self._to_drop(ranking, means, counts, k)
            history.append(
                _history_row(len(history) + 1, pool.size, n_subsets, scores, counts, dropped.size)
            )
            if bar is not None:
                bar.update(1)
                bar.set_postfix(pool=int(pool.size), best=f"{scores[best]:.4g}")
            if final:
                chosen = ranking[:k]
                return pool[chosen], means[chosen], history, best_subset, best_score
            keep = np.ones(pool.size, dtype=bool)
            keep[dropped] = False
            pool = pool[keep]

    def _score_batch(
        self, prepared: tuple[np.ndarray, ...], subsets: np.ndarray, n_threads: int
    ) -> np.ndarray:
        """Scores of one iteration's subsets (B, k) of library rows.

        The one place where the work of an iteration happens: an executor (joblib, Dask) can
        override it to split ``subsets`` into row chunks, score each chunk with
        ``score_subsets(..., center=False)`` on the ``prepared`` arrays (library-mean shifted,
        already in the working dtype) and concatenate the results in order.
        ``executor="dask"`` is that: the arrays already wait on the workers.
        """
        scorer = getattr(self, "_dask_scorer", None)
        if scorer is not None:
            return scorer.score(subsets)
        return _score_prepared(
            prepared, subsets, self.n_components, SCORINGS[self.scoring], self.backend, n_threads
        )

    def _to_drop(self, ranking, means, counts, k: int) -> np.ndarray:
        """Pool positions to drop this iteration (worst first), never-drawn samples excluded."""
        pool_size = ranking.size
        n_scored = int(np.sum(counts > 0))
        limit = min(pool_size - k, n_scored)
        if self.retain_by == "proportion":
            n_drop = max(1, round(pool_size * (1 - self.retain)))
        else:
            threshold = np.quantile(means[counts > 0], self.retain)
            n_drop = max(1, int(np.sum((counts > 0) & (means > threshold))))
        n_drop = min(n_drop, limit)
        return ranking[pool_size - n_drop :]

    def _progress_bar(self, n_library: int, k: int, retain: float, stop_size: float):
        if not self.progress:
            return None
        from tqdm.auto import tqdm

        total = None
        if self.retain_by == "proportion":
            size, total = n_library, 1
            while size > stop_size:
                size -= min(max(1, round(size * (1 - retain))), size - k)
                total += 1
        return tqdm(total=total, desc="RS-LOCAL", unit="iteration")


def _history_row(
    iteration: int, pool_size: int, n_subsets: int, scores: np.ndarray, counts: np.ndarray,
    n_dropped: int,
) -> dict:
    """One iteration's entry of ``RSLocal.history_``."""
    quantiles = np.quantile(scores, [0.25, 0.5, 0.75])
    return {
        "iteration": iteration,
        "pool_size": int(pool_size),
        "n_subsets": int(n_subsets),
        "best_subset_score": float(scores.min()),
        "subset_score_q25": float(quantiles[0]),
        "subset_score_median": float(quantiles[1]),
        "subset_score_q75": float(quantiles[2]),
        "subset_score_max": float(scores.max()),
        "n_never_drawn": int(np.sum(counts == 0)),
        "n_dropped": int(n_dropped),
    }


def _score_chunk(X_library, y_library, X_local, y_local, subsets, n_components, scoring_code,
                 backend, n_threads):
    """One Dask task: the scores of a chunk of subsets (the arrays arrive as scattered data)."""
    return _score_prepared(
        (X_library, y_library, X_local, y_local), subsets, n_components, scoring_code, backend,
        n_threads,
    )


class _DaskScorer:
    """Scores an iteration's subsets on a Dask cluster, chunk by chunk, results in order."""

    def __init__(self, client, arrays, model: RSLocal, n_threads: int):
        self.client = client
        self.arrays = arrays
        self.n_components = int(model.n_components)
        self.scoring_code = SCORINGS[model.scoring]
        self.backend = model.backend
        self.n_threads = n_threads
        self.chunk_size = model.chunk_size

    @classmethod
    @contextlib.contextmanager
    def open(cls, model: RSLocal, prepared: tuple[np.ndarray, ...], n_threads: int):
        try:
            import distributed
        except ImportError as error:  # pragma: no cover - dask[distributed] is a dependency
            raise ImportError(
                "executor='dask' needs dask.distributed: pip install 'dask[distributed]'"
            ) from error
        with contextlib.ExitStack() as stack:
            own_client = model.scheduler_address is not None
            if not own_client:
                try:
                    client = distributed.get_client()
                except ValueError:
                    raise ValueError(
                        "executor='dask' needs a Dask scheduler: set scheduler_address (e.g. "
                        "'tcp://scheduler:8786', localise.scheduler_address) or start a "
                        "dask.distributed.Client in this process first."
                    ) from None
            else:
                try:
                    client = stack.enter_context(
                        distributed.Client(model.scheduler_address, set_as_default=False,
                                           timeout="30s")
                    )
                except OSError as error:
                    raise OSError(
                        f"cannot reach the Dask scheduler at scheduler_address="
                        f"{model.scheduler_address!r}: {error}. Start it (dask scheduler, "
                        "dask-jobqueue, Dask Kubernetes) or fix the address."
                    ) from error
            # Once per fit: every worker holds the library and the site; tasks carry indices.
            arrays = client.scatter(list(prepared), broadcast=True, hash=False)
            try:
                yield cls(client, arrays, model, n_threads)
            finally:
                if not own_client:  # a client of our own releases its data when it closes
                    client.cancel(arrays)

    def _chunk_rows(self, n_subsets: int) -> int:
        if self.chunk_size is not None:
            return int(self.chunk_size)
        threads = max(1, sum(self.client.nthreads().values()))
        return max(MIN_DASK_CHUNK, math.ceil(n_subsets / (2 * threads)))

    def score(self, subsets: np.ndarray) -> np.ndarray:
        rows = self._chunk_rows(len(subsets))
        futures = [
            self.client.submit(
                _score_chunk,
                *self.arrays,
                subsets[start : start + rows],
                self.n_components,
                self.scoring_code,
                self.backend,
                self.n_threads,
                pure=False,
            )
            for start in range(0, len(subsets), rows)
        ]
        return np.concatenate(self.client.gather(futures))
