import pickle

import numpy as np
import pandas as pd
import pytest
from scipy import sparse
from sklearn.base import clone
from sklearn.exceptions import NotFittedError

from localsoc.data.schema import Grid
from localsoc.spectra import Resample
from localsoc.spectra.resample import band_windows, missing_ranges, widest_spacing

SOURCE_1NM = np.arange(350.0, 2501.0)
GRID = Grid()


def _reference_average(spectra, source, target):
    """Plain loop: mean of the source bands in [t - 5, t + 5) (10 nm grid)."""
    out = np.empty((spectra.shape[0], target.size))
    for j, centre in enumerate(target):
        inside = (source >= centre - 5.0) & (source < centre + 5.0)
        out[:, j] = spectra[:, inside].mean(axis=1)
    return out


@pytest.fixture(scope="module")
def spectra_1nm():
    rng = np.random.default_rng(3)
    return rng.uniform(0.05, 0.9, size=(12, SOURCE_1NM.size))


def test_band_averaging_matches_a_plain_loop(spectra_1nm):
    resample = Resample(SOURCE_1NM, GRID.wavelengths_nm).fit(spectra_1nm)
    result = resample.transform(spectra_1nm)
    assert result.shape == (12, 211)
    expected = _reference_average(spectra_1nm, SOURCE_1NM, GRID.wavelengths_nm)
    np.testing.assert_allclose(result, expected, rtol=1e-12)
    # nm_2000 averages the ten source bands 1995..2004; nm_2500 the six bands 2495..2500
    np.testing.assert_allclose(result[:, 160], spectra_1nm[:, 1645:1655].mean(axis=1))
    np.testing.assert_allclose(result[:, -1], spectra_1nm[:, -6:].mean(axis=1))
    assert resample.interpolated_nm_.size == 0


def test_weights_are_a_sparse_linear_map(spectra_1nm):
    resample = Resample(SOURCE_1NM, GRID).fit(spectra_1nm)
    assert sparse.issparse(resample.weights_)
    assert resample.weights_.shape == (SOURCE_1NM.size, 211)
    np.testing.assert_allclose(resample.weights_.sum(axis=0), 1.0)
    np.testing.assert_allclose(
        resample.transform(spectra_1nm), spectra_1nm @ resample.weights_.toarray(), rtol=1e-12
    )


def test_same_grid_is_the_identity():
    rng = np.random.default_rng(4)
    spectra = rng.uniform(0.1, 0.9, size=(3, 211))
    for method in ("average", "interpolate"):
        result = Resample(GRID.wavelengths_nm, GRID.wavelengths_nm, method=method).fit_transform(
            spectra
        )
        np.testing.assert_allclose(result, spectra, rtol=0, atol=0)


def test_interpolation_reproduces_a_linear_spectrum():
    source = np.arange(1100.0, 2499.0, 2.0)
    target = np.arange(1101.0, 2490.0, 7.0)
    spectra = np.vstack([0.1 + 1e-4 * source, 0.8 - 2e-4 * source])
    result = Resample(source, target, method="interpolate").fit_transform(spectra)
    np.testing.assert_allclose(result, np.vstack([0.1 + 1e-4 * target, 0.8 - 2e-4 * target]))


def test_empty_windows_fall_back_to_interpolation():
    source = np.arange(400.0, 2501.0, 20.0)  # coarser than the 10 nm grid
    spectra = np.vstack([np.sin(source / 100.0) + 2.0])
    resample = Resample(source, GRID).fit(spectra)
    result = resample.transform(spectra)
    np.testing.assert_array_equal(resample.interpolated_nm_, np.arange(410.0, 2500.0, 20.0))
    np.testing.assert_allclose(result[0, ::2], spectra[0], rtol=1e-12)
    np.testing.assert_allclose(result[0, 1::2], (spectra[0, :-1] + spectra[0, 1:]) / 2.0)


def test_irregular_target_uses_half_spacing_on_each_side():
    lower, upper = band_windows([400.0, 410.0, 430.0])
    np.testing.assert_allclose(lower, [395.0, 405.0, 420.0])
    np.testing.assert_allclose(upper, [405.0, 420.0, 440.0])


def test_uncovered_grid_names_the_missing_range():
    source = np.arange(1100.0, 2499.0, 2.0)
    spectra = np.full((2, source.size), 0.5)
    with pytest.raises(ValueError) as error:
        Resample(source, GRID).fit(spectra)
    message = str(error.value)
    assert "source covers 1100-2498 nm; the grid needs 400-2500 nm: missing 400-1100 nm" in message
    assert "start_nm: 1100, stop_nm: 2500, step_nm: 10" in message


