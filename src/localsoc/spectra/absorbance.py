"""Reflectance to absorbance, A = log_base(1 / R)."""

from __future__ import annotations

import math

import numpy as np
from sklearn.base import BaseEstimator, OneToOneFeatureMixin, TransformerMixin
from sklearn.utils.validation import check_array, check_is_fitted, validate_data


def _first_invalid(X: np.ndarray, allow_zero: bool) -> str:
    """Describe where the reflectance matrix holds invalid values (first one, and how many)."""
    bad = X < 0 if allow_zero else X <= 0
    rows, columns = np.nonzero(bad)
    row, column = int(rows[0]), int(columns[0])
    return (
        f"row {row}, column {column} holds {X[row, column]:g} "
        f"({int(bad.sum())} such value(s) in all)"
    )


def check_absorbance_parameters(base: float, floor: float, clip_zero: bool) -> None:
    """Raise ``ValueError`` for a logarithm base, floor or ``clip_zero`` that :func:`absorbance`
    cannot use."""
    if not (isinstance(base, int | float) and math.isfinite(base)) or base <= 0:
        raise ValueError(f"base must be a positive number other than 1; got {base!r}")
    if base == 1:
        raise ValueError("base must be a positive number other than 1; got 1")
    if not (isinstance(floor, int | float) and math.isfinite(floor)) or not (0 <= floor < 1):
        raise ValueError(f"floor must be a number in [0, 1); got {floor!r}")
    if clip_zero and floor <= 0:
        raise ValueError("clip_zero=True needs floor > 0 (zeros are raised to floor)")


def check_reflectance(X: np.ndarray, clip_zero: bool = False) -> None:
    """Raise ``ValueError`` naming the first value of ``X`` that is not reflectance (negative, or
    zero unless ``clip_zero``)."""
    if np.any(X < 0) or (not clip_zero and np.any(X == 0)):
        prefix = "Negative values in data: " if np.any(X < 0) else ""
        raise ValueError(
            f"{prefix}reflectance must be a fraction in (0, 1] for absorbance log(1/R); "
            f"{_first_invalid(X, clip_zero)}. Remove or repair those spectra (the validation "
            "stage quarantines them), or convert percent reflectance to fractions first"
        )


def absorbance(
    X, base: float = 10.0, floor: float = 1e-6, clip_zero: bool = False, check: bool = True
) -> np.ndarray:
    """Absorbance ``log_base(1 / max(R, floor))`` of a (samples x bands) reflectance matrix.

    The one implementation of the step: :class:`Absorbance`, ``localsoc.spectra.steps`` and the
    prediction service all call it. ``base``, ``floor`` and ``clip_zero`` are those of
    :class:`Absorbance`. ``check=True`` validates the parameters and the input (a finite 2-D
    float array, as scikit-learn's ``check_array``; reflectance > 0, or >= 0 with
    ``clip_zero``) and raises ``ValueError`` saying what is wrong; ``check=False`` skips that for
    input the caller has already validated and computes the same values.
    """
    if check:
        check_absorbance_parameters(base, floor, clip_zero)
        X = check_array(X, dtype=np.float64)
        check_reflectance(X, clip_zero)
    else:
        X = np.asarray(X, dtype=np.float64)
    R = np.maximum(X, floor) if floor > 0 else X
    return -np.log(R) / np.log(base)


class Absorbance(OneToOneFeatureMixin, TransformerMixin, BaseEstimator):
    """Convert reflectance spectra to absorbance: ``A = log_base(1 / R)``.

    Parameters
    ----------
    base : float, default=10
        Logarithm base; 10 gives the usual ``log10(1/R)``.
    floor : float, default=1e-6
        Reflectance values in ``(0, floor)`` are raised to ``floor`` before the logarithm, so a
        nearly dark band gives a large but bounded absorbance (``6`` for the defaults). Set 0 to
        disable. Values at or below 0 raise ``ValueError`` (they are not reflectance), unless
        ``clip_zero`` is set.
    clip_zero : bool, default=False
        If True, reflectance exactly 0 (a dead or saturated detector element) is raised to
        ``floor`` instead of raising; negative values always raise. Needs ``floor > 0``.

    Notes
    -----
    Input is reflectance as a fraction in (0, 1]. Values slightly above 1 (white-reference noise)
    are accepted and give a small negative absorbance; range checks on the data belong to the
    validation stage. The transform is stateless; ``fit`` only checks the input and records
    ``n_features_in_``. ``inverse_transform`` returns ``base ** -A`` (exact except for values that
    were floored).
    """

    def __init__(self, base: float = 10.0, floor: float = 1e-6, clip_zero: bool = False):
        self.base = base
        self.floor = floor
        self.clip_zero = clip_zero

    def fit(self, X, y=None):
        """Check the parameters and the reflectance matrix; returns self."""
        check_absorbance_parameters(self.base, self.floor, self.clip_zero)
        X = validate_data(self, X, dtype=np.float64)
        check_reflectance(X, self.clip_zero)
        return self

    def transform(self, X) -> np.ndarray:
        """Absorbance ``log_base(1 / max(R, floor))``, rows x bands."""
        check_is_fitted(self)
        X = validate_data(self, X, dtype=np.float64, reset=False)
        check_reflectance(X, self.clip_zero)
        return absorbance(X, self.base, self.floor, self.clip_zero, check=False)

    def inverse_transform(self, X) -> np.ndarray:
        """Reflectance ``base ** -A`` from absorbance."""
        check_is_fitted(self)
        X = validate_data(self, X, dtype=np.float64, reset=False)
        return np.power(float(self.base), -X)

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.positive_only = True
        return tags
