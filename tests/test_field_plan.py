"""The field workflow on real data: plan the lab samples from the spectra, import the lab values,
study the site (a too-small country scope is skipped with a warning), predict."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner

from localsoc.command_line import main
from localsoc.data.importers import import_wide
from localsoc.selection import KennardStone
from localsoc.spectra.steps import apply_steps
from tests.conftest import make_scratch_project

pytestmark = pytest.mark.slow
GRID = ["--grid-start", "1100", "--grid-stop", "2450", "--grid-step", "10"]
SITE = "geeves_field"


def invoke(project, *args, catch=False):
    return CliRunner().invoke(main, list(args), env={"LOCALSOC_PROJECT": str(project)},
                              catch_exceptions=catch)


@pytest.fixture(scope="module")
def field(tmp_path_factory):
    """Scans of a field (the example site's labelled rows, lab values removed:
    examples/real_data/field.py), a library (NIRsoil, Belgium) and a second one with 30
    Australian samples: too few for RS-LOCAL's country scope at k = 40 (2 k = 80)."""
    root = make_scratch_project(tmp_path_factory.mktemp("field"))
    from examples.real_data.field import write_scans
    from examples.real_data.prepare import REAL, build

    examples = root / "data/examples"
    build(examples, seed=0)
    write_scans(examples)
    site_ids = pd.read_csv(examples / "geeves_site.csv.gz")["sample_id"]
    geeves = pd.read_csv(REAL / "geeves/datsoilspc.csv.gz")
    geeves = pd.concat([pd.DataFrame({"sample_id": [f"geeves-{i}" for i in range(len(geeves))]}),
                        geeves], axis=1)
    others = geeves.loc[~geeves["sample_id"].isin(site_ids)].dropna(subset=["TotalCarbon"])
    others.head(30).to_csv(root / "au_small.csv", index=False)
    return root


def lab_file(root, plan: pd.DataFrame, drop: list[str] = ()) -> str:
    """The scans with the lab's values for the planned samples (minus ``drop``)."""
    from examples.real_data.field import answer_request

    return str(answer_request(root / "data/examples", plan, skip=tuple(drop)))


@pytest.fixture(scope="module")
def planned_study(field):
    root = field
    plan = invoke(root, "plan", str(root / "data/examples/geeves_scans.csv.gz"), "--site", SITE,
                  "--n", "30", "--validation", "20", "--spectra", "reflectance", "--out",
                  str(root / "lab_request.csv"), "--id-column", "sample_id", *GRID)
    common = ["--id-column", "sample_id", "--no-dvc", *GRID]
    assert plan.exit_code == 0, plan.output
    assert invoke(root, "import", str(root / "data/examples/nirsoil_library.csv.gz"), "--library",
                  "nirsoil", "--spectra", "absorbance", "--carbon-column", "Ciso",
                  "--carbon-kind", "organic", "--country", "BE", *common).exit_code == 0
    assert invoke(root, "import", str(root / "au_small.csv"), "--library", "au_small",
                  "--spectra", "reflectance", "--carbon-column", "TotalCarbon",
                  "--carbon-kind", "total", "--country", "AU", *common).exit_code == 0
    request = pd.read_csv(root / "lab_request.csv")
    missing = request.loc[request["role"] == "calibration", "sample_id"].iloc[3]
    refused = invoke(root, "site", lab_file(root, request, drop=[missing]), "--site", SITE,
                     "--spectra", "reflectance", "--carbon-column", "TotalCarbon",
                     "--country", "AU", *common, catch=True)
    site = invoke(root, "site", lab_file(root, request), "--site", SITE, "--spectra",
                  "reflectance", "--carbon-column", "TotalCarbon", "--carbon-kind", "total",
                  "--country", "AU", *common)
    assert site.exit_code == 0, site.output
    with pytest.MonkeyPatch.context() as patch:
        patch.chdir(root)
        patch.setenv("BENTOML_HOME", str(root / "bentoml"))
        study = invoke(root, "study", "--site", SITE, "--scopes", "global,country", "--k",
                       "40", "--env", "test")
        assert study.exit_code == 0, study.output
        predict = invoke(root, "predict", "--site", SITE)
        assert predict.exit_code == 0, predict.output
    return root, {"plan": plan, "refused": refused, "missing": missing, "site": site,
                  "study": study, "predict": predict}


