"""Nested out-of-fold estimates of every method whose training data or settings used the labels.

RS-LOCAL picks its library samples to predict the n calibration samples, and the PLSR
component count is the argmin of a CV over them, so the train stage's out-of-fold estimates of
those n are optimistic. This stage redoes those choices inside each outer fold of the n (the
folds the train stage stored for the data set ``n``) and predicts the held-out locals and the
site's test spectra with each outer fold's model (``localsoc.study.nested``). The K models of
each method are kept as its outer-fold ensemble (``nested_models``): the evaluate stage scores
it (nested out-of-fold RMSE, CV+ intervals from its fold estimates) and the package stage
serves it. ``nested_estimates`` and ``nested_choices`` record the same estimates and what each
fold chose, as tables. Test spectra are predicted, never fitted on; their labels are not read
here.
"""

from __future__ import annotations

import pandas as pd
from tqdm.auto import tqdm

from localsoc.methods import methods
from localsoc.study import site_country, sites_of
from localsoc.study.data import folds_from_table, has_selection
from localsoc.study.nested import ESTIMATE_COLUMNS, base_model_key, nested_site_estimates


def estimate_nested(
    library_spectra: pd.DataFrame,
    site_calibration: pd.DataFrame,
    site_test: pd.DataFrame,
    selection: pd.DataFrame,
    site_folds: pd.DataFrame,
    library_models: dict,
    site_models: dict,
    transfer_models: dict,
    localise: dict,
    train: dict,
    transfer: dict,
    study: dict,
    nested: dict,
) -> tuple[pd.DataFrame, pd.DataFrame, dict]:
    """(nested estimates, per-fold choices, outer-fold ensembles keyed like the methods'
    models) of every site and every method with a ``nested`` procedure whose model the site
    has."""
    collections = {"library": library_models, "site": site_models, "transfer": transfer_models}
    params = {"localise": localise, "train": train, "transfer": transfer}
    sites = sites_of(site_calibration)
    frames, choices, outer_models = [], [], {}
    for site in tqdm(sites, desc="nested evaluation", unit="site",
                     disable=not bool(nested.get("progress", True))):
        country = site_country(site_calibration, site)
        entries, models, bases = [], {}, {}
        for entry in methods():
            if entry.nested is None or entry.collection is None:
                continue
            model = collections[entry.collection].get(entry.model_key(site, country))
            if model is None or (entry.nested == "rslocal"
                                 and not has_selection(selection, site, entry.scope)):
                continue
            base_key = base_model_key(entry, country)
            if base_key is not None:
                if base_key not in library_models:
                    continue
                bases[entry.label] = library_models[base_key]
            entries.append(entry)
            models[entry.label] = model
        if not entries:
            continue
        estimates, chosen, outer = nested_site_estimates(
            site, country, library_spectra,
            site_calibration.loc[site_calibration["site"] == site],
            site_test.loc[site_test["site"] == site], selection,
            folds_from_table(site_folds, site, "n"), entries, models, bases, params,
            int(study["seed"]), nested.get("workers"))
        frames.append(estimates)
        choices.append(chosen)
        for entry in entries:
            outer_models[entry.model_key(site, country)] = outer[entry.label]
    if not frames:
        return (pd.DataFrame(columns=list(ESTIMATE_COLUMNS)),
                pd.DataFrame({"site": pd.Series(dtype="object")}), {})
    return (pd.concat(frames, ignore_index=True), pd.concat(choices, ignore_index=True),
            outer_models)
