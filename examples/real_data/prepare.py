"""Build the real-data worked example from the two shipped libraries.

NIRsoil (825 Belgian soils, absorbance 1100-2498 nm, total carbon "Ciso") plays the library.
A spectrally distinct part of the Geeves library (Australian wheat-belt soils, reflectance
350-2500 nm, "TotalCarbon") plays a local field: the Geeves spectra are clustered (k-means on
the first principal components of log10(1/R) + SNV over the common 1100-2450 nm range) and the
cluster farthest from NIRsoil is held apart as the site; a seeded fifth of its rows lose their
carbon value, to stand for the field's unlabelled spectra. Both files keep their original
column names and units: the import commands declare them.

    python examples/real_data/prepare.py [--out data/examples] [--seed 0]

writes ``nirsoil_library.csv.gz`` and ``geeves_site.csv.gz`` and prints what it chose.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import pandas as pd
from sklearn.cluster import KMeans
from sklearn.decomposition import PCA

ROOT = Path(__file__).resolve().parents[2]
REAL = ROOT / "data/01_raw/real_ssl"
COMMON_NM = (1100, 2450)


def _common_absorbance_snv(frame: pd.DataFrame, absorbance: bool) -> np.ndarray:
    columns = [c for c in frame.columns if c.startswith("nm_")
               and COMMON_NM[0] <= float(c[3:]) <= COMMON_NM[1]]
    wavelengths = np.array([float(c[3:]) for c in columns])
    grid = np.arange(COMMON_NM[0], COMMON_NM[1] + 1, 10.0)
    values = frame[columns].to_numpy(np.float64)
    if not absorbance:
        values = np.log10(1.0 / values)
    on_grid = np.stack([np.interp(grid, wavelengths, row) for row in values])
    centred = on_grid - on_grid.mean(axis=1, keepdims=True)
    return centred / on_grid.std(axis=1, ddof=1, keepdims=True)


def geeves_clusters(seed: int = 0, n_clusters: int = 4) -> tuple[pd.DataFrame, pd.DataFrame,
                                                                  np.ndarray, np.ndarray]:
    """(NIRsoil, Geeves, each Geeves row's k-means cluster, each cluster's distance to NIRsoil):
    the two shipped libraries as read, Geeves clustered in the first 5 principal components of
    log10(1/R) + SNV over 1100-2450 nm, and the distance from each cluster's centre to
    NIRsoil's centre in those components."""
    nirsoil = pd.read_csv(REAL / "nirsoil/NIRsoil.csv.gz")
    geeves = pd.read_csv(REAL / "geeves/datsoilspc.csv.gz")
    X_geeves = _common_absorbance_snv(geeves, absorbance=False)
    X_nirsoil = _common_absorbance_snv(nirsoil, absorbance=True)
    pca = PCA(n_components=5, random_state=seed).fit(X_geeves)
    scores = pca.transform(X_geeves)
    labels = KMeans(n_clusters=n_clusters, n_init=10, random_state=seed).fit_predict(scores)
    nirsoil_centre = pca.transform(X_nirsoil).mean(axis=0)
    distances = np.array([np.linalg.norm(scores[labels == c].mean(axis=0) - nirsoil_centre)
                          for c in range(n_clusters)])
    return nirsoil, geeves, labels, distances


def nirsoil_clusters(seed: int = 0, n_clusters: int = 4) -> tuple[pd.DataFrame, np.ndarray]:
    """(NIRsoil, each row's k-means cluster): NIRsoil has no location or grouping column, so its
    spectra are grouped as Geeves's are (k-means in the first 5 principal components of
    absorbance + SNV over 1100-2450 nm), every row clustered, labelled or not."""
    nirsoil = pd.read_csv(REAL / "nirsoil/NIRsoil.csv.gz")
    X_nirsoil = _common_absorbance_snv(nirsoil, absorbance=True)
    scores = PCA(n_components=5, random_state=seed).fit_transform(X_nirsoil)
    labels = KMeans(n_clusters=n_clusters, n_init=10, random_state=seed).fit_predict(scores)
    return nirsoil, labels


def build(out: Path, seed: int = 0, n_clusters: int = 4, min_size: int = 80) -> dict:
    nirsoil, geeves, labels, distances = geeves_clusters(seed, n_clusters)
    candidates = []
    for cluster in range(n_clusters):
        members = labels == cluster
        if members.sum() >= min_size:
            candidates.append((distances[cluster], cluster))
    if not candidates:
        raise RuntimeError(f"no Geeves cluster has {min_size} members; lower n_clusters")
    distance, cluster = max(candidates)
    site = geeves.loc[labels == cluster].reset_index(drop=True).copy()
    site.insert(0, "sample_id", [f"geeves-{i}" for i in np.flatnonzero(labels == cluster)])
    rng = np.random.default_rng(seed)
    unlabelled = rng.choice(len(site), size=len(site) // 5, replace=False)
    site.loc[unlabelled, "TotalCarbon"] = np.nan
    library = nirsoil.copy()
    library.insert(0, "sample_id", [f"nirsoil-{i}" for i in range(len(library))])
    out.mkdir(parents=True, exist_ok=True)
    library.to_csv(out / "nirsoil_library.csv.gz", index=False)
    site.to_csv(out / "geeves_site.csv.gz", index=False)
    return {
        "library_rows": len(library),
        "library_labelled": int(library["Ciso"].notna().sum()),
        "site_rows": len(site),
        "site_labelled": int(site["TotalCarbon"].notna().sum()),
        "cluster": int(cluster),
        "cluster_sizes": np.bincount(labels).tolist(),
        "distance_to_nirsoil": float(distance),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=ROOT / "data/examples")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    summary = build(args.out, args.seed)
    for key, value in summary.items():
        print(f"{key}: {value}")
    print(f"written: {args.out / 'nirsoil_library.csv.gz'}, {args.out / 'geeves_site.csv.gz'}")


if __name__ == "__main__":
    main()
