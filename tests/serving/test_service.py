"""The prediction service through a real `bentoml serve` on 127.0.0.1.

Predictions must equal what the evaluate step recorded for the site test spectra. Tolerance:
1e-6 SOC % (the fold ensembles are float32 Keras networks; the service batches spectra
differently from the evaluate step, which can change the last bits of the matrix products; the
PLSR path is float64 throughout).
"""

from __future__ import annotations

import json
import time

import numpy as np
import pandas as pd
import pytest

from localsoc.data.schema import spectra_of, wavelengths_of

pytestmark = pytest.mark.slow
TOLERANCE = 1e-6
SITES = ("china_site", "sweden_site")


def site_test_rows(study, recorded, site):
    """(raw reflectance table of the site's test rows, the recorded test predictions) in order."""
    winner = study["winners"][site]["method"]
    rows = recorded.loc[(recorded["site"] == site) & (recorded["method"] == winner)
                        & (recorded["role"] == "test")].reset_index(drop=True)
    raw = study["sites_ssl"].set_index("sample_id").loc[rows["sample_id"]].reset_index()
    return raw, rows


def body(study, site, spectra=None, field="reflectance", **changes) -> dict:
    table = study["sites_ssl"]
    if spectra is None:
        spectra = spectra_of(table.loc[table["site"] == site].head(1))
    payload = {"site": site, "wavelengths_nm": wavelengths_of(table).tolist(),
               field: np.asarray(spectra).tolist()}
    payload.update(changes)
    return payload


@pytest.mark.parametrize("site", SITES)
def test_predictions_match_the_evaluate_step(client, study, recorded_predictions, site):
    raw, recorded = site_test_rows(study, recorded_predictions, site)
    response = client.post("/predict", json=body(study, site, spectra_of(raw)))
    assert response.status_code == 200, response.text
    answer = response.json()
    predictions = answer["predictions"]
    assert len(predictions) == len(recorded) > 10
    estimate = np.array([p["soc_percent"] for p in predictions])
    np.testing.assert_allclose(estimate, recorded["estimated"], rtol=0, atol=TOLERANCE)
    np.testing.assert_allclose([p["interval"]["lower"] for p in predictions], recorded["lower"],
                               rtol=0, atol=TOLERANCE)
    np.testing.assert_allclose([p["interval"]["upper"] for p in predictions], recorded["upper"],
                               rtol=0, atol=TOLERANCE)
    np.testing.assert_allclose([p["spread"] for p in predictions], recorded["spread"], rtol=0,
                               atol=TOLERANCE)
    np.testing.assert_allclose([p["t2"] for p in predictions], recorded["t2"], rtol=1e-9)
    np.testing.assert_allclose([p["q"] for p in predictions], recorded["q"], rtol=1e-9)
    assert [p["in_domain"] for p in predictions] == recorded["in_domain"].astype(bool).tolist()
    winner = study["winners"][site]
    assert {p["interval"]["level"] for p in predictions} == {winner["interval_level"]}
    model = answer["model"]
    assert (model["site"], model["method"], model["model_key"]) == (
        site, winner["method"], winner["model_key"])
    assert model["version"].startswith("localsoc_bundle:")
    assert answer["resampled"] is False


def test_absorbance_gives_the_same_predictions(client, study, recorded_predictions):
    raw, recorded = site_test_rows(study, recorded_predictions, "china_site")
    absorbance = np.log10(1.0 / spectra_of(raw))
    response = client.post("/predict", json=body(study, "china_site", absorbance, "absorbance"))
    assert response.status_code == 200, response.text
    estimate = [p["soc_percent"] for p in response.json()["predictions"]]
    np.testing.assert_allclose(estimate, recorded["estimated"], rtol=0, atol=TOLERANCE)


