"""The memory-based learning family (Ramirez-Lopez et al. 2013): a local PLS per spectrum.

MBL has no stored model: every estimate is fitted at prediction time on the spectrum's library
neighbours (``localsoc.models.mbl``), so it needs the whole library when it predicts and is not
servable. The ``mbl`` stage runs it once per site and library scope, with and without spiking by
the site's calibration samples, and stores only the estimates; the evaluate stage scores them
like any other method. Nothing is fitted on test rows: test spectra are only predicted.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from localsoc.study import scope_rows
from localsoc.study.data import parse_dataset

STORE = None


def estimate_site(dataset: str, library_spectra: pd.DataFrame, calibration: pd.DataFrame,
                  test: pd.DataFrame, country: str | None, settings: dict):
    """(calibration estimates, test estimates) of one MBL method at a site, or None when the
    scope's library is too small for the largest neighbourhood.

    ``dataset`` is ``library:<scope>`` (no spiking) or ``library:<scope>+n`` (spiked with the
    calibration samples, whose estimates are then leave-one-out); ``settings`` are the
    ``mbl`` parameters without ``enabled`` and ``scopes``.
    """
    from localsoc.models.mbl import predict_site_mbl

    _, scope, spike = parse_dataset(dataset)
    pool = scope_rows(library_spectra, scope, country)
    k = settings["k"]
    largest = max(k) if isinstance(k, list) else k
    if len(pool) <= largest:
        return None
    result = predict_site_mbl(pool, calibration, test, spike=spike, **settings)
    return (result.calibration["estimated"].to_numpy(np.float64),
            result.test["estimated"].to_numpy(np.float64))
