"""Train the tuned 1D-CNNs and PLSR baselines of the study.

Library CNNs (one per library scope: the global library and each site country's library) are
trained once and shared by every site. Per site: Local (n calibration samples), DTL-I (k + n:
the RS-LOCAL selection plus the n) and the PLSR baselines on the same data and the same folds.
Nothing here reads a site's test rows.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from localsoc.data.schema import spectra_of
from localsoc.models.ensemble import Folds, make_folds
from localsoc.models.linear import LinearModel
from localsoc.models.pls import fit_pls_cv
from localsoc.models.search import search_cnn
from localsoc.study import (
    derived_seed,
    scope_key,
    scope_rows,
    site_country,
    sites_of,
    utc_now,
)

N_DATASET = "n"


def kn_dataset(scope: str) -> str:
    return f"k+n:{scope}"


def library_keys(library_spectra: pd.DataFrame, site_calibration: pd.DataFrame,
                 scopes) -> list[tuple[str, str, str | None]]:
    """(model key, scope, country) of every library model the sites need."""
    keys: dict[str, tuple[str, str, str | None]] = {}
    for site in sites_of(site_calibration):
        country = site_country(site_calibration, site)
        for scope in scopes:
            key = scope_key(scope, country)
            if scope == "country" and (country is None or not (library_spectra["country"]
                                                               == country).any()):
                continue  # no library samples from the site's country
            keys.setdefault(key, (key, scope, country))
    return [keys[k] for k in sorted(keys)]


def _search(X, y, ids, folds, budget, params, seed, label):
    return search_cnn(
        X,
        y,
        folds=folds,
        budget=budget,
        seed=seed,
        tuner=params["tuner"],
        space=params.get("space") or None,
        sample_ids=ids,
        progress=bool(params.get("progress", True)),
        threads=params.get("threads"),
        project_name=label.replace("/", "_"),
        distributed=params.get("distributed") or None,  # Keras-Tuner chief/worker mode
    )


def _trials(result, **labels) -> pd.DataFrame:
    table = result.trials.copy()
    for position, (name, value) in enumerate(labels.items()):
        table.insert(position, name, value)
    return table


def reusable_library_model(previous, X, y, ids, params: dict, seed: int) -> bool:
    """Whether a stored library model was trained on exactly this data with these settings."""
    from localsoc.models.cnn1d import resolve_search_space
    from localsoc.models.ensemble import as_spectra, as_target, data_hash
    from localsoc.models.search import resolve_budget

    if previous is None or getattr(previous, "training_data_hash", None) is None:
        return False
    info = previous.info or {}
    return (
        # hashed as search_cnn hashes its inputs (float32 spectra)
        previous.training_data_hash == data_hash(as_spectra(X), as_target(y, len(ids)), ids)
        and previous.seed == seed
        and info.get("tuner") == params["tuner"]
        and info.get("budget") == resolve_budget(dict(params["library_budget"]))
        and info.get("space") == resolve_search_space(params.get("space") or None)
    )


def train_library_models(
    library_spectra: pd.DataFrame,
    site_calibration: pd.DataFrame,
    params: dict,
    previous_models: dict | None = None,
) -> tuple[dict, pd.DataFrame]:
    """One tuned CNN fold ensemble per library scope the sites use.

    A model in ``previous_models`` (the collection of the last run) trained on the same rows,
    values, seed, tuner, budget and search space is reused instead of searched again
    (``train.reuse_library_models``), so a new site does not retrain its libraries.
    """
    models, trials = {}, []
    reuse = bool(params.get("reuse_library_models", True))
    for key, scope, country in library_keys(library_spectra, site_calibration, params["scopes"]):
        rows = scope_rows(library_spectra, scope, country)
        ids = rows["sample_id"].astype(str).tolist()
        X, y = spectra_of(rows), rows["soc"].to_numpy(np.float64)
        seed = derived_seed(params["seed"], "library", key)
        previous = (previous_models or {}).get(key)
        if reuse and reusable_library_model(previous, X, y, ids, params, seed):
            models[key] = previous
            trials.append(pd.DataFrame([{"model": key, "data": "library",
                                         "n_samples": len(rows), "status": "REUSED",
                                         "cv_rmse": previous.cv_rmse_}]))
            continue
        budget = dict(params["library_budget"])
        folds = make_folds(ids, int(budget["folds"]), seed)
        result = _search(X, y, ids, folds, budget, params, seed, f"library_{key}")
        result.ensemble.info.update({"scope": scope, "country": country, "model_key": key,
                                     "trained_at": utc_now()})
        models[key] = result.ensemble
        trials.append(_trials(result, model=key, data="library", n_samples=len(rows)))
    return models, pd.concat(trials, ignore_index=True)


def folds_table(folds: Folds, site: str, dataset: str) -> pd.DataFrame:
    return pd.DataFrame(
        {"site": site, "dataset": dataset, "sample_id": folds.sample_ids.astype(str),
         "fold": folds.assignment}
    )


def folds_from_table(table: pd.DataFrame, site: str, dataset: str) -> Folds:
    rows = table.loc[(table["site"] == site) & (table["dataset"] == dataset)]
    if rows.empty:
        raise ValueError(f"no stored folds for site {site!r} and data set {dataset!r}")
    return Folds(rows["sample_id"].astype(str).to_numpy(), rows["fold"].to_numpy(), None)


def site_data(library_spectra, site_calibration, selection, site, scope=None):
    """(X, y, ids) of a site's n calibration samples, or of k + n for a library scope."""
    local = site_calibration.loc[site_calibration["site"] == site]
    if scope is None:
        frame = local
    else:
        chosen = selection.loc[(selection["site"] == site) & (selection["scope"] == scope)]
        chosen = chosen.sort_values("rank")
        picked = library_spectra.set_index("sample_id").loc[chosen["sample_id"]].reset_index()
        frame = pd.concat([picked[local.columns], local], ignore_index=True)
    ids = frame["sample_id"].astype(str).tolist()
    if len(set(ids)) != len(ids):
        raise ValueError(f"site {site!r}: sample ids of the library and the site overlap")
    return spectra_of(frame), frame["soc"].to_numpy(np.float64), ids


