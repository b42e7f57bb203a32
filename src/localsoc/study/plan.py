"""The lab plan of a site: which scanned samples go to the lab, picked from the spectra alone.

An MRV team scans every soil sample of a field and sends a few to the lab. ``localsoc plan``
picks the n calibration samples by Kennard-Stone in the study's own space (the
``preprocess.steps`` the preprocess stage applies, the ``split`` settings the split stage uses:
:func:`kennard_stone_for`), and optionally m validation samples drawn at random (seeded) from
the rest: an independent check that Kennard-Stone's interior test set cannot give. The plan is
a table ``sample_id, role, ks_rank`` (role ``calibration`` or ``validation``; ``ks_rank`` the
Kennard-Stone selection order, -1 for validation samples), stored beside the imported sites
(``data/01_raw/imports/plans/<site>.csv``). ``localsoc site`` checks the lab values against it;
the split stage then calibrates on exactly the planned calibration samples and keeps the
planned validation samples apart as the validation set the served interval is calibrated on
(or, where too few other labelled rows remain for ``split.min_test``, in the test set as well;
``split_assignment`` records each row's plan role). With fewer than 9 validation samples a 90 %
validation interval is unbounded, and the site is served the fallback interval.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from localsoc.data.schema import spectra_of
from localsoc.selection import KennardStone
from localsoc.spectra.steps import apply_steps

ROLE_CALIBRATION = "calibration"
ROLE_VALIDATION = "validation"
PLAN_ROLES = (ROLE_CALIBRATION, ROLE_VALIDATION)
PLAN_COLUMNS = ("sample_id", "role", "ks_rank")


def kennard_stone_for(split_params: dict, n_select: int) -> KennardStone:
    """The split stage's Kennard-Stone selector (``split.metric``, ``split.n_components``,
    ``split.backend``) for ``n_select`` samples."""
    return KennardStone(
        n_select=int(n_select),
        metric=split_params["metric"],
        n_components=split_params["n_components"],
        backend=split_params["backend"],
    )


def plan_lab_samples(table: pd.DataFrame, steps, split_params: dict, n_calibration: int,
                     n_validation: int, seed: int) -> pd.DataFrame:
    """The lab plan of a canonical table of validated site spectra (lab values not needed).

    Kennard-Stone picks ``n_calibration`` samples on the spectra preprocessed by ``steps``;
    ``n_validation`` of the other rows are drawn uniformly without replacement with
    ``numpy.random.default_rng(seed)``. Returns the plan (:data:`PLAN_COLUMNS`), calibration
    samples first in selection order, then validation samples in table order.
    """
    n_calibration, n_validation = int(n_calibration), int(n_validation)
    if n_calibration < 2:
        raise ValueError(f"plan: n = {n_calibration}; Kennard-Stone needs at least 2 samples")
    if n_validation < 0:
        raise ValueError(f"plan: --validation {n_validation} must be 0 or more")
    if n_calibration + n_validation > len(table):
        raise ValueError(f"plan: {n_calibration} calibration + {n_validation} validation "
                         f"samples asked for, but the file has {len(table)} usable spectra; "
                         "lower --n or --validation")
    ids = table["sample_id"].astype(str).to_numpy()
    if len(set(ids)) != len(ids):
        raise ValueError("plan: sample ids are not unique; give each scan its own id")
    X = apply_steps(spectra_of(table), steps)
    order = np.asarray(kennard_stone_for(split_params, n_calibration).fit(X).selected_indices_,
                       dtype=np.int64)
    rest = np.setdiff1d(np.arange(len(table)), order)
    drawn = np.sort(np.random.default_rng(int(seed)).choice(rest, n_validation, replace=False))
    return pd.DataFrame({
        "sample_id": np.concatenate([ids[order], ids[drawn]]),
        "role": [ROLE_CALIBRATION] * len(order) + [ROLE_VALIDATION] * len(drawn),
        "ks_rank": np.concatenate([np.arange(len(order)), np.full(len(drawn), -1)]),
    })


def check_plan(plan: pd.DataFrame, where: str) -> pd.DataFrame:
    """The plan with its columns typed, or a ValueError naming what is wrong in ``where``."""
    missing = [c for c in PLAN_COLUMNS if c not in plan.columns]
    if missing:
        raise ValueError(f"{where}: not a lab plan (missing column(s) {missing}; a plan has "
                         f"{list(PLAN_COLUMNS)}); make one with `localsoc plan`")
    plan = plan[list(PLAN_COLUMNS)].copy()
    plan["sample_id"] = plan["sample_id"].astype(str)
    bad = sorted(set(plan["role"]) - set(PLAN_ROLES))
    if bad:
        raise ValueError(f"{where}: unknown role(s) {bad}; roles are {list(PLAN_ROLES)}")
    duplicated = plan.loc[plan["sample_id"].duplicated(), "sample_id"].tolist()
    if duplicated:
        raise ValueError(f"{where}: sample id(s) {duplicated[:10]} appear more than once")
    plan["ks_rank"] = plan["ks_rank"].astype(np.int64)
    if (plan["role"] == ROLE_CALIBRATION).sum() < 2:
        raise ValueError(f"{where}: fewer than 2 calibration samples")
    return plan


def calibration_ids(plan: pd.DataFrame) -> list[str]:
    """The planned calibration ids in Kennard-Stone order."""
    rows = plan.loc[plan["role"] == ROLE_CALIBRATION].sort_values("ks_rank", kind="stable")
    return rows["sample_id"].astype(str).tolist()


def _listed(ids: list[str], limit: int = 12) -> str:
    shown = ", ".join(ids[:limit])
    return shown + (f" and {len(ids) - limit} more" if len(ids) > limit else "")


def unmet_plan(plan: pd.DataFrame, labelled_ids, all_ids) -> str | None:
    """What the plan asks for that a site table does not give (planned ids without a lab value,
    or not in the table at all), as one sentence; None when every planned id is labelled."""
    labelled, present = {str(i) for i in labelled_ids}, {str(i) for i in all_ids}
    parts = []
    for role in PLAN_ROLES:
        ids = plan.loc[plan["role"] == role, "sample_id"].astype(str).tolist()
        absent = [i for i in ids if i not in present]
        unlabelled = [i for i in ids if i in present and i not in labelled]
        if unlabelled:
            parts.append(f"{len(unlabelled)} planned {role} sample(s) have no usable lab value: "
                         f"{_listed(unlabelled)}")
        if absent:
            parts.append(f"{len(absent)} planned {role} sample(s) are not in the table: "
                         f"{_listed(absent)}")
    return "; ".join(parts) or None
