"""The service's logic without the web server: fast paths equal the reference, no input crashes."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from localsoc.data.schema import Grid, spectra_of
from localsoc.serving.inference import CompiledEnsemble, preprocess
from localsoc.serving.predictor import BundlePredictor, RequestError
from localsoc.serving.schemas import PredictResponse
from localsoc.spectra.steps import apply_steps

GRID_NM = Grid().wavelengths_nm.tolist()


@pytest.mark.parametrize("steps", [["absorbance", "snv"], ["snv"], ["absorbance"], []])
def test_fast_preprocessing_is_apply_steps_bit_for_bit(steps):
    rng = np.random.default_rng(4)
    reflectance = np.concatenate([rng.uniform(1e-7, 1.0, (50, 211)),
                                  rng.uniform(0.2, 0.21, (5, 211))])
    np.testing.assert_array_equal(preprocess(reflectance, steps),
                                  apply_steps(reflectance, steps))


def test_fast_preprocessing_refuses_flat_spectra_like_apply_steps():
    flat = np.full((2, 30), 0.4)
    with pytest.raises(ValueError, match="flat spectrum"):
        preprocess(flat, ["absorbance", "snv"])


def test_compiled_ensemble_predicts_like_the_fold_ensemble(study):
    ensemble = study["models"]["china_site/local"]
    X = spectra_of(study["test"])
    compiled = CompiledEnsemble(ensemble)
    mean, spread = compiled.predict(X, return_std=True)
    expected_mean, expected_spread = ensemble.predict(X, return_std=True)
    np.testing.assert_allclose(mean, expected_mean, rtol=0, atol=1e-6)
    np.testing.assert_allclose(spread, expected_spread, rtol=0, atol=1e-6)
    # one spectrum at a time gives the same as the batch
    np.testing.assert_allclose(compiled.predict(X[:1]), expected_mean[:1], rtol=0, atol=1e-6)


@pytest.fixture(scope="module")
def predictor(study):
    return BundlePredictor(study["bundle"], "localsoc_bundle:test")


def test_predictor_answers_a_good_request(predictor, study):
    spectra = spectra_of(study["sites_ssl"].head(2)).tolist()
    answer = predictor.answer("china_site", GRID_NM, reflectance=spectra)
    assert isinstance(answer, PredictResponse)
    assert len(answer.predictions) == 2
    assert answer.model.version == "localsoc_bundle:test"


def test_limits_can_be_overridden_by_environment(study, monkeypatch):
    monkeypatch.setenv("LOCALSOC_MAX_SPECTRA", "1")
    predictor = BundlePredictor(study["bundle"], "t")
    spectra = spectra_of(study["sites_ssl"].head(2)).tolist()
    with pytest.raises(RequestError) as caught:
        predictor.answer("china_site", GRID_NM, reflectance=spectra)
    assert caught.value.status == 413


finite = st.floats(min_value=-1e6, max_value=1e6, allow_nan=False)
anything = st.floats(allow_nan=True, allow_infinity=True)
reflectance_like = st.one_of(st.floats(min_value=1e-9, max_value=1.0), anything)


@st.composite
def requests(draw):
    site = draw(st.sampled_from(["china_site", "sweden_site", "", "CHINA_SITE"]))
    kind = draw(st.sampled_from(["grid", "subset", "random"]))
    if kind == "grid":
        wavelengths = list(GRID_NM)
    elif kind == "subset":
        start = draw(st.integers(0, 200))
        wavelengths = GRID_NM[start : start + draw(st.integers(0, 211))]
    else:
        wavelengths = draw(st.lists(st.one_of(finite, anything), max_size=12))
    n_rows = draw(st.integers(0, 3))
    ragged = draw(st.booleans())
    rows = []
    for _ in range(n_rows):
        length = len(wavelengths) + (draw(st.integers(-2, 2)) if ragged else 0)
        base = draw(st.floats(min_value=1e-6, max_value=0.9))
        row = [base * (1.0 + 0.1 * i / max(length, 1)) for i in range(max(length, 0))]
        for index in draw(st.lists(st.integers(0, max(length - 1, 0)), max_size=3)):
            if row:
                row[index] = draw(reflectance_like)
        rows.append(row)
    field = draw(st.sampled_from(["reflectance", "absorbance", "both", "none"]))
    spectra = {"reflectance": rows if field in ("reflectance", "both") else None,
               "absorbance": rows if field in ("absorbance", "both") else None}
    return site, wavelengths, spectra


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(requests())
def test_no_request_raises_anything_but_a_4xx(predictor, request_parts):
    site, wavelengths, spectra = request_parts
    try:
        answer = predictor.answer(site, wavelengths, **spectra)
    except RequestError as error:
        assert 400 <= error.status < 500
        assert error.message
    else:
        assert all(np.isfinite(p.soc_percent) for p in answer.predictions)
