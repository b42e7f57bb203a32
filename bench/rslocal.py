"""RS-LOCAL benchmark: compiled kernel against its NumPy twin; prints figures, asserts nothing.

Data: the project simulator (localsoc.data.simulate) when present, else a low-rank spectra-like
matrix; absorbance log10(1/R); the local set is 30 Kennard-Stone picks from one simulated site.
Settings (DESIGN 4): k = 100, b = 40, retain = 0.95, 10 PLS factors, n = 30, response scoring.

Figures:
  1. time per PLS fit (100 x 211, 10 factors, score 30 locals) for the native kernel (float64 and
     float32, 1 and N threads), the NumPy twin and scikit-learn's PLSRegression;
  2. the whole native RS-LOCAL on the 50,000-sample library (target < 90 s on 2 cores);
  3. the float32 mode on the same library and its overlap with the float64 selection;
  4. the NumPy twin on a library subsample with the same settings, against native on the same
     subsample (same draws: the selections must be identical); the per-fit ratio (target >= 10x).

Usage: python bench/rslocal.py [--quick] [--threads N] [--library N] [--subsample N]
       [--skip-float32] [--source auto|simulate|synthetic]
"""

from __future__ import annotations

import argparse

import numpy as np
from sklearn.cross_decomposition import PLSRegression

from _common import best_of, measure, peak_rss_mib, print_header, row
from localsoc.selection import KennardStone, RSLocal, draw_subsets, score_subsets
from localsoc.selection.kennard_stone import limit_blas_threads

SETTINGS = {"k": 100, "b": 40, "retain": 0.95, "n_components": 10}


def synthetic(n_library: int, n_site: int, seed: int = 0):
    """Low-rank absorbance-like library and a site with its own X -> y relation."""
    rng = np.random.default_rng(seed)
    basis = np.cumsum(rng.normal(size=(15, 211)), axis=1) / 20
    latent = rng.normal(size=(n_library + n_site, 15))
    X = 0.5 + latent @ basis + 0.003 * rng.normal(size=(n_library + n_site, 211))
    y = np.exp(0.5 * latent[:, 0] + 0.2 * latent[:, 1]) + 0.05 * rng.normal(size=len(X))
    y[n_library:] = 1.6 + 0.4 * latent[n_library:, 0] - 0.3 * latent[n_library:, 2]
    return X[:n_library], y[:n_library], X[n_library:], y[n_library:], "synthetic low-rank"


def simulated(n_library: int, seed: int = 0):
    from localsoc.data.schema import spectra_of
    from localsoc.data.simulate import simulate_ssl

    library, sites = simulate_ssl(n_library, seed=seed)
    site = sites.loc[sites["site"] == sorted(sites["site"].dropna().unique())[0]]
    return (
        np.log10(1.0 / spectra_of(library)),
        library["soc"].to_numpy(dtype=np.float64),
        np.log10(1.0 / spectra_of(site)),
        site["soc"].to_numpy(dtype=np.float64),
        f"localsoc.data.simulate (global library, site {site['site'].iloc[0]})",
    )


def load(n_library: int, source: str):
    if source in ("auto", "simulate"):
        try:
            return simulated(n_library)
        except ImportError:
            if source == "simulate":
                raise
    return synthetic(n_library, 135)


def per_fit_figures(X, y, X_local, y_local, threads: int) -> float:
    print("\n-- 1. time per PLS fit (k = 100 rows x 211 bands, 10 factors, 30 local predictions)")
    rng = np.random.default_rng(1)
    subsets = draw_subsets(rng, len(X), SETTINGS["k"], 2000)
    common = (X, y, X_local, y_local)
    timings = {}
    for label, count, kwargs in [
        ("native float64, 1 thread", 2000, {"n_jobs": 1}),
        (f"native float64, {threads} threads", 2000, {"n_jobs": threads}),
        ("native float32, 1 thread", 2000, {"n_jobs": 1, "dtype": "float32"}),
        (f"native float32, {threads} threads", 2000, {"n_jobs": threads, "dtype": "float32"}),
        ("numpy twin (BLAS held to 1 thread)", 200, {"backend": "numpy"}),
    ]:
        batch = subsets[:count]
        fastest, _ = best_of(
            lambda batch=batch, kwargs=kwargs: score_subsets(*common, batch, 10, **kwargs),
            repeats=3,
        )
        timings[label] = fastest / count
        row(label, f"{fastest / count * 1e3:8.4f} ms per fit   (best of 3 batches of {count})")
    with limit_blas_threads(1):

        def sklearn_batch():
            for rows in subsets[:100]:
                model = PLSRegression(n_components=10, scale=False).fit(X[rows], y[rows])
                model.predict(X_local)

        fastest, _ = best_of(sklearn_batch, repeats=3)
    row(
        "sklearn PLSRegression(scale=False) fit + predict", f"{fastest / 100 * 1e3:8.4f} ms per fit"
    )
    native = score_subsets(*common, subsets[:200], 10)
    twin = score_subsets(*common, subsets[:200], 10, backend="numpy")
    fast = score_subsets(*common, subsets[:200], 10, dtype="float32")
    row("max relative difference native vs numpy", f"{np.max(np.abs(native / twin - 1)):.2e}")
    row("max relative difference float32 vs float64", f"{np.max(np.abs(fast / native - 1)):.2e}")
    ratio = timings["numpy twin (BLAS held to 1 thread)"] / timings["native float64, 1 thread"]
    row("per-fit ratio numpy / native (1 thread each)", f"{ratio:8.1f} x   (target >= 10x)")
    return ratio