def test_both_ends_missing_and_end_tolerance():
    source = np.arange(500.0, 2401.0, 2.0)
    assert missing_ranges(source, GRID.wavelengths_nm) == [(400.0, 500.0), (2400.0, 2500.0)]
    # within one source step of the last band: covered; four steps short: not
    assert missing_ranges(np.arange(400.0, 2499.0, 2.0), GRID.wavelengths_nm) == []
    assert missing_ranges(np.arange(400.0, 2493.0, 2.0), GRID.wavelengths_nm) == [(2492.0, 2500.0)]


def test_nan_only_reaches_the_bands_that_use_it(spectra_1nm):
    spectra = spectra_1nm.copy()
    spectra[0, 1000 - 350] = np.nan
    result = Resample(SOURCE_1NM, GRID).fit(spectra).transform(spectra)
    nan_columns = np.flatnonzero(np.isnan(result[0]))
    assert list(GRID.wavelengths_nm[nan_columns]) == [1000.0]
    assert np.isfinite(result[1:]).all()


def test_source_wavelengths_from_dataframe_columns(spectra_1nm):
    frame = pd.DataFrame(spectra_1nm, columns=[f"nm_{int(w)}" for w in SOURCE_1NM])
    resample = Resample(target_nm=GRID).fit(frame)
    np.testing.assert_array_equal(resample.source_nm_, SOURCE_1NM)
    assert list(resample.get_feature_names_out()) == GRID.columns
    output = resample.set_output(transform="pandas").transform(frame)
    assert list(output.columns) == GRID.columns
    with pytest.raises(ValueError, match="nm_<wavelength>"):
        Resample().fit(spectra_1nm)


@pytest.mark.parametrize(
    ("source", "target", "method", "message"),
    [
        (SOURCE_1NM[:-1], GRID.wavelengths_nm, "average", "2150 wavelengths but X has 2151"),
        (SOURCE_1NM[::-1], GRID.wavelengths_nm, "average", "strictly increasing"),
        (SOURCE_1NM, [400.0], "average", "at least 2 wavelengths"),
        (SOURCE_1NM, GRID.wavelengths_nm, "nearest", "method must be one of"),
    ],
)
def test_invalid_arguments(spectra_1nm, source, target, method, message):
    with pytest.raises(ValueError, match=message):
        Resample(source, target, method=method).fit(spectra_1nm)


def test_estimator_contract_on_spectral_data(spectra_1nm):
    """The contract checks that the sklearn suite cannot run with a fixed source grid."""
    resample = Resample(SOURCE_1NM, GRID)
    with pytest.raises(NotFittedError):
        resample.transform(spectra_1nm)
    assert resample.fit(spectra_1nm) is resample
    assert resample.n_features_in_ == SOURCE_1NM.size
    first = resample.transform(spectra_1nm)
    # idempotent fit, clone, pickle, sample order and subset invariance, float32 input
    np.testing.assert_array_equal(resample.fit(spectra_1nm).transform(spectra_1nm), first)
    assert clone(resample).get_params()["method"] == "average"
    restored = pickle.loads(pickle.dumps(resample))
    np.testing.assert_array_equal(restored.transform(spectra_1nm), first)
    order = np.random.default_rng(5).permutation(spectra_1nm.shape[0])
    np.testing.assert_allclose(resample.transform(spectra_1nm[order]), first[order], rtol=1e-12)
    np.testing.assert_allclose(resample.transform(spectra_1nm[:3]), first[:3], rtol=1e-12)
    np.testing.assert_allclose(resample.transform(spectra_1nm.astype(np.float32)), first, rtol=1e-6)
    with pytest.raises(ValueError, match="features"):
        resample.transform(spectra_1nm[:, :-1])
    with pytest.raises(ValueError, match="infinity"):
        resample.transform(np.where(spectra_1nm > 0.5, np.inf, spectra_1nm))


def test_widest_spacing_is_measured_over_the_target_range_only():
    target = np.arange(400.0, 2501.0, 10.0)
    assert widest_spacing(np.arange(350.0, 2601.0, 1.0), target) == (1.0, 400.0, 401.0)
    # a 100 nm gap outside the target range does not count; one inside does
    outside = np.concatenate((np.arange(200.0, 301.0, 100.0), np.arange(301.0, 2600.0, 1.0)))
    assert widest_spacing(outside, target)[0] == 1.0
    inside = np.concatenate((np.arange(350.0, 1400.0, 1.0), np.arange(1500.0, 2600.0, 1.0)))
    assert widest_spacing(inside, target) == (101.0, 1399.0, 1500.0)
    assert widest_spacing([400.0, 2500.0], target) == (2100.0, 400.0, 2500.0)
