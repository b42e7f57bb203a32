"""Representation transfer: the registry's ``transfer`` methods (DTL-R on n, DTL-IR on k + n).

Each starts from the library model of its ``base`` scope. The base is the library ensemble's
fold model with the lowest RMSE on the site's n calibration samples; each freezing depth is
cross-validated on the same folds the train stage stored for that data set, and the best depth
is kept. Test rows are not an input.
"""

from __future__ import annotations

import pandas as pd

from localsoc.methods import methods
from localsoc.models.transfer import TransferConfig, TransferResult, transfer_representation
from localsoc.study import derived_seed, scope_key, site_country, sites_of, utc_now
from localsoc.study.data import (
    dataset_data,
    folds_from_table,
    has_selection,
    parse_dataset,
    site_data,
)

DEPTH_COLUMNS = ["site", "method", "base_model", "base_fold", "depth", "cv_rmse", "chosen"]


def transfer_site_models(
    library_models: dict,
    library_spectra: pd.DataFrame,
    site_calibration: pd.DataFrame,
    selection: pd.DataFrame,
    site_folds: pd.DataFrame,
    params: dict,
    study: dict,
) -> tuple[dict, pd.DataFrame]:
    """Every site's transfer models (by model key) and the CV RMSE of every depth tried."""
    models, rows = {}, []
    for site in sites_of(site_calibration):
        country = site_country(site_calibration, site)
        X_n, y_n, _ = site_data(library_spectra, site_calibration, selection, site)
        for scope in study["scopes"]:
            key = scope_key(scope, country)
            if key not in library_models or not has_selection(selection, site, scope):
                continue  # no library model, or the scope is skipped for this site
            for method in methods("transfer"):
                if method.base != scope or not _has_data(method, selection, site):
                    continue
                X, y, ids = dataset_data(method.data, library_spectra, site_calibration,
                                         selection, site, country)
                folds = folds_from_table(site_folds, site, method.data).aligned_to(ids)
                name = method.model_key(site, country).rpartition("/")[2]
                config = TransferConfig.from_params(params, derived_seed(study["seed"], site, name))
                result = transfer_representation(library_models[key], X, y, config,
                                                 X_site_cal=X_n, y_site_cal=y_n, folds=folds,
                                                 sample_ids=ids)
                result.ensemble.info.update(
                    {"base_model": key, "base_fold": result.base_fold, "depth": result.depth,
                     "data": method.data, "trained_at": utc_now()}
                )
                models[method.model_key(site, country)] = result.ensemble
                rows += _depth_rows(result, site, name, key)
    # the columns even without rows (no library model: every scope skipped), so it reads back
    return models, pd.DataFrame(rows, columns=DEPTH_COLUMNS)


def _has_data(method, selection: pd.DataFrame, site: str) -> bool:
    """Whether the site has the selection the method's data set needs (if any)."""
    _, data_scope, _ = parse_dataset(method.data)
    return data_scope is None or has_selection(selection, site, data_scope)


def _depth_rows(result: TransferResult, site: str, name: str, base_key: str) -> list[dict]:
    """One row per depth tried, in depth order."""
    return [{"site": site, "method": name, "base_model": base_key,
             "base_fold": result.base_fold, "depth": depth, "cv_rmse": cv_rmse,
             "chosen": depth == result.depth}
            for depth, cv_rmse in sorted(result.cv_rmse_by_depth.items())]
