"""Split each local site: Kennard-Stone picks the calibration samples, a seeded random draw the
validation samples, the rest is the test set.

A site with a lab plan (``localsoc plan``; ``localsoc.study.plan``) calibrates on exactly the
planned calibration samples, chosen by the same Kennard-Stone on all of the site's spectra
before the lab, and validates on the plan's random validation samples; a site without a plan
gets ``split.n_validation`` validation samples drawn at random (``numpy.random.default_rng``
seeded with ``study.seed`` and a CRC-32 of the site's name) from its labelled rows outside the
calibration set. Its other labelled rows are the test set.

Validation samples are random samples of the field, so their residuals are exchangeable with a
new spectrum's: the evaluate stage calibrates the ``validation`` interval (split conformal) on
them, which the Kennard-Stone extremes cannot do. A site keeps them apart only where
``min_test`` test rows remain; otherwise (e.g. a field whose only labels are its plan's) they
stay test samples that also calibrate the validation interval (``holdout``
``test_validation``; the evaluate stage does not score that interval's coverage on them: they
set its width), and the stage says so. Validation and test rows are written out here
(``site_test``, column ``holdout``: validation, test or test_validation) and not read again
until evaluation.
"""

from __future__ import annotations

import logging
import zlib

import numpy as np
import pandas as pd

from localsoc.data.schema import spectra_of
from localsoc.study.plan import calibration_ids, kennard_stone_for, unmet_plan

logger = logging.getLogger(__name__)

ROLE_CALIBRATION = "calibration"
ROLE_TEST = "test"
ROLE_UNLABELLED = "unlabelled"
ROLE_VALIDATION = "validation"
#: A held-out row that is a test sample and a validation sample (too few rows to keep apart)
HOLDOUT_TEST_VALIDATION = "test_validation"


def _planned_order(site: str, labelled: pd.DataFrame, rows: pd.DataFrame, plan: pd.DataFrame,
                   n_calibration: int) -> np.ndarray:
    """Positions in ``labelled`` of the site's planned calibration samples, in plan order."""
    problem = unmet_plan(plan, labelled["sample_id"], rows["sample_id"])
    if problem:
        raise ValueError(
            f"site {site!r}: its lab plan (data/01_raw/imports/plans/{site}.csv) is not met: "
            f"{problem}. A planned sample missing here was quarantined by validation (reason "
            "in data/02_intermediate/sites_quarantine.csv) or has no lab value: fix the site "
            f"file and import it again with `localsoc site FILE --name {site}`, or make a new "
            "plan with `localsoc plan`")
    wanted = calibration_ids(plan)
    if len(wanted) != n_calibration:
        logger.warning("site %s: the lab plan has %d calibration samples; split.n_calibration "
                       "is %d. The plan is used", site, len(wanted), n_calibration)
    position = {sample: i for i, sample in enumerate(labelled["sample_id"].astype(str))}
    return np.array([position[sample] for sample in wanted], dtype=np.int64)


def _validation_positions(site: str, labelled: pd.DataFrame, is_cal: np.ndarray,
                          planned: dict, use_plan: bool, n_validation: int, min_test: int,
                          rng: np.random.Generator) -> tuple[np.ndarray, bool]:
    """(positions in ``labelled`` of the site's validation samples, whether they are kept apart
    from the test set) (see the module docstring)."""
    outside = np.flatnonzero(~is_cal)
    if use_plan:
        wanted = np.array([planned.get(str(s)) == ROLE_VALIDATION
                           for s in labelled["sample_id"].iloc[outside]], dtype=bool)
        chosen, source = outside[wanted], "its lab plan's validation samples"
    else:
        size = min(n_validation, len(outside))
        chosen = np.sort(rng.choice(outside, size=size, replace=False)) if size else outside[:0]
        source = f"split.n_validation ({n_validation}) random validation samples"
    if len(chosen) and len(outside) - len(chosen) < min_test:
        logger.warning("site %s: %s would leave %d test samples, fewer than split.min_test "
                       "(%d): they stay in the test set and also calibrate the validation "
                       "interval (whose test coverage is then not scored on them)", site,
                       source, len(outside) - len(chosen), min_test)
        return chosen, False
    return chosen, True


def _calibration_order(site: str, labelled: pd.DataFrame, rows: pd.DataFrame,
                       plan: pd.DataFrame, use_plan: bool, params: dict) -> np.ndarray:
    """Positions in ``labelled`` of the site's calibration samples, in selection order: the
    lab plan's (an unmet plan is the error to show first), else Kennard-Stone's (over every
    labelled row with ``no_test``)."""
    n_calibration, no_test = int(params["n_calibration"]), bool(params["no_test"])
    n_site = int((plan["role"] == "calibration").sum()) if use_plan else n_calibration
    if use_plan:
        order = _planned_order(site, labelled, rows, plan, n_calibration)
    needed = n_site + (0 if no_test else int(params["min_test"]))
    if len(labelled) < needed:
        raise ValueError(
            f"site {site!r}: {len(labelled)} labelled samples; split needs "
            f"n_calibration ({n_site})"
            + ("" if no_test else f" + min_test ({params['min_test']}), or no_test: true")
        )
    if not use_plan:
        selector = kennard_stone_for(params, len(labelled) if no_test else n_site)
        order = np.asarray(selector.fit(spectra_of(labelled)).selected_indices_, dtype=np.int64)
    return order


