"""Preprocessing as data: a list of step names applied in order, shared by pipelines and serving.

Every step is stateless per spectrum (nothing is fitted across samples), so the same list
describes the preprocessing of library, calibration, test and served spectra without leakage.
"""

from __future__ import annotations

import numpy as np

STEP_NAMES = ("absorbance", "snv")


def _make(step: str):
    from localsoc.spectra.absorbance import Absorbance
    from localsoc.spectra.snv import StandardNormalVariate

    makers = {"absorbance": Absorbance, "snv": StandardNormalVariate}
    if step not in makers:
        raise ValueError(
            f"unknown preprocessing step {step!r}; known steps are {sorted(makers)} "
            "(set preprocess.steps in the parameters)"
        )
    return makers[step]()


def check_steps(steps) -> list[str]:
    steps = list(steps)
    for step in steps:
        _make(step)
    return steps


def apply_steps(reflectance: np.ndarray, steps) -> np.ndarray:
    """Apply the named steps to a (samples x bands) reflectance matrix; returns a new array."""
    values = np.asarray(reflectance, dtype=np.float64)
    for step in check_steps(steps):
        values = _make(step).fit_transform(values)
    return np.ascontiguousarray(values)
