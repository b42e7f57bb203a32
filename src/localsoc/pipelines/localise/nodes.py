"""Instance transfer: RS-LOCAL picks k library samples for every site and library scope.

Only the site's n calibration samples are used; its test rows are not an input of this pipeline.
"""

from __future__ import annotations

import logging

import numpy as np
import pandas as pd

from localsoc.data.schema import spectra_of
from localsoc.plots import pca_figure, soc_density_figure
from localsoc.selection import RSLocal
from localsoc.study import (
    SCOPES,
    derived_seed,
    scope_problem,
    scope_rows,
    site_country,
    sites_of,
)

logger = logging.getLogger(__name__)

SELECTION_COLUMNS = {"site": "object", "scope": "object", "country": "object", "rank": "int64",
                     "sample_id": "object", "soc": "float64"}


def select_library_samples(
    library_spectra: pd.DataFrame, site_calibration: pd.DataFrame, params: dict, study: dict
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """RS-LOCAL per site and study scope; returns (selection, history) tables keyed by
    site/scope.

    A scope whose library part is too small (``localsoc.study.scope_problem``: no rows from
    the site's country, or fewer than 2 k rows) is skipped for that site with a warning: it has
    no selection, and every later stage skips the site's models of that scope.
    """
    selections, histories = [], []
    for site in sites_of(site_calibration):
        local = site_calibration.loc[site_calibration["site"] == site]
        country = site_country(local, site)
        for scope in study["scopes"]:
            pool = scope_rows(library_spectra, scope, country)
            problem = scope_problem(scope, country, len(pool), int(params["k"]))
            if problem is not None:
                logger.warning("site %s: %s; the %s scope is skipped for this site (its models "
                               "are not trained; the report lists it)", site, problem, scope)
                continue
            selector = RSLocal.from_params(
                params, derived_seed(study["seed"], site, scope)
            ).fit(
                spectra_of(pool),
                pool["soc"].to_numpy(dtype=np.float64),
                spectra_of(local),
                local["soc"].to_numpy(dtype=np.float64),
            )
            chosen = pool.iloc[np.asarray(selector.selected_indices_)]
            selections.append(
                pd.DataFrame(
                    {
                        "site": site,
                        "scope": scope,
                        "country": country,
                        "rank": np.arange(len(chosen)),
                        "sample_id": chosen["sample_id"].to_numpy(),
                        "soc": chosen["soc"].to_numpy(dtype=np.float64),
                    }
                )
            )
            history = pd.DataFrame(selector.history_)
            history.insert(0, "scope", scope)
            history.insert(0, "site", site)
            histories.append(history)
    if not selections:  # every scope skipped: the study goes on with the local methods
        return (pd.DataFrame({c: pd.Series(dtype=t) for c, t in SELECTION_COLUMNS.items()}),
                pd.DataFrame({"site": pd.Series(dtype="object"),
                              "scope": pd.Series(dtype="object")}))
    return pd.concat(selections, ignore_index=True), pd.concat(histories, ignore_index=True)


def localise_figures(
    library_spectra: pd.DataFrame,
    site_calibration: pd.DataFrame,
    selection: pd.DataFrame,
    pca_scores: pd.DataFrame,
    library_pca: dict,
    params: dict,
    study: dict,
) -> dict:
    """The paper's Fig. 3 per site and scope: SOC densities and the first two PCs."""
    figures = {}
    pcs = pca_scores.set_index("sample_id")[["pc1", "pc2"]]
    explained = library_pca["explained_variance_ratio"]
    rng = np.random.default_rng(int(study["seed"]))
    for (site, scope), chosen in selection.groupby(["site", "scope"], sort=True):
        local = site_calibration.loc[site_calibration["site"] == site]
        country = site_country(local, site)
        pool = scope_rows(library_spectra, scope, country)
        shown = pool
        limit = int(params["max_library_points"])
        if len(pool) > limit:
            shown = pool.iloc[np.sort(rng.choice(len(pool), limit, replace=False))]
        name = f"{site}_{scope}"
        title = f"{site}: {scope} library" + (f" ({country})" if scope == "country" else "")
        figures[f"{name}_soc_density.png"] = soc_density_figure(
            pool["soc"], chosen["soc"], local["soc"], title
        )
        figures[f"{name}_pca.png"] = pca_figure(
            pcs.loc[shown["sample_id"]].to_numpy(),
            pcs.loc[chosen["sample_id"]].to_numpy(),
            pcs.loc[local["sample_id"]].to_numpy(),
            title,
            explained,
        )
    return figures


__all__ = ["SCOPES", "localise_figures", "select_library_samples"]
