"""Standard normal variate (SNV): centre and scale each spectrum by its own mean and s.d."""

from __future__ import annotations

import numpy as np
from sklearn.base import BaseEstimator, OneToOneFeatureMixin, TransformerMixin
from sklearn.utils.validation import check_is_fitted, validate_data


class StandardNormalVariate(OneToOneFeatureMixin, TransformerMixin, BaseEstimator):
    """Per-spectrum standardisation: ``(x - mean(x)) / sd(x)`` for each row.

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

    def _check_parameters(self) -> None:
        if not isinstance(self.ddof, int | np.integer) or self.ddof not in (0, 1):
            raise ValueError(f"ddof must be 0 or 1; got {self.ddof!r}")

    def fit(self, X, y=None):
        """Check the parameters and the input; returns self."""
        self._check_parameters()
        validate_data(self, X, dtype=np.float64)
        return self

    def transform(self, X) -> np.ndarray:
        """The standardised spectra, rows x bands."""
        check_is_fitted(self)
        X = validate_data(self, X, dtype=np.float64, reset=False)
        n_bands = X.shape[1]
        if n_bands - self.ddof < 1:
            raise ValueError(
                f"SNV needs at least {self.ddof + 1} band(s) per spectrum with ddof={self.ddof}; "
                f"got {n_bands}"
            )
        mean = X.mean(axis=1, keepdims=True)
        centred = X - mean
        sd = np.sqrt((centred**2).sum(axis=1, keepdims=True) / (n_bands - self.ddof))
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
