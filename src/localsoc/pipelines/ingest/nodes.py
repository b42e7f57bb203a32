"""Bring the SSLs into the canonical table: the embedded simulator, or files through importers."""

from __future__ import annotations

import pandas as pd

from localsoc.data.schema import Grid
from localsoc.data.simulate import default_sites, simulate_ssl


def simulate_tables(simulate: dict, grid_params: dict) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The embedded default data: a global SSL (with its country subsets) and local sites.

    ``simulate.sites`` (optional) keeps only the named sites of the default three.
    """
    sites = default_sites()
    wanted = simulate.get("sites")
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
        seed=int(simulate["seed"]),
        grid=Grid.from_params(grid_params),
        sites=sites,
    )
