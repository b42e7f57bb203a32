"""Memory-based learning (MBL): a local PLS model per spectrum, fitted on its library neighbours.

The baseline users of the R package ``resemble`` reach for first when they localise a large
library (Ramirez-Lopez et al. 2013, Geoderma 195-196:268-279): for each spectrum to predict, find
its k nearest neighbours in the library and fit a small PLS model on them alone.

:class:`MemoryBasedLearner` is the estimator (its Notes give the exact procedure: the PCA space
and distances, the neighbourhoods and spiking, the local PLS / WA-PLS fits, the choice of k by
nearest-neighbour validation, the diagnostics); :func:`predict_site_mbl` runs it on one site's
canonical tables.
"""

from __future__ import annotations

import numbers
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
from joblib import Parallel, delayed
from sklearn.base import BaseEstimator, RegressorMixin
from sklearn.utils.validation import check_array, check_is_fitted, validate_data

from localsoc.selection.kennard_stone import check_finite, limit_blas_threads, resolve_n_jobs

METRICS = ("mahalanobis", "euclidean", "correlation")
LOCAL_MODELS = ("wapls", "pls")
VALIDATION_MODES = ("auto", "library", "spike")
_DISTANCE_BLOCK = 2_000_000  # distances held at once in the neighbour search (16 MB)
_OPC_BLOCK = 800_000  # distances per block of the "opc" component search (6 MB)
_FIT_BLOCK = 1_000_000  # neighbourhood floats per chunk of local fits (8 MB: cache)


def _is_integer(value) -> bool:
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


