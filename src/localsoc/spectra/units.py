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
- One range for both (``SpectralBounds``): reflectance fractions in
  ``[10 ** -absorbance_max, reflectance_max]`` (and above ``reflectance_min_exclusive``), which
  is absorbance in ``[-log10(reflectance_max), absorbance_max]``: a spectrum is accepted or
  refused alike whichever of the two it is sent as.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass

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


@dataclass(frozen=True)
class SpectralBounds:
    """The one range of soil spectra, in reflectance fractions and in absorbance alike.

    ``reflectance_max`` (inclusive) and ``absorbance_max`` (inclusive) are the ends;
    ``reflectance_min_exclusive`` a further floor on reflectance (the validate stage's), which
    the absorbance floor ``10 ** -absorbance_max`` already exceeds with the defaults."""

    reflectance_max: float = FRACTION_MAX
    absorbance_max: float = ABSORBANCE_MAX
    reflectance_min_exclusive: float = 0.0

    @classmethod
    def from_settings(cls, settings: Mapping) -> SpectralBounds:
        """The bounds of a bundle's ``serving`` settings (``reflectance_max``,
        ``absorbance_max``, ``reflectance_min_exclusive``)."""
        return cls(float(settings["reflectance_max"]), float(settings["absorbance_max"]),
                   float(settings["reflectance_min_exclusive"]))

    @property
    def reflectance_min(self) -> float:
        """The smallest reflectance accepted (inclusive): that of absorbance ``absorbance_max``."""
        return 10.0 ** -float(self.absorbance_max)

    @property
    def absorbance_min(self) -> float:
        """The smallest absorbance accepted: that of reflectance ``reflectance_max``."""
        return lowest_absorbance(self.reflectance_max) + 0.0  # -0.0 -> 0.0

    def outside(self, values: np.ndarray, units: str) -> np.ndarray:
        """Which ``values`` (reflectance fractions or absorbance, ``units``) are outside the
        range, as a boolean array of their shape (non-finite values count as outside)."""
        values = np.asarray(values, dtype=np.float64)
        with np.errstate(invalid="ignore"):
            if units == "absorbance":
                inside = ((values >= self.absorbance_min - 1e-12) & (values <= self.absorbance_max)
                          & (10.0 ** -values > self.reflectance_min_exclusive))
            elif units == "reflectance":
                inside = ((values >= self.reflectance_min) & (values <= self.reflectance_max)
                          & (values > self.reflectance_min_exclusive))
            else:
                raise ValueError(f"bounds are for 'reflectance' or 'absorbance'; got {units!r}")
        return ~inside

    def describe(self) -> str:
        """The range in words, for error messages."""
        return (f"reflectance fractions in [{self.reflectance_min:g}, {self.reflectance_max:g}]"
                f", i.e. absorbance log10(1/R) in [{self.absorbance_min:g}, "
                f"{self.absorbance_max:g}]")


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