def test_plan_is_kennard_stone_in_the_study_space_plus_seeded_validation(planned_study):
    root, runs = planned_study
    stored = pd.read_csv(root / f"data/01_raw/imports/plans/{SITE}.csv")
    request = pd.read_csv(root / "lab_request.csv")
    pd.testing.assert_frame_equal(stored, request)
    assert request["role"].value_counts().to_dict() == {"calibration": 30, "validation": 20}
    assert request["sample_id"].is_unique
    # the same Kennard-Stone the split stage runs, on the preprocess stage's space
    from localsoc.workflow import project_parameters

    params = project_parameters(root, "base")
    table, _ = import_wide(root / "data/examples/geeves_scans.csv.gz",
                           grid={"start_nm": 1100, "stop_nm": 2450, "step_nm": 10}, library=SITE,
                           spectra="reflectance", carbon_column=None, id_column="sample_id")
    from localsoc.data.schema import spectra_of

    X = apply_steps(spectra_of(table), params["preprocess"]["steps"])
    expected = KennardStone(n_select=30, metric=params["split"]["metric"],
                            backend="numpy").fit(X).selected_indices_
    calibration = request.loc[request["role"] == "calibration"].sort_values("ks_rank")
    assert calibration["sample_id"].tolist() == table["sample_id"].iloc[expected].tolist()
    assert "30 calibration samples" in runs["plan"].output


def test_site_refuses_lab_values_that_miss_a_planned_sample(planned_study):
    _, runs = planned_study
    refused = runs["refused"]
    assert refused.exit_code != 0
    assert runs["missing"] in refused.output and "--no-plan" in refused.output
    assert "lab plan" in runs["site"].output


def test_a_second_plan_needs_replace(planned_study):
    root, _ = planned_study
    again = invoke(root, "plan", str(root / "data/examples/geeves_scans.csv.gz"), "--site",
                   SITE, "--spectra", "reflectance", "--id-column", "sample_id", *GRID)
    assert again.exit_code != 0 and "--replace" in again.output


def test_study_calibrates_on_the_planned_samples_and_tests_on_the_validation_ones(
        planned_study):
    root, runs = planned_study
    request = pd.read_csv(root / "lab_request.csv")
    planned_cal = request.loc[request["role"] == "calibration"].sort_values("ks_rank")
    calibration = pd.read_parquet(root / "data/05_model_input/site_calibration.parquet")
    assert calibration["sample_id"].tolist() == planned_cal["sample_id"].tolist()
    test = pd.read_parquet(root / "data/05_model_input/site_test.parquet")
    validation = set(request.loc[request["role"] == "validation", "sample_id"])
    assert set(test["sample_id"]) == validation  # only the planned samples have lab values
    assignment = pd.read_csv(root / "data/05_model_input/split_assignment.csv")
    tested = assignment.loc[assignment["role"] == "test"]
    assert (tested["plan"] == "validation").all() and len(tested) == 20
    report = " ".join((root / "data/08_reporting/report.md").read_text().split())
    assert (f"{SITE}: calibration = the 30 planned calibration samples" in report
            and "test = 20 rows, 20 of them the plan's random validation samples" in report)
    predictions = pd.read_csv(root / f"data/07_model_output/predictions_{SITE}.csv")
    assert len(predictions) == 89 - 50  # the scans that did not go to the lab
    # the field summary of those scans: the served estimates' mean plus the bias correction,
    # with an interval around it
    field = pd.read_csv(root / f"data/07_model_output/field_summary_{SITE}.csv")
    whole = field.loc[field["stratum"] == "all"].iloc[0]
    assert whole["n_samples"] == len(predictions)
    assert whole["mean_estimate"] == pytest.approx(predictions["soc_percent"].mean())
    assert whole["lower"] < whole["soc_percent"] < whole["upper"]
    assert "Field summary" in runs["predict"].output


def test_a_plan_only_field_calibrates_its_interval_on_its_validation_samples(planned_study):
    """Every labelled sample is planned (30 + 20): the 20 validation samples are the test set
    and calibrate the validation interval, whose test coverage is then not measured (they set
    its width); the other intervals' coverage is."""
    from localsoc.uncertainty import conformal_halfwidth

    root, _ = planned_study
    holdout = pd.read_parquet(root / "data/05_model_input/site_test.parquet")
    assert (holdout["holdout"] == "test_validation").all() and len(holdout) == 20
    metrics = pd.read_csv(root / "data/08_reporting/study_metrics.csv")
    predictions = pd.read_csv(root / "data/07_model_output/study_predictions.csv",
                              dtype={"sample_id": str})
    assert (metrics["interval"] == "validation").all() and (metrics["n_validation"] == 20).all()
    assert metrics["coverage_validation"].isna().all() and metrics["coverage"].isna().all()
    assert metrics["coverage_cv_plus"].between(0, 1).all()
    for row in metrics.to_dict("records"):
        rows = predictions.loc[predictions["method"] == row["method"]]
        tested = rows.loc[rows["role"] == "test"].set_index("sample_id")
        val = rows.loc[rows["role"] == "validation"].set_index("sample_id").loc[tested.index]
        residuals = (val["observed"] - val["estimated"]).abs().to_numpy()
        assert row["interval_halfwidth"] == pytest.approx(conformal_halfwidth(
            residuals, np.zeros(20), 0.9))
        assert row["val_rmse"] == pytest.approx(row["rmse"])  # the same 20 samples
    report = " ".join((root / "data/08_reporting/report.md").read_text().split())
    assert "whose test coverage is therefore not measured on them" in report
    assert "not an independent check" in report  # the field summary says so too


