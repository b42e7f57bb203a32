"""Train the models of the ``train_library`` and ``train_sites`` stages of the method registry.

Library models (one per library scope the registry's ``train_library`` methods use: the global
library and each site country's library) are trained once and shared by every site. Per site,
every ``train_sites`` method (Local CNN and PLSR on n; DTL-I CNN and RS-LOCAL + PLSR on k + n) is
trained by its family's module on its data set, on the folds stored for that data set. Nothing
here reads a site's test rows.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from localsoc.data.schema import spectra_of
from localsoc.methods import family, methods
from localsoc.models.ensemble import make_folds
from localsoc.study import derived_seed, scope_key, scope_rows, site_country, sites_of, utc_now
from localsoc.study.data import (
    N_DATASET,
    dataset_data,
    folds_table,
    has_selection,
    kn_dataset,
    parse_dataset,
)


def library_keys(site_calibration: pd.DataFrame, selection: pd.DataFrame,
                 scopes) -> list[tuple[str, str, str | None]]:
    """(model key, scope, country) of every library model the sites need: the scopes a site
    uses, i.e. those the localise stage selected from (it skips, with a warning, a scope whose
    library part is absent or too small: ``localsoc.study.scope_problem``)."""
    keys: dict[str, tuple[str, str, str | None]] = {}
    for site in sites_of(site_calibration):
        country = site_country(site_calibration, site)
        for scope in scopes:
            if not has_selection(selection, site, scope):
                continue  # the scope is skipped for this site
            key = scope_key(scope, country)
            keys.setdefault(key, (key, scope, country))
    return [keys[k] for k in sorted(keys)]


def _labelled(table: pd.DataFrame | None, **labels) -> pd.DataFrame | None:
    if table is None:
        return None
    table = table.copy()
    for position, (name, value) in enumerate(labels.items()):
        table.insert(position, name, value)
    return table


def _library_family(scope: str) -> str:
    """The family of the registry's library method of one scope (the CNN)."""
    found = {m.family for m in methods("train_library") if m.scope == scope}
    if len(found) != 1:
        raise ValueError(f"the registry needs exactly one library method family for scope "
                         f"{scope!r}; found {sorted(found)}")
    return found.pop()


def train_library_models(
    library_spectra: pd.DataFrame,
    site_calibration: pd.DataFrame,
    selection: pd.DataFrame,
    params: dict,
    study: dict,
    previous_models: dict | None = None,
) -> tuple[dict, pd.DataFrame]:
    """One tuned fold ensemble per library scope the sites use (``library_keys``).

    A model in ``previous_models`` (the collection of the last run) trained on the same rows,
    values, seed, tuner, budget and search space is reused instead of searched again
    (``train.reuse_library_models``), so a new site does not retrain its libraries.
    """
    scopes = [s for s in study["scopes"] if any(m.scope == s for m in methods("train_library"))]
    models, trials = {}, []
    for key, scope, country in library_keys(site_calibration, selection, scopes):
        rows = scope_rows(library_spectra, scope, country)
        ids = rows["sample_id"].astype(str).tolist()
        X, y = spectra_of(rows), rows["soc"].to_numpy(np.float64)
        seed = derived_seed(study["seed"], "library", key)
        trainer = family(_library_family(scope)).implementation()
        model, table, reused = trainer.train_library_model(
            X, y, ids, seed, params, f"library_{key}", (previous_models or {}).get(key))
        if not reused:
            model.info.update({"scope": scope, "country": country, "model_key": key,
                               "trained_at": utc_now()})
        models[key] = model
        trials.append(_labelled(table, model=key, data="library", n_samples=len(rows)))
    if not trials:  # every library scope skipped
        return models, pd.DataFrame({"model": pd.Series(dtype="object")})
    return models, pd.concat(trials, ignore_index=True)


def site_datasets(scopes) -> list[str]:
    """The data sets of a site the ``train_sites`` methods learn from, in training order."""
    wanted = {m.data for m in methods("train_sites")}
    ordered = [N_DATASET] + [kn_dataset(scope) for scope in scopes]
    return [d for d in ordered if d in wanted]


def train_site_models(
    library_spectra: pd.DataFrame,
    site_calibration: pd.DataFrame,
    selection: pd.DataFrame,
    params: dict,
    study: dict,
) -> tuple[dict, pd.DataFrame, pd.DataFrame]:
    """Per site, every ``train_sites`` method of the registry on its data set.

    Returns (models keyed by the methods' keys, trial table, the folds of every data set).
    """
    models, trials, folds_tables = {}, [], []
    n_folds = int(params["site_budget"]["folds"])
    for site in sites_of(site_calibration):
        country = site_country(site_calibration, site)
        for dataset in site_datasets(study["scopes"]):
            _, scope, _ = parse_dataset(dataset)
            if scope is not None and not has_selection(selection, site, scope):
                continue
            X, y, ids = dataset_data(dataset, library_spectra, site_calibration, selection,
                                     site, country)
            seed = derived_seed(study["seed"], site, dataset)
            folds = make_folds(ids, n_folds, seed)
            folds_tables.append(folds_table(folds, site, dataset))
            for method in methods("train_sites"):
                if method.data != dataset:
                    continue
                key = method.model_key(site, country)
                trainer = family(method.family).implementation()
                model, table = trainer.train_site_model(
                    X, y, ids, folds, seed, params, key.replace("/", "_"), dataset,
                    n_local=int((site_calibration["site"] == site).sum()))
                models[key] = model
                labelled = _labelled(table, model=key, data=dataset, n_samples=len(y))
                if labelled is not None:
                    trials.append(labelled)
    return models, pd.concat(trials, ignore_index=True), pd.concat(folds_tables, ignore_index=True)
