import numpy as np
import pandas as pd
import pytest
from sklearn.exceptions import NotFittedError

from localsoc.spectra import Absorbance


def test_known_values_base_10():
    reflectance = np.array([[0.1, 0.01, 1.0], [0.5, 0.25, 0.001]])
    absorbance = Absorbance().fit_transform(reflectance)
    expected = np.array([[1.0, 2.0, 0.0], [np.log10(2.0), np.log10(4.0), 3.0]])
    np.testing.assert_allclose(absorbance, expected, rtol=0, atol=1e-12)


def test_natural_base():
    absorbance = Absorbance(base=np.e).fit_transform(np.array([[np.exp(-1.0), np.exp(-2.0)]]))
    np.testing.assert_allclose(absorbance, [[1.0, 2.0]], atol=1e-12)


def test_round_trip():
    rng = np.random.default_rng(0)
    reflectance = rng.uniform(0.01, 1.0, size=(20, 50))
    transformer = Absorbance().fit(reflectance)
    back = transformer.inverse_transform(transformer.transform(reflectance))
    np.testing.assert_allclose(back, reflectance, rtol=1e-12)


def test_floor_bounds_tiny_reflectance_and_can_be_disabled():
    tiny = np.array([[1e-9, 0.5]])
    assert Absorbance().fit_transform(tiny)[0, 0] == pytest.approx(6.0)
    assert Absorbance(floor=0).fit_transform(tiny)[0, 0] == pytest.approx(9.0)


@pytest.mark.parametrize("bad_value", [0.0, -0.2])
def test_nonpositive_reflectance_names_row_and_column(bad_value):
    reflectance = np.full((3, 4), 0.5)
    reflectance[1, 2] = bad_value
    transformer = Absorbance().fit(np.full((3, 4), 0.5))
    with pytest.raises(ValueError, match=r"row 1, column 2") as error:
        transformer.transform(reflectance)
    assert "fraction in (0, 1]" in str(error.value)
    with pytest.raises(ValueError, match=r"row 1, column 2"):
        Absorbance().fit(reflectance)


def test_negative_values_use_sklearn_wording():
    with pytest.raises(ValueError, match="Negative values in data"):
        Absorbance().fit(np.array([[0.5, -0.1]]))


@pytest.mark.parametrize(
    "parameters", [{"base": 1}, {"base": -2}, {"floor": -1e-3}, {"floor": 1.5}]
)
def test_invalid_parameters(parameters):
    with pytest.raises(ValueError, match=next(iter(parameters))):
        Absorbance(**parameters).fit(np.full((2, 3), 0.5))


def test_requires_fit_and_same_band_count():
    with pytest.raises(NotFittedError):
        Absorbance().transform(np.full((2, 3), 0.5))
    transformer = Absorbance().fit(np.full((2, 3), 0.5))
    with pytest.raises(ValueError, match="3 features"):
        transformer.transform(np.full((2, 4), 0.5))


def test_feature_names_follow_the_input_columns():
    frame = pd.DataFrame({"nm_400": [0.2, 0.3], "nm_410": [0.4, 0.5]})
    transformer = Absorbance().fit(frame)
    assert list(transformer.get_feature_names_out()) == ["nm_400", "nm_410"]
    output = transformer.set_output(transform="pandas").transform(frame)
    assert list(output.columns) == ["nm_400", "nm_410"]
    assert output.loc[0, "nm_400"] == pytest.approx(-np.log10(0.2))


def test_the_function_is_the_transformer_bit_for_bit_with_or_without_checks():
    from localsoc.spectra.absorbance import absorbance

    rng = np.random.default_rng(3)
    reflectance = np.concatenate([rng.uniform(1e-8, 1.02, (40, 60)), np.full((1, 60), 1e-7)])
    expected = Absorbance().fit_transform(reflectance)
    np.testing.assert_array_equal(absorbance(reflectance), expected)
    np.testing.assert_array_equal(absorbance(reflectance, check=False), expected)
    np.testing.assert_array_equal(absorbance(reflectance, base=np.e, floor=0),
                                  Absorbance(base=np.e, floor=0).fit_transform(reflectance))


def test_the_function_checks_unless_told_not_to():
    from localsoc.spectra.absorbance import absorbance

    with pytest.raises(ValueError, match=r"row 0, column 1"):
        absorbance(np.array([[0.5, 0.0]]))
    with pytest.raises(ValueError, match="base must be"):
        absorbance(np.array([[0.5]]), base=1)
    with pytest.raises(ValueError, match="NaN"):
        absorbance(np.array([[0.5, np.nan]]))
    with np.errstate(divide="ignore"):
        assert np.isposinf(absorbance(np.array([[0.5, 0.0]]), floor=0, check=False)[0, 1])