def test_spectra_on_a_finer_covering_grid_are_resampled(client, study):
    table = study["sites_ssl"]
    coarse = wavelengths_of(table)
    spectra = spectra_of(table.loc[table["site"] == "sweden_site"].head(3))
    # 1 nm bands from 350 nm, each holding the value of the 10 nm band whose window
    # [t - 5, t + 5) contains it: band averaging must give the 10 nm spectra back
    fine = np.arange(350.0, 2505.0, 1.0)
    band = np.clip(np.floor((fine - (coarse[0] - 5.0)) / 10.0).astype(int), 0, coarse.size - 1)
    on_fine = spectra[:, band]
    response = client.post("/predict", json=body(study, "sweden_site", on_fine,
                                                  wavelengths_nm=fine.tolist()))
    assert response.status_code == 200, response.text
    answer = response.json()
    assert answer["resampled"] is True
    direct = client.post("/predict", json=body(study, "sweden_site", spectra)).json()
    assert direct["resampled"] is False
    np.testing.assert_allclose([p["soc_percent"] for p in answer["predictions"]],
                               [p["soc_percent"] for p in direct["predictions"]], rtol=0,
                               atol=1e-9)


def test_a_grid_that_does_not_cover_the_model_names_the_missing_range(client, study):
    table = study["sites_ssl"]
    keep = wavelengths_of(table) <= 2000
    spectra = spectra_of(table.loc[table["site"] == "china_site"].head(2))[:, keep]
    response = client.post("/predict", json=body(
        study, "china_site", spectra, wavelengths_nm=wavelengths_of(table)[keep].tolist()))
    assert response.status_code == 422
    error = response.json()
    assert error["field"] == "wavelengths_nm"
    assert "missing 2000-2500 nm" in error["error"]


@pytest.mark.parametrize("grid", [np.arange(400.0, 2501.0, 100.0), np.array([400.0, 2500.0])],
                         ids=["every 100 nm", "two points"])
def test_spectra_sampled_coarser_than_the_model_grid_are_refused(client, study, grid):
    table = study["sites_ssl"]
    wavelengths = wavelengths_of(table)
    spectra = spectra_of(table.loc[table["site"] == "china_site"].head(2))
    coarse = np.stack([np.interp(grid, wavelengths, row) for row in spectra])
    response = client.post("/predict", json=body(study, "china_site", coarse,
                                                  wavelengths_nm=grid.tolist()))
    assert response.status_code == 422, response.text
    error = response.json()
    assert error["field"] == "wavelengths_nm"
    assert f"{np.diff(grid).max():g} nm apart" in error["error"]
    assert "every 10 nm" in error["error"]


def test_a_negative_estimate_is_flagged(client, study):
    # spectra pushed past the site's lowest-SOC spectrum, away from its highest: the PLSR
    # extrapolates below 0 % (reflectance stays in (0, 1])
    table = study["sites_ssl"].loc[study["sites_ssl"]["site"] == "sweden_site"]
    spectra = spectra_of(table)
    first = client.post("/predict", json=body(study, "sweden_site", spectra)).json()
    estimate = np.array([p["soc_percent"] for p in first["predictions"]])
    low, high = spectra[estimate.argmin()], spectra[estimate.argmax()]
    pushed = np.stack([low + k * (low - high) for k in (0.0, 0.3, 0.6, 0.9)])
    assert ((pushed > 0) & (pushed <= 1)).all()
    response = client.post("/predict", json=body(study, "sweden_site", pushed))
    assert response.status_code == 200, response.text
    predictions = response.json()["predictions"]
    negative = [p["soc_percent"] < 0 for p in predictions]
    assert any(negative) and not all(negative)
    for prediction, below in zip(predictions, negative, strict=True):
        assert ("negative_estimate" in prediction["flags"]) == below, prediction
        if below:
            assert prediction["interval"]["lower"] == 0.0
    assert all(p["flags"] == [] for p in first["predictions"] if p["soc_percent"] >= 0)


