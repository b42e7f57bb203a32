"""Bring your own data: the `localsoc` commands on tiny inputs and on the real-data example."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner

from localsoc.command_line import main
from tests.conftest import PROJECT_ROOT, make_scratch_project

pytestmark = pytest.mark.slow
GRID = ["--grid-start", "1100", "--grid-stop", "2450", "--grid-step", "10"]


def invoke(project, *args):
    result = CliRunner().invoke(main, list(args), env={"LOCALSOC_PROJECT": str(project)},
                                catch_exceptions=False)
    return result


def ossl_library(n=60, seed=0) -> pd.DataFrame:
    """A tiny library in OSSL column naming, reflectance as a fraction, carbon in g/kg."""
    rng = np.random.default_rng(seed)
    wavelengths = np.arange(350, 2501, 10)
    base = rng.uniform(0.2, 0.6, (n, 1)) + 0.05 * np.sin(wavelengths / 200.0)
    frame = pd.DataFrame(base, columns=[f"scan_visnir.{w}_ref" for w in wavelengths])
    frame.insert(0, "oc_usda.c729_w.pct", rng.uniform(5, 40, n))  # g/kg here
    frame.insert(0, "id.layer_uuid_txt", [f"ossl-{i}" for i in range(n)])
    return frame


@pytest.fixture(scope="module")
def project(tmp_path_factory):
    root = make_scratch_project(tmp_path_factory.mktemp("byo"))
    from examples.real_data.prepare import build

    build(root / "data/examples", seed=0)
    return root


def test_import_reads_ossl_naming_and_converts_units(project, tmp_path):
    path = tmp_path / "ossl.csv"
    ossl_library().to_csv(path, index=False)
    result = invoke(project, "import", str(path), "--as", "ossl_tiny", "--spectra",
                    "reflectance", "--carbon-column", "oc_usda.c729_w.pct", "--carbon-units",
                    "g_per_kg", "--id-column", "id.layer_uuid_txt", "--no-dvc", *GRID)
    assert result.exit_code == 0, result.output
    assert "ossl" in result.output.lower() and "every row passes" in result.output
    table = pd.read_parquet(project / "data/01_raw/imports/libraries/ossl_tiny.parquet")
    source = ossl_library()
    assert np.allclose(table["soc"], source["oc_usda.c729_w.pct"] / 10)
    assert table["sample_id"].tolist() == source["id.layer_uuid_txt"].tolist()
    assert table.columns[-1] == "nm_2450"


def test_site_with_percent_reflectance_and_site_with_absorbance(project, tmp_path):
    site = pd.read_csv(project / "data/examples/geeves_site.csv.gz")
    bands = [c for c in site.columns if c.startswith("nm_")]
    percent = site.copy()
    percent[bands] = percent[bands] * 100
    percent.to_csv(tmp_path / "percent.csv", index=False)
    absorbance = site.copy()
    absorbance[bands] = np.log10(1 / absorbance[bands])
    absorbance.to_csv(tmp_path / "absorbance.csv", index=False)
    common = ["--carbon-column", "TotalCarbon", "--id-column", "sample_id", "--no-dvc", *GRID]
    a = invoke(project, "site", str(tmp_path / "percent.csv"), "--name", "pct_field",
               "--spectra", "auto", *common)
    b = invoke(project, "site", str(tmp_path / "absorbance.csv"), "--name", "abs_field",
               "--spectra", "absorbance", *common)
    assert a.exit_code == 0 and b.exit_code == 0, a.output + b.output
    assert "89 labelled rows" in a.output and "22 unlabelled rows" in a.output
    pct = pd.read_parquet(project / "data/01_raw/imports/sites/pct_field.parquet")
    ab = pd.read_parquet(project / "data/01_raw/imports/sites/abs_field.parquet")
    bands = [c for c in pct.columns if c.startswith("nm_")]
    assert np.allclose(pct[bands], ab[bands], rtol=1e-9)
    assert pct["library"].isna().all() and (pct["site"] == "pct_field").all()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--spectra", "reflectance", "--carbon-column", "TotalCarbon"],
         "spectral columns"),  # unknown column naming (renamed below)
        (["--spectra", "reflectance", "--carbon-column", "nope"], "nope"),
        (["--spectra", "reflectance", "--carbon-column", "TotalCarbon", "--grid-start",
          "300"], "missing"),
    ],
)
def test_import_mistakes_say_what_to_fix(project, tmp_path, args, message):
    site = pd.read_csv(project / "data/examples/geeves_site.csv.gz")
    if message == "spectral columns":
        site = site.rename(columns=lambda c: c.replace("nm_", "band") if c.startswith("nm_")
                           else c)
    site.to_csv(tmp_path / "bad.csv", index=False)
    result = CliRunner().invoke(main, ["site", str(tmp_path / "bad.csv"), "--name", "bad",
                                       "--no-dvc", *args],
                                env={"LOCALSOC_PROJECT": str(project)})
    assert result.exit_code != 0
    assert message in result.output.lower()
    assert not (project / "data/01_raw/imports/sites/bad.parquet").exists()


def test_study_refuses_unknown_names_and_too_small_sites(project):
    result = invoke(project, "study", "--site", "nowhere", "--env", "test")
    assert result.exit_code != 0 and "no imported site 'nowhere'" in result.output


@pytest.fixture(scope="module")
def real_study(project):
    """The worked example: NIRsoil as the library, a distinct part of Geeves as the site."""
    examples = project / "data/examples"
    common = ["--id-column", "sample_id", "--no-dvc", *GRID]
    assert invoke(project, "import", str(examples / "nirsoil_library.csv.gz"), "--as",
                  "nirsoil", "--spectra", "absorbance", "--carbon-column", "Ciso",
                  "--country", "BE", *common).exit_code == 0
    assert invoke(project, "site", str(examples / "geeves_site.csv.gz"), "--name",
                  "geeves_field", "--spectra", "reflectance", "--carbon-column", "TotalCarbon",
                  "--country", "AU", *common).exit_code == 0
    with pytest.MonkeyPatch.context() as patch:
        patch.chdir(project)
        patch.setenv("BENTOML_HOME", str(project / "bentoml"))
        result = invoke(project, "study", "--site", "geeves_field", "--library", "nirsoil",
                        "--env", "test")
        assert result.exit_code == 0, result.output
        yield project, result.output


def test_real_example_runs_the_whole_study_for_that_site_only(real_study):
    project, output = real_study
    metrics = pd.read_csv(project / "data/08_reporting/study_metrics.csv")
    assert set(metrics["site"]) == {"geeves_field"}
    assert "Country" not in set(metrics["method"])  # no Australian samples in NIRsoil
    assert {"Local", "Global", "DTL-Ig", "DTL-Rg", "DTL-IRg", "PLSR Local"} <= set(
        metrics["method"])
    report = json.loads((project / "data/08_reporting/validation_report.json").read_text())
    library = next(t for t in report["tables"] if t["table"] == "library")
    assert library["rows_in"] == 825 and library["rows_quarantined"] == 93
    assert "Winner per site" in output and (project / "data/06_models/bento_tag.txt").exists()


def test_predict_writes_intervals_and_domain_flags_for_unlabelled_spectra(real_study):
    project, _ = real_study
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("BENTOML_HOME", str(project / "bentoml"))
        result = invoke(project, "predict", "--site", "geeves_field")
        assert result.exit_code == 0, result.output
        wrong = invoke(project, "predict", "--site", "elsewhere")
    out = pd.read_csv(project / "data/07_model_output/predictions_geeves_field.csv")
    assert len(out) == 22
    # SOC is never negative: the lower bound is clipped at 0 (even under a negative estimate)
    assert (out["lower"] >= 0).all() and (out["lower"] <= out["soc_percent"].clip(lower=0)).all()
    assert (out["soc_percent"] <= out["upper"]).all()
    assert out["in_domain"].dtype == bool
    assert wrong.exit_code != 0 and "geeves_field" in wrong.output


def test_library_models_are_reused_for_a_second_study(real_study):
    project, _ = real_study
    with pytest.MonkeyPatch.context() as patch:
        patch.chdir(project)
        patch.setenv("BENTOML_HOME", str(project / "bentoml"))
        result = invoke(project, "study", "--site", "geeves_field", "--library", "nirsoil",
                        "--env", "test", "--no-test")
    assert result.exit_code == 0, result.output
    trials = pd.read_csv(project / "data/07_model_output/library_search_trials.csv")
    assert trials["status"].tolist() == ["REUSED"]
    winners = json.loads((project / "data/08_reporting/study_winners.json").read_text())
    assert winners["geeves_field"]["has_test"] is False
    calibration = pd.read_parquet(project / "data/05_model_input/site_calibration.parquet")
    assert len(calibration) == 89  # every labelled row calibrates


def test_too_few_labelled_rows_points_to_no_test(project, tmp_path):
    site = pd.read_csv(project / "data/examples/geeves_site.csv.gz")
    small = site.loc[site["TotalCarbon"].notna()].head(35)
    small.to_csv(tmp_path / "small.csv", index=False)
    assert invoke(project, "site", str(tmp_path / "small.csv"), "--name", "small_field",
                  "--spectra", "reflectance", "--carbon-column", "TotalCarbon", "--id-column",
                  "sample_id", "--no-dvc", *GRID).exit_code == 0
    with pytest.MonkeyPatch.context() as patch:
        patch.chdir(project)
        result = CliRunner().invoke(main, ["study", "--site", "small_field", "--library",
                                           "nirsoil", "--env", "test"],
                                    env={"LOCALSOC_PROJECT": str(project)})
    assert result.exit_code != 0
    assert "small_field has 35" in result.output and "--no-test" in result.output


def test_examples_are_importable_from_the_repository():
    assert (PROJECT_ROOT / "examples/real_data/prepare.py").exists()
