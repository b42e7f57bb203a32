"""Savitzky-Golay smoothing and derivatives along the bands of each spectrum (scipy.signal)."""

from __future__ import annotations

import numpy as np
from scipy.signal import savgol_filter
from sklearn.base import BaseEstimator, OneToOneFeatureMixin, TransformerMixin
from sklearn.utils.validation import check_array, check_is_fitted, validate_data


def _is_int(value) -> bool:
    return isinstance(value, int | np.integer) and not isinstance(value, bool)


def check_savgol_parameters(window: int, polyorder: int, deriv: int) -> None:
    """Raise ``ValueError`` naming the parameter unless ``window`` is an odd integer >= 3,
    ``polyorder`` an integer in [0, window) and ``deriv`` an integer in [0, polyorder]."""
    if not _is_int(window) or window < 3 or window % 2 == 0:
        raise ValueError(f"window must be an odd integer >= 3 (bands); got {window!r}")
    if not _is_int(polyorder) or not 0 <= polyorder < window:
        raise ValueError(f"polyorder must be an integer in [0, window={window}); got {polyorder!r}")
    if not _is_int(deriv) or not 0 <= deriv <= polyorder:
        raise ValueError(f"deriv must be an integer in [0, polyorder={polyorder}]; got {deriv!r}")


def savgol(X, window: int = 11, polyorder: int = 2, deriv: int = 0, check: bool = True
           ) -> np.ndarray:
    """Savitzky-Golay filter of each row of a (samples x bands) matrix.

    ``scipy.signal.savgol_filter(X, window, polyorder, deriv, axis=1, mode="interp")``: a
    polynomial of degree ``polyorder`` fitted by least squares to ``window`` consecutive bands,
    evaluated (``deriv=0``, smoothing) or differentiated ``deriv`` times at the centre band. The
    derivative is per band (``delta=1``), not per nm: on the project's uniform grid it differs
    from the per-nm derivative by the constant factor ``step_nm ** deriv``. The first and last
    ``window // 2`` bands use the polynomial fitted to the edge window (``mode="interp"``).
    ``check=True`` validates the parameters and the input (a finite 2-D float array with at least
    ``window`` bands); ``check=False`` skips the input check for validated input.
    """
    if check:
        check_savgol_parameters(window, polyorder, deriv)
        X = check_array(X, dtype=np.float64)
    else:
        X = np.asarray(X, dtype=np.float64)
    if X.shape[1] < window:
        raise ValueError(f"savgol needs at least window={window} bands per spectrum; got "
                         f"{X.shape[1]}")
    return savgol_filter(X, window, polyorder, deriv=deriv, axis=1, mode="interp")


class SavitzkyGolay(OneToOneFeatureMixin, TransformerMixin, BaseEstimator):
    """Savitzky-Golay smoothing or derivative of each spectrum (:func:`savgol`).

    Parameters
    ----------
    window : int, default=11
        Odd number of bands in each local polynomial fit.
    polyorder : int, default=2
        Degree of the local polynomial, below ``window``.
    deriv : int, default=0
        Order of the derivative (0 smooths), at most ``polyorder``; per band, not per nm.

    Notes
    -----
    Each row is filtered on its own, so the transform is stateless; ``fit`` only checks the
    parameters and the input and records ``n_features_in_``.
    """

    def __init__(self, window: int = 11, polyorder: int = 2, deriv: int = 0):
        self.window = window
        self.polyorder = polyorder
        self.deriv = deriv

    def fit(self, X, y=None):
        """Check the parameters and the input; returns self."""
        check_savgol_parameters(self.window, self.polyorder, self.deriv)
        validate_data(self, X, dtype=np.float64)
        return self

    def transform(self, X) -> np.ndarray:
        """The filtered spectra, rows x bands."""
        check_is_fitted(self)
        X = validate_data(self, X, dtype=np.float64, reset=False)
        return savgol(X, self.window, self.polyorder, self.deriv, check=False)