def _bad_requests(study) -> dict[str, tuple[dict | bytes, int, str]]:
    """Every class of bad input: (body, expected status, words the message must hold)."""
    good = body(study, "china_site")
    spectrum = good["reflectance"][0]
    nan_body = json.dumps({**good, "reflectance": [[float("nan"), *spectrum[1:]]]}).encode()
    inf_body = json.dumps({**good, "reflectance": [[*spectrum[:-1], float("inf")]]}).encode()
    return {
        "unknown site": ({**good, "site": "atlantis"}, 422, "china_site"),
        "empty spectra": ({**good, "reflectance": []}, 400, "at least one spectrum"),
        "empty wavelengths": ({**good, "wavelengths_nm": []}, 400, "wavelength"),
        "ragged spectra": ({**good, "reflectance": [spectrum, spectrum[:-5]]}, 400,
                           "one value per wavelength"),
        "NaN": (nan_body, 422, "finite"),
        "infinity": (inf_body, 422, "finite"),
        "negative reflectance": ({**good, "reflectance": [[-0.1, *spectrum[1:]]]}, 422,
                                 "(0, 1]"),
        "reflectance above 1": ({**good, "reflectance": [[1.2, *spectrum[1:]]]}, 422, "(0, 1]"),
        "percent reflectance": ({**good, "reflectance": [[100 * v for v in spectrum]]}, 422,
                                "divide by 100"),
        "absorbance out of range": ({"site": "china_site",
                                     "wavelengths_nm": good["wavelengths_nm"],
                                     "absorbance": [[100 * v for v in spectrum]]}, 422,
                                    "reflectance / 100"),
        "micrometres": ({**good, "wavelengths_nm": [w / 1000 for w in good["wavelengths_nm"]]},
                        422, "nanometres"),
        "unsorted wavelengths": ({**good, "wavelengths_nm": good["wavelengths_nm"][::-1]}, 422,
                                 "increasing"),
        "both fields": ({**good, "absorbance": good["reflectance"]}, 400, "exactly one"),
        "no spectra": ({"site": "china_site", "wavelengths_nm": good["wavelengths_nm"]}, 400,
                       "exactly one"),
        "flat spectrum": ({**good, "reflectance": [[0.3] * len(spectrum)]}, 422, "flat"),
        "too many spectra": ({**good, "reflectance": [spectrum] * 501}, 413, "limit is 500"),
        "wrong JSON type": ({**good, "reflectance": "0.1,0.2"}, 400, "reflectance"),
        "unknown field": ({**good, "reflectances": good["reflectance"]}, 400, "reflectances"),
        "not JSON": (b"{site: china_site", 400, "JSON"),
        "oversized body": (b" " * 4_000_001, 413, "limit"),
        "number as a string": ({**good, "reflectance": [[str(spectrum[0]), *spectrum[1:]]]},
                               400, "reflectance[0][0]: input should be a valid number"),
        "true as a number": ({**good, "wavelengths_nm": [True, *good["wavelengths_nm"][1:]]},
                             400, "wavelengths_nm[0]: input should be a valid number"),
        "site as a number": ({**good, "site": 7}, 400, "site: input should be a valid string"),
        "duplicate key": (json.dumps(good).replace('"site": "china_site"', '"site": "atlantis", '
                                                   '"site": "china_site"', 1).encode(), 400,
                          "gives 'site' more than once"),
        "reflectance darker than soil": ({**good, "reflectance": [[5e-324, *spectrum[1:]]]}, 422,
                                         "darker than any soil"),
    }


@pytest.fixture(scope="module")
def bad_answers(client, study):
    answers = {}
    for name, (payload, _, _) in _bad_requests(study).items():
        content = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
        answers[name] = client.post("/predict", content=content,
                                    headers={"content-type": "application/json"})
    return answers


