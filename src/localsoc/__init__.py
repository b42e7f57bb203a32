"""LocalSOC: localise large soil spectral libraries into field-scale SOC models."""

__version__ = "0.1.0"
