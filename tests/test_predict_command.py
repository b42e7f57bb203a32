"""`localsoc predict` on a packaged bundle: spectra declared in the wrong units get no field
summary (issue 27, item 4), and a served site that was never imported gets a message that
says so instead of calling its table damaged (item 6)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner

from localsoc.command_line import main
from tests.conftest import make_scratch_project

pytestmark = pytest.mark.slow
SITE = "sweden_site"  # a local PLSR in the serving tests' tiny study


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    """A project whose bundle serves the serving tests' tiny study; (root, env, site rows)."""
    from tests.serving.study import build_study, save_bundle, simulate_sites

    root = make_scratch_project(tmp_path_factory.mktemp("predict"))
    sites = simulate_sites()
    save_bundle(build_study(sites)["bundle"], root)
    env = {"LOCALSOC_PROJECT": str(root), "BENTOML_HOME": str(root / "bentoml")}
    rows = sites.loc[sites["site"] == SITE].drop(columns=["soc"]).reset_index(drop=True)
    return root, env, rows


def predict(served, tmp_path, *arguments):
    root, env, rows = served
    path = tmp_path / "scans.csv"
    rows.to_csv(path, index=False)
    out, field_out = tmp_path / "predictions.csv", tmp_path / "field.csv"
    result = CliRunner().invoke(main, ["predict", "--site", SITE, str(path), "--id-column",
                                       "sample_id", "--carbon-column", "", "--out", str(out),
                                       "--field-out", str(field_out), *arguments], env=env)
    return result, out, field_out


def test_reflectance_declared_as_absorbance_gets_no_field_summary(served, tmp_path):
    result, out, field_out = predict(served, tmp_path, "--spectra", "absorbance")
    text = " ".join(result.output.split())
    assert result.exit_code == 1, result.output
    count = len(served[2])
    outside = int((~pd.read_csv(out)["in_domain"]).sum())  # the predictions are still written
    assert outside > count / 2
    assert f"{outside} of {count} spectra are outside the model's domain" in text
    assert "no field summary" in text and "units are declared wrongly" in text
    assert "read as absorbance (--spectra absorbance); if it holds reflectance, give --spectra "\
           "reflectance" in text
    assert not field_out.exists()


def test_the_same_spectra_as_reflectance_get_their_field_summary(served, tmp_path):
    result, out, field_out = predict(served, tmp_path, "--spectra", "reflectance")
    assert result.exit_code == 0, result.output
    summary = pd.read_csv(field_out)
    predictions = pd.read_csv(out)
    assert summary["n_out_of_domain"].iloc[0] == int((~predictions["in_domain"]).sum())
    assert summary["n_out_of_domain"].iloc[0] <= len(predictions) / 2
    assert np.isfinite(summary["lower"].iloc[0]) and "Field summary" in result.output


def test_a_served_site_never_imported_is_not_called_damaged(served):
    root, env, _ = served
    assert not (root / f"data/01_raw/imports/sites/{SITE}.parquet").exists()
    result = CliRunner().invoke(main, ["predict", "--site", SITE], env=env)
    text = " ".join(result.output.split())
    assert result.exit_code == 1, result.output
    assert f"site {SITE} is served, but it was never imported with `localsoc site`" in text
    assert f"`localsoc predict --site {SITE} FILE`" in text
    assert "damaged" not in text and "delete" not in text
