"""Memory-based learning baselines: the registry's ``mbl`` methods, estimates only.

Per site and library scope, with and without spiking by the site's n calibration samples
(``localsoc.families.mbl``). The estimates are stored so that the evaluate stage only scores
(changing the interval level does not refit MBL). Test spectra are predicted, never fitted on.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from localsoc.methods import family, methods
from localsoc.study import site_country, sites_of
from localsoc.study.data import has_selection

ESTIMATE_COLUMNS = ("site", "method", "role", "sample_id", "observed", "estimated")


def estimate_mbl(
    site_calibration: pd.DataFrame,
    site_test: pd.DataFrame,
    library_spectra: pd.DataFrame,
    selection: pd.DataFrame,
    params: dict,
    study: dict,
) -> pd.DataFrame:
    """Calibration and test estimates of every ``mbl`` method at every site with a test set.

    ``params`` (``params:mbl``): ``enabled`` and the ``MemoryBasedLearner`` settings; the
    library scopes and the random state are the study's. A scope the localise stage skipped
    for a site (no RS-LOCAL ``selection`` there) is skipped here too.
    """
    frames = []
    if params["enabled"]:
        settings = {k: v for k, v in params.items() if k != "enabled"}
        settings["random_state"] = int(study["seed"])
        for site in sites_of(site_calibration):
            country = site_country(site_calibration, site)
            calibration = site_calibration.loc[site_calibration["site"] == site]
            test = site_test.loc[site_test["site"] == site]
            if test.empty:  # no test set (split.no_test): MBL only predicts test spectra
                continue
            for method in methods(stage="mbl"):
                if (method.scope not in study["scopes"]
                        or not has_selection(selection, site, method.scope)):
                    continue
                found = family(method.family).implementation().estimate_site(
                    method.data, library_spectra, calibration, test, country, settings)
                if found is None:
                    continue
                cal_estimate, test_estimate = found
                for role, rows, estimate in (("calibration", calibration, cal_estimate),
                                             ("test", test, test_estimate)):
                    frames.append(pd.DataFrame({
                        "site": site, "method": method.label, "role": role,
                        "sample_id": rows["sample_id"].astype(str).tolist(),
                        "observed": rows["soc"].to_numpy(np.float64),
                        "estimated": np.asarray(estimate, dtype=np.float64),
                    }))
    if not frames:
        return pd.DataFrame({c: pd.Series(dtype="float64" if c in ("observed", "estimated")
                                          else "object") for c in ESTIMATE_COLUMNS})
    return pd.concat(frames, ignore_index=True)
