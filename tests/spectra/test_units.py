"""The unit rules shared by the importers and the prediction service."""

from __future__ import annotations

import numpy as np
import pytest

from localsoc.spectra import units


@pytest.mark.parametrize(
    ("top", "threshold", "expected"),
    [
        (0.6, 1.5, "reflectance"),
        (1.0, 1.5, "reflectance"),
        (1.2, 1.5, None),  # between fractions and percent: looks like absorbance
        (1.5, 1.5, None),
        (1.6, 1.5, "percent_reflectance"),
        (100.0, 1.5, "percent_reflectance"),
        (100.5, 1.5, None),  # above 100: neither
        (1.2, 1.1, "percent_reflectance"),  # the threshold is an argument
    ],
)
def test_detect_reflectance_units(top, threshold, expected):
    assert units.detect_reflectance_units(top, threshold) == expected
    assert units.looks_like_percent(top, threshold) == (expected == "percent_reflectance")


def test_defaults_are_the_documented_thresholds():
    assert units.PERCENT_REFLECTANCE_ABOVE == 1.5
    assert units.ABSORBANCE_MAX == 5.0
    assert units.detect_reflectance_units(1.6) == "percent_reflectance"
    assert units.absorbance_too_high(5.01) and not units.absorbance_too_high(5.0)


def test_absorbance_limit_says_what_reflectance_it_means():
    assert units.absorbance_limit() == (
        "absorbance log10(1/R) above 5 means reflectance below 0.001 %, which soils do not have"
    )
    assert "above 3 means reflectance below 0.1 %" in units.absorbance_limit(3)
    assert units.absorbance_too_high(3.5, 3) and not units.absorbance_too_high(3.5)


def test_lowest_absorbance():
    assert units.lowest_absorbance() == 0.0
    assert units.lowest_absorbance(1.25) == pytest.approx(-np.log10(1.25))


def test_to_fractions_converts_each_unit_exactly():
    fractions = np.array([[0.5, 0.02, 1.0]])
    np.testing.assert_array_equal(units.to_fractions(fractions, "reflectance"), fractions)
    np.testing.assert_array_equal(units.to_fractions(100.0 * fractions, "percent_reflectance"),
                                  100.0 * fractions / 100.0)
    absorbance = np.log10(1.0 / fractions)
    np.testing.assert_array_equal(units.to_fractions(absorbance, "absorbance"),
                                  np.power(10.0, -absorbance))
    np.testing.assert_allclose(units.to_fractions(absorbance, "absorbance"), fractions, rtol=1e-14)
    with pytest.raises(ValueError, match="units must be one of"):
        units.to_fractions(fractions, "kubelka_munk")
