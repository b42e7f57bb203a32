"""One range for reflectance and absorbance (``localsoc.spectra.units.SpectralBounds``):
a spectrum is accepted or refused alike whichever of the two units it is given in."""

from __future__ import annotations

import numpy as np
import pytest

from localsoc.spectra.units import SpectralBounds


def test_reflectance_and_absorbance_share_one_range():
    bounds = SpectralBounds()
    reflectance = np.array([5e-324, 1e-6, 1e-5, 0.02, 0.5, 1.0, 1.0 + 1e-9, 0.0, np.nan])
    with np.errstate(divide="ignore", invalid="ignore"):
        absorbance = -np.log10(reflectance)
    expected = [True, True, False, False, False, False, True, True, True]
    assert bounds.outside(reflectance, "reflectance").tolist() == expected
    assert bounds.outside(absorbance, "absorbance").tolist() == expected


def test_reflectance_5e_324_is_absorbance_323_and_refused_as_both():
    """The probe's value (issue 27, item 4): accepted as reflectance, refused as absorbance."""
    bounds = SpectralBounds()
    assert bounds.outside(np.array([5e-324]), "reflectance").all()
    assert bounds.outside(np.array([323.3]), "absorbance").all()


def test_the_bounds_come_from_the_bundle_settings_and_say_themselves():
    bounds = SpectralBounds.from_settings({"reflectance_max": 1.0, "absorbance_max": 4.0,
                                           "reflectance_min_exclusive": 0.0})
    assert bounds.reflectance_min == pytest.approx(1e-4) and bounds.absorbance_min == 0.0
    assert bounds.outside(np.array([5e-5, 2e-4]), "reflectance").tolist() == [True, False]
    assert bounds.describe() == ("reflectance fractions in [0.0001, 1], i.e. absorbance "
                                 "log10(1/R) in [0, 4]")
    floor = SpectralBounds(reflectance_min_exclusive=0.01)
    assert floor.outside(np.array([0.01, 0.02]), "reflectance").tolist() == [True, False]
    assert floor.outside(np.array([2.0, 1.5]), "absorbance").tolist() == [True, False]
    with pytest.raises(ValueError, match="reflectance' or 'absorbance"):
        floor.outside(np.array([50.0]), "percent_reflectance")
