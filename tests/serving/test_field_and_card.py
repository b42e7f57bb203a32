"""POST /field and GET /sites/{site}/card through a real `bentoml serve` on 127.0.0.1.

The field summary the server answers must be ``localsoc.field.site_field_summary`` of the
bundle's own residuals and the estimates the evaluate step recorded for the same spectra; the
card must be the bundle's (``localsoc.serving.card``).
"""

from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
import pytest

from localsoc.data.schema import spectra_of
from localsoc.field import ALL, site_field_summary
from localsoc.serving.card import card_markdown, site_card
from tests.serving.test_service import MAX_ERROR_BYTES, body, site_test_rows

pytestmark = pytest.mark.slow
SITE = "sweden_site"  # PLSR: float64 throughout, estimates equal to 1e-9


def field_body(study, recorded, **changes):
    raw, rows = site_test_rows(study, recorded, SITE)
    return body(study, SITE, spectra_of(raw), **changes), rows


def test_field_is_the_summary_of_the_served_estimates(client, study, recorded_predictions):
    payload, rows = field_body(study, recorded_predictions)
    count = len(rows)
    strata = ["north" if i % 3 else "south" for i in range(count)]
    density = [1.3] * count
    depth = [30.0] * count
    depth[0] = None  # sample 0 is in 'south': no stock there, nor for the whole field
    response = client.post("/field", json={**payload, "stratum": strata,
                                           "bulk_density_g_cm3": density, "depth_cm": depth})
    assert response.status_code == 200, response.text
    answer = response.json()
    entry = study["bundle"].site(SITE)
    expected = site_field_summary(entry, rows["estimated"].to_numpy(np.float64), strata=strata,
                                  bulk_density_g_cm3=[np.nan if v is None else v
                                                      for v in density],
                                  depth_cm=[np.nan if v is None else v for v in depth])
    assert [g["stratum"] for g in answer["summaries"]] == [ALL, "north", "south"]
    # the bias correction and model error come from the residuals the interval is calibrated
    # on: at this site its 20 validation samples
    assert entry["interval"]["method"] == "validation"
    assert answer["n_spectra"] == count and answer["n_calibration"] == 20
    assert answer["model"]["site"] == SITE and answer["target"] == "field"
    for group, summary in zip(answer["summaries"], expected, strict=True):
        assert group["n_samples"] == summary.n_samples
        for key in ("estimate", "lower", "upper", "mean_estimate", "bias_correction",
                    "sampling_se", "model_se"):
            assert group["soc"][key] == pytest.approx(getattr(summary.soc, key), abs=1e-9), key
    # the mean estimate is the mean of the served estimates; the correction the mean residual
    residuals = np.asarray(entry["interval"]["calibration_residuals"])
    whole = answer["summaries"][0]
    assert whole["soc"]["mean_estimate"] == pytest.approx(rows["estimated"].mean(), abs=1e-9)
    assert whole["soc"]["bias_correction"] == pytest.approx(residuals.mean(), abs=1e-12)
    assert whole["soc"]["lower"] < whole["soc"]["estimate"] < whole["soc"]["upper"]
    # 'south' holds the sample without depth: no stock there, nor for the whole field
    stocks = {g["stratum"]: g["stock"] for g in answer["summaries"]}
    assert stocks[ALL] is None and stocks["south"] is None
    north = next(g for g in answer["summaries"] if g["stratum"] == "north")
    assert north["stock"]["estimate"] == pytest.approx(39.0 * north["soc"]["estimate"])


def test_field_target_samples_has_no_sampling_error(client, study, recorded_predictions):
    payload, _ = field_body(study, recorded_predictions)
    answer = client.post("/field", json={**payload, "target": "samples"}).json()
    assert answer["target"] == "samples"
    assert answer["summaries"][0]["soc"]["sampling_se"] == 0.0
    assert answer["summaries"][0]["stock"] is None


@pytest.mark.parametrize(("changes", "status", "field", "words"), [
    ({"stratum": ["a"]}, 400, "stratum", "one per spectrum"),
    ({"bulk_density_g_cm3": "SIZE:9.0"}, 422, "bulk_density_g_cm3", "(0.01, 3]"),
    ({"depth_cm": "SIZE:-5.0"}, 422, "depth_cm", "(0, 1000]"),
    ({"target": "farm"}, 400, "target", "field"),
    ({"site": "atlantis"}, 422, "site", SITE),
    ({"reflectance": []}, 400, "reflectance", "at least one spectrum"),
], ids=["stratum length", "bulk density", "depth", "target", "unknown site", "empty"])
def test_bad_field_input_gets_a_small_4xx(client, study, recorded_predictions, changes,
                                          status, field, words):
    payload, rows = field_body(study, recorded_predictions)
    for key, value in list(changes.items()):
        if isinstance(value, str) and value.startswith("SIZE:"):
            changes[key] = [float(value[5:])] * len(rows)
    response = client.post("/field", json={**payload, **changes})
    assert response.status_code == status, response.text
    assert len(response.content) < MAX_ERROR_BYTES
    error = response.json()
    assert set(error) == {"error", "field"} and error["field"] == field, error
    assert words in error["error"], error


def test_field_refuses_non_json(client):
    response = client.post("/field", content=b"site=x",
                           headers={"content-type": "text/plain"})
    assert response.status_code == 415