def _assignment(site: str, rows: pd.DataFrame, labelled: pd.DataFrame, order: np.ndarray,
                is_cal: np.ndarray, is_val: np.ndarray, apart: bool,
                planned: dict) -> list[pd.DataFrame]:
    """Every row of the site with its role, Kennard-Stone rank, plan role and whether it
    calibrates the validation interval (see :func:`split_sites`)."""
    rank = np.full(len(labelled), -1, dtype=np.int64)
    rank[order] = np.arange(len(order))
    frames = [pd.DataFrame({
        "sample_id": labelled["sample_id"].to_numpy(),
        "site": site,
        "role": np.where(is_cal, ROLE_CALIBRATION,  # kept apart or a test sample
                         np.where(is_val & apart, ROLE_VALIDATION, ROLE_TEST)),
        "ks_rank": rank,
        "plan": [planned.get(str(s), "") for s in labelled["sample_id"]],
        "validation": is_val,
    })]
    extra = rows.loc[rows["soc"].isna(), "sample_id"].to_numpy()
    if len(extra):
        frames.append(pd.DataFrame({"sample_id": extra, "site": site, "role": ROLE_UNLABELLED,
                                    "ks_rank": -1, "validation": False, "plan": ""}))
    return frames


def split_site(site: str, rows: pd.DataFrame, plan: pd.DataFrame, params: dict,
               seed: int) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame, list[pd.DataFrame]]:
    """(calibration, holdout, unlabelled, assignment frames) of one site (see
    :func:`split_sites`); the validation draw is seeded with ``seed`` and the site's name."""
    rng = np.random.default_rng([seed, zlib.crc32(str(site).encode())])
    no_test = bool(params["no_test"])
    labelled = rows.loc[rows["soc"].notna()].reset_index(drop=True)
    use_plan = len(plan) > 0 and not no_test
    order = _calibration_order(site, labelled, rows, plan, use_plan, params)
    planned = dict(zip(plan["sample_id"].astype(str), plan["role"], strict=True))
    is_cal = np.zeros(len(labelled), dtype=bool)
    is_cal[order] = True
    is_val = np.zeros(len(labelled), dtype=bool)
    apart = True
    if not no_test:
        chosen, apart = _validation_positions(site, labelled, is_cal, planned, use_plan,
                                              int(params["n_validation"]),
                                              int(params["min_test"]), rng)
        is_val[chosen] = True
    holdout = labelled.loc[~is_cal].assign(holdout=np.where(
        is_val[~is_cal], ROLE_VALIDATION if apart else HOLDOUT_TEST_VALIDATION, ROLE_TEST))
    return (labelled.iloc[order], holdout, rows.loc[rows["soc"].isna()],
            _assignment(site, rows, labelled, order, is_cal, is_val, apart, planned))


def split_sites(
    sites_spectra: pd.DataFrame, site_plans: pd.DataFrame, params: dict, study: dict,
) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """Per site: n calibration samples by Kennard-Stone on the preprocessed spectra, or the
    planned ones where ``site_plans`` has the site's lab plan; validation samples (the plan's,
    or ``n_validation`` drawn at random with ``study["seed"]``); the rest of the labelled rows
    is the test set.

    Returns (calibration, holdout, unlabelled, assignment). ``holdout`` holds the validation
    and test rows, its column ``holdout`` saying which (``test_validation``: both, where the
    site has too few rows to keep them apart). ``assignment`` lists every site row with
    its role (calibration, validation, test, unlabelled), for calibration rows the
    Kennard-Stone selection order, its role in the lab plan (``plan``: calibration,
    validation or empty) and whether it calibrates the validation interval (``validation``:
    true for every validation sample, also one that stays a test sample). With ``no_test``
    every labelled sample calibrates (Kennard-Stone still orders them), the validation and
    test sets are empty: the study then reports cross-validated figures only.
    """
    if int(params["n_validation"]) < 0:
        raise ValueError(f"split.n_validation must be >= 0; got {params['n_validation']}")
    calibration, test, unlabelled, assignment = [], [], [], []
    for site in sorted(sites_spectra["site"].dropna().unique()):
        cal, holdout, blank, assigned = split_site(
            site, sites_spectra.loc[sites_spectra["site"] == site],
            site_plans.loc[site_plans["site"] == site], params, int(study["seed"]))
        calibration.append(cal)
        test.append(holdout)
        unlabelled.append(blank)
        assignment += assigned
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
        of_site = assignment.loc[assignment["site"] == site]
        roles = of_site["role"].value_counts()
        quarantined = int((sites_quarantine.get("site") == site).sum())
        rows.append({"set": site, "kind": "site", "samples": len(table),
                     "labelled": int(table["soc"].notna().sum()), "quarantined": quarantined,
                     "calibration": int(roles.get(ROLE_CALIBRATION, 0)),
                     "validation": (int(of_site["validation"].astype(bool).sum())
                                    if "validation" in of_site
                                    else int(roles.get(ROLE_VALIDATION, 0))),
                     "test": int(roles.get(ROLE_TEST, 0)),
                     "unlabelled": int(roles.get(ROLE_UNLABELLED, 0)),
                     **_soc_stats(table["soc"])})
    summary = pd.DataFrame(rows)
    for column in ("quarantined", "calibration", "validation", "test", "unlabelled"):
        if column not in summary:
            summary[column] = 0
        summary[column] = summary[column].fillna(0).astype(int)
    return summary
