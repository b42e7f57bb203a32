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

from dataclasses import dataclass

import pandas as pd
from tqdm.auto import tqdm

from localsoc.methods import methods
from localsoc.models.ensemble import Folds
from localsoc.study import site_country, sites_of
from localsoc.study.data import folds_from_table, has_selection
from localsoc.study.nested import ESTIMATE_COLUMNS, base_model_key, nested_site_estimates


@dataclass(frozen=True)
class NestedSettings:
    """What the nested refits read: the ``localise``, ``train`` and ``transfer`` parameters
    (``params``), the run's seed, and ``nested.workers`` / ``nested.progress``."""

    params: dict
    seed: int
    workers: int | None
    progress: bool


@dataclass(frozen=True)
class NestedSite:
    """One site's calibration rows (the n), test rows and stored outer folds of the n (None:
    the train stage stored none)."""

    site: str
    country: str | None
    local: pd.DataFrame
    test: pd.DataFrame
    folds: Folds | None


def nested_settings(localise: dict, train: dict, transfer: dict, study: dict,
                    nested: dict) -> NestedSettings:
    """The parameters of the nested stage under one name."""
    return NestedSettings({"localise": localise, "train": train, "transfer": transfer},
                          int(study["seed"]), nested["workers"], bool(nested["progress"]))


def nested_sites(site_calibration: pd.DataFrame, site_test: pd.DataFrame,
                 site_folds: pd.DataFrame) -> list[NestedSite]:
    """Every site's rows and stored outer folds, in site order."""
    sites = []
    for site in sites_of(site_calibration):
        stored = ((site_folds["site"] == site) & (site_folds["dataset"] == "n")).any()
        sites.append(NestedSite(site, site_country(site_calibration, site),
                                site_calibration.loc[site_calibration["site"] == site],
                                site_test.loc[site_test["site"] == site],
                                folds_from_table(site_folds, site, "n") if stored else None))
    return sites


def _nested_methods(site: NestedSite, selection: pd.DataFrame, collections: dict[str, dict]):
    """(the methods to re-estimate at the site, their models by label, the library models the
    transfer methods started from by label)."""
    entries, models, bases = [], {}, {}
    for entry in methods():
        if entry.nested is None or entry.collection is None:
            continue
        model = collections[entry.collection].get(entry.model_key(site.site, site.country))
        if model is None or (entry.nested == "rslocal"
                             and not has_selection(selection, site.site, entry.scope)):
            continue
        base_key = base_model_key(entry, site.country)
        if base_key is not None:
            if base_key not in collections["library"]:
                continue
            bases[entry.label] = collections["library"][base_key]
        entries.append(entry)
        models[entry.label] = model
    return entries, models, bases


def estimate_nested(
    library_spectra: pd.DataFrame,
    selection: pd.DataFrame,
    sites: list[NestedSite],
    library_models: dict,
    site_models: dict,
    transfer_models: dict,
    settings: NestedSettings,
) -> tuple[pd.DataFrame, pd.DataFrame, dict]:
    """(nested estimates, per-fold choices, outer-fold ensembles keyed like the methods'
    models) of every site and every method with a ``nested`` procedure whose model the site
    has."""
    collections = {"library": library_models, "site": site_models, "transfer": transfer_models}
    frames, choices, outer_models = [], [], {}
    for site in tqdm(sites, desc="nested evaluation", unit="site", disable=not settings.progress):
        entries, models, bases = _nested_methods(site, selection, collections)
        if not entries:
            continue
        if site.folds is None:
            raise ValueError(f"no stored folds for site {site.site!r} and data set 'n'")
        estimates, chosen, outer = nested_site_estimates(
            site.site, site.country, library_spectra, site.local, site.test, selection,
            site.folds, entries, models, bases, settings.params, settings.seed,
            settings.workers)
        frames.append(estimates)
        choices.append(chosen)
        for entry in entries:
            outer_models[entry.model_key(site.site, site.country)] = outer[entry.label]
    if not frames:
        return (pd.DataFrame(columns=list(ESTIMATE_COLUMNS)),
                pd.DataFrame({"site": pd.Series(dtype="object")}), {})
    return (pd.concat(frames, ignore_index=True), pd.concat(choices, ignore_index=True),
            outer_models)
