"""The service's logic without the web server: fast paths equal the reference, no input crashes."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from localsoc.data.schema import Grid, spectra_of
from localsoc.serving.inference import (
    CompiledEnsemble,
    HybridEnsemble,
    NumpyEnsemble,
    fast_predictor,
)
from localsoc.serving.predictor import BundlePredictor, RequestError
from localsoc.serving.schemas import PredictResponse
from localsoc.spectra.steps import apply_steps

GRID_NM = Grid().wavelengths_nm.tolist()


@pytest.mark.parametrize("steps", [["absorbance", "snv"], ["snv"], ["absorbance"], []])
def test_serving_preprocessing_is_apply_steps_bit_for_bit(steps):
    """The service calls apply_steps(check=False): no re-validation, the same values."""
    rng = np.random.default_rng(4)
    reflectance = np.concatenate([rng.uniform(1e-7, 1.0, (50, 211)),
                                  rng.uniform(0.2, 0.21, (5, 211))])
    np.testing.assert_array_equal(apply_steps(reflectance, steps, check=False),
                                  apply_steps(reflectance, steps))


def test_serving_preprocessing_refuses_flat_spectra_like_apply_steps():
    flat = np.full((2, 30), 0.4)
    with pytest.raises(ValueError, match="flat spectrum"):
        apply_steps(flat, ["absorbance", "snv"], check=False)


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


def _random_hyperparameters(rng: np.random.Generator) -> dict:
    """An architecture from the search space (localsoc.models.cnn1d), small widths."""
    from localsoc.models.cnn1d import ACTIVATIONS

    hp = {"conv_blocks": int(rng.integers(1, 4)), "fc_blocks": int(rng.integers(1, 3))}
    for i in range(hp["conv_blocks"]):
        hp.update({
            f"conv_{i}_filters": int(rng.integers(1, 4) * 4),
            f"conv_{i}_kernel_size": int(rng.integers(2, 11)),
            f"conv_{i}_strides": int(rng.integers(1, 4)),
            f"conv_{i}_padding": str(rng.choice(["valid", "same"])),
            f"conv_{i}_activation": str(rng.choice(ACTIVATIONS)),
            f"conv_{i}_batch_normalization": bool(rng.integers(2)),
            f"conv_{i}_pooling": bool(rng.integers(2)),
            f"conv_{i}_pool_type": str(rng.choice(["max", "average"])),
            f"conv_{i}_pool_size": int(rng.integers(2, 5)),
            f"conv_{i}_pool_strides": int(rng.integers(1, 5)),
            f"conv_{i}_dropout": bool(rng.integers(2)), f"conv_{i}_dropout_rate": 0.2,
        })
    for i in range(hp["fc_blocks"]):
        hp.update({
            f"fc_{i}_units": int(rng.integers(8, 48)),
            f"fc_{i}_activation": str(rng.choice(ACTIVATIONS)),
            f"fc_{i}_batch_normalization": bool(rng.integers(2)),
            f"fc_{i}_dropout": bool(rng.integers(2)), f"fc_{i}_dropout_rate": 0.3,
        })
    return hp


def _random_ensemble(seed: int, n_folds: int = 2):
    import keras

    from localsoc.models.cnn1d import build_cnn1d
    from localsoc.models.ensemble import FoldEnsemble, make_folds

    rng = np.random.default_rng(seed)
    hp = _random_hyperparameters(rng)
    models = []
    for fold in range(n_folds):
        keras.utils.set_random_seed(seed * 100 + fold)
        model = build_cnn1d(hp, 211)
        for layer in model.layers:  # trained-looking normalisation statistics
            if isinstance(layer, keras.layers.BatchNormalization):
                shapes = [w.shape for w in layer.get_weights()]
                layer.set_weights([rng.uniform(0.5, 1.5, shapes[0]).astype("f4"),
                                   rng.normal(0, 0.2, shapes[1]).astype("f4"),
                                   rng.normal(0, 0.3, shapes[2]).astype("f4"),
                                   rng.uniform(0.5, 2.0, shapes[3]).astype("f4")])
        models.append(model)
    return FoldEnsemble(models_=models, y_mean_=rng.uniform(1, 3, n_folds),
                        y_scale_=rng.uniform(0.3, 1.0, n_folds), folds=make_folds(6, n_folds),
                        hyperparameters=hp)


@pytest.mark.parametrize("seed", range(8))
def test_numpy_forward_pass_equals_keras_on_search_space_networks(seed):
    ensemble = _random_ensemble(seed)
    X = np.random.default_rng(seed).normal(size=(9, 211)).astype(np.float32)
    numpy_path = NumpyEnsemble.from_ensemble(ensemble)
    expected_folds = ensemble.predict_folds(X)
    np.testing.assert_allclose(numpy_path.predict_folds(X), expected_folds, rtol=0, atol=2e-6)
    mean, spread = numpy_path.predict(X, return_std=True)
    expected_mean, expected_spread = ensemble.predict(X, return_std=True)
    np.testing.assert_allclose(mean, expected_mean, rtol=0, atol=2e-6)
    np.testing.assert_allclose(spread, expected_spread, rtol=0, atol=2e-6)


def test_hybrid_uses_numpy_for_few_spectra_and_the_graph_for_many(study):
    ensemble = study["models"]["china_site/local"]
    hybrid = fast_predictor(ensemble)
    assert isinstance(hybrid, HybridEnsemble)
    X = spectra_of(study["test"])
    few, many = X[: hybrid.max_numpy_rows], X[: hybrid.max_numpy_rows + 1]
    np.testing.assert_array_equal(hybrid.predict(few), hybrid.numpy_path.predict(few))
    np.testing.assert_array_equal(hybrid.predict(many), hybrid.graph_path.predict(many))
    np.testing.assert_allclose(hybrid.predict(X), ensemble.predict(X), rtol=0, atol=1e-6)
    assert isinstance(fast_predictor(ensemble, "tensorflow"), CompiledEnsemble)
    assert isinstance(fast_predictor(ensemble, "numpy"), NumpyEnsemble)
    linear = study["models"]["sweden_site/plsr_local"]
    assert fast_predictor(linear) is linear
    with pytest.raises(ValueError, match="backend"):
        fast_predictor(ensemble, "torch")


def test_networks_numpy_lacks_fall_back_to_the_graph():
    import keras

    from localsoc.models.ensemble import FoldEnsemble, make_folds

    inputs = keras.Input(shape=(211,))
    x = keras.layers.Reshape((211, 1))(inputs)
    x = keras.layers.Conv1D(2, 3, dilation_rate=2)(x)
    outputs = keras.layers.Dense(1)(keras.layers.GlobalAveragePooling1D()(x))
    model = keras.Model(inputs, outputs)
    ensemble = FoldEnsemble(models_=[model, model], y_mean_=[0, 0], y_scale_=[1, 1],
                            folds=make_folds(4, 2), hyperparameters={})
    with pytest.raises(ValueError, match="no NumPy forward pass"):
        NumpyEnsemble.from_ensemble(ensemble)
    assert isinstance(fast_predictor(ensemble), CompiledEnsemble)


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


def test_unit_thresholds_come_from_the_serving_settings():
    from localsoc.serving.bundle import DEFAULT_SERVING
    from localsoc.serving.predictor import to_reflectance

    spectra = np.array([[1.3, 0.9, 1.1]])
    with pytest.raises(RequestError, match=r"is 1.3, above 1; reflectance must be a fraction"):
        to_reflectance(spectra, "reflectance", DEFAULT_SERVING)
    stricter = {**DEFAULT_SERVING, "percent_reflectance_above": 1.2, "absorbance_max": 3.0}
    with pytest.raises(RequestError, match="look like percent reflectance") as error:
        to_reflectance(spectra, "reflectance", stricter)
    assert error.value.status == 422 and "divide by 100" in error.value.message
    absorbance = np.array([[0.2, 3.5]])
    np.testing.assert_array_equal(to_reflectance(absorbance, "absorbance", DEFAULT_SERVING),
                                  np.power(10.0, -absorbance))
    with pytest.raises(RequestError, match=r"absorbance\[0\]\[1\] is 3.5; absorbance log10\(1/R\) "
                       r"above 3 means reflectance below 0.1 %") as error:
        to_reflectance(absorbance, "absorbance", stricter)
    assert "reflectance / 100" in error.value.message
    with pytest.raises(RequestError, match=r"reflectance above 1; absorbance must be"):
        to_reflectance(np.array([[-0.1, 0.3]]), "absorbance", DEFAULT_SERVING)


@pytest.mark.parametrize("value", [5e-324, 1e-300, 9.9e-6])
def test_reflectance_and_absorbance_share_one_range(value):
    """A reflectance is refused where the same spectrum as absorbance log10(1/R) is: 5e-324 is
    absorbance ~323, far above absorbance_max (5), and was answered -3.10 % with [0, 0]."""
    from localsoc.serving.bundle import DEFAULT_SERVING
    from localsoc.serving.predictor import to_reflectance

    reflectance = np.array([[0.3, value, 0.4]])
    with pytest.raises(RequestError, match=r"reflectance\[0\]\[1\] is .*darker than any soil"
                       ) as refused:
        to_reflectance(reflectance, "reflectance", DEFAULT_SERVING)
    assert refused.value.status == 422 and refused.value.field == "reflectance"
    with pytest.raises(RequestError):
        to_reflectance(-np.log10(reflectance), "absorbance", DEFAULT_SERVING)
    edge = np.array([[0.3, 1e-5, 0.4]])  # absorbance exactly 5: accepted as either
    np.testing.assert_array_equal(to_reflectance(edge, "reflectance", DEFAULT_SERVING), edge)
    np.testing.assert_allclose(to_reflectance(-np.log10(edge), "absorbance", DEFAULT_SERVING),
                               edge)
