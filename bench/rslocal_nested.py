"""Nested RS-LOCAL: one run per outer fold of the n (the nested stage's cost); prints figures.

The nested evaluation reruns RS-LOCAL on each outer fold's training locals (n - n/K of them),
so a site and scope costs K runs on top of the study's own. This times K = 10 outer folds on
the 50,000-spectrum simulated library (k = 100, b = 40, retain = 0.95, 10 PLS factors, n = 30
Kennard-Stone picks) through ``localsoc.study.nested.fold_selections``, the function the stage
uses: its thread pool runs cores // n_jobs folds at once (1 at a time on 2 cores with
n_jobs = 2: the native kernel already uses both). Target: under 4 minutes on 2 cores.

Usage: python bench/rslocal_nested.py [--library 50000] [--folds 10] [--threads 2]
       [--workers N] [--source auto|simulate|synthetic]
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import pandas as pd

from _common import peak_rss_mib, print_header, row
from localsoc.data.schema import make_table
from localsoc.models.ensemble import make_folds
from localsoc.selection import KennardStone
from localsoc.study.nested import fold_selections
from rslocal import SETTINGS, load


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--library", type=int, default=50_000)
    parser.add_argument("--folds", type=int, default=10)
    parser.add_argument("--threads", type=int, default=2, help="n_jobs of each RS-LOCAL run")
    parser.add_argument("--workers", type=int, default=None, help="folds run at once")
    parser.add_argument("--source", default="auto", choices=["auto", "simulate", "synthetic"])
    args = parser.parse_args()
    print_header("Nested RS-LOCAL (one run per outer fold)")
    X, y, X_site, y_site, source = load(args.library, args.source)
    local = KennardStone(n_select=30).fit(X_site).selected_indices_
    X_local, y_local = X_site[local], y_site[local]
    row("data", f"{source}: library {X.shape[0]:,} x {X.shape[1]}, local n = {len(X_local)}")
    # the stage's library table: metadata + one column per band (the spectra already absorbance)
    pool = make_table(pd.DataFrame({"sample_id": [f"lib-{i}" for i in range(len(y))],
                                    "soc": y}), X, np.linspace(400.0, 2500.0, X.shape[1]))
    params = {**SETTINGS, "scoring": "response", "retain_by": "proportion",
              "n_jobs": args.threads, "backend": "native"}
    folds = make_folds(len(y_local), args.folds, 0)
    seeds = list(range(args.folds))
    start = time.perf_counter()
    chosen = fold_selections(pool, X_local, y_local, folds, params, seeds, args.workers)
    wall = time.perf_counter() - start
    row("outer folds", f"{args.folds} (each on {len(y_local) - len(y_local) // args.folds} "
                       "training locals)")
    row("wall time, all outer folds", f"{wall:.1f} s ({wall / args.folds:.1f} s per fold); "
                                      "target < 240 s on 2 cores")
    overlap = [len(set(a) & set(b)) for a, b in zip(chosen[:-1], chosen[1:], strict=True)]
    row("selection overlap between consecutive folds", f"{np.mean(overlap):.1f} of "
                                                       f"{SETTINGS['k']} (mean)")
    row("peak RSS", f"{peak_rss_mib():.0f} MiB")


if __name__ == "__main__":
    main()