@pytest.mark.parametrize("site", ["china_site", SITE])
def test_the_card_is_the_bundles(client, study, project, site):
    _, _, tag = project
    response = client.get(f"/sites/{site}/card")
    assert response.status_code == 200, response.text
    answer = response.json()
    manifest = study["bundle"].manifest
    winner = study["winners"][site]
    card = answer["card"]
    assert answer["site"] == site and card["bundle"] == tag
    assert card["model"]["method"] == winner["method"]
    assert card["data"]["calibration_samples"] == 30
    held = study["test"].loc[study["test"]["site"] == site, "holdout"]
    assert card["data"]["test_samples"] == int((held == "test").sum())
    assert card["data"]["validation_samples"] == int((held == "validation").sum())
    assert card["interval"]["test_coverage"] == pytest.approx(winner["test_metrics"]["coverage"])
    spread = card["interval"]["coverage_spread"]
    if card["interval"]["method"] == "validation":  # Beta(k, m + 1 - k) over validation draws
        m = card["data"]["validation_samples"]
        assert (spread["m"], spread["rank"]) == (m, math.ceil(0.9 * (m + 1)))
        assert spread["q05"] < 0.9 < spread["q95"]
        assert spread["sentence"][1:] in answer["markdown"] and "Beta(" in spread["sentence"]
    else:  # CV+ from Kennard-Stone residuals: no such law
        assert spread is None
    assert card["metrics"]["nested_calibration_rmse"] == pytest.approx(winner["cal_rmse"])
    # built from the served bundle: its model files' hashes, its versions
    assert card["versions"]["model_files_sha256"]
    assert card["versions"]["data_version"] == manifest["data_version"]
    markdown = answer["markdown"]
    assert markdown.startswith(f"# Model card: site {site}")
    assert f"method **{winner['method']}**" in markdown
    for name in card["versions"]["model_files_sha256"]:
        assert name in markdown


def test_an_unknown_card_is_a_small_404(client):
    response = client.get("/sites/atlantis/card")
    assert response.status_code == 404
    assert response.json()["field"] == "site" and "sweden_site" in response.json()["error"]


def test_the_openapi_schema_describes_field_and_card(client):
    schema = client.get("/docs.json").json()
    responses = schema["paths"]["/field"]["post"]["responses"]
    for status in ("400", "413", "415", "422"):
        assert responses[status]["content"]["application/json"]["schema"]["$ref"].endswith(
            "/ErrorResponse")
    assert "FieldRequest" in json.dumps(schema["paths"]["/field"]["post"]["requestBody"])
    card = schema["paths"]["/sites/{site}/card"]["get"]["responses"]
    assert card["200"]["content"]["application/json"]["schema"]["$ref"].endswith(
        "/CardResponse")


def test_card_markdown_without_a_server(study):
    manifest = study["bundle"].manifest
    card = site_card(manifest, SITE)
    text = card_markdown(card)
    assert text.startswith(f"## Model card: site {SITE}")
    for heading in ("### Data", "### Metrics", "### Uncertainty", "### Inputs and domain",
                    "### Versions"):
        assert heading in text
    assert "not recorded" in card_markdown({**card, "versions": {
        **card["versions"], "code_version": None}})


def test_localsoc_predict_prints_and_writes_the_field_summary(project, study,
                                                              recorded_predictions, tmp_path):
    from click.testing import CliRunner

    from localsoc.command_line import main

    root, home, _ = project
    raw, rows = site_test_rows(study, recorded_predictions, SITE)
    source = raw.drop(columns=["soc"]).assign(
        stratum=np.where(np.arange(len(raw)) % 2, "b", "a"), bulk_density_g_cm3=1.2,
        depth_cm=25.0)
    path = tmp_path / "field.csv"
    source.to_csv(path, index=False)
    out = tmp_path / "predictions.csv"
    summary_path = tmp_path / "summary.csv"
    result = CliRunner().invoke(
        main, ["predict", "--site", SITE, str(path), "--carbon-column", "", "--id-column",
               "sample_id", "--out", str(out), "--field-out", str(summary_path)],
        env={"LOCALSOC_PROJECT": str(root), "BENTOML_HOME": str(home)},
        catch_exceptions=False)
    assert result.exit_code == 0, result.output
    assert "Field summary" in result.output and "difference estimator" in result.output
    summary = pd.read_csv(summary_path)
    assert summary["stratum"].tolist() == [ALL, "a", "b"]
    estimates = pd.read_csv(out)["soc_percent"].to_numpy()
    np.testing.assert_allclose(estimates, rows["estimated"], atol=1e-9)
    expected = site_field_summary(study["bundle"].site(SITE), estimates,
                                  strata=source["stratum"], bulk_density_g_cm3=source[
                                      "bulk_density_g_cm3"], depth_cm=source["depth_cm"])
    np.testing.assert_allclose(summary["soc_percent"], [s.soc.estimate for s in expected])
    np.testing.assert_allclose(summary["stock_t_ha"], [s.stock.estimate for s in expected])
    np.testing.assert_allclose(summary["stock_t_ha"], 30.0 * summary["soc_percent"])


def test_a_field_of_spectra_in_the_wrong_units_is_refused(client, study, recorded_predictions):
    """The probe: reflectance declared as absorbance. Every spectrum is outside the model's
    domain; /field answered a summary of them (13.49 % for a field of about 1.7 %) instead of
    a 422 with the count and the likely cause."""
    payload, rows = field_body(study, recorded_predictions)
    payload["absorbance"] = payload.pop("reflectance")
    response = client.post("/field", json=payload)
    assert response.status_code == 422, response.text
    error = response.json()
    assert error["field"] == "absorbance"
    assert f"{len(rows)} of {len(rows)} spectra are outside the model's domain" in error["error"]
    assert "units" in error["error"], error
    summary = client.post("/field", json=field_body(study, recorded_predictions)[0]).json()
    assert summary["summaries"][0]["n_out_of_domain"] < len(rows) / 2
