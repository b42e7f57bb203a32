"""Multiplicative scatter correction (MSC) against a reference spectrum fitted on training rows.

The math is the closed form of a degree-1 least-squares fit of each spectrum on the reference
(the same fit as ``chemotools``' ``MultiplicativeScatterCorrection``, which runs ``np.polyfit``
per spectrum): chemotools is not a dependency of the project and the two NumPy lines below need
none. The reference is fitted state: fitted on library or calibration rows only, never on a
site's test rows, and shipped with the model (``localsoc.spectra.steps``).
"""

from __future__ import annotations

import numpy as np
from sklearn.base import BaseEstimator, OneToOneFeatureMixin, TransformerMixin
from sklearn.utils.validation import check_array, check_is_fitted, validate_data


def fit_msc_reference(X, check: bool = True) -> np.ndarray:
    """The MSC reference: the mean spectrum of the (training) rows of ``X``."""
    X = check_array(X, dtype=np.float64) if check else np.asarray(X, dtype=np.float64)
    if X.shape[0] == 0:
        raise ValueError("msc needs at least one training spectrum to fit its reference")
    return X.mean(axis=0)


def msc(X, reference, check: bool = True) -> np.ndarray:
    """MSC of each row ``x`` of a (samples x bands) matrix: ``(x - a) / b``, where ``a + b * ref``
    is the least-squares fit of ``x`` on the reference spectrum.

    ``b = cov(x, ref) / var(ref)`` and ``a = mean(x) - b * mean(ref)``. A reference that is flat
    (variance 0) or a spectrum whose slope ``b`` is not positive (it does not look like the
    reference at all) raises ``ValueError`` naming it. ``check=True`` validates the input (finite
    2-D, the reference's band count); ``check=False`` skips that for validated input.
    """
    reference = np.asarray(reference, dtype=np.float64)
    if check:
        X = check_array(X, dtype=np.float64)
        if reference.ndim != 1 or reference.size != X.shape[1] or not np.isfinite(reference).all():
            raise ValueError(
                f"msc reference must be a finite spectrum of {X.shape[1]} bands; got shape "
                f"{reference.shape}")
    else:
        X = np.asarray(X, dtype=np.float64)
    ref_centred = reference - reference.mean()
    ref_var = float(ref_centred @ ref_centred)
    if ref_var <= 1e-24 * max(1.0, float(np.abs(reference).max()) ** 2):
        raise ValueError("msc reference spectrum is flat (variance 0); fit it on real spectra")
    mean = X.mean(axis=1)
    slope = ((X - mean[:, None]) @ ref_centred) / ref_var
    bad = ~(slope > 0)
    if np.any(bad):
        rows = np.flatnonzero(bad)
        shown = ", ".join(str(int(r)) for r in rows[:5])
        more = f" and {len(rows) - 5} more" if len(rows) > 5 else ""
        raise ValueError(
            f"msc is undefined for row(s) {shown}{more}: their fit on the reference spectrum has "
            "a slope <= 0 (not a spectrum of the same kind); remove or repair those spectra")
    offset = mean - slope * reference.mean()
    return (X - offset[:, None]) / slope[:, None]


class MultiplicativeScatterCorrection(OneToOneFeatureMixin, TransformerMixin, BaseEstimator):
    """MSC against the mean spectrum of the rows it was fitted on (:func:`msc`).

    Attributes
    ----------
    reference_ : ndarray of shape (n_features,)
        The mean spectrum of the training rows.
    """

    def fit(self, X, y=None):
        """Fit the reference spectrum (the mean of ``X``); returns self."""
        X = validate_data(self, X, dtype=np.float64)
        self.reference_ = fit_msc_reference(X, check=False)
        return self

    def transform(self, X) -> np.ndarray:
        """The corrected spectra, rows x bands."""
        check_is_fitted(self)
        X = validate_data(self, X, dtype=np.float64, reset=False)
        return msc(X, self.reference_, check=False)
