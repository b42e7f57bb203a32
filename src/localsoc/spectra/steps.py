"""Preprocessing as data: a list of step names applied in order, shared by pipelines and serving.

Every step is stateless per spectrum (nothing is fitted across samples), so the same list
describes the preprocessing of library, calibration, test and served spectra without leakage.
Each step is one plain function (``localsoc.spectra.absorbance.absorbance``,
``localsoc.spectra.snv.snv``) with its default parameters, the same functions the scikit-learn
transformers call, so pipelines and serving run the same arithmetic.
"""

from __future__ import annotations

import numpy as np
from sklearn.utils import check_array

from localsoc.spectra.absorbance import absorbance
from localsoc.spectra.snv import snv

STEP_NAMES = ("absorbance", "snv")

_STEPS = {"absorbance": absorbance, "snv": snv}


def check_steps(steps) -> list[str]:
    steps = list(steps)
    for step in steps:
        if step not in _STEPS:
            raise ValueError(
                f"unknown preprocessing step {step!r}; known steps are {sorted(_STEPS)} "
                "(set preprocess.steps in the parameters)"
            )
    return steps


def apply_steps(reflectance: np.ndarray, steps, check: bool = True) -> np.ndarray:
    """Apply the named steps to a (samples x bands) reflectance matrix (C-contiguous float64).

    ``check=True`` validates the input as the transformers do (a finite 2-D numeric matrix,
    reflectance in range for absorbance); ``check=False`` is for input validated before (the
    prediction service) and runs the same arithmetic without those checks (flat spectra still
    raise from SNV).
    """
    steps = check_steps(steps)
    if check:
        values = check_array(reflectance, dtype=np.float64)
    else:
        values = np.asarray(reflectance, dtype=np.float64)
    for step in steps:
        values = _STEPS[step](values, check=check)
    return np.ascontiguousarray(values)
