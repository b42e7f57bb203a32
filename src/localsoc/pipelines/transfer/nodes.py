"""Representation transfer: library CNNs fine-tuned on each site's n (DTL-R) and k + n (DTL-IR).

The base is the library ensemble's fold model with the lowest RMSE on the site's n calibration
samples; each freezing depth is cross-validated on the same folds the train stage stored for
that data set, and the best depth is kept. Test rows are not an input.
"""

from __future__ import annotations

import pandas as pd

from localsoc.models.transfer import transfer_representation
from localsoc.pipelines.train.nodes import (
    N_DATASET,
    folds_from_table,
    kn_dataset,
    site_data,
)
from localsoc.study import (
    SCOPE_SUFFIX,
    derived_seed,
    scope_key,
    site_country,
    sites_of,
    utc_now,
)


def transfer_site_models(
    library_models: dict,
    library_spectra: pd.DataFrame,
    site_calibration: pd.DataFrame,
    selection: pd.DataFrame,
    site_folds: pd.DataFrame,
    params: dict,
) -> tuple[dict, pd.DataFrame]:
    models, rows = {}, []
    for site in sites_of(site_calibration):
        country = site_country(site_calibration, site)
        X_n, y_n, ids_n = site_data(library_spectra, site_calibration, selection, site)
        for scope in params["scopes"]:
            key = scope_key(scope, country)
            if key not in library_models:
                continue
            base = library_models[key]
            suffix = SCOPE_SUFFIX[scope]
            targets = [(f"dtl_r{suffix}", N_DATASET, X_n, y_n, ids_n)]
            if ((selection["site"] == site) & (selection["scope"] == scope)).any():
                X, y, ids = site_data(library_spectra, site_calibration, selection, site, scope)
                targets.append((f"dtl_ir{suffix}", kn_dataset(scope), X, y, ids))
            for method, dataset, X, y, ids in targets:
                folds = folds_from_table(site_folds, site, dataset).aligned_to(ids)
                result = transfer_representation(
                    base,
                    X,
                    y,
                    X_site_cal=X_n,
                    y_site_cal=y_n,
                    folds=folds,
                    depths=params.get("depths"),
                    fine_tune=params["fine_tune"],
                    seed=derived_seed(params["seed"], site, method),
                    progress=bool(params.get("progress", True)),
                    sample_ids=ids,
                    threads=params.get("threads"),
                )
                result.ensemble.info.update(
                    {"base_model": key, "base_fold": result.base_fold, "depth": result.depth,
                     "data": dataset, "trained_at": utc_now()}
                )
                models[f"{site}/{method}"] = result.ensemble
                for depth, cv_rmse in sorted(result.cv_rmse_by_depth.items()):
                    rows.append({"site": site, "method": method, "base_model": key,
                                 "base_fold": result.base_fold, "depth": depth,
                                 "cv_rmse": cv_rmse, "chosen": depth == result.depth})
    return models, pd.DataFrame(rows)