def test_too_small_country_scope_is_skipped_with_a_warning_and_stated(planned_study):
    root, runs = planned_study
    selection = pd.read_csv(root / "data/05_model_input/rslocal_selection.csv")
    assert set(selection["scope"]) == {"global"} and len(selection) == 40
    metrics = pd.read_csv(root / "data/08_reporting/study_metrics.csv")
    assert not any(m.endswith("c") and m.startswith("DTL") for m in metrics["method"])
    assert "Country" not in set(metrics["method"]) and "DTL-Ig" in set(metrics["method"])
    report = (root / "data/08_reporting/report.md").read_text()
    assert f"{SITE}: country scope skipped" in report
    console = " ".join(runs["study"].output.split())
    assert "the country scope is skipped for this site" in console
    assert "30 rows for country AU" in report and "2 k = 80" in report
    winners = json.loads((root / "data/08_reporting/study_winners.json").read_text())
    assert SITE in winners


def test_carbon_kinds_are_recorded_and_a_difference_is_reported(planned_study):
    root, runs = planned_study
    from localsoc.datasets.imported_tables import read_carbon_kind

    imports = root / "data/01_raw/imports"
    assert read_carbon_kind(imports / "libraries/nirsoil.parquet") == "organic"
    assert read_carbon_kind(imports / f"sites/{SITE}.parquet") == "total"
    report = (root / "data/08_reporting/report.md").read_text()
    assert "library nirsoil: organic carbon" in report and f"site {SITE}: total carbon" in report
    assert "carbon kinds differ" in report
    assert f"site {SITE} is total carbon, library nirsoil is organic carbon" in report
    assert "library au_small is" not in report  # same kind as the site: no warning for it


def test_study_options_that_contradict_the_plan_or_the_scopes_are_refused(planned_study):
    root, _ = planned_study
    other_n = invoke(root, "study", "--site", SITE, "--n", "25", "--env", "test")
    assert other_n.exit_code != 0
    assert "lab plan with 30 calibration samples" in " ".join(other_n.output.split())
    bad_scope = invoke(root, "study", "--site", SITE, "--scopes", "global,moon", "--env", "test")
    assert bad_scope.exit_code != 0 and "--scopes" in bad_scope.output
    validation = invoke(root, "study", "--site", SITE, "--validation", "10", "--env", "test")
    assert validation.exit_code != 0
    assert "its own random validation samples" in " ".join(validation.output.split())


def test_a_study_whose_every_scope_is_too_small_runs_to_the_end(planned_study, tmp_path):
    """k = 500: the 762 library rows are fewer than 2 k, so global goes too; the local models
    still run, and the report says why the scopes were skipped."""
    import shutil

    root = tmp_path / "copy"
    shutil.copytree(planned_study[0], root, symlinks=True)
    with pytest.MonkeyPatch.context() as patch:
        patch.chdir(root)
        patch.setenv("BENTOML_HOME", str(root / "bentoml"))
        study = invoke(root, "study", "--site", SITE, "--k", "500", "--env", "test")
    assert study.exit_code == 0, study.output
    metrics = pd.read_csv(root / "data/08_reporting/study_metrics.csv")
    from localsoc.methods import methods

    local_only = {m.label for m in methods() if m.scope is None}  # Local, PLSR Local, GPR, Stack
    assert set(metrics["method"]) <= local_only and len(metrics)
    assert {"Local", "PLSR Local"} <= set(metrics["method"])
    report = (root / "data/08_reporting/report.md").read_text()
    assert f"{SITE}: global scope skipped" in report and "2 k = 1000" in report
    assert (root / "data/06_models/bento_tag.txt").exists()


def test_a_plan_with_too_few_validation_samples_says_what_the_study_will_need(field):
    """Only the calibration samples planned: the study would have no test set, and plan says so
    (a site name of its own, so the planned study above is untouched)."""
    done = invoke(field, "plan", str(field / "data/examples/geeves_scans.csv.gz"), "--site",
                  "lab_only_field", "--n", "30", "--validation", "0", "--spectra",
                  "reflectance", "--id-column", "sample_id", *GRID)
    assert done.exit_code == 0, done.output
    text = " ".join(done.output.split())
    assert "fewer than 10 validation samples (split.min_test)" in text
    assert "--validation" in text
