"""Resample spectra from a source wavelength grid to a target grid (band averaging or interpolation).

Band averaging: target band ``t`` is the mean of the source bands whose centre falls in its
window ``[t - h_left, t + h_right)``, where ``h_left``/``h_right`` are half the spacing to the
neighbouring target bands (on a regular grid, ``[t - step/2, t + step/2)``; the end bands use the
spacing to their single neighbour). When a window holds no source band (a source coarser than the
grid, or a gap in the source), that target band falls back to linear interpolation between the
nearest source bands; the fitted ``interpolated_nm_`` lists those bands.

Coverage: the source must reach the grid's first and last band centres to within
``min(one source step, half a grid step)`` at each end; otherwise ``ValueError`` names the
missing range in nm. Within that tolerance an end band is averaged over the part of its window
the source covers (or takes the nearest source value). Gaps inside the source are not an error;
they are bridged by interpolation.

The resampling is a fixed linear map, built once in ``fit`` as a sparse matrix ``weights_``
(source bands x target bands), so ``transform`` is one sparse product. Because only the stored
weights are used, a NaN in a source band only makes the target bands that use that band NaN.
"""

from __future__ import annotations

import numpy as np
from scipy import sparse
from sklearn.base import BaseEstimator, TransformerMixin
from sklearn.utils.validation import check_is_fitted, validate_data

from localsoc.data.schema import Grid, band_names, band_wavelength

METHODS = ("average", "interpolate")
_EPS_NM = 1e-9


def _format_nm(value: float) -> str:
    return f"{float(value):g}"


def _as_wavelengths(values, name: str) -> np.ndarray:
    """A 1-D, finite, strictly increasing float array of at least 2 wavelengths."""
    if isinstance(values, Grid):
        values = values.wavelengths_nm
    try:
        array = np.asarray(values, dtype=np.float64)
    except (TypeError, ValueError) as error:
        raise ValueError(
            f"{name} must be a sequence of wavelengths in nm; got {values!r}"
        ) from error
    if array.ndim != 1 or array.size < 2:
        raise ValueError(
            f"{name} must be a 1-D sequence of at least 2 wavelengths in nm; got shape {array.shape}"
        )
    if not np.all(np.isfinite(array)):
        raise ValueError(
            f"{name} must hold finite wavelengths; got {array[~np.isfinite(array)][:3]}"
        )
    steps = np.diff(array)
    if np.any(steps <= 0):
        where = int(np.flatnonzero(steps <= 0)[0])
        raise ValueError(
            f"{name} must be strictly increasing; position {where + 1} holds "
            f"{_format_nm(array[where + 1])} nm after {_format_nm(array[where])} nm. "
            "Sort the spectral columns by wavelength and drop duplicates"
        )
    return array


def band_windows(target_nm) -> tuple[np.ndarray, np.ndarray]:
    """Lower (inclusive) and upper (exclusive) window edges in nm of each target band."""
    target = _as_wavelengths(target_nm, "target_nm")
    middles = (target[:-1] + target[1:]) / 2.0
    lower = np.concatenate(([target[0] - (target[1] - target[0]) / 2.0], middles))
    upper = np.concatenate((middles, [target[-1] + (target[-1] - target[-2]) / 2.0]))
    return lower, upper


def _end_tolerances(source: np.ndarray, target: np.ndarray) -> tuple[float, float]:
    low = min(source[1] - source[0], (target[1] - target[0]) / 2.0)
    high = min(source[-1] - source[-2], (target[-1] - target[-2]) / 2.0)
    return low + _EPS_NM, high + _EPS_NM


def covered_target_mask(source_nm, target_nm) -> np.ndarray:
    """Boolean mask of the target bands that the source covers (see the module notes)."""
    source = _as_wavelengths(source_nm, "source_nm")
    target = _as_wavelengths(target_nm, "target_nm")
    low, high = _end_tolerances(source, target)
    return (target >= source[0] - low) & (target <= source[-1] + high)


