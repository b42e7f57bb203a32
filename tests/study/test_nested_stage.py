"""The nested stage's per-site work: each outer fold's model never sees that fold's labels."""

from __future__ import annotations

import numpy as np
import pandas as pd

from localsoc.data.schema import spectra_of
from localsoc.families import plsr
from localsoc.methods import method
from localsoc.models.ensemble import make_folds
from localsoc.study.nested import nested_site_estimates
from tests.conftest import make_ssl

LOCALISE = {"k": 30, "b": 10, "retain": 0.9, "n_components": 4, "scoring": "response",
            "retain_by": "proportion", "n_jobs": 1, "backend": "native"}
TRAIN = {"pls_max_components": 6, "site_budget": {"folds": 4}}
ENTRIES = [method("PLSR Local"), method("RS-LOCAL+PLSR g")]


def _site(local_soc_shift: float = 0.0, shifted: list[str] | None = None):
    library = make_ssl(150, seed=1)
    local = make_ssl(20, seed=2, site="s1", library=None)
    test = make_ssl(7, seed=3, site="s1", library=None)
    if shifted:
        local.loc[local["sample_id"].isin(shifted), "soc"] += local_soc_shift
    return library, local, test


def _estimate(library, local, test, workers=1):
    ids = local["sample_id"].astype(str).tolist()
    folds = make_folds(ids, 4, 5)
    X, y = spectra_of(local), local["soc"].to_numpy(float)
    models = {"PLSR Local": plsr.train_site_model(X, y, ids, folds, 0, TRAIN, "x", "n")[0],
              "RS-LOCAL+PLSR g": plsr.train_site_model(X, y, ids, folds, 0, TRAIN, "x", "n")[0]}
    selection = pd.DataFrame({"site": "s1", "scope": "global", "rank": range(30),
                              "sample_id": library["sample_id"].iloc[:30]})
    estimates, choices, outer = nested_site_estimates(
        "s1", "XX", library, local, test, selection, folds, ENTRIES, models, {},
        {"localise": LOCALISE, "train": TRAIN, "transfer": {}}, seed=7, workers=workers)
    return folds, estimates, choices, outer


def test_every_calibration_sample_is_estimated_once_by_its_own_outer_fold():
    library, local, test = _site()
    folds, estimates, choices, outer = _estimate(library, local, test)
    ids = local["sample_id"].astype(str).tolist()
    for label in ("PLSR Local", "RS-LOCAL+PLSR g"):
        of = estimates.loc[estimates["method"] == label]
        cal = of.loc[of["role"] == "calibration"].set_index("sample_id")
        assert sorted(cal.index) == sorted(ids)
        assert (cal.loc[ids, "fold"].to_numpy() == folds.assignment).all()
        tested = of.loc[of["role"] == "test"]
        assert len(tested) == 4 * len(test) and np.isfinite(tested["estimated"]).all()
    rs = choices.query("method == 'RS-LOCAL+PLSR g'")
    assert (rs["n_library"] == 30).all() and (rs["n_train"] == 30 + 15).all()
    assert rs["overlap_with_full_selection"].between(0, 1).all()
    assert (choices.query("method == 'PLSR Local'")["n_library"] == 0).all()
    # the outer-fold ensemble: fold k's model is the one that estimated outer fold k
    X_test = spectra_of(test)
    for label, model in outer.items():
        of = estimates.loc[estimates["method"] == label]
        cal = of.loc[of["role"] == "calibration"].set_index("sample_id").loc[ids]
        np.testing.assert_allclose(model.oof_predictions_, cal["estimated"])
        assert model.folds == folds.aligned_to(ids)
        per_fold = model.predict_folds(X_test)
        tested = of.loc[of["role"] == "test"].pivot(index="fold", columns="sample_id",
                                                     values="estimated")
        np.testing.assert_allclose(per_fold, tested[test["sample_id"].tolist()].to_numpy(),
                                   rtol=1e-9, atol=1e-12)
        np.testing.assert_allclose(model.predict(X_test), per_fold.mean(axis=0), rtol=1e-9)


def test_a_folds_estimates_do_not_depend_on_its_own_labels():
    """Change the labels of outer fold 0's samples: its selection and estimates stay the same,
    while another fold's (which trained on them) change."""
    library, local, test = _site()
    folds, before, _, _ = _estimate(library, local, test)
    held = [folds.sample_ids[i] for i in np.flatnonzero(folds.assignment == 0)]
    library, local, test = _site(5.0, held)
    _, after, _, _ = _estimate(library, local, test)
    for label in ("PLSR Local", "RS-LOCAL+PLSR g"):
        def fold(frame, number):
            rows = frame.loc[(frame["method"] == label) & (frame["fold"] == number)]  # noqa: B023
            return rows["estimated"].to_numpy()

        np.testing.assert_array_equal(fold(before, 0), fold(after, 0))
        assert not np.allclose(fold(before, 1), fold(after, 1))


def test_the_number_of_threads_does_not_change_the_selections():
    library, local, test = _site()
    _, one, _, _ = _estimate(library, local, test, workers=1)
    _, two, _, _ = _estimate(library, local, test, workers=2)
    pd.testing.assert_frame_equal(one, two)
