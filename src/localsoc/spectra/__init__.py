"""Spectral preprocessing as scikit-learn transformers."""

from localsoc.spectra.absorbance import Absorbance
from localsoc.spectra.detrend import Detrend
from localsoc.spectra.msc import MultiplicativeScatterCorrection
from localsoc.spectra.resample import Resample
from localsoc.spectra.savgol import SavitzkyGolay
from localsoc.spectra.snv import StandardNormalVariate

__all__ = ["Absorbance", "Detrend", "MultiplicativeScatterCorrection", "Resample",
           "SavitzkyGolay", "StandardNormalVariate"]
