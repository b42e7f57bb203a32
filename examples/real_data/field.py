"""The worked example as a field campaign: scans first, then a lab that answers a lab request.

``prepare.py`` writes the example site (``geeves_site.csv.gz``: Geeves spectra with their total
carbon, a fifth of the rows without). This script turns its labelled rows into a campaign:

    python examples/real_data/field.py scans [--out data/examples]
        writes geeves_scans.csv.gz: the 89 scans, their carbon column removed (what a team has
        before the lab);
    python examples/real_data/field.py lab LAB_REQUEST.csv [--out data/examples]
        stands in for the lab: writes geeves_lab.csv.gz, the scans with the measured carbon
        (the Geeves values) of the samples the request lists, and no value for the others.

Run ``prepare.py`` first.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import pandas as pd

CARBON = "TotalCarbon"


def labelled_site(folder: Path) -> pd.DataFrame:
    site = pd.read_csv(folder / "geeves_site.csv.gz")
    return site.loc[site[CARBON].notna()].reset_index(drop=True)


def write_scans(folder: Path) -> Path:
    """The labelled site rows without their carbon values."""
    path = folder / "geeves_scans.csv.gz"
    labelled_site(folder).drop(columns=[CARBON]).to_csv(path, index=False)
    return path


def answer_request(folder: Path, request: pd.DataFrame, skip: tuple[str, ...] = ()) -> Path:
    """The scans with the carbon of every requested sample (except ``skip``: a lost sample)."""
    site = labelled_site(folder)
    unknown = sorted(set(request["sample_id"]) - set(site["sample_id"]))
    if unknown:
        raise ValueError(f"the lab request names samples that were never scanned: {unknown[:5]}")
    sent = set(request["sample_id"]) - set(skip)
    values = np.where(site["sample_id"].isin(sent), site[CARBON], np.nan)
    scans = site.drop(columns=[CARBON])
    out = pd.concat([scans[["sample_id"]], pd.DataFrame({CARBON: values}),
                     scans.drop(columns=["sample_id"])], axis=1)
    path = folder / "geeves_lab.csv.gz"
    out.to_csv(path, index=False)
    return path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("step", choices=["scans", "lab"])
    parser.add_argument("request", nargs="?", help="the lab request CSV (step lab)")
    parser.add_argument("--out", type=Path, default=Path("data/examples"))
    args = parser.parse_args()
    if args.step == "scans":
        print(f"wrote {write_scans(args.out)}")
        return
    if not args.request:
        parser.error("step lab needs the lab request CSV")
    request = pd.read_csv(args.request, dtype={"sample_id": str})
    print(f"wrote {answer_request(args.out, request)} ({len(request)} samples measured)")


if __name__ == "__main__":
    main()