BAD_INPUTS = [
    "unknown site", "empty spectra", "empty wavelengths", "ragged spectra", "NaN", "infinity",
    "negative reflectance", "reflectance above 1", "percent reflectance",
    "absorbance out of range", "micrometres", "unsorted wavelengths", "both fields",
    "no spectra", "flat spectrum", "too many spectra", "wrong JSON type", "unknown field",
    "not JSON", "oversized body", "number as a string", "true as a number", "site as a number",
    "duplicate key", "reflectance darker than soil",
]


def test_every_bad_input_class_is_tested(study):
    assert sorted(_bad_requests(study)) == sorted(BAD_INPUTS)


@pytest.mark.parametrize("name", BAD_INPUTS)
def test_bad_input_gets_a_4xx_that_says_what_to_fix(study, bad_answers, name):
    _, status, words = _bad_requests(study)[name]
    response = bad_answers[name]
    assert response.status_code == status, response.text
    assert words.lower() in response.text.lower(), response.text
    assert set(response.json()) == {"error", "field"}


@pytest.mark.parametrize(("name", "field"), [
    ("number as a string", "reflectance"), ("true as a number", "wavelengths_nm"),
    ("duplicate key", "site"), ("reflectance darker than soil", "reflectance")])
def test_the_error_names_the_field(bad_answers, name, field):
    assert bad_answers[name].json()["field"] == field


@pytest.mark.parametrize(("method", "path", "status"), [
    ("GET", "/no-such-page", 404), ("POST", "/no-such-page", 404), ("PUT", "/predict", 405),
    ("GET", "/predict", 405), ("DELETE", "/sites", 405)])
def test_404_and_405_are_json_errors(client, method, path, status):
    response = client.request(method, path)
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/json"
    assert set(response.json()) == {"error", "field"}, response.text
    if status == 405:
        assert response.headers.get("allow"), response.headers


def test_an_unknown_sites_card_keeps_its_own_404(client):
    response = client.get("/sites/atlantis/card")
    assert response.status_code == 404 and response.json()["field"] == "site"


def test_the_docs_describe_this_service_and_their_examples_succeed(client):
    from localsoc.serving.service import _version

    document = client.get("/docs.json").json()
    assert document["info"]["title"] == "LocalSOC"
    assert document["info"]["version"] == _version() != "None"
    assert "created with BentoML" not in document["info"]["description"]
    assert "/predict" in document["info"]["description"]
    for route in ("/predict", "/field"):
        content = document["paths"][route]["post"]["requestBody"]["content"]
        example = content["application/json"]["example"]
        response = client.post(route, json=example)
        assert response.status_code == 200, (route, response.text)


def test_docs_leads_to_the_swagger_page(client):
    response = client.get("/docs", follow_redirects=False)
    assert response.status_code == 307 and response.headers["location"] == "/"
    page = client.get("/docs", follow_redirects=True)
    assert page.status_code == 200 and "swagger" in page.text.lower()


def test_an_oversized_chunked_body_is_413(client):
    chunks = (b" " * 500_000 for _ in range(10))  # no Content-Length: counted as it arrives
    response = client.post("/predict", content=chunks,
                           headers={"content-type": "application/json"})
    assert response.status_code == 413
    assert "limit of 4000000 bytes" in response.json()["error"]


def test_non_json_content_type_is_415(client, study):
    response = client.post("/predict", content=b"site=china_site",
                           headers={"content-type": "application/x-www-form-urlencoded"})
    assert response.status_code == 415
    assert "application/json" in response.json()["error"]


