"""Two campaigns of the worked example's real field, the later with a known added SOC change.

``prepare.py`` writes the example site (``geeves_site.csv.gz``: 111 Geeves scans). This script
writes, for ``localsoc change``:

    python examples/real_data/campaigns.py [--change 0.3] [--out data/examples] [--seed 0]

- ``geeves_baseline.csv.gz``: the 111 scans as they are (reflectance, ``sample_id``), with a
  bulk density of 1.35 g/cm3 and a 30 cm layer for the stock;
- ``geeves_later.csv.gz``: the same 111 locations scanned again after every location's SOC
  rose by ``--change`` % (the true change of the field mean): each spectrum's absorbance
  log10(1/R) plus ``change`` x the absorbance change per % SOC of the whole Geeves library (the
  least-squares slope of each band's absorbance on its total carbon, 1100-2450 nm), plus a
  rescan's noise (absorbance sd 0.0005 per band, seeded);
- ``geeves_later_drifted.csv.gz``: the later scans from an instrument whose SWIR2 detector
  (above 1800 nm) reads 2 % brighter: what ``localsoc change`` must flag.

The signature is a linear-mixing approximation of what a change of SOC does to a spectrum:
the true change is known by construction, and the served model sees what it sees of it.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[2]
LIBRARY = ROOT / "data/01_raw/real_ssl/geeves/datsoilspc.csv.gz"
CARBON = "TotalCarbon"


def _bands(frame: pd.DataFrame) -> list[str]:
    return [c for c in frame.columns if c.startswith("nm_")]


def soc_signature(library: pd.DataFrame) -> pd.Series:
    """Absorbance change per % SOC of each band: the least-squares slope over the library."""
    bands = _bands(library)
    absorbance = np.log10(1.0 / library[bands].to_numpy(np.float64))
    carbon = library[CARBON].to_numpy(np.float64)
    centred = carbon - carbon.mean()
    slope = centred @ (absorbance - absorbance.mean(axis=0)) / (centred @ centred)
    return pd.Series(slope, index=bands)


def campaigns(site: pd.DataFrame, library: pd.DataFrame, change: float,
              seed: int) -> dict[str, pd.DataFrame]:
    """The baseline, later and drifted-later scans of the site (module notes)."""
    bands = _bands(site)
    scans = pd.concat([site.drop(columns=[CARBON]),
                       pd.DataFrame({"bulk_density_g_cm3": 1.35, "depth_cm": 30.0},
                                    index=site.index)], axis=1)
    absorbance = np.log10(1.0 / site[bands].to_numpy(np.float64))
    noise = np.random.default_rng(seed).normal(0.0, 0.0005, absorbance.shape)
    later_absorbance = absorbance + change * soc_signature(library)[bands].to_numpy() + noise
    later = scans.copy()
    later[bands] = np.clip(10.0 ** -later_absorbance, 1e-4, 1.0)
    wavelengths = np.array([float(b[3:]) for b in bands])
    drifted = later.copy()
    drifted[bands] = np.clip(later[bands].to_numpy() * np.where(wavelengths > 1800, 1.02, 1.0),
                             1e-4, 1.0)
    return {"baseline": scans, "later": later, "later_drifted": drifted}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--change", type=float, default=0.3, help="SOC % added everywhere")
    parser.add_argument("--out", type=Path, default=Path("data/examples"))
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    site = pd.read_csv(args.out / "geeves_site.csv.gz")
    library = pd.read_csv(LIBRARY).dropna(subset=[CARBON])
    for name, table in campaigns(site, library, args.change, args.seed).items():
        path = args.out / f"geeves_{name}.csv.gz"
        table.to_csv(path, index=False)
        print(f"wrote {path} ({len(table)} scans)")
    print(f"true change of the field mean: +{args.change:g} % SOC")


if __name__ == "__main__":
    main()
