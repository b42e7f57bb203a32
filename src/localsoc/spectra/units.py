"""Units of spectra: reflectance fractions, percent reflectance, absorbance log10(1/R).

The rules that tell the units apart and convert them to reflectance fractions, in one place for
the importers (``localsoc.data.importers``) and the prediction service
(``localsoc.serving.predictor``). The thresholds are arguments: the importers take them as
options, the service from the bundle's ``serving`` settings (``conf/base/parameters_package.yml``);
the constants below are their defaults.

- Percent reflectance: the largest value is above ``percent_reflectance_above`` and at most 100.
  Between 1 and that threshold a spectrum is neither fractions nor percent (it looks like
  absorbance).
- Per row: in a file of percent reflectance, a spectrum whose own largest value is at most
  ``percent_reflectance_above`` is not percent (it looks like fractions, or absorbance); such
  rows are in other units than their file (``rows_in_other_units``).
- Units named by the columns: OSSL's vis-NIR columns carry their units in the suffix,
  ``scan_visnir.<nm>_ref`` reflectance fractions (v1.2) and ``scan_visnir.<nm>_pcnt`` percent
  reflectance (v1.0); ``units_of_convention`` gives them, and the importers take them for
  ``spectra="auto"`` (the values must still agree: the rules above apply).
- Absorbance: at most ``absorbance_max`` (5 means reflectance 1e-5, 0.001 %, darker than any
  soil); the lowest absorbance a reflectance at most ``reflectance_max`` gives is
  ``-log10(reflectance_max)``.
"""

from __future__ import annotations

import math

import numpy as np

#: Largest value of a reflectance fraction.
FRACTION_MAX = 1.0
#: Largest value of percent reflectance.
PERCENT_MAX = 100.0
#: Default: a largest value above this (and at most ``PERCENT_MAX``) is percent reflectance.
PERCENT_REFLECTANCE_ABOVE = 1.5
#: Default: absorbance log10(1/R) above this is not a soil's (reflectance below 0.001 %).
ABSORBANCE_MAX = 5.0

UNITS = ("reflectance", "percent_reflectance", "absorbance")


def looks_like_percent(top: float, percent_reflectance_above: float = PERCENT_REFLECTANCE_ABOVE
                       ) -> bool:
    """Whether spectra whose largest value is ``top`` are percent reflectance (0-100)."""
    return percent_reflectance_above < top <= PERCENT_MAX


def detect_reflectance_units(
    top: float, percent_reflectance_above: float = PERCENT_REFLECTANCE_ABOVE
) -> str | None:
    """``"percent_reflectance"`` or ``"reflectance"`` (fractions) from the largest value ``top``
    of non-negative spectra; None when it is neither (above 100, or between 1 and
    ``percent_reflectance_above``, where absorbance lies). Absorbance cannot be detected: soil
    absorbance and reflectance fractions share the 0-1 range, so it must be declared."""
    if looks_like_percent(top, percent_reflectance_above):
        return "percent_reflectance"
    if top <= FRACTION_MAX:
        return "reflectance"
    return None


def rows_in_other_units(values: np.ndarray, units: str,
                        percent_reflectance_above: float = PERCENT_REFLECTANCE_ABOVE
                        ) -> np.ndarray:
    """Which rows of spectra declared (or detected) as ``units`` contradict those units by their
    own largest value: in percent reflectance, the rows whose largest finite value is at most
    ``percent_reflectance_above``. Fractions and absorbance have no per-row rule (they share
    the 0-1 range); rows without a finite value are not flagged here."""
    values = np.asarray(values, dtype=np.float64)
    if units != "percent_reflectance":
        return np.zeros(values.shape[0], dtype=bool)
    top = np.where(np.isfinite(values), values, -np.inf).max(axis=1)
    return np.isfinite(top) & ~(top > percent_reflectance_above)


def absorbance_too_high(top: float, absorbance_max: float = ABSORBANCE_MAX) -> bool:
    """Whether absorbance reaching ``top`` exceeds what soils have."""
    return top > absorbance_max


def absorbance_limit(absorbance_max: float = ABSORBANCE_MAX) -> str:
    """Why absorbance above ``absorbance_max`` is refused, for error messages."""
    return (f"absorbance log10(1/R) above {absorbance_max:g} means reflectance below "
            f"{10 ** -float(absorbance_max) * 100:g} %, which soils do not have")


def lowest_absorbance(reflectance_max: float = FRACTION_MAX) -> float:
    """The smallest absorbance of a reflectance at most ``reflectance_max``:
    ``-log10(reflectance_max)``."""
    return -math.log10(reflectance_max)


#: Spectral column conventions whose names say the units (``localsoc.data.importers``).
CONVENTION_UNITS = {
    "scan_visnir.<wavelength>_ref": "reflectance",
    "scan_visnir.<wavelength>_pcnt": "percent_reflectance",
}


def units_of_convention(convention: str) -> str | None:
    """The units a spectral column convention names (``CONVENTION_UNITS``), or None when the
    names say nothing about them."""
    return CONVENTION_UNITS.get(convention)


def to_fractions(values: np.ndarray, units: str) -> np.ndarray:
    """Reflectance fractions from spectra in ``units`` (one of ``UNITS``): as is, / 100, or
    ``10 ** -A``. The values are not checked; see the rules above."""
    if units == "reflectance":
        return values
    if units == "percent_reflectance":
        return values / 100.0
    if units == "absorbance":
        return np.power(10.0, -values)
    raise ValueError(f"units must be one of {UNITS}; got {units!r}")