def test_sites_lists_the_bundle(client, study, project):
    _, _, tag = project
    response = client.get("/sites")
    assert response.status_code == 200
    document = response.json()
    assert document["bundle"] == tag
    manifest = study["bundle"].manifest
    assert document["data_version"] == manifest["data_version"]
    assert document["limits"]["max_spectra_per_request"] == 500
    served = {entry["site"]: entry for entry in document["sites"]}
    assert set(served) == set(SITES)
    for site, entry in served.items():
        winner = study["winners"][site]
        assert entry["method"] == winner["method"]
        assert entry["family"] == winner["family"]
        assert entry["grid"]["n_bands"] == 211
        assert (entry["grid"]["first_nm"], entry["grid"]["last_nm"]) == (400.0, 2500.0)
        assert entry["preprocessing"] == ["absorbance", "snv"]
        assert entry["test_metrics"]["rmse"] == pytest.approx(winner["test_metrics"]["rmse"])
        assert entry["interval"]["halfwidth"] == pytest.approx(winner["interval_halfwidth"])


def test_sites_answers_get_only(client):
    assert client.post("/sites", json={}).status_code == 405
    assert client.get("/no-such-page").status_code == 404


def test_the_openapi_schema_describes_predict_its_error_replies_and_sites(client):
    schema = client.get("/docs.json").json()
    responses = schema["paths"]["/predict"]["post"]["responses"]
    for status in ("400", "413", "415", "422", "500"):
        reference = responses[status]["content"]["application/json"]["schema"]["$ref"]
        assert reference.endswith("/ErrorResponse"), (status, reference)
    assert set(schema["components"]["schemas"]["ErrorResponse"]["properties"]) == {"error",
                                                                                   "field"}
    sites = schema["paths"]["/sites"]["get"]["responses"]["200"]["content"]
    assert sites["application/json"]["schema"]["$ref"].endswith("/SitesResponse")


MARKER = "not-a-number-7f3a"
MAX_ERROR_BYTES = 4096


@pytest.mark.parametrize("rows", [1, 240])
def test_a_body_of_strings_gets_a_small_400_and_leaves_no_trace_in_the_log(client, study,
                                                                         project, rows):
    root, _, _ = project
    log = root / "server.log"
    good = body(study, "china_site")
    payload = json.dumps({**good, "reflectance": [[MARKER] * len(good["wavelengths_nm"])] * rows})
    assert rows == 1 or len(payload) > 1_000_000
    before = log.stat().st_size
    response = client.post("/predict", content=payload,
                           headers={"content-type": "application/json"})
    assert response.status_code == 400
    assert len(response.content) < MAX_ERROR_BYTES, len(response.content)
    error = response.json()
    assert set(error) == {"error", "field"} and error["field"] == "reflectance", error
    assert "reflectance[0][0]" in error["error"] and "number" in error["error"]
    client.get("/sites")  # the worker has finished with the bad request
    time.sleep(1.0)
    written = log.read_text()[before:]
    assert MARKER not in written and len(written) < MAX_ERROR_BYTES, written[:2000]


def test_every_4xx_body_is_small_and_in_the_documented_shape(bad_answers):
    for name, response in bad_answers.items():
        assert 400 <= response.status_code < 500, name
        assert len(response.content) < MAX_ERROR_BYTES, (name, len(response.content))
        error = response.json()
        assert isinstance(error, dict) and set(error) == {"error", "field"}, (name, error)
        assert isinstance(error["error"], str) and error["error"], name


def test_schemathesis_finds_no_server_error_and_every_reply_fits_the_schema(server, study):
    from tests.serving.schema_fuzz import fuzz

    good = [body(study, site) for site in SITES]
    outcome = fuzz(server, max_examples=200, good_bodies=good)
    print(f"schemathesis: {outcome}")
    assert outcome.cases >= 200 and outcome.statuses[200] >= len(good)
    assert outcome.failures == [], outcome.failures[:5]
    assert outcome.largest_4xx_bytes < 64 * 1024


def test_recorded_predictions_are_the_evaluate_outputs(study, recorded_predictions):
    # guards the comparison above: the CSV round trip keeps the evaluate values
    pd.testing.assert_series_equal(recorded_predictions["estimated"],
                                   study["predictions"]["estimated"], check_exact=False,
                                   rtol=1e-15, atol=0)
