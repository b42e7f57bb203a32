"""Detrending: remove a low-order polynomial baseline (in band position) from each spectrum."""

from __future__ import annotations

import numpy as np
from numpy.polynomial import polynomial
from sklearn.base import BaseEstimator, OneToOneFeatureMixin, TransformerMixin
from sklearn.utils.validation import check_array, check_is_fitted, validate_data


def check_detrend_parameters(order: int) -> None:
    """Raise ``ValueError`` unless ``order`` is an integer in [0, 3]."""
    if (not isinstance(order, int | np.integer) or isinstance(order, bool)
            or not 0 <= order <= 3):
        raise ValueError(f"order must be an integer in [0, 3]; got {order!r}")


def detrend(X, order: int = 2, check: bool = True) -> np.ndarray:
    """Each row of a (samples x bands) matrix minus its least-squares polynomial of degree
    ``order`` in band position.

    The baseline is ``numpy.polynomial.polynomial.polyfit`` of every row at once on the band
    positions scaled to [-1, 1] (well conditioned), evaluated with ``polyval``. ``order=2`` is the
    detrend of Barnes, Dhanoa & Lister (1989), usually run after SNV; ``order=1`` equals
    ``scipy.signal.detrend(X, axis=1)``. ``check=True`` validates ``order`` and the input (a
    finite 2-D float array); ``check=False`` skips that for validated input. Needs more bands
    than ``order``.
    """
    if check:
        check_detrend_parameters(order)
        X = check_array(X, dtype=np.float64)
    else:
        X = np.asarray(X, dtype=np.float64)
    n_bands = X.shape[1]
    if n_bands <= order:
        raise ValueError(f"detrend of order {order} needs more than {order} bands; got {n_bands}")
    position = np.linspace(-1.0, 1.0, n_bands)
    coefficients = polynomial.polyfit(position, X.T, order)
    return X - polynomial.polyval(position, coefficients)


class Detrend(OneToOneFeatureMixin, TransformerMixin, BaseEstimator):
    """Remove a polynomial baseline of degree ``order`` from each spectrum (:func:`detrend`).

    Parameters
    ----------
    order : int, default=2
        Degree of the baseline polynomial in band position (0 removes the mean).

    Notes
    -----
    Each row is treated on its own, so the transform is stateless; ``fit`` only checks the
    parameters and the input and records ``n_features_in_``.
    """

    def __init__(self, order: int = 2):
        self.order = order

    def fit(self, X, y=None):
        """Check the parameters and the input; returns self."""
        check_detrend_parameters(self.order)
        validate_data(self, X, dtype=np.float64)
        return self

    def transform(self, X) -> np.ndarray:
        """The detrended spectra, rows x bands."""
        check_is_fitted(self)
        X = validate_data(self, X, dtype=np.float64, reset=False)
        return detrend(X, self.order, check=False)