def missing_ranges(source_nm, target_nm) -> list[tuple[float, float]]:
    """The parts of the target range, in nm, that the source does not cover (empty when covered)."""
    source = _as_wavelengths(source_nm, "source_nm")
    target = _as_wavelengths(target_nm, "target_nm")
    low, high = _end_tolerances(source, target)
    gaps = []
    if source[0] > target[0] + low:
        gaps.append((float(target[0]), float(min(source[0], target[-1]))))
    if source[-1] < target[-1] - high:
        gaps.append((float(max(source[-1], target[0])), float(target[-1])))
    return gaps


def widest_spacing(source_nm, target_nm) -> tuple[float, float, float]:
    """The widest spacing of the source bands over the target range: (nm, from nm, to nm).

    Band averaging cannot recover target bands finer than the source samples (they would be
    interpolated, see the module notes); callers that must not invent bands compare this with
    the target's step.
    """
    source = _as_wavelengths(source_nm, "source_nm")
    target = _as_wavelengths(target_nm, "target_nm")
    steps = np.diff(source)
    overlapping = (source[1:] > target[0]) & (source[:-1] < target[-1])
    if not overlapping.any():
        return float(steps.max()), float(source[0]), float(source[-1])
    where = int(np.flatnonzero(overlapping)[np.argmax(steps[overlapping])])
    return float(steps[where]), float(source[where]), float(source[where + 1])


def coverage_message(source_nm, target_nm) -> str | None:
    """The error text for a source that does not cover the target grid, or None when it does."""
    source = _as_wavelengths(source_nm, "source_nm")
    target = _as_wavelengths(target_nm, "target_nm")
    gaps = missing_ranges(source, target)
    if not gaps:
        return None
    missing = " and ".join(f"{_format_nm(a)}-{_format_nm(b)} nm" for a, b in gaps)
    covered = target[covered_target_mask(source, target)]
    if covered.size >= 2:
        steps = np.diff(covered)
        if np.allclose(steps, steps[0]):
            hint = (
                f"Declare a narrower grid (grid: start_nm: {_format_nm(covered[0])}, "
                f"stop_nm: {_format_nm(covered[-1])}, step_nm: {_format_nm(steps[0])})"
            )
        else:
            hint = (
                f"Declare a narrower grid ({_format_nm(covered[0])}-{_format_nm(covered[-1])} nm)"
            )
    else:
        hint = "Declare a grid inside the source range"
    return (
        f"source covers {_format_nm(source[0])}-{_format_nm(source[-1])} nm; the grid needs "
        f"{_format_nm(target[0])}-{_format_nm(target[-1])} nm: missing {missing}. "
        f"{hint} or supply spectra that cover it"
    )


def _interpolation_entries(source: np.ndarray, targets: np.ndarray, columns: np.ndarray):
    """(row, column, weight) triplets of linear interpolation; ends clamp to the end band."""
    right = np.clip(np.searchsorted(source, targets, side="left"), 1, source.size - 1)
    left = right - 1
    span = source[right] - source[left]
    weight_right = np.clip((targets - source[left]) / span, 0.0, 1.0)
    rows = np.concatenate((left, right))
    cols = np.concatenate((columns, columns))
    weights = np.concatenate((1.0 - weight_right, weight_right))
    return rows, cols, weights


def resampling_matrix(
    source_nm, target_nm, method: str = "average"
) -> tuple[sparse.csr_array, np.ndarray]:
    """The sparse (source x target) resampling weights and the target bands that were interpolated.

    Coverage is not checked here; see ``missing_ranges``.
    """
    if method not in METHODS:
        raise ValueError(f"method must be one of {METHODS}; got {method!r}")
    source = _as_wavelengths(source_nm, "source_nm")
    target = _as_wavelengths(target_nm, "target_nm")
    all_columns = np.arange(target.size)
    if method == "interpolate":
        rows, cols, weights = _interpolation_entries(source, target, all_columns)
        interpolated = target.copy()
    else:
        lower, upper = band_windows(target)
        edges = np.concatenate((lower, upper[-1:]))
        window = np.searchsorted(edges, source, side="right") - 1
        inside = (window >= 0) & (window < target.size)
        counts = np.bincount(window[inside], minlength=target.size)
        avg_rows = np.flatnonzero(inside)
        avg_cols = window[inside]
        avg_weights = 1.0 / counts[avg_cols]
        empty = np.flatnonzero(counts == 0)
        int_rows, int_cols, int_weights = _interpolation_entries(source, target[empty], empty)
        rows = np.concatenate((avg_rows, int_rows))
        cols = np.concatenate((avg_cols, int_cols))
        weights = np.concatenate((avg_weights, int_weights))
        interpolated = target[empty]
    keep = weights != 0.0
    matrix = sparse.csr_array(
        (weights[keep], (rows[keep], cols[keep])), shape=(source.size, target.size)
    )
    matrix.sum_duplicates()
    return matrix, interpolated


