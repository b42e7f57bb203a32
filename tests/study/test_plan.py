"""The lab plan (Kennard-Stone before the lab), its use by the split, skipped scopes and the
carbon-kind warning, on small simulated tables."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from localsoc.data.schema import spectra_of
from localsoc.datasets.imported_tables import (
    ImportedPlansDataset,
    carbon_kind_warning,
    read_carbon_kind,
    write_plan,
    write_table,
)
from localsoc.pipelines.report.notes import plan_lines
from localsoc.pipelines.split.nodes import split_sites
from localsoc.selection import KennardStone
from localsoc.spectra.steps import apply_steps
from localsoc.study import scope_problem
from localsoc.study.plan import check_plan, plan_lab_samples, unmet_plan
from tests.conftest import grid_params, make_ssl

STEPS = ["absorbance", "snv"]
SPLIT = {"n_calibration": 8, "n_validation": 0, "min_test": 3, "no_test": False,
         "metric": "euclidean", "n_components": None, "backend": "numpy"}
STUDY = {"seed": 0}


def site_table(n=40, seed=3):
    return make_ssl(n, seed=seed, site="field", library=None)


def test_plan_is_the_split_kennard_stone_on_preprocessed_spectra_and_a_seeded_draw():
    table = site_table()
    plan = plan_lab_samples(table, STEPS, SPLIT, 8, 6, seed=7)
    expected = KennardStone(n_select=8, backend="numpy").fit(
        apply_steps(spectra_of(table), STEPS)).selected_indices_
    calibration = plan.loc[plan["role"] == "calibration"]
    assert calibration["sample_id"].tolist() == table["sample_id"].iloc[expected].tolist()
    assert calibration["ks_rank"].tolist() == list(range(8))
    validation = plan.loc[plan["role"] == "validation", "sample_id"]
    assert len(validation) == 6 and not set(validation) & set(calibration["sample_id"])
    again = plan_lab_samples(table, STEPS, SPLIT, 8, 6, seed=7)
    other = plan_lab_samples(table, STEPS, SPLIT, 8, 6, seed=8)
    pd.testing.assert_frame_equal(plan, again)
    assert set(other.loc[other["role"] == "validation", "sample_id"]) != set(validation)
    with pytest.raises(ValueError, match="40 usable spectra"):
        plan_lab_samples(table, STEPS, SPLIT, 30, 20, seed=7)


def test_unmet_plan_names_the_samples_and_check_plan_refuses_bad_tables():
    plan = check_plan(pd.DataFrame({"sample_id": ["a", "b", "c"], "role": [
        "calibration", "calibration", "validation"], "ks_rank": [0, 1, -1]}), "p.csv")
    assert unmet_plan(plan, ["a", "b", "c"], ["a", "b", "c", "d"]) is None
    message = unmet_plan(plan, ["a"], ["a", "b"])
    assert "calibration sample(s) have no usable lab value: b" in message
    assert "validation sample(s) are not in the table: c" in message
    with pytest.raises(ValueError, match="unknown role"):
        check_plan(plan.assign(role=["calibration", "calibration", "test"]), "p.csv")
    with pytest.raises(ValueError, match="missing column"):
        check_plan(plan.drop(columns=["ks_rank"]), "p.csv")


def test_split_uses_the_plan_and_records_validation_rows(tmp_path):
    table = site_table()
    plan = plan_lab_samples(table, STEPS, SPLIT, 8, 5, seed=1)
    write_plan(tmp_path / "field.csv", plan)
    plans = ImportedPlansDataset(directory=str(tmp_path)).load()
    spectra = table.copy()
    spectra[spectra.columns[7:]] = apply_steps(spectra_of(table), STEPS)
    cal, test, _, assignment = split_sites(spectra, plans, SPLIT, STUDY)
    planned = plan.loc[plan["role"] == "calibration", "sample_id"].tolist()
    assert cal["sample_id"].tolist() == planned
    assert len(test) == 40 - 8
    ks_on_labelled = KennardStone(n_select=8, backend="numpy").fit(spectra_of(spectra))
    assert set(planned) == set(spectra["sample_id"].iloc[ks_on_labelled.selected_indices_])
    by_id = assignment.set_index("sample_id")
    validation = plan.loc[plan["role"] == "validation", "sample_id"]
    # the plan's random validation samples calibrate the validation interval, not the test
    assert (by_id.loc[validation, "role"] == "validation").all()
    assert (by_id.loc[validation, "plan"] == "validation").all()
    assert sorted(test.loc[test["holdout"] == "validation", "sample_id"]) == sorted(validation)
    assert (test["holdout"] == "test").sum() == 40 - 8 - 5
    assert (by_id.loc[planned, "plan"] == "calibration").all()
    lost = planned[2]
    spectra.loc[spectra["sample_id"] == lost, "soc"] = np.nan
    with pytest.raises(ValueError, match=f"no usable lab value: {lost}"):
        split_sites(spectra, plans, SPLIT, STUDY)
    empty = ImportedPlansDataset(directory=str(tmp_path / "none")).load()
    cal_ks, _, _, _ = split_sites(spectra, empty, SPLIT, STUDY)
    assert len(cal_ks) == 8


def test_split_draws_seeded_random_validation_samples_and_keeps_min_test(caplog):
    table = site_table()
    spectra = table.copy()
    spectra[spectra.columns[7:]] = apply_steps(spectra_of(table), STEPS)
    no_plans = pd.DataFrame(columns=["site", "sample_id", "role", "ks_rank"])
    split = {**SPLIT, "n_validation": 6}
    cal, holdout, _, assignment = split_sites(spectra, no_plans, split, {"seed": 5})
    validation = holdout.loc[holdout["holdout"] == "validation", "sample_id"]
    assert len(validation) == 6 and not set(validation) & set(cal["sample_id"])
    assert (holdout["holdout"] == "test").sum() == 40 - 8 - 6
    roles = assignment.set_index("sample_id")["role"]
    assert (roles.loc[validation] == "validation").all()
    # the calibration set does not depend on the validation draw
    cal_none, holdout_none, _, _ = split_sites(spectra, no_plans, SPLIT, {"seed": 5})
    pd.testing.assert_frame_equal(cal, cal_none)
    assert (holdout_none["holdout"] == "test").all()
    # seeded: the same seed draws the same samples, another seed others
    _, again, _, _ = split_sites(spectra, no_plans, split, {"seed": 5})
    _, other, _, _ = split_sites(spectra, no_plans, split, {"seed": 6})
    pd.testing.assert_frame_equal(holdout, again)
    assert set(other.loc[other["holdout"] == "validation", "sample_id"]) != set(validation)
    # too few rows left for min_test: the validation samples stay test samples that also
    # calibrate the validation interval, with a warning
    with caplog.at_level("WARNING"):
        _, kept, _, assigned = split_sites(spectra, no_plans, {**SPLIT, "n_validation": 30},
                                           {"seed": 5})
    assert len(kept) == 32 and (kept["holdout"] == "test_validation").sum() == 30
    assert (kept["holdout"] == "test").sum() == 2
    assert (assigned.loc[assigned["role"] != "calibration", "role"] == "test").all()
    assert assigned["validation"].sum() == 30  # recorded: they calibrate the interval too
    assert any("its 30 random validation samples (split.n_validation) are also test samples"
               in line for line in plan_lines(assigned))
    assert "fewer than split.min_test" in caplog.text and "not scored on them" in caplog.text
    with pytest.raises(ValueError, match="n_validation must be >= 0"):
        split_sites(spectra, no_plans, {**SPLIT, "n_validation": -1}, STUDY)


def test_scope_problem_says_why_a_scope_is_skipped():
    assert scope_problem("global", "AU", 500, 100) is None
    assert "no samples from its country (AU)" in scope_problem("country", "AU", 0, 100)
    assert "93 rows for country BR" in scope_problem("country", "BR", 93, 100)
    assert "2 k = 200" in scope_problem("country", "BR", 93, 100)
    assert "global library" in scope_problem("global", None, 150, 100)
    assert "no country" in scope_problem("country", None, 0, 100)


def test_carbon_kind_is_recorded_and_a_difference_warned(tmp_path):
    table = site_table(10)
    write_table(tmp_path / "a.parquet", table, grid_params(), carbon_kind="total")
    write_table(tmp_path / "b.parquet", table, grid_params())
    assert read_carbon_kind(tmp_path / "a.parquet") == "total"
    assert read_carbon_kind(tmp_path / "b.parquet") is None
    with pytest.raises(ValueError, match="carbon kind"):
        write_table(tmp_path / "c.parquet", table, grid_params(), carbon_kind="inorganic")
    assert carbon_kind_warning({"lib": "total"}, {"field": "total"}) is None
    assert carbon_kind_warning({"lib": None}, {"field": "organic"}) is None
    warning = carbon_kind_warning({"lib": "total", "lib2": "organic"}, {"field": "organic"})
    assert "site field is organic carbon, library lib is total carbon" in warning
    assert "lib2" not in warning


def test_plan_fits_a_stateful_chain_on_the_imported_libraries_only(tmp_path):
    """A chain with MSC: plan's space is the library-fitted one (the reference is the mean of
    the imported library's finite rows), as the preprocess stage fits it; without a library on
    the grid it says what to do."""
    import numpy as np

    from localsoc.data.schema import spectra_of
    from localsoc.datasets.imported_tables import write_table
    from localsoc.workflow import IMPORTS, _library_fitted_steps
    from tests.conftest import SMALL_GRID, grid_params, make_ssl

    chain = [{"absorbance": {}}, {"msc": {}}]
    grid = grid_params(SMALL_GRID)
    with pytest.raises(ValueError, match="no imported library is on the grid"):
        _library_fitted_steps(tmp_path, chain, grid)
    library = make_ssl(40, seed=4)
    bands = library.columns[-len(SMALL_GRID.wavelengths_nm):]
    rng = np.random.default_rng(4)
    shape = np.linspace(0.2, 0.6, len(bands))  # spectra of one kind: scaled copies plus noise
    library[bands] = (shape[None, :] * rng.uniform(0.7, 1.3, (40, 1))
                      + rng.normal(0, 0.005, (40, len(bands))))
    library.loc[0, bands[-1]] = np.nan  # a row validation would quarantine
    folder = tmp_path / IMPORTS / "libraries"
    folder.mkdir(parents=True)
    write_table(folder / "lib.parquet", library, grid)
    steps = _library_fitted_steps(tmp_path, chain, grid)
    finite = spectra_of(library)[1:]
    expected = np.mean(-np.log10(finite), axis=0)
    np.testing.assert_allclose(steps[1]["state"]["reference"], expected, rtol=1e-9)
    assert _library_fitted_steps(tmp_path, ["absorbance", "snv"], grid)[1]["name"] == "snv"
