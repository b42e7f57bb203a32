"""Memory-based learning benchmark: predict 200 local spectra from a 50,000 x 211 library.

Prints figures, asserts nothing. Data: the project simulator (default grid, 211 bands),
absorbance then SNV. The library is the simulated global SSL; the local spectra are 200 rows
drawn (seed 0) from the simulated sites' tables.

Cases:
  1. fit: PCA of the library (Mahalanobis; components by 99 % explained variance, the default,
     and by resemble's "opc" rule) and the choice of k among 50, 100, 150, 200 by
     nearest-neighbour validation on 200 library samples;
  2. predict 200 local spectra (WA-PLS 3-15 factors, with diagnostics) at n_jobs = 1 and
     n_jobs = N: wall, CPU and peak memory (target: under 30 s);
  3. spiking: fit with the USA site's 30 Kennard-Stone calibration samples (k chosen by
     leave-one-out over them), predict that site's test rows; test RMSE beside MBL without
     spiking, a global PLSR (15 factors) and a local PLSR (CV) for context.

Usage: python bench/mbl.py [--quick] [--threads N] [--library N]
"""

from __future__ import annotations

import argparse
import time

import numpy as np
from sklearn.cross_decomposition import PLSRegression

from _common import measure, peak_rss_mib, print_header, row
from localsoc.data.schema import spectra_of
from localsoc.data.simulate import simulate_ssl
from localsoc.models.mbl import MemoryBasedLearner
from localsoc.models.pls import fit_pls_cv
from localsoc.selection import KennardStone
from localsoc.spectra.steps import apply_steps

STEPS = ["absorbance", "snv"]
K_CANDIDATES = [50, 100, 150, 200]


def load(n_library: int):
    start = time.perf_counter()
    library, sites = simulate_ssl(n_library, seed=0)
    X = apply_steps(spectra_of(library), STEPS)
    y = library["soc"].to_numpy(np.float64)
    X_sites = apply_steps(spectra_of(sites), STEPS)
    row("simulate + preprocess (not timed below)", f"{time.perf_counter() - start:8.2f} s")
    row("library", f"{X.shape[0]:,} x {X.shape[1]} ({X.nbytes / 2**20:.0f} MiB)")
    return X, y, sites, X_sites


def rmse(estimate, observed) -> float:
    return float(np.sqrt(np.mean((np.asarray(estimate) - observed) ** 2)))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a small smoke run (5,000 rows)")
    parser.add_argument("--threads", type=int, default=2, help="n_jobs of the parallel case")
    parser.add_argument("--library", type=int, default=None, help="library rows (50,000)")
    args = parser.parse_args()
    n_library = args.library or (5_000 if args.quick else 50_000)
    print_header("Memory-based learning" + (" (quick)" if args.quick else ""))
    X, y, sites, X_sites = load(n_library)
    rng = np.random.default_rng(0)
    local_rows = np.sort(rng.choice(len(X_sites), size=min(200, len(X_sites)), replace=False))
    X_local = X_sites[local_rows]

    print(f"\n-- 1. fit: PCA + choice of k among {K_CANDIDATES} (200 library validation targets)")
    models = {}
    for label, components in (("pca 99 % variance", None), ('pca "opc"', "opc")):
        model = MemoryBasedLearner(k=K_CANDIDATES, pca_components=components, random_state=0)
        with measure() as fit_time:
            model.fit(X, y)
        models[label] = model
        row(
            f"fit, {label} (n_jobs=1)",
            f"{fit_time.wall_s:8.2f} s wall {fit_time.cpu_s:7.2f} s CPU   peak RSS "
            f"+{fit_time.peak_rss_delta_mib:.0f} MiB",
        )
        row(
            "  components, chosen k; validation RMSE per k",
            f"{model.n_components_}, k = {model.k_}; "
            + ", ".join(f"{k}: {r:.3f}" for k, r in zip(model.validation_["k"],
                                                          model.validation_["rmse"], strict=True)),
        )

    for label, model in models.items():
        print(f"\n-- 2. predict {len(X_local)} local spectra ({label}, WA-PLS 3-15, k = {model.k_},"
              " diagnostics)")
        results = {}
        for n_jobs in sorted({1, args.threads}):
            model.set_params(n_jobs=n_jobs)
            with measure() as predict_time:
                estimates, diagnostics = model.predict(X_local, return_diagnostics=True)
            results[n_jobs] = estimates
            row(
                f"predict (n_jobs={n_jobs})",
                f"{predict_time.wall_s:8.2f} s wall {predict_time.cpu_s:7.2f} s CPU   peak RSS "
                f"+{predict_time.peak_rss_delta_mib:.0f} MiB   (target < 30 s)",
            )
        model.set_params(n_jobs=1)
        same = all(np.array_equal(results[1], e) for e in results.values())
        row("same estimates at every n_jobs", str(same))
        row(
            "dissimilarity score (median, max); factors (mean)",
            f"{diagnostics['dissimilarity_score'].median():.2f}, "
            f"{diagnostics['dissimilarity_score'].max():.2f}; {diagnostics['factors'].mean():.1f}",
        )

    print("\n-- 3. spiking: the USA site's 30 Kennard-Stone calibration samples in every neighbourhood")
    site_rows = np.flatnonzero((sites["site"] == "usa_site").to_numpy())
    X_site, y_site = X_sites[site_rows], sites["soc"].to_numpy(np.float64)[site_rows]
    calibration = KennardStone(30).fit(X_site).selected_indices_
    test = np.setdiff1d(np.arange(len(X_site)), calibration)
    for label, model in models.items():
        spiked = MemoryBasedLearner(
            k=K_CANDIDATES, pca_components=model.pca_components, spike=True, random_state=0
        )
        with measure() as spiked_fit:
            spiked.fit(X, y, X_spike=X_site[calibration], y_spike=y_site[calibration])
        with measure() as spiked_predict:
            spiked_estimates = spiked.predict(X_site[test])
        row(
            f"{label}: fit (LOO k) / predict {len(test)} rows",
            f"{spiked_fit.wall_s:6.2f} s / {spiked_predict.wall_s:6.2f} s   k = {spiked.k_}",
        )
        row(
            "  test RMSE: MBL spiked / MBL without spiking",
            f"{rmse(spiked_estimates, y_site[test]):.3f} / "
            f"{rmse(model.predict(X_site[test]), y_site[test]):.3f}   (SOC %)",
        )
    with measure() as global_time:
        global_pls = PLSRegression(n_components=15, scale=False).fit(X, y)
    local_pls = fit_pls_cv(X_site[calibration], y_site[calibration], cv=10, random_state=0)
    row(
        "test RMSE: global PLSR (15 f.) / local PLSR (n = 30, CV)",
        f"{rmse(global_pls.predict(X_site[test]).ravel(), y_site[test]):.3f} / "
        f"{rmse(local_pls.predict(X_site[test]), y_site[test]):.3f}   (SOC %; global fit "
        f"{global_time.wall_s:.1f} s)",
    )
    row("peak RSS of the whole run", f"{peak_rss_mib():8.0f} MiB")


if __name__ == "__main__":
    main()