class Resample(TransformerMixin, BaseEstimator):
    """Resample spectra from ``source_nm`` to ``target_nm`` by band averaging or interpolation.

    Parameters
    ----------
    source_nm : array-like of float or None, default=None
        Wavelength (nm) of each input column, strictly increasing. None: taken from the column
        names of a DataFrame passed to ``fit`` (``nm_<wavelength>``, as in the canonical table).
    target_nm : array-like of float, Grid or None, default=None
        The wavelengths to produce, strictly increasing; None is the project grid (400-2500 nm
        every 10 nm).
    method : {"average", "interpolate"}, default="average"
        "average": mean of the source bands in each target window (see the module notes), with
        linear interpolation for windows holding no source band; "interpolate": linear
        interpolation at each target wavelength.

    Attributes
    ----------
    source_nm_, target_nm_ : ndarray
        The wavelengths used.
    weights_ : scipy.sparse.csr_array of shape (n_source, n_target)
        The resampling map; ``transform(X) == X @ weights_``.
    interpolated_nm_ : ndarray
        Target wavelengths computed by interpolation (all of them for ``method="interpolate"``).
    n_features_in_, feature_names_in_
        As in scikit-learn.

    Notes
    -----
    NaN values are allowed and propagate only to the target bands that use them (the validation
    stage deals with incomplete spectra); infinities are rejected.
    """

    def __init__(self, source_nm=None, target_nm=None, method: str = "average"):
        self.source_nm = source_nm
        self.target_nm = target_nm
        self.method = method

    def _source_wavelengths(self) -> np.ndarray:
        if self.source_nm is not None:
            return _as_wavelengths(self.source_nm, "source_nm")
        names = getattr(self, "feature_names_in_", None)
        if names is None:
            raise ValueError(
                "source_nm is None and X has no column names: pass source_nm (one wavelength in "
                "nm per column) or a DataFrame with columns named 'nm_<wavelength>'"
            )
        try:
            wavelengths = [band_wavelength(name) for name in names]
        except ValueError as error:
            raise ValueError(
                f"source_nm is None, so every column name must be 'nm_<wavelength>': {error}"
            ) from error
        return _as_wavelengths(wavelengths, "source_nm (from the column names)")

    def fit(self, X, y=None):
        """Check the grids and coverage and build the resampling matrix; returns self."""
        if self.method not in METHODS:
            raise ValueError(f"method must be one of {METHODS}; got {self.method!r}")
        X = validate_data(self, X, dtype=np.float64, ensure_all_finite="allow-nan")
        source = self._source_wavelengths()
        target = (
            Grid().wavelengths_nm
            if self.target_nm is None
            else _as_wavelengths(self.target_nm, "target_nm")
        )
        if source.size != X.shape[1]:
            raise ValueError(
                f"source_nm has {source.size} wavelengths but X has {X.shape[1]} columns; give one "
                "wavelength per spectral column"
            )
        message = coverage_message(source, target)
        if message is not None:
            raise ValueError(message)
        self.weights_, self.interpolated_nm_ = resampling_matrix(source, target, self.method)
        self.source_nm_ = source
        self.target_nm_ = target
        return self

    def transform(self, X) -> np.ndarray:
        """The spectra on ``target_nm_``, rows x target bands."""
        check_is_fitted(self)
        X = validate_data(self, X, dtype=np.float64, ensure_all_finite="allow-nan", reset=False)
        return np.ascontiguousarray((self.weights_.T @ X.T).T)

    def get_feature_names_out(self, input_features=None) -> np.ndarray:
        """Output names ``nm_<wavelength>`` of the target grid."""
        check_is_fitted(self)
        return np.asarray(band_names(self.target_nm_), dtype=object)

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.allow_nan = True
        return tags
