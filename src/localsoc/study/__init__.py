"""Shared vocabulary of the per-site study: library scopes, methods and seeds.

A *scope* is the part of the library a model learns from: ``global`` (every library row) or
``country`` (the library rows from the site's country). Per-site work loops over sites inside
nodes, so any number of user sites runs through the same code.
"""

from __future__ import annotations

import datetime as dt
import zlib

import numpy as np
import pandas as pd

SCOPES = ("global", "country")
SCOPE_SUFFIX = {"global": "g", "country": "c"}


def sites_of(table: pd.DataFrame) -> list[str]:
    return sorted(str(s) for s in table["site"].dropna().unique())


def site_country(site_table: pd.DataFrame, site: str) -> str | None:
    countries = site_table.loc[site_table["site"] == site, "country"].dropna().unique()
    if len(countries) > 1:
        raise ValueError(f"site {site!r} has rows from several countries: {sorted(countries)}")
    return str(countries[0]) if len(countries) else None


def scope_rows(library: pd.DataFrame, scope: str, country: str | None) -> pd.DataFrame:
    """The library rows of one scope, in library order."""
    if scope == "global":
        return library
    if scope == "country":
        if country is None:
            return library.iloc[0:0]
        return library.loc[library["country"] == country]
    raise ValueError(f"unknown library scope {scope!r}; scopes are {list(SCOPES)}")


def scope_problem(scope: str, country: str | None, pool_rows: int, k: int) -> str | None:
    """Why a site cannot use a library scope (None: it can): RS-LOCAL needs at least 2 k
    library rows (``localise.k``) to select k of them, and a country scope needs the site's
    country among the library's rows."""
    if scope == "country" and country is None:
        return "the site has no country, so it has no country library"
    if scope == "country" and pool_rows == 0:
        return f"the library has no samples from its country ({country})"
    if pool_rows < 2 * int(k):
        where = f"country {country}" if scope == "country" else f"the {scope} library"
        return (f"the library has {pool_rows} rows for {where}; RS-LOCAL needs at least "
                f"2 k = {2 * int(k)} (k = localise.k, `localsoc study --k`)")
    return None


def scope_key(scope: str, country: str | None) -> str:
    """Name of a library model: ``global`` or ``country_<code>`` (shared by sites of a country)."""
    return "global" if scope == "global" else f"country_{country}"


def derived_seed(seed: int, *names: str) -> int:
    """A stable seed for one (site, scope, ...) task from the run seed and names."""
    words = [int(seed)] + [zlib.crc32(name.encode()) for name in names]
    return int(np.random.SeedSequence(words).generate_state(1)[0])


def utc_now() -> str:
    """The time now (ISO 8601, UTC, whole seconds): when a model was trained
    (``info["trained_at"]``) or a bundle packaged. A run's, not a result's: the datasets keep it
    out of the files DVC tracks (``localsoc.datasets.run_info``)."""
    return dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
