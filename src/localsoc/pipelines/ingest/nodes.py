"""Bring the SSLs into the canonical table: the embedded simulator, or the user's imports.

``ingest.source: simulate`` runs the simulator; ``ingest.source: files`` combines the libraries
and sites imported with ``localsoc import`` / ``localsoc site`` (data/01_raw/imports/), keeping
the ones named in ``ingest.libraries`` and ``ingest.sites`` (null: all). The imports arrive as
mappings that read a table when it is looked up, so a run reads only the tables it names (the
simulator reads none).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping

import pandas as pd

from localsoc.data.schema import Grid, check_table
from localsoc.data.simulate import default_sites, simulate_ssl
from localsoc.datasets.imported_tables import carbon_kind_warning, carbon_kinds_of

logger = logging.getLogger(__name__)

SOURCES = ("simulate", "files")


def simulate_tables(simulate: dict, grid_params: dict,
                    seed: int) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The embedded default data: a global SSL (with its country subsets) and local sites.

    ``simulate.sites`` (optional) keeps only the named sites of the default three.
    """
    sites = default_sites()
    wanted = simulate["sites"]
    if wanted:
        known = {site.site_id: site for site in sites}
        unknown = [name for name in wanted if name not in known]
        if unknown:
            raise ValueError(
                f"ingest.simulate.sites: unknown site(s) {unknown}; the simulator has "
                f"{sorted(known)}"
            )
        sites = tuple(known[name] for name in wanted)
    return simulate_ssl(
        global_size=int(simulate["global_size"]),
        seed=int(seed),
        grid=Grid.from_params(grid_params),
        sites=sites,
    )


def _names(tables: Mapping[str, pd.DataFrame], wanted) -> list[str]:
    return sorted(tables) if not wanted else list(wanted)


def _pick(tables: Mapping[str, pd.DataFrame], wanted, what: str, command: str) -> pd.DataFrame:
    names = _names(tables, wanted)
    missing = [name for name in names if name not in tables]
    if missing or not names:
        raise ValueError(
            f"ingest.{what}: {missing or 'nothing'} not imported; imported {what} are "
            f"{sorted(tables) or 'none'}. Add one with `{command}`."
        )
    frames = []
    for name in names:
        table = tables[name]  # read here, and only if named
        check_table(table, f"imported {what[:-1]} {name!r}")
        frames.append(table)
    return pd.concat(frames, ignore_index=True)


def ingest_tables(
    params: dict,
    grid_params: dict,
    study: dict,
    imported_libraries: Mapping[str, pd.DataFrame],
    imported_sites: Mapping[str, pd.DataFrame],
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(library_raw, sites_raw) from the configured source (simulated with ``study.seed``).

    Imported tables whose declared carbon kinds differ between a site and a library get a
    warning in the log (``carbon_kind_warning``; the report repeats it)."""
    source = params["source"]
    if source == "simulate":
        return simulate_tables(params["simulate"], grid_params, study["seed"])
    if source == "files":
        library = _pick(imported_libraries, params["libraries"], "libraries",
                        "localsoc import FILE --as NAME")
        sites = _pick(imported_sites, params["sites"], "sites",
                      "localsoc site FILE --name NAME")
        warning = carbon_kind_warning(
            carbon_kinds_of(imported_libraries, _names(imported_libraries,
                                                       params["libraries"])),
            carbon_kinds_of(imported_sites, _names(imported_sites, params["sites"])))
        if warning:
            logger.warning("%s", warning)
        return library, sites
    raise ValueError(f"ingest.source must be one of {list(SOURCES)}; got {source!r}")
