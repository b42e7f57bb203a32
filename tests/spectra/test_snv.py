import numpy as np
import pytest
from sklearn.exceptions import NotFittedError

from localsoc.spectra import StandardNormalVariate


def test_known_values():
    spectra = np.array([[1.0, 2.0, 3.0], [10.0, 10.0, 13.0]])
    sample = StandardNormalVariate().fit_transform(spectra)
    np.testing.assert_allclose(sample[0], [-1.0, 0.0, 1.0], atol=1e-12)
    np.testing.assert_allclose(sample[1], [-1 / np.sqrt(3), -1 / np.sqrt(3), 2 / np.sqrt(3)])
    population = StandardNormalVariate(ddof=0).fit_transform(spectra)
    np.testing.assert_allclose(population[0], [-np.sqrt(1.5), 0.0, np.sqrt(1.5)], atol=1e-12)


@pytest.mark.parametrize("ddof", [0, 1])
def test_matches_a_plain_implementation(ddof):
    rng = np.random.default_rng(1)
    spectra = rng.uniform(0.05, 0.9, size=(15, 211))
    expected = np.array([(row - row.mean()) / row.std(ddof=ddof) for row in spectra])
    result = StandardNormalVariate(ddof=ddof).fit_transform(spectra)
    np.testing.assert_allclose(result, expected, rtol=1e-12)
    np.testing.assert_allclose(result.mean(axis=1), 0.0, atol=1e-12)
    np.testing.assert_allclose(result.std(axis=1, ddof=ddof), 1.0, rtol=1e-12)


def test_removes_per_spectrum_offset_and_scale():
    rng = np.random.default_rng(2)
    spectra = rng.uniform(0.05, 0.9, size=(5, 40))
    scaled = spectra * rng.uniform(0.5, 2.0, size=(5, 1)) + rng.uniform(-1, 1, size=(5, 1))
    transformer = StandardNormalVariate()
    np.testing.assert_allclose(
        transformer.fit_transform(scaled), transformer.fit_transform(spectra), atol=1e-10
    )


def test_flat_spectrum_names_the_row():
    spectra = np.array([[0.1, 0.2, 0.3], [0.4, 0.4, 0.4], [0.3, 0.2, 0.1]])
    transformer = StandardNormalVariate().fit(spectra)
    with pytest.raises(ValueError, match=r"flat spectrum .*row\(s\) 1\b"):
        transformer.transform(spectra)


def test_single_band_cannot_be_standardised():
    with pytest.raises(ValueError, match="at least 2 band"):
        StandardNormalVariate().fit_transform(np.array([[0.1], [0.2]]))


def test_invalid_ddof_and_unfitted_use():
    with pytest.raises(ValueError, match="ddof"):
        StandardNormalVariate(ddof=2).fit(np.ones((2, 3)))
    with pytest.raises(NotFittedError):
        StandardNormalVariate().transform(np.ones((2, 3)))


@pytest.mark.parametrize("ddof", [0, 1])
def test_the_function_is_the_transformer_bit_for_bit_with_or_without_checks(ddof):
    from localsoc.spectra.snv import snv

    X = np.random.default_rng(2).normal(size=(30, 80)) + 0.3
    expected = StandardNormalVariate(ddof=ddof).fit_transform(X)
    np.testing.assert_array_equal(snv(X, ddof), expected)
    np.testing.assert_array_equal(snv(X, ddof, check=False), expected)


def test_the_function_refuses_flat_spectra_even_unchecked():
    from localsoc.spectra.snv import snv

    flat = np.full((2, 30), 0.4)
    for check in (True, False):
        with pytest.raises(ValueError, match=r"flat spectrum .*row\(s\) 0, 1"):
            snv(flat, check=check)
        with pytest.raises(ValueError, match="at least 2 band"):
            snv(np.ones((2, 1)), check=check)
    with pytest.raises(ValueError, match="ddof must be 0 or 1"):
        snv(np.ones((2, 3)), ddof=2)