def _pls(X, y, ids, folds: Folds, params, info) -> LinearModel:
    fitted = fit_pls_cv(X, y, max_components=int(params["pls_max_components"]),
                        cv=list(folds.split()))
    return LinearModel.from_pls(fitted, ids, info={**info, "trained_at": utc_now()})


def train_site_models(
    library_spectra: pd.DataFrame,
    site_calibration: pd.DataFrame,
    selection: pd.DataFrame,
    params: dict,
) -> tuple[dict, pd.DataFrame, pd.DataFrame]:
    """Per site: Local CNN and local PLSR on n; DTL-I CNN and RS-LOCAL + PLSR on k + n.

    Returns (models keyed ``<site>/<method>``, trial table, the folds of every data set).
    """
    models, trials, folds_tables = {}, [], []
    budget = dict(params["site_budget"])
    for site in sites_of(site_calibration):
        X, y, ids = site_data(library_spectra, site_calibration, selection, site)
        seed = derived_seed(params["seed"], site, N_DATASET)
        folds = make_folds(ids, int(budget["folds"]), seed)
        folds_tables.append(folds_table(folds, site, N_DATASET))
        result = _search(X, y, ids, folds, budget, params, seed, f"{site}_local")
        result.ensemble.info["trained_at"] = utc_now()
        models[f"{site}/local"] = result.ensemble
        trials.append(_trials(result, model=f"{site}/local", data=N_DATASET, n_samples=len(y)))
        models[f"{site}/plsr_local"] = _pls(X, y, ids, folds, params, {"data": N_DATASET})

        for scope in params["scopes"]:
            if not ((selection["site"] == site) & (selection["scope"] == scope)).any():
                continue
            X, y, ids = site_data(library_spectra, site_calibration, selection, site, scope)
            dataset = kn_dataset(scope)
            seed = derived_seed(params["seed"], site, dataset)
            folds = make_folds(ids, int(budget["folds"]), seed)
            folds_tables.append(folds_table(folds, site, dataset))
            suffix = "g" if scope == "global" else "c"
            result = _search(X, y, ids, folds, budget, params, seed, f"{site}_dtl_i{suffix}")
            result.ensemble.info["trained_at"] = utc_now()
            models[f"{site}/dtl_i{suffix}"] = result.ensemble
            trials.append(_trials(result, model=f"{site}/dtl_i{suffix}", data=dataset,
                                  n_samples=len(y)))
            models[f"{site}/plsr_rslocal_{suffix}"] = _pls(X, y, ids, folds, params,
                                                           {"data": dataset})
    return models, pd.concat(trials, ignore_index=True), pd.concat(folds_tables, ignore_index=True)