def full_run(X, y, X_local, y_local, threads: int, dtype: str = "float64"):
    model = RSLocal(**SETTINGS, random_state=0, n_jobs=threads, dtype=dtype)
    with measure() as run:
        model.fit(X, y, X_local, y_local)
    fits = sum(entry["n_subsets"] for entry in model.history_)
    return model, run, fits


def replay_draws(n_library: int) -> float:
    """Seconds spent drawing subsets over a whole run (the same pool sizes, fresh generator)."""
    rng, size, total = np.random.default_rng(0), n_library, 0.0
    stop = SETTINGS["k"] * (1 + (1 - SETTINGS["retain"]))
    with measure() as draws:
        while True:
            draw_subsets(
                rng, size, SETTINGS["k"], max(1, round(size * SETTINGS["b"] / SETTINGS["k"]))
            )
            if size <= stop:
                break
            size -= min(max(1, round(size * (1 - SETTINGS["retain"]))), size - SETTINGS["k"])
    total = draws.wall_s
    return total


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small smoke run (5,000 / 400)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--library", type=int, default=None, help="library rows (50,000)")
    parser.add_argument(
        "--subsample", type=int, default=None, help="rows for the numpy twin (2,000)"
    )
    parser.add_argument("--skip-float32", action="store_true")
    parser.add_argument("--source", choices=("auto", "simulate", "synthetic"), default="auto")
    args = parser.parse_args()
    n_library = args.library or (5_000 if args.quick else 50_000)
    n_subsample = args.subsample or (400 if args.quick else 2_000)
    print_header("RS-LOCAL" + (" (quick)" if args.quick else ""))

    X, y, X_site, y_site, source = load(n_library, args.source)
    local = KennardStone(n_select=30).fit(X_site).selected_indices_
    X_local, y_local = X_site[local], y_site[local]
    row("data", f"{source}: library {X.shape[0]:,} x {X.shape[1]}, local n = {len(X_local)}")

    per_fit_figures(X, y, X_local, y_local, args.threads)

    print(f"\n-- 2. whole native RS-LOCAL, library {n_library:,}, n_jobs = {args.threads}")
    model, run, fits = full_run(X, y, X_local, y_local, args.threads)
    row("wall time", f"{run.wall_s:8.1f} s   (target < 90 s on 2 cores)")
    row("CPU time (all threads)", f"{run.cpu_s:8.1f} s")
    row("iterations / PLS fits", f"{model.n_iter_} / {fits:,}")
    row("wall time per fit", f"{run.wall_s / fits * 1e3:8.4f} ms")
    row("of which drawing subsets (replayed apart)", f"{replay_draws(n_library):8.1f} s")
    row(
        "peak RSS above start of fit",
        f"{run.peak_rss_delta_mib:8.0f} MiB (library {X.nbytes / 2**20:.0f} MiB)",
    )
    last = model.history_[-1]
    row("final pool / best subset RMSE", f"{last['pool_size']} / {model.best_subset_score_:.4f}")

    if not args.skip_float32:
        print("\n-- 3. float32 mode, same library and seed")
        fast, run32, _ = full_run(X, y, X_local, y_local, args.threads, "float32")
        overlap = len(set(fast.selected_indices_) & set(model.selected_indices_))
        row(
            "wall time / CPU time",
            f"{run32.wall_s:8.1f} s / {run32.cpu_s:.1f} s   peak RSS +{run32.peak_rss_delta_mib:.0f} MiB",
        )
        row("selection overlap with float64", f"{overlap} of {SETTINGS['k']}")

    print(f"\n-- 4. numpy twin against native on a {n_subsample:,}-row subsample, same settings")
    rows = np.random.default_rng(2).choice(n_library, n_subsample, replace=False)
    results = {}
    for backend, n_jobs in (("native", 1), ("numpy", 1)):
        selector = RSLocal(**SETTINGS, random_state=0, backend=backend, n_jobs=n_jobs)
        with measure() as sub:
            selector.fit(X[rows], y[rows], X_local, y_local)
        n_fits = sum(entry["n_subsets"] for entry in selector.history_)
        results[backend] = (selector, sub.wall_s / n_fits)
        row(
            f"{backend} (1 thread): wall / fits / per fit",
            f"{sub.wall_s:7.1f} s / {n_fits:,} / {sub.wall_s / n_fits * 1e3:.4f} ms",
        )
    native_selection = results["native"][0].selected_indices_
    same = np.array_equal(native_selection, results["numpy"][0].selected_indices_)
    row("identical selections", str(same))
    for label, params in (
        ("overlap with float32 mode, same seed", {"random_state": 0, "dtype": "float32"}),
        ("overlap with float64, another seed (for scale)", {"random_state": 1}),
    ):
        other = RSLocal(**SETTINGS, **params).fit(X[rows], y[rows], X_local, y_local)
        shared = len(set(other.selected_indices_) & set(native_selection))
        row(label, f"{shared} of {SETTINGS['k']}")
    row(
        "per-fit ratio numpy / native, whole loop",
        f"{results['numpy'][1] / results['native'][1]:8.1f} x   (target >= 10x)",
    )
    row("peak RSS of this process", f"{peak_rss_mib():8.0f} MiB")


if __name__ == "__main__":
    main()
