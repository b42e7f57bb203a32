"""Preprocessing steps by name: the transformers' results, with or without input checks."""

from __future__ import annotations

import numpy as np
import pytest

from localsoc.spectra import (
    Absorbance,
    Detrend,
    MultiplicativeScatterCorrection,
    SavitzkyGolay,
    StandardNormalVariate,
)
from localsoc.spectra.steps import STEP_NAMES, apply_steps, check_steps

TRANSFORMERS = {"absorbance": Absorbance, "snv": StandardNormalVariate, "savgol": SavitzkyGolay,
                "detrend": Detrend, "msc": MultiplicativeScatterCorrection}


@pytest.mark.parametrize("steps", [["absorbance", "snv"], ["snv"], ["absorbance"], []])
@pytest.mark.parametrize("check", [True, False])
def test_apply_steps_is_the_transformers_bit_for_bit(steps, check):
    rng = np.random.default_rng(4)
    reflectance = np.concatenate([rng.uniform(1e-7, 1.0, (50, 211)),
                                  rng.uniform(0.2, 0.21, (5, 211))])
    expected = reflectance
    for step in steps:
        expected = TRANSFORMERS[step]().fit_transform(expected)
    result = apply_steps(reflectance, steps, check=check)
    np.testing.assert_array_equal(result, expected)
    assert result.flags["C_CONTIGUOUS"]


def test_every_step_has_a_transformer():
    assert set(STEP_NAMES) == set(TRANSFORMERS)


def test_unknown_steps_and_bad_input_are_named():
    with pytest.raises(ValueError, match=r"unknown preprocessing step 'mcs' \(step 1\); known "):
        check_steps(["absorbance", "mcs"])
    with pytest.raises(ValueError, match="row 0, column 2"):
        apply_steps(np.array([[0.5, 0.4, -0.1]]), ["absorbance"])
    with pytest.raises(ValueError, match="flat spectrum"):
        apply_steps(np.full((2, 30), 0.4), ["absorbance", "snv"], check=False)
