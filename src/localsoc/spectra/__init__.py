"""Spectral preprocessing as scikit-learn transformers."""

from localsoc.spectra.absorbance import Absorbance
from localsoc.spectra.resample import Resample
from localsoc.spectra.snv import StandardNormalVariate

__all__ = ["Absorbance", "Resample", "StandardNormalVariate"]