class MemoryBasedLearner(RegressorMixin, BaseEstimator):
    """Memory-based learning: local (WA-)PLS on each query's nearest library neighbours.

    See the Notes below for the exact procedure.

    Parameters
    ----------
    k : int or sequence of int, default 100
        Library neighbours per query; with several, the best by nearest-neighbour validation.
        Every k must be at most the library size - 1 (validation leaves a sample out).
    pca_components : int, None or "opc", default None
        PCA components of the neighbour space; None: chosen by ``explained_variance``;
        "opc": chosen by nearest-neighbour SOC agreement on the library (Notes).
    explained_variance : float in (0, 1], default 0.99
        Cumulative explained variance that chooses the components when ``pca_components`` is None.
    metric : {"mahalanobis", "euclidean", "correlation"}, default "mahalanobis"
    local_model : {"wapls", "pls"}, default "wapls"
    min_factors, max_factors : int, default 3 and 15
        Factor range of the local PLS models (clipped to the neighbourhood's rank).
    spike : bool, default False
        Add every spiking sample (``X_spike, y_spike`` of ``fit``) to every neighbourhood.
    validation : {"auto", "library", "spike"}, default "auto"
        Targets of the nearest-neighbour validation.
    validation_size : int, default 200
        Library samples used as validation targets (and for ``reference_distance_``).
    random_state : int, numpy Generator or None
        Seed of the library validation subset (the only random step).
    n_jobs : int or None, default 1
        Threads over query chunks (-1: every core).

    Attributes
    ----------
    k_ : int, the neighbourhood size used.
    n_factors_ : int or None, the PLS factor count (``local_model="pls"``), None for WA-PLS.
    factor_range_ : (int, int), the local factor range before clipping by neighbourhood rank.
    n_components_ : int or None, PCA components (None for the correlation metric).
    opc_rmsd_ : ndarray or None, SOC root mean square difference to the nearest neighbour with
        1, 2, ... components (``pca_components="opc"`` only).
    explained_variance_ratio_ : ndarray (n_components_,) or None
    validation_ : DataFrame with columns k, factors ("wapls" or the count), rmse.
    validation_mode_ : "library" or "spike", the validation targets actually used.
    validation_indices_ : ndarray, library rows used as validation targets (library mode) or
        as the sample for ``reference_distance_``.
    oof_predictions_ : ndarray (n_spike,) or None, leave-one-out estimates of the spiking samples
        at the chosen k (spike validation only).
    reference_distance_ : float, median mean-neighbour distance of the library sample.
    n_library_ : int, n_spike_ : int, n_features_in_ : int

    Notes
    -----
    **Space and distance.** ``fit`` fits a PCA on the library only (centred, not scaled; the
    eigendecomposition of the library covariance, accumulated block by block). The number of
    components c is

    * ``pca_components=None`` (default): the smallest c whose cumulative explained variance reaches
      ``explained_variance`` (resemble's ``"cumvar"``);
    * an integer: that many;
    * ``"opc"``: resemble's optimal-component rule with the library SOC as side information: for
      c = 1..min(40, rank), each library validation sample (the seeded subset below) is matched to
      its nearest other library sample in the c-component space, and c minimises the root mean
      square difference of their SOC (``opc_rmsd_``). Whitening gives every retained component the
      same weight, so with Mahalanobis distances a cumulative-variance rule that keeps many small,
      noisy components can pick poor neighbours; ``"opc"`` guards against that (see bench/mbl.py).

    All are capped by the numerical rank. Distances:

    * ``"mahalanobis"`` (default): Euclidean distance between whitened scores (each component
      divided by its library standard deviation), i.e. the Mahalanobis distance in the PCA space;
    * ``"euclidean"``: Euclidean distance between raw PCA scores (the spectra's Euclidean distance
      within the retained subspace; ``explained_variance=1`` keeps every component);
    * ``"correlation"``: resemble's correlation dissimilarity ``(1 - r) / 2`` between the whole
      spectra (r: Pearson correlation over bands, in [0, 1]); no PCA is used for this metric.

    Neighbours are found block by block: at most about 2 million distances in memory at once
    (e.g. 40 queries x 50,000 library rows), never a library x library matrix, no Python loop over
    library rows. Ties go to the lower library index.

    **Neighbourhood.** The k nearest library samples, plus, when ``spike=True``, every spiking
    sample (the site's n calibration samples given to ``fit`` as ``X_spike, y_spike``). Spiking
    samples are *not* counted in k: a neighbourhood has k + n rows. They never enter the PCA, the
    neighbour search or the library; they are simply appended to every neighbourhood. A site's
    test rows are never seen by ``fit``, so they cannot enter a neighbourhood.

    **Local model.** One PLS1 NIPALS fit per neighbourhood (X and y centred on the neighbourhood,
    not scaled, as ``PLSRegression(scale=False)``; the tests compare with it), batched over queries
    with stacked matrix products. From that one fit, the coefficients with a = 1..A factors come
    from ``R = W (P^T W)^{-1}`` built column by column, so every factor count costs nothing extra.
    The factor range is ``[min_factors, max_factors]`` clipped to ``A = min(max_factors, rows - 1,
    bands)`` (``min_factors`` is lowered to A when A is smaller).

    * ``"wapls"`` (default): resemble's ``local_fit_wapls`` (Shenk et al. 1997, the LOCAL
      algorithm): the estimate is the weighted mean of the a-factor estimates, a in the factor
      range, with weights ``w_a = 1 / (s_a * g_a)``, where ``s_a`` is the root mean square of the
      *query spectrum's* residual after reconstruction from its a-factor scores (centred query minus
      ``t_a P_a^T``) and ``g_a`` is the root mean square of the a-factor regression coefficients.
      No cross-validation inside the neighbourhood is needed (this is resemble's choice; weights
      from cross-validated errors would multiply the cost by the number of folds). The reported
      factor count is the weighted mean of a.
    * ``"pls"``: plain PLS with one factor count for every query, chosen with k by the
      nearest-neighbour validation below among ``[min_factors, max_factors]`` (a single count when
      they are equal).

    **Choosing k (and the PLS factor count): nearest-neighbour validation.** ``fit`` predicts a
    set of validation targets exactly as ``predict`` would, with each target left out of its own
    neighbourhood, once per candidate k (and per factor count for ``"pls"``), and keeps the
    candidate with the lowest RMSE (ties: the smaller k, then fewer factors). Targets
    (``validation``):

    * ``"library"``: ``validation_size`` library samples drawn without replacement with
      ``numpy.random.default_rng(random_state)``; each is predicted from its k nearest *other*
      library samples (plus every spiking sample when spiking);
    * ``"spike"``: every spiking sample, predicted from its k nearest library samples plus the
      other n - 1 spiking samples (leave-one-out over the site's calibration samples). Their
      predictions at the chosen candidate are kept as ``oof_predictions_`` (out-of-fold estimates
      of the calibration samples, e.g. for conformal intervals or for choosing a winner without the
      test set).
    * ``"auto"`` (default): ``"spike"`` when spiking samples are given, else ``"library"``.

    The validation runs even for a single candidate (it gives ``validation_`` and, with spiking,
    ``oof_predictions_``). resemble's ``NNv`` differs slightly: it predicts each query's nearest
    library neighbour; we use a fixed seeded library subset (or the site's own calibration samples)
    so the choice is made once, in ``fit``.

    **Diagnostics.** ``predict(X, return_diagnostics=True)`` also returns one row per query:
    ``k``, ``n_spike``, ``distance_min``, ``distance_mean``, ``distance_max`` (to its k library
    neighbours, in the metric's units), ``dissimilarity_score`` (``distance_mean`` divided by
    ``reference_distance_``, the median of the same quantity over the library sample, each left out
    of its own neighbourhood: about 1 for a query as close to the library as a typical library
    sample, well above 1 for one outside the library's coverage; an applicability signal) and
    ``factors`` (the factor count used; the weighted mean for WA-PLS). ``kneighbors(X)`` returns the
    neighbours themselves.

    Parallelism: queries are processed in chunks (about 1 million floats of neighbourhood data per
    chunk); ``n_jobs`` threads work on chunks at once, each with BLAS held to one thread.
    """

    def __init__(
        self,
        k=100,
        pca_components: int | str | None = None,
        explained_variance: float = 0.99,
        metric: str = "mahalanobis",
        local_model: str = "wapls",
        min_factors: int = 3,
        max_factors: int = 15,
        spike: bool = False,
        validation: str = "auto",
        validation_size: int = 200,
        random_state=None,
        n_jobs: int | None = 1,
    ):
        self.k = k
        self.pca_components = pca_components
        self.explained_variance = explained_variance
        self.metric = metric
        self.local_model = local_model
        self.min_factors = min_factors
        self.max_factors = max_factors
        self.spike = spike
        self.validation = validation
        self.validation_size = validation_size
        self.random_state = random_state
        self.n_jobs = n_jobs

    # ------------------------------------------------------------------ parameters and input

    def _candidate_ks(self, n_library: int) -> list[int]:
        values = [self.k] if _is_integer(self.k) else self.k
        if isinstance(values, str | bytes) or not isinstance(values, Sequence | np.ndarray):
            raise ValueError(f"k must be a positive integer or a list of them; got {self.k!r}.")
        values = list(values)
        if not values or not all(_is_integer(v) and v >= 1 for v in values):
            raise ValueError(f"k must be a positive integer or a list of them; got {self.k!r}.")
        too_large = [int(v) for v in values if v > n_library - 1]
        if too_large:
            raise ValueError(
                f"k={too_large} is larger than the library allows: the library has {n_library} "
                f"samples and nearest-neighbour validation leaves one out, so k <= "
                f"{n_library - 1}; use a smaller k or a larger library."
            )
        return sorted({int(v) for v in values})

    def _check_parameters(self) -> None:
        if self.metric not in METRICS:
            raise ValueError(f"metric must be one of {list(METRICS)}; got {self.metric!r}.")
        if self.local_model not in LOCAL_MODELS:
            raise ValueError(
                f"local_model must be one of {list(LOCAL_MODELS)}; got {self.local_model!r}."
            )
        if self.validation not in VALIDATION_MODES:
            raise ValueError(
                f"validation must be one of {list(VALIDATION_MODES)}; got {self.validation!r}."
            )
        for name in ("min_factors", "max_factors", "validation_size"):
            value = getattr(self, name)
            if not _is_integer(value) or value < 1:
                raise ValueError(f"{name} must be a positive integer; got {value!r}.")
        if self.min_factors > self.max_factors:
            raise ValueError(
                f"min_factors ({self.min_factors}) must not exceed max_factors "
                f"({self.max_factors}); swap or change them."
            )
        components = self.pca_components
        if components is not None and not (isinstance(components, str) and components == "opc") and (
            not _is_integer(components) or components < 1
        ):
            raise ValueError(
                f"pca_components must be a positive integer, None or 'opc'; got {components!r}."
            )
        variance = self.explained_variance
        if isinstance(variance, bool) or not isinstance(variance, numbers.Real) or not (
            0 < variance <= 1
        ):
            raise ValueError(f"explained_variance must be in (0, 1]; got {variance!r}.")
        if not isinstance(self.spike, bool | np.bool_):
            raise ValueError(f"spike must be True or False; got {self.spike!r}.")
        resolve_n_jobs(self.n_jobs)

    def _check_spike(self, X_spike, y_spike, n_features: int):
        if not self.spike:
            if X_spike is not None or y_spike is not None:
                raise ValueError(
                    "X_spike / y_spike were given but spike=False; set spike=True to add them "
                    "to every neighbourhood, or do not pass them."
                )
            return np.empty((0, n_features)), np.empty(0)
        if X_spike is None or y_spike is None:
            raise ValueError(
                "spike=True needs the spiking samples: pass both X_spike and y_spike to fit "
                "(the site's calibration spectra and their SOC)."
            )
        X_spike = check_array(X_spike, dtype=np.float64, ensure_all_finite=False,
                              input_name="X_spike")
        y_spike = np.asarray(y_spike, dtype=np.float64).reshape(-1)
        if X_spike.shape[1] != n_features:
            raise ValueError(
                f"X_spike has {X_spike.shape[1]} bands but the library has {n_features}; "
                "bring the spiking spectra to the library's wavelength grid (same bands, same "
                "order, same preprocessing) first."
            )
        if len(y_spike) != len(X_spike):
            raise ValueError(
                f"X_spike has {len(X_spike)} rows but y_spike has {len(y_spike)} values; "
                "give one SOC value per spiking spectrum."
            )
        check_finite(X_spike, "X_spike")
        check_finite(y_spike, "y_spike", "SOC values")
        return np.ascontiguousarray(X_spike), y_spike

    def _check_query(self, X, name: str = "X") -> np.ndarray:
        try:
            X = validate_data(self, X, dtype=np.float64, order="C", ensure_all_finite=False,
                              reset=False)
        except ValueError as error:
            if "features, but" in str(error):
                raise ValueError(
                    f"{error} The spectra to predict must have the library's bands: resample "
                    "them to the library's wavelength grid (same bands, same order, same "
                    "preprocessing) first."
                ) from None
            raise
        check_finite(X, name)
        return X

    # ------------------------------------------------------------------ fit

    def fit(self, X, y, X_spike=None, y_spike=None):
        """Store the library (and the spiking samples), fit the PCA, choose k by validation.

        Parameters
        ----------
        X : array (n_library, n_bands), preprocessed library spectra.
        y : array (n_library,), library SOC.
        X_spike, y_spike : the site's calibration samples (only with ``spike=True``).
        """
        self._check_parameters()
        X, y = self._check_library(X, y)
        ks = self._candidate_ks(len(X))
        X_spike, y_spike = self._check_spike(X_spike, y_spike, X.shape[1])
        mode = self._validation_mode(len(X_spike))

        self.X_library_ = X
        self.y_library_ = y.astype(np.float64)
        self.X_spike_ = X_spike
        self.y_spike_ = y_spike
        self.n_library_ = len(X)
        self.n_spike_ = len(X_spike)
        self.factor_range_ = (int(self.min_factors), int(self.max_factors))
        rng = np.random.default_rng(self.random_state)
        size = min(int(self.validation_size), len(X))
        self.validation_indices_ = np.sort(rng.choice(len(X), size=size, replace=False))
        n_threads = resolve_n_jobs(self.n_jobs)
        with limit_blas_threads(n_threads):
            self._fit_space(X)
        self.library_embedding_ = self._embed(X)
        self.spike_embedding_ = self._embed(X_spike)

        library_targets = self._validate_library(self.validation_indices_, ks,
                                                 fit_local_models=mode == "library")
        if mode == "library":
            table, oof = library_targets, None
        else:
            table, oof = self._validate_spike(ks)
        best = table.iloc[int(np.argmin(table["rmse"].to_numpy()))]
        self.validation_ = table.drop(columns="predictions").reset_index(drop=True)
        self.validation_mode_ = mode
        self.k_ = int(best["k"])
        self.n_factors_ = None if self.local_model == "wapls" else int(best["factors"])
        self.oof_predictions_ = None if oof is None else best["predictions"]
        chosen = library_targets.loc[library_targets["k"] == self.k_].iloc[0]
        self.reference_distance_ = float(np.median(chosen["distance_mean"]))
        return self

    def _check_library(self, X, y) -> tuple[np.ndarray, np.ndarray]:
        """The library spectra and SOC as float64 (C order, y 1-D), or a ValueError."""
        try:
            X, y = validate_data(self, X, y, dtype=np.float64, order="C", y_numeric=True,
                                 ensure_all_finite=False, ensure_min_samples=2)
        except ValueError as error:
            if "Input y contains" in str(error):
                raise ValueError(
                    f"{error} y holds the library SOC: drop unlabelled library rows (SOC "
                    "missing) before fitting."
                ) from None
            raise
        check_finite(X, "X (the library spectra)")
        if y.ndim == 2:
            if y.shape[1] != 1:
                raise ValueError(f"y must be one target (n_samples,); got shape {y.shape}.")
            y = y[:, 0]
        check_finite(y, "y (the library SOC)", "SOC values (drop unlabelled library rows)")
        return X, y

    def _validation_mode(self, n_spike: int) -> str:
        """``validation`` with ``"auto"`` resolved: ``"spike"`` with spiking samples."""
        mode = self.validation
        if mode == "auto":
            mode = "spike" if n_spike else "library"
        if mode == "spike" and n_spike < 2:
            raise ValueError(
                "validation='spike' needs spike=True and at least 2 spiking samples (each is "
                "predicted from the others); use validation='library'."
            )
        return mode

    def _fit_space(self, X: np.ndarray) -> None:
        """PCA of the library (covariance eigendecomposition, accumulated in row blocks)."""
        if self.metric == "correlation":
            self.pca_mean_ = None
            self.pca_rotation_ = None
            self.pca_scale_ = None
            self.n_components_ = None
            self.explained_variance_ratio_ = None
            self.opc_rmsd_ = None
            return
        n, p = X.shape
        mean = X.mean(axis=0)
        covariance = np.zeros((p, p))
        for start in range(0, n, 8192):
            block = X[start : start + 8192] - mean
            covariance += block.T @ block
        covariance /= max(n - 1, 1)
        eigenvalues, eigenvectors = np.linalg.eigh(covariance)
        order = np.argsort(eigenvalues)[::-1]
        eigenvalues, eigenvectors = eigenvalues[order], eigenvectors[:, order]
        top = max(float(eigenvalues[0]), 0.0)
        rank = int(np.sum(eigenvalues > top * max(n, p) * np.finfo(np.float64).eps * 10))
        if rank == 0:
            raise ValueError(
                "the library spectra have no variance (all identical), so no PCA space can be "
                "built; check the input or use metric='correlation'."
            )
        ratio = np.clip(eigenvalues, 0, None) / np.clip(eigenvalues, 0, None).sum()
        self.opc_rmsd_ = None
        if isinstance(self.pca_components, str):
            self.pca_mean_ = mean
            scale = np.sqrt(eigenvalues[:rank]) if self.metric == "mahalanobis" else np.ones(rank)
            self.opc_rmsd_ = self._optimal_components(X, eigenvectors[:, : min(40, rank)],
                                                      scale[: min(40, rank)])
            components = int(np.argmin(self.opc_rmsd_)) + 1
        elif self.pca_components is not None:
            if self.pca_components > rank:
                raise ValueError(
                    f"pca_components={self.pca_components} exceeds the numerical rank of the "
                    f"library spectra ({rank}); use pca_components <= {rank} or None."
                )
            components = int(self.pca_components)
        else:
            cumulative = np.cumsum(ratio)
            components = int(np.searchsorted(cumulative, self.explained_variance - 1e-12)) + 1
            components = min(components, rank)
        self.pca_mean_ = mean
        self.pca_rotation_ = np.ascontiguousarray(eigenvectors[:, :components])
        self.pca_scale_ = (
            np.sqrt(eigenvalues[:components]) if self.metric == "mahalanobis"
            else np.ones(components)
        )
        self.n_components_ = components
        self.explained_variance_ratio_ = ratio[:components]

    def _optimal_components(self, X, rotation, scale) -> np.ndarray:
        """SOC RMSD between each validation sample and its nearest neighbour, c = 1..C.

        Squared distances grow one component at a time, for small blocks of validation
        samples against the whole library (about 800,000 distances per block: cache-sized).
        """
        scores = ((X - self.pca_mean_) @ rotation) / scale  # (n, C)
        columns = np.ascontiguousarray(scores.T)
        targets = self.validation_indices_
        n, n_candidates = scores.shape
        squared_error = np.zeros(n_candidates)
        block = max(1, _OPC_BLOCK // max(n, 1))
        for start in range(0, len(targets), block):
            chunk = targets[start : start + block]
            distances = np.zeros((len(chunk), n))
            distances[np.arange(len(chunk)), chunk] = np.inf  # never a sample's own neighbour
            term = np.empty_like(distances)
            for c in range(n_candidates):
                np.subtract(columns[c][None, :], columns[c, chunk][:, None], out=term)
                np.square(term, out=term)
                distances += term
                nearest = np.argmin(distances, axis=1)
                squared_error[c] += np.sum((self.y_library_[nearest] - self.y_library_[chunk]) ** 2)
        return np.sqrt(squared_error / len(targets))

    def _embed(self, X: np.ndarray) -> np.ndarray:
        """Coordinates whose squared Euclidean distances give the metric."""
        if len(X) == 0:
            width = X.shape[1] if self.metric == "correlation" else self.n_components_
            return np.empty((0, width))
        if self.metric == "correlation":
            centred = X - X.mean(axis=1, keepdims=True)
            norms = np.linalg.norm(centred, axis=1, keepdims=True)
            norms[norms == 0] = 1.0  # a flat spectrum: distance 1/2 to every other spectrum
            return centred / norms
        return ((X - self.pca_mean_) @ self.pca_rotation_) / self.pca_scale_

    def _to_distance(self, squared: np.ndarray) -> np.ndarray:
        squared = np.maximum(squared, 0.0)
        if self.metric == "correlation":
            return squared / 4.0  # |a - b|^2 = 2 - 2r for unit vectors, so (1 - r) / 2
        return np.sqrt(squared)

    # ------------------------------------------------------------------ neighbours

    def _nearest(self, query_embedding: np.ndarray, n_neighbors: int, exclude=None):
        """(distances, indices) of the n nearest library rows per query, nearest first.

        ``exclude``: one library row per query to leave out (its own index), or None.
        """
        library = self.library_embedding_
        n_library = len(library)
        library_norms = np.einsum("ij,ij->i", library, library)
        n_queries = len(query_embedding)
        indices = np.empty((n_queries, n_neighbors), dtype=np.intp)
        distances = np.empty((n_queries, n_neighbors))
        block = max(1, _DISTANCE_BLOCK // max(n_library, 1))
        for start in range(0, n_queries, block):
            stop = min(n_queries, start + block)
            query = query_embedding[start:stop]
            squared = library_norms - 2.0 * (query @ library.T)
            squared += np.einsum("ij,ij->i", query, query)[:, None]
            rows = np.arange(stop - start)
            if exclude is not None:
                squared[rows, exclude[start:stop]] = np.inf
            if n_neighbors < n_library:
                candidates = np.argpartition(squared, n_neighbors - 1, axis=1)[:, :n_neighbors]
            else:
                candidates = np.broadcast_to(np.arange(n_library), squared.shape).copy()
            # exact distances of the candidates, then nearest first (ties: lower index)
            difference = library[candidates] - query[:, None, :]
            exact = np.einsum("ijk,ijk->ij", difference, difference)
            order = np.lexsort((candidates, exact), axis=-1)
            indices[start:stop] = np.take_along_axis(candidates, order, axis=1)
            distances[start:stop] = self._to_distance(np.take_along_axis(exact, order, axis=1))
        return distances, indices

    def kneighbors(self, X, n_neighbors: int | None = None, return_distance: bool = True,
                   include_spike: bool = False):
        """The library neighbours of each spectrum of X, nearest first.

        Returns ``(distances, indices)`` (or the indices alone), shape (n_queries, n_neighbors)
        with ``n_neighbors`` defaulting to ``k_``; indices are library rows. With
        ``include_spike=True`` every spiking sample is appended after the library neighbours,
        numbered ``n_library_ + j`` (j: its row in ``X_spike``): the full neighbourhood a local
        model is fitted on.
        """
        check_is_fitted(self, "k_")
        X = self._check_query(X)
        n_neighbors = self.k_ if n_neighbors is None else n_neighbors
        if not _is_integer(n_neighbors) or not 1 <= n_neighbors <= self.n_library_:
            raise ValueError(
                f"n_neighbors must be an integer in [1, {self.n_library_}] (the library size); "
                f"got {n_neighbors!r}."
            )
        embedding = self._embed(X)
        distances, indices = self._nearest(embedding, int(n_neighbors))
        if include_spike and self.n_spike_:
            difference = embedding[:, None, :] - self.spike_embedding_[None, :, :]
            spike_distances = self._to_distance(np.einsum("ijk,ijk->ij", difference, difference))
            spike_indices = np.broadcast_to(
                self.n_library_ + np.arange(self.n_spike_), (len(X), self.n_spike_)
            )
            distances = np.hstack([distances, spike_distances])
            indices = np.hstack([indices, spike_indices])
        return (distances, indices) if return_distance else indices

    # ------------------------------------------------------------------ local models

    def _local_fits(self, X_query, library_indices, spike_indices):
        """Local PLS for each query: (estimates per factor count, their weights' terms).

        ``library_indices`` (B, k) and ``spike_indices`` (B, s) or None pick the neighbourhood
        rows. Returns ``predictions, residual_rms, coefficient_rms``, each (B, A).
        """
        parts_X = [self.X_library_[library_indices]]
        parts_y = [self.y_library_[library_indices]]
        if spike_indices is not None and spike_indices.shape[1]:
            parts_X.append(self.X_spike_[spike_indices])
            parts_y.append(self.y_spike_[spike_indices])
        X = np.concatenate(parts_X, axis=1) if len(parts_X) > 1 else parts_X[0]
        y = np.concatenate(parts_y, axis=1) if len(parts_y) > 1 else parts_y[0]
        n_rows = X.shape[1]
        n_factors = min(int(self.max_factors), n_rows - 1, X.shape[2])
        return _batched_pls(X, y, X_query, n_factors)

    def _combine(self, predictions, residual_rms, coefficient_rms, n_factors=None):
        """Final estimates and factor counts from the per-factor estimates (B, A)."""
        available = predictions.shape[1]
        low = min(int(self.min_factors), available)
        if self.local_model == "pls":
            count = min(int(n_factors), available)
            return predictions[:, count - 1], np.full(len(predictions), float(count))
        terms = residual_rms[:, low - 1 :] * coefficient_rms[:, low - 1 :]
        floor = 1e-12 * terms.max(axis=1, keepdims=True) + np.finfo(np.float64).tiny
        weights = floor / np.maximum(terms, floor)
        weights /= weights.sum(axis=1, keepdims=True)
        factors = np.arange(low, available + 1, dtype=np.float64)
        return (
            np.einsum("ij,ij->i", weights, predictions[:, low - 1 :]),
            weights @ factors,
        )

    def _chunks(self, n_queries: int, n_rows: int, n_features: int) -> list[slice]:
        size = max(1, _FIT_BLOCK // max(1, n_rows * n_features))
        return [slice(s, min(n_queries, s + size)) for s in range(0, n_queries, size)]

    def _run_chunks(self, function, chunks):
        n_threads = resolve_n_jobs(self.n_jobs)
        if n_threads == 1 or len(chunks) == 1:
            with limit_blas_threads(1):
                return [function(chunk) for chunk in chunks]
        with limit_blas_threads(1):
            return Parallel(n_jobs=n_threads, prefer="threads")(
                delayed(function)(chunk) for chunk in chunks
            )

    # ------------------------------------------------------------------ validation

    def _candidate_rows(self, k: int, predictions, residual_rms, coefficient_rms, y):
        """Validation table rows of one k: one per factor count (pls) or one (wapls)."""
        rows = []
        if self.local_model == "wapls":
            estimates, _ = self._combine(predictions, residual_rms, coefficient_rms)
            rows.append({"k": k, "factors": "wapls", "predictions": estimates})
        else:
            available = predictions.shape[1]
            low = min(int(self.min_factors), available)
            high = min(int(self.max_factors), available)
            for count in range(low, high + 1):
                rows.append({"k": k, "factors": count, "predictions": predictions[:, count - 1]})
        for row in rows:
            row["rmse"] = float(np.sqrt(np.mean((row["predictions"] - y) ** 2)))
        return rows

    def _validate_library(self, targets: np.ndarray, ks: list[int],
                          fit_local_models: bool = True) -> pd.DataFrame:
        """Library targets, each predicted from its k nearest other library rows (+ spike).

        Without ``fit_local_models`` only the neighbour distances are kept (for
        ``reference_distance_``).
        """
        distances, indices = self._nearest(
            self.library_embedding_[targets], max(ks), exclude=targets
        )
        X_query = self.X_library_[targets]
        spike = self._all_spike(len(targets))
        rows = []
        for k in ks:
            if fit_local_models:
                estimates = self._predict_neighbourhoods(X_query, indices[:, :k], spike)
                candidates = self._candidate_rows(k, *estimates, self.y_library_[targets])
            else:
                candidates = [{"k": k}]
            for row in candidates:
                row["distance_mean"] = distances[:, :k].mean(axis=1)
                rows.append(row)
        return pd.DataFrame(rows)

    def _validate_spike(self, ks: list[int]):
        """Leave-one-out over the spiking samples: k library neighbours + the other n - 1."""
        n = self.n_spike_
        _, indices = self._nearest(self.spike_embedding_, max(ks))
        positions = np.arange(n - 1)[None, :]
        others = positions + (positions >= np.arange(n)[:, None])  # row i: every j != i
        rows = []
        for k in ks:
            estimates = self._predict_neighbourhoods(self.X_spike_, indices[:, :k], others)
            rows.extend(self._candidate_rows(k, *estimates, self.y_spike_))
        table = pd.DataFrame(rows)
        return table, table

    def _all_spike(self, n_queries: int):
        if not self.n_spike_:
            return None
        return np.broadcast_to(np.arange(self.n_spike_), (n_queries, self.n_spike_))

    def _predict_neighbourhoods(self, X_query, library_indices, spike_indices):
        """Per-factor estimates and weight terms for every query, chunk by chunk."""
        n_rows = library_indices.shape[1] + (0 if spike_indices is None else spike_indices.shape[1])
        chunks = self._chunks(len(X_query), n_rows, X_query.shape[1])

        def run(chunk):
            return self._local_fits(
                X_query[chunk],
                library_indices[chunk],
                None if spike_indices is None else spike_indices[chunk],
            )

        parts = self._run_chunks(run, chunks)
        return tuple(np.concatenate([part[i] for part in parts]) for i in range(3))

    # ------------------------------------------------------------------ predict

    def predict(self, X, return_diagnostics: bool = False):
        """SOC estimates, shape (n_queries,); with ``return_diagnostics``, also a DataFrame.

        The diagnostics have one row per query: k, n_spike, distance_min, distance_mean,
        distance_max, dissimilarity_score, factors (see the class Notes).
        """
        check_is_fitted(self, "k_")
        X = self._check_query(X)
        distances, indices = self._nearest(self._embed(X), self.k_)
        predictions = self._predict_neighbourhoods(X, indices, self._all_spike(len(X)))
        estimates, factors = self._combine(*predictions, n_factors=self.n_factors_)
        if not return_diagnostics:
            return estimates
        mean_distance = distances.mean(axis=1)
        diagnostics = pd.DataFrame(
            {
                "estimate": estimates,
                "k": self.k_,
                "n_spike": self.n_spike_,
                "distance_min": distances[:, 0],
                "distance_mean": mean_distance,
                "distance_max": distances[:, -1],
                "dissimilarity_score": mean_distance / self.reference_distance_
                if self.reference_distance_ > 0 else np.inf,
                "factors": factors,
            }
        )
        return estimates, diagnostics

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.allow_nan = False
        return tags


def _batched_pls(X: np.ndarray, y: np.ndarray, X_query: np.ndarray, n_factors: int):
    """PLS1 NIPALS on a stack of neighbourhoods, 1..n_factors factors from one fit each.

    X (B, m, p) (overwritten: centred in place), y (B, m), X_query (B, p). Returns
    ``(predictions, residual_rms, coefficient_rms)``, each (B, n_factors): the query's estimate
    with a factors, the root mean square of its spectral residual after reconstruction from a
    factors, and the root mean square of the a-factor regression coefficients.

    Same weights, scores, loadings and y-loadings as NIPALS with X deflation (sklearn's
    ``PLSRegression(scale=False)``), without ever writing a deflated X: for PLS1,
    ``E_a^T f_a = X^T f_a`` (f_a, the deflated y, is orthogonal to the earlier scores),
    ``t_a = E_a w_a`` is ``X w_a`` orthogonalised against the earlier scores and
    ``E_a^T t_a = X^T t_a``. So each factor reads X twice (``X w`` and ``X^T [t, f]``) and
    writes nothing of its size. A factor whose score is numerically zero (the neighbourhood's
    rank is exhausted) adds nothing.
    """
    B, m, p = X.shape
    x_mean = X.mean(axis=1)
    y_mean = y.mean(axis=1)
    X -= x_mean[:, None, :]
    f = y - y_mean[:, None]
    threshold = 1e-20 * np.einsum("bmp,bmp->b", X, X) + np.finfo(np.float64).tiny
    P = np.zeros((B, p, n_factors))
    R = np.zeros((B, p, n_factors))
    U = np.zeros((B, m, n_factors))  # unit scores, for the orthogonalisation
    q = np.zeros((B, n_factors))
    g = np.matmul(f[:, None, :], X)[:, 0, :]  # X^T f
    for a in range(n_factors):
        norm = np.linalg.norm(g, axis=1)
        w = g / np.where(norm > 0, norm, 1.0)[:, None]
        t = np.matmul(X, w[:, :, None])[:, :, 0]
        if a:
            earlier = U[:, :, :a]
            for _ in range(2):  # classical Gram-Schmidt, twice
                t -= np.matmul(earlier, np.matmul(t[:, None, :], earlier)[:, 0, :, None])[:, :, 0]
        tt = np.einsum("bm,bm->b", t, t)
        live = tt > threshold
        inverse = np.where(live, 1.0 / np.where(live, tt, 1.0), 0.0)
        t *= live[:, None]
        q_a = np.einsum("bm,bm->b", f, t) * inverse
        f = f - q_a[:, None] * t
        products = np.matmul(np.stack([t, f], axis=1), X)  # X^T t and X^T f in one pass
        loading = products[:, 0, :] * inverse[:, None]
        g = products[:, 1, :]
        w = w * live[:, None]
        # r_a = w_a - sum_{j<a} r_j (p_j . w_a): the columns of W (P^T W)^{-1}
        r = w.copy()
        if a:
            r -= np.matmul(
                R[:, :, :a], np.matmul(w[:, None, :], P[:, :, :a])[:, 0, :, None]
            )[:, :, 0]
        U[:, :, a] = t * np.sqrt(inverse)[:, None]
        P[:, :, a], R[:, :, a], q[:, a] = loading, r, q_a
    return _query_estimates(X_query - x_mean, y_mean, P, R, q)


def _query_estimates(centred_query: np.ndarray, y_mean: np.ndarray, P: np.ndarray,
                     R: np.ndarray, q: np.ndarray):
    """(predictions, residual_rms, coefficient_rms), each (B, A), of the centred queries
    (B, p) from the loadings P, rotations R (B, p, A) and y-loadings q (B, A) of a PLS1 fit per
    neighbourhood with 1..A factors (see ``_batched_pls``)."""
    coefficients = np.cumsum(R * q[:, None, :], axis=2)  # (B, p, A): b_a for a = 1..A
    scores = np.matmul(centred_query[:, None, :], R)[:, 0, :]  # (B, A)
    predictions = y_mean[:, None] + np.cumsum(scores * q, axis=1)
    reconstruction = np.cumsum(scores[:, None, :] * P, axis=2)  # (B, p, A)
    residual = centred_query[:, :, None] - reconstruction
    residual_rms = np.sqrt(np.mean(residual**2, axis=1))
    coefficient_rms = np.sqrt(np.mean(coefficients**2, axis=1))
    return predictions, residual_rms, coefficient_rms


# ---------------------------------------------------------------------- study helper


@dataclass
class SiteEstimates:
    """MBL estimates of one site: calibration (out-of-fold) and test rows, and the model."""

    calibration: pd.DataFrame
    test: pd.DataFrame
    model: MemoryBasedLearner


def predict_site_mbl(
    library: pd.DataFrame,
    calibration: pd.DataFrame,
    test: pd.DataFrame,
    *,
    target: str = "soc",
    **params,
) -> SiteEstimates:
    """MBL for one site from canonical tables (spectra already preprocessed, same grid).

    Library rows without ``target`` are dropped (unlabelled). With ``spike=True`` (a default
    here) the site's calibration rows are added to every neighbourhood, k is chosen by
    leave-one-out over them, and their out-of-fold estimates are returned; the test rows are
    only predicted. ``params`` go to :class:`MemoryBasedLearner`; this helper's defaults
    differ from the estimator's in ``spike=True`` and ``pca_components="opc"`` (a
    cumulative-variance rule can keep many small, whitened components and pick poor
    neighbours; bench/mbl.py measures it).

    Returns
    -------
    SiteEstimates
        ``calibration``: sample_id, observed, estimated (leave-one-out; plain predictions when
        ``spike=False``); ``test``: sample_id, observed, estimated and the diagnostics columns.
    """
    from localsoc.data.schema import spectra_of

    _check_same_grid(library, calibration, test)
    labelled = library.loc[library[target].notna()]
    params = {"spike": True, "pca_components": "opc", **params}
    model = MemoryBasedLearner(**params)
    y_calibration = calibration[target].to_numpy(np.float64)
    if params["spike"]:
        model.fit(spectra_of(labelled), labelled[target].to_numpy(np.float64),
                  X_spike=spectra_of(calibration), y_spike=y_calibration)
    else:
        model.fit(spectra_of(labelled), labelled[target].to_numpy(np.float64))
    if model.oof_predictions_ is not None:
        calibration_estimates = np.asarray(model.oof_predictions_, dtype=np.float64)
    else:
        calibration_estimates = model.predict(spectra_of(calibration))
    estimates, diagnostics = model.predict(spectra_of(test), return_diagnostics=True)
    calibration_table = _estimates_table(calibration, y_calibration, calibration_estimates)
    test_table = pd.concat(
        [
            _estimates_table(test, test[target].to_numpy(np.float64), estimates),
            diagnostics.drop(columns="estimate"),
        ],
        axis=1,
    )
    return SiteEstimates(calibration_table, test_table, model)


def _check_same_grid(library: pd.DataFrame, *tables: pd.DataFrame) -> None:
    """ValueError when the calibration or test table has other band columns than the library."""
    from localsoc.data.schema import band_columns

    columns = band_columns(library)
    for name, frame in zip(("calibration", "test"), tables, strict=True):
        if band_columns(frame) != columns:
            raise ValueError(
                f"the {name} table's band columns differ from the library's ({len(columns)} "
                "bands); bring every table to the same wavelength grid first."
            )


def _estimates_table(table: pd.DataFrame, observed: np.ndarray,
                     estimated: np.ndarray) -> pd.DataFrame:
    """sample_id, observed, estimated of a table's rows."""
    return pd.DataFrame({
        "sample_id": table["sample_id"].astype(str).to_numpy(),
        "observed": observed,
        "estimated": estimated,
    })
