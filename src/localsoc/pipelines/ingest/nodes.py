"""Bring the SSLs into the canonical table: the embedded simulator, or files through importers."""

from __future__ import annotations

import pandas as pd

from localsoc.data.schema import Grid


def simulate_tables(simulate: dict, grid_params: dict) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The embedded default data: a global SSL (with its country subsets) and local sites."""
    from localsoc.data.simulate import simulate_ssl

    return simulate_ssl(
        global_size=int(simulate["global_size"]),
        seed=int(simulate["seed"]),
        grid=Grid.from_params(grid_params),
    )
