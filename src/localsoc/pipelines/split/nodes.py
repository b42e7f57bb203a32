"""Split each local site: Kennard-Stone picks the calibration samples, the rest is the test set.

The test rows are written out here and not read again until evaluation.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from localsoc.data.schema import spectra_of
from localsoc.selection import KennardStone

ROLE_CALIBRATION = "calibration"
ROLE_TEST = "test"
ROLE_UNLABELLED = "unlabelled"


def split_sites(
    sites_spectra: pd.DataFrame, params: dict
) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """Per site: n calibration samples by Kennard-Stone on the preprocessed spectra.

    Returns (calibration, test, unlabelled, assignment); ``assignment`` lists every site row
    with its role and, for calibration rows, the Kennard-Stone selection order. With
    ``no_test`` every labelled sample calibrates (Kennard-Stone still orders them) and the
    test set is empty: the study then reports cross-validated figures only.
    """
    n_calibration = int(params["n_calibration"])
    no_test = bool(params.get("no_test", False))
    calibration, test, unlabelled, assignment = [], [], [], []
    for site in sorted(sites_spectra["site"].dropna().unique()):
        rows = sites_spectra.loc[sites_spectra["site"] == site]
        labelled = rows.loc[rows["soc"].notna()].reset_index(drop=True)
        needed = n_calibration + (0 if no_test else int(params["min_test"]))
        if len(labelled) < needed:
            raise ValueError(
                f"site {site!r}: {len(labelled)} labelled samples; split needs "
                f"n_calibration ({n_calibration})"
                + ("" if no_test else f" + min_test ({params['min_test']}), or no_test: true")
            )
        selector = KennardStone(
            n_select=len(labelled) if no_test else n_calibration,
            metric=params["metric"],
            n_components=params.get("n_components"),
            backend=params["backend"],
        ).fit(spectra_of(labelled))
        order = np.asarray(selector.selected_indices_, dtype=np.int64)
        is_cal = np.zeros(len(labelled), dtype=bool)
        is_cal[order] = True
        calibration.append(labelled.iloc[order])
        test.append(labelled.loc[~is_cal])
        unlabelled.append(rows.loc[rows["soc"].isna()])
        rank = np.full(len(labelled), -1, dtype=np.int64)
        rank[order] = np.arange(len(order))
        assignment.append(
            pd.DataFrame(
                {
                    "sample_id": labelled["sample_id"].to_numpy(),
                    "site": site,
                    "role": np.where(is_cal, ROLE_CALIBRATION, ROLE_TEST),
                    "ks_rank": rank,
                }
            )
        )
        extra = rows.loc[rows["soc"].isna(), "sample_id"].to_numpy()
        if len(extra):
            assignment.append(
                pd.DataFrame(
                    {"sample_id": extra, "site": site, "role": ROLE_UNLABELLED, "ks_rank": -1}
                )
            )
    if not calibration:
        raise ValueError("sites: no site rows to split (column 'site' is empty everywhere)")
    return (
        pd.concat(calibration, ignore_index=True),
        pd.concat(test, ignore_index=True).reset_index(drop=True),
        pd.concat(unlabelled, ignore_index=True),
        pd.concat(assignment, ignore_index=True),
    )


def _soc_stats(soc: pd.Series) -> dict:
    values = soc.dropna().to_numpy(dtype=np.float64)
    if len(values) == 0:
        return dict.fromkeys(("mean", "sd", "min", "q1", "median", "q3", "max"), np.nan)
    q1, median, q3 = np.quantile(values, [0.25, 0.5, 0.75])
    return {
        "mean": values.mean(),
        "sd": values.std(ddof=1) if len(values) > 1 else np.nan,
        "min": values.min(),
        "q1": q1,
        "median": median,
        "q3": q3,
        "max": values.max(),
    }


def summarise_data(
    library_ssl: pd.DataFrame,
    sites_ssl: pd.DataFrame,
    assignment: pd.DataFrame,
    library_quarantine: pd.DataFrame,
    sites_quarantine: pd.DataFrame,
) -> pd.DataFrame:
    """One row per library, country library and site: sizes, SOC statistics (%) and the split."""
    rows = []
    for library in sorted(library_ssl["library"].dropna().unique()):
        table = library_ssl.loc[library_ssl["library"] == library]
        quarantined = int((library_quarantine.get("library") == library).sum())
        rows.append({"set": library, "kind": "library", "samples": len(table),
                     "labelled": int(table["soc"].notna().sum()), "quarantined": quarantined,
                     **_soc_stats(table["soc"])})
    site_countries = sorted(sites_ssl["country"].dropna().unique())
    for country in site_countries:
        table = library_ssl.loc[library_ssl["country"] == country]
        if len(table):
            rows.append({"set": f"library[{country}]", "kind": "country library",
                         "samples": len(table), "labelled": int(table["soc"].notna().sum()),
                         **_soc_stats(table["soc"])})
    for site in sorted(sites_ssl["site"].dropna().unique()):
        table = sites_ssl.loc[sites_ssl["site"] == site]
        roles = assignment.loc[assignment["site"] == site, "role"].value_counts()
        quarantined = int((sites_quarantine.get("site") == site).sum())
        rows.append({"set": site, "kind": "site", "samples": len(table),
                     "labelled": int(table["soc"].notna().sum()), "quarantined": quarantined,
                     "calibration": int(roles.get(ROLE_CALIBRATION, 0)),
                     "test": int(roles.get(ROLE_TEST, 0)),
                     "unlabelled": int(roles.get(ROLE_UNLABELLED, 0)),
                     **_soc_stats(table["soc"])})
    summary = pd.DataFrame(rows)
    for column in ("quarantined", "calibration", "test", "unlabelled"):
        if column not in summary:
            summary[column] = 0
        summary[column] = summary[column].fillna(0).astype(int)
    return summary
