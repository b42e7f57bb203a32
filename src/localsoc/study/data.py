"""The data each model of a site learns from, and the cross-validation folds stored for it.

Shared by the train, transfer, mbl and evaluate pipelines (so none of them imports another
pipeline's nodes). A *data set* of a site is named as in the method registry
(``localsoc.methods``):

- ``n``: the site's n calibration samples;
- ``k+n:<scope>``: the RS-LOCAL selection from the ``<scope>`` library plus the n;
- ``library:<scope>``: the library rows of one scope; ``library:<scope>+n``: those plus the n.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from localsoc.data.schema import spectra_of
from localsoc.models.ensemble import Folds
from localsoc.study import scope_rows, site_country, sites_of

N_DATASET = "n"


def kn_dataset(scope: str) -> str:
    """The name of the k + n data set of a library scope (``k+n:global``)."""
    return f"k+n:{scope}"


def parse_dataset(dataset: str) -> tuple[str, str | None, bool]:
    """(kind, scope, with the n added) of a data-set name: ``n`` -> ("n", None, False),
    ``k+n:global`` -> ("k+n", "global", True), ``library:country+n`` -> ("library", "country",
    True)."""
    if dataset == N_DATASET:
        return "n", None, False
    kind, _, scope = dataset.partition(":")
    if kind not in ("k+n", "library") or not scope:
        raise ValueError(f"unknown data set {dataset!r}; use n, k+n:<scope> or library:<scope>")
    spiked = scope.endswith("+n")
    return kind, scope.removesuffix("+n"), kind == "k+n" or spiked


def has_selection(selection: pd.DataFrame, site: str, scope: str) -> bool:
    """Whether RS-LOCAL selected library samples for this site and scope."""
    return bool(((selection["site"] == site) & (selection["scope"] == scope)).any())


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


def dataset_data(dataset: str, library_spectra, site_calibration, selection, site,
                 country: str | None):
    """(X, y, ids) of any data set of a site (see the module notes)."""
    kind, scope, with_n = parse_dataset(dataset)
    if kind == "n":
        return site_data(library_spectra, site_calibration, selection, site)
    if kind == "k+n":
        return site_data(library_spectra, site_calibration, selection, site, scope)
    rows = scope_rows(library_spectra, scope, country)
    X, y = spectra_of(rows), rows["soc"].to_numpy(np.float64)
    ids = rows["sample_id"].astype(str).tolist()
    if with_n:
        X_n, y_n, ids_n = site_data(library_spectra, site_calibration, selection, site)
        X, y, ids = np.vstack([X, X_n]), np.concatenate([y, y_n]), ids + ids_n
    return X, y, ids


def training_spectra(dataset: str, library_spectra, site_calibration, selection, site,
                     country: str | None) -> np.ndarray:
    """The spectra a model of this data set learned from (for its applicability domain)."""
    return dataset_data(dataset, library_spectra, site_calibration, selection, site, country)[0]


def folds_table(folds: Folds, site: str, dataset: str) -> pd.DataFrame:
    """The stored form of a data set's folds (``site_folds``)."""
    return pd.DataFrame(
        {"site": site, "dataset": dataset, "sample_id": folds.sample_ids.astype(str),
         "fold": folds.assignment}
    )


def folds_from_table(table: pd.DataFrame, site: str, dataset: str) -> Folds:
    """The folds the train stage stored for one site and data set."""
    rows = table.loc[(table["site"] == site) & (table["dataset"] == dataset)]
    if rows.empty:
        raise ValueError(f"no stored folds for site {site!r} and data set {dataset!r}")
    return Folds(rows["sample_id"].astype(str).to_numpy(), rows["fold"].to_numpy(), None)


@dataclass(frozen=True)
class SiteSpectra:
    """One site's calibration samples (the n) and held-out samples (validation and test), as
    arrays in table order; ``ids_validation``: the held-out samples kept apart as validation
    samples (``site_test.holdout == "validation"``)."""

    site: str
    country: str | None
    X_cal: np.ndarray
    y_cal: np.ndarray
    ids_cal: list[str]
    X_test: np.ndarray
    y_test: np.ndarray
    ids_test: list[str]
    ids_validation: list[str]


def study_sites(site_calibration: pd.DataFrame, site_test: pd.DataFrame,
                library_spectra: pd.DataFrame, selection: pd.DataFrame) -> dict[str, SiteSpectra]:
    """Every site's :class:`SiteSpectra`, in site order."""
    sites = {}
    for site in sites_of(site_calibration):
        X_cal, y_cal, ids_cal = site_data(library_spectra, site_calibration, selection, site)
        test = site_test.loc[site_test["site"] == site]
        held = (test.loc[test["holdout"] == "validation", "sample_id"].astype(str).tolist()
                if "holdout" in test else [])
        sites[site] = SiteSpectra(
            site, site_country(site_calibration, site), X_cal, y_cal, ids_cal,
            spectra_of(test) if not test.empty else np.empty((0, X_cal.shape[1])),
            test["soc"].to_numpy(np.float64), test["sample_id"].astype(str).tolist(), held)
    return sites
