"""localsoc.spectra"""
