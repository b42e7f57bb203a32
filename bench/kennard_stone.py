"""Kennard-Stone benchmark: compiled loop against its NumPy twin; prints figures, asserts nothing.

Cases (DESIGN 3.4; targets quoted beside the figures):
  * 30 of 500 x 211 (one site's split): whole fit, target < 10 ms native;
  * 100 of 50,000 x 211: the farthest-pair start (shared by both backends) timed apart from the
    selection loop, loop target < 2 s native.

Usage: python bench/kennard_stone.py [--quick] [--threads N]
"""

from __future__ import annotations

import argparse

import numpy as np

from _common import best_of, measure, print_header, row
from localsoc.selection import KennardStone, farthest_pair
from localsoc.selection._reference import kennard_stone_reference
from localsoc.selection.kennard_stone import _native_module, limit_blas_threads


def spectra_like(n: int, n_bands: int = 211, seed: int = 0) -> np.ndarray:
    """Smooth low-rank absorbance-like rows plus noise (no simulator needed)."""
    rng = np.random.default_rng(seed)
    basis = np.cumsum(rng.normal(size=(12, n_bands)), axis=1) / 20
    return 0.5 + rng.normal(size=(n, 12)) @ basis + 0.002 * rng.normal(size=(n, n_bands))


def small_case(threads: int) -> None:
    X = spectra_like(500)
    print("\n-- 30 of 500 x 211 (one site), whole fit incl. validation and the farthest pair")
    for backend in ("native", "numpy"):
        model = KennardStone(n_select=30, backend=backend, n_jobs=threads)
        fastest, median = best_of(lambda model=model: model.fit(X), repeats=20)
        with measure() as memory:
            model.fit(X)
        row(
            f"{backend} fit (min / median of 20)",
            f"{fastest * 1e3:7.2f} / {median * 1e3:7.2f} ms   peak RSS +{memory.peak_rss_delta_mib:.1f} MiB"
            + ("   (target < 10 ms)" if backend == "native" else ""),
        )
    with limit_blas_threads(threads):
        fastest, median = best_of(lambda: farthest_pair(X), repeats=20)
    row(
        "  of which the farthest pair (min / median)",
        f"{fastest * 1e3:7.2f} / {median * 1e3:7.2f} ms",
    )
    same = np.array_equal(
        KennardStone(30).fit(X).selected_indices_,
        KennardStone(30, backend="numpy").fit(X).selected_indices_,
    )
    row("native selection == numpy selection", str(same))


def large_case(n: int, n_select: int, threads: int) -> None:
    X = np.ascontiguousarray(spectra_like(n, seed=1))
    print(f"\n-- {n_select} of {n:,} x 211: farthest pair, then the selection loop")
    with limit_blas_threads(threads), measure() as pair_time:
        first, second, _ = farthest_pair(X)
    row(
        f"farthest pair (BLAS screen, {threads} thread(s))",
        f"{pair_time.wall_s:8.2f} s   peak RSS +{pair_time.peak_rss_delta_mib:.0f} MiB",
    )
    module = _native_module()
    results = {}
    for n_threads in sorted({1, threads}):
        label = f"native loop, {n_threads} thread(s)"
        selected = np.empty(n_select, dtype=np.intp)
        squared = np.empty(n_select)
        scratch = np.empty(n)
        with measure() as loop:
            module.select(X, first, second, selected, squared, scratch, np.empty((2, n)), n_threads)
        results[label] = selected.copy()
        row(
            label,
            f"{loop.wall_s:8.3f} s   peak RSS +{loop.peak_rss_delta_mib:.1f} MiB   (target < 2 s)",
        )
    with measure() as loop:
        reference, _ = kennard_stone_reference(X, first, second, n_select)
    row(
        "numpy twin loop",
        f"{loop.wall_s:8.3f} s   peak RSS +{loop.peak_rss_delta_mib:.1f} MiB",
    )
    same = all(np.array_equal(selected, reference) for selected in results.values())
    row("native selection == numpy selection", str(same))
    for n_threads in sorted({1, threads}):
        with measure() as whole:
            KennardStone(n_select=n_select, n_jobs=n_threads).fit(X)
        row(
            f"whole KennardStone.fit (n_jobs={n_threads})",
            f"{whole.wall_s:8.2f} s   peak RSS +{whole.peak_rss_delta_mib:.0f} MiB "
            f"(X itself: {X.nbytes / 2**20:.0f} MiB)",
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a small smoke run (5,000 rows)")
    parser.add_argument("--threads", type=int, default=2, help="threads for the native loop")
    args = parser.parse_args()
    print_header("Kennard-Stone" + (" (quick)" if args.quick else ""))
    small_case(1)
    large_case(5_000 if args.quick else 50_000, 100, args.threads)


if __name__ == "__main__":
    main()
