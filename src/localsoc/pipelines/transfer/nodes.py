"""Representation transfer: the registry's ``transfer`` methods (DTL-R on n, DTL-IR on k + n).

Each starts from the library model of its ``base`` scope. The base is the library ensemble's
fold model with the lowest RMSE on the site's n calibration samples; each freezing depth is
cross-validated on the same folds the train stage stored for that data set, and the best depth
is kept. Test rows are not an input.
"""

from __future__ import annotations

import pandas as pd

from localsoc.methods import methods
from localsoc.models.transfer import transfer_representation
from localsoc.study import derived_seed, scope_key, site_country, sites_of, utc_now
from localsoc.study.data import (
    dataset_data,
    folds_from_table,
    has_selection,
    parse_dataset,
    site_data,
)


def transfer_site_models(
    library_models: dict,
    library_spectra: pd.DataFrame,
    site_calibration: pd.DataFrame,
    selection: pd.DataFrame,
    site_folds: pd.DataFrame,
    params: dict,
    study: dict,
) -> tuple[dict, pd.DataFrame]:
    models, rows = {}, []
    for site in sites_of(site_calibration):
        country = site_country(site_calibration, site)
        X_n, y_n, _ = site_data(library_spectra, site_calibration, selection, site)
        for scope in study["scopes"]:
            key = scope_key(scope, country)
            if key not in library_models or not has_selection(selection, site, scope):
                continue  # no library model, or the scope is skipped for this site
            base = library_models[key]
            for method in methods("transfer"):
                if method.base != scope:
                    continue
                dataset = method.data
                _, data_scope, _ = parse_dataset(dataset)
                if data_scope is not None and not has_selection(selection, site, data_scope):
                    continue
                X, y, ids = dataset_data(dataset, library_spectra, site_calibration, selection,
                                         site, country)
                folds = folds_from_table(site_folds, site, dataset).aligned_to(ids)
                name = method.model_key(site, country).rpartition("/")[2]
                result = transfer_representation(
                    base,
                    X,
                    y,
                    X_site_cal=X_n,
                    y_site_cal=y_n,
                    folds=folds,
                    depths=params.get("depths"),
                    fine_tune=params["fine_tune"],
                    seed=derived_seed(study["seed"], site, name),
                    progress=bool(params.get("progress", True)),
                    sample_ids=ids,
                    threads=params.get("threads"),
                )
                result.ensemble.info.update(
                    {"base_model": key, "base_fold": result.base_fold, "depth": result.depth,
                     "data": dataset, "trained_at": utc_now()}
                )
                models[method.model_key(site, country)] = result.ensemble
                for depth, cv_rmse in sorted(result.cv_rmse_by_depth.items()):
                    rows.append({"site": site, "method": name, "base_model": key,
                                 "base_fold": result.base_fold, "depth": depth,
                                 "cv_rmse": cv_rmse, "chosen": depth == result.depth})
    # the columns even without rows (no library model: every scope skipped), so it reads back
    return models, pd.DataFrame(rows, columns=["site", "method", "base_model", "base_fold",
                                               "depth", "cv_rmse", "chosen"])
