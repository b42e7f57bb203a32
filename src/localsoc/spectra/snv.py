"""Standard normal variate (SNV): centre and scale each spectrum by its own mean and s.d."""

from __future__ import annotations

import numpy as np
from sklearn.base import BaseEstimator, OneToOneFeatureMixin, TransformerMixin
from sklearn.utils.validation import check_array, check_is_fitted, validate_data


def check_snv_parameters(ddof: int) -> None:
    """Raise ``ValueError`` unless ``ddof`` is 0 or 1."""
    if not isinstance(ddof, int | np.integer) or ddof not in (0, 1):
        raise ValueError(f"ddof must be 0 or 1; got {ddof!r}")


def snv(X, ddof: int = 1, check: bool = True) -> np.ndarray:
    """SNV of a (samples x bands) matrix: ``(x - mean(x)) / sd(x)`` for each row.

    The one implementation of the step: :class:`StandardNormalVariate`,
    ``localsoc.spectra.steps`` and the prediction service all call it. ``ddof`` is that of
    :class:`StandardNormalVariate`. ``check=True`` validates ``ddof`` and the input (a finite 2-D
    float array, as scikit-learn's ``check_array``); ``check=False`` skips that for input the
    caller has already validated. Either way a spectrum with too few bands for ``ddof`` or a flat
    one (standard deviation 0: there is nothing to divide by) raises ``ValueError`` naming it.
    """
    if check:
        check_snv_parameters(ddof)
        X = check_array(X, dtype=np.float64)
    else:
        X = np.asarray(X, dtype=np.float64)
    n_bands = X.shape[1]
    if n_bands - ddof < 1:
        raise ValueError(
            f"SNV needs at least {ddof + 1} band(s) per spectrum with ddof={ddof}; got {n_bands}"
        )
    mean = X.mean(axis=1, keepdims=True)
    centred = X - mean
    sd = np.sqrt((centred**2).sum(axis=1, keepdims=True) / (n_bands - ddof))
    scale = np.maximum(np.abs(mean), 1.0)
    flat = sd[:, 0] <= 1e-12 * scale[:, 0]
    if np.any(flat):
        rows = np.flatnonzero(flat)
        shown = ", ".join(str(int(r)) for r in rows[:5])
        more = f" and {len(rows) - 5} more" if len(rows) > 5 else ""
        raise ValueError(
            f"SNV is undefined for a flat spectrum (standard deviation 0): row(s) {shown}{more}. "
            "Remove those spectra (a constant spectrum is usually a failed scan)"
        )
    return centred / sd


class StandardNormalVariate(OneToOneFeatureMixin, TransformerMixin, BaseEstimator):
    """Per-spectrum standardisation: ``(x - mean(x)) / sd(x)`` for each row (:func:`snv`).

    Parameters
    ----------
    ddof : int, default=1
        Delta degrees of freedom of the standard deviation. The default 1 is the sample standard
        deviation, as R's ``sd()`` used by ``prospectr::standardNormalVariate`` (the
        soil-spectroscopy reference implementation); ``ddof=0`` matches NumPy's default and
        ``chemotools``. The two differ by the constant factor ``sqrt(p / (p - 1))`` for ``p``
        bands.

    Notes
    -----
    Each row is treated on its own, so the transform is stateless; ``fit`` only checks the input
    and records ``n_features_in_``. A flat spectrum (standard deviation 0, or a single band) has no
    shape to standardise and raises ``ValueError`` naming the row.
    """

    def __init__(self, ddof: int = 1):
        self.ddof = ddof

    def fit(self, X, y=None):
        """Check the parameters and the input; returns self."""
        check_snv_parameters(self.ddof)
        validate_data(self, X, dtype=np.float64)
        return self

    def transform(self, X) -> np.ndarray:
        """The standardised spectra, rows x bands."""
        check_is_fitted(self)
        X = validate_data(self, X, dtype=np.float64, reset=False)
        return snv(X, self.ddof, check=False)
