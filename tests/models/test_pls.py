"""PLSR baselines: CV choice of components, nested predictions == refits, folds, errors."""

import numpy as np
import pytest
from sklearn.cross_decomposition import PLSRegression
from sklearn.exceptions import NotFittedError
from sklearn.model_selection import KFold
from sklearn.utils.estimator_checks import parametrize_with_checks

from localsoc.models.pls import (
    PLSRegressionCV,
    components_predictions,
    fit_pls_cv,
    fit_rslocal_pls,
)


def latent_data(seed=0, n=60, n_bands=40, rank=3, noise=0.05):
    rng = np.random.default_rng(seed)
    latent = rng.normal(size=(n, 8))
    X = latent @ rng.normal(size=(8, n_bands)) + 0.01 * rng.normal(size=(n, n_bands))
    y = latent[:, :rank] @ np.array([1.0, -0.7, 0.5])[:rank] + noise * rng.normal(size=n)
    return X, y


def test_nested_predictions_equal_refits():
    X, y = latent_data(1)
    nested = components_predictions(X[:45], y[:45], X[45:], 6)
    for a in range(1, 7):
        refit = PLSRegression(n_components=a, scale=False).fit(X[:45], y[:45])
        np.testing.assert_allclose(
            nested[a - 1], refit.predict(X[45:]).ravel(), rtol=1e-8, atol=1e-10
        )


def test_cv_choice_is_the_minimum_and_the_refit_is_sklearn():
    X, y = latent_data(2)
    model = fit_pls_cv(X, y, max_components=10, cv=5, random_state=0)
    assert model.cv_rmse_.shape == (10,)
    assert model.n_components_ == int(np.argmin(model.cv_rmse_)) + 1
    assert model.cv_rmse_[model.n_components_ - 1] == pytest.approx(
        np.sqrt(np.mean((model.oof_predictions_ - y) ** 2))
    )
    # one factor misses most of y here; the choice must do better than it
    assert model.cv_rmse_[model.n_components_ - 1] < 0.5 * model.cv_rmse_[0]
    reference = PLSRegression(n_components=model.n_components_, scale=False).fit(X, y)
    np.testing.assert_allclose(model.predict(X), reference.predict(X).ravel(), rtol=1e-10)


def test_out_of_fold_predictions_never_see_their_own_sample():
    X, y = latent_data(3, n=30)
    model = fit_pls_cv(X, y, max_components=4, cv=5, random_state=1)
    for train, test in model.folds_:
        expected = components_predictions(X[train], y[train], X[test], 4)[model.n_components_ - 1]
        np.testing.assert_allclose(model.oof_predictions_[test], expected, rtol=1e-12)


def test_components_are_capped_by_the_smallest_training_fold():
    X, y = latent_data(4, n=12)
    model = fit_pls_cv(X, y, max_components=20, cv=4, random_state=0)
    assert model.cv_rmse_.shape == (8,)  # training folds of 9 samples -> at most 8


def test_seeded_folds_are_reproducible_and_explicit_folds_are_used():
    X, y = latent_data(5, n=40)
    first = fit_pls_cv(X, y, max_components=6, cv=5, random_state=3)
    again = fit_pls_cv(X, y, max_components=6, cv=5, random_state=3)
    np.testing.assert_array_equal(first.cv_rmse_, again.cv_rmse_)
    other = fit_pls_cv(X, y, max_components=6, cv=5, random_state=4)
    assert not np.array_equal(first.cv_rmse_, other.cv_rmse_)
    folds = list(KFold(5, shuffle=True, random_state=3).split(X))
    explicit = fit_pls_cv(X, y, max_components=6, cv=folds)
    np.testing.assert_array_equal(explicit.cv_rmse_, first.cv_rmse_)
    splitter = fit_pls_cv(X, y, max_components=6, cv=KFold(5, shuffle=True, random_state=3))
    np.testing.assert_array_equal(splitter.cv_rmse_, first.cv_rmse_)


def test_rslocal_pls_stacks_selected_library_rows_and_local_samples():
    X, y = latent_data(6, n=80)
    selected = np.arange(0, 60, 2)
    model = fit_rslocal_pls(X, y, selected, X[60:], y[60:], max_components=5, cv=5, random_state=0)
    stacked = fit_pls_cv(
        np.vstack([X[selected], X[60:]]), np.concatenate([y[selected], y[60:]]), 5, 5, 0
    )
    np.testing.assert_array_equal(model.cv_rmse_, stacked.cv_rmse_)
    assert model.oof_predictions_.shape == (50,)


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"max_components": 0}, "max_components must be a positive integer"),
        ({"cv": 1}, "2 <= cv <= n_samples"),
        ({"cv": 100}, "2 <= cv <= n_samples"),
        ({"cv": "ten"}, "cv must be an integer"),
    ],
)
def test_bad_parameters_are_clear_value_errors(params, message):
    X, y = latent_data(7, n=20)
    with pytest.raises(ValueError, match=message):
        PLSRegressionCV(**params).fit(X, y)


def test_predict_before_fit_raises():
    with pytest.raises(NotFittedError):
        PLSRegressionCV().predict(np.zeros((2, 3)))


@parametrize_with_checks([PLSRegressionCV(max_components=3, cv=3, random_state=0)])
def test_sklearn_compatible_estimator(estimator, check):
    """Each of scikit-learn's check_* functions raises AssertionError when the contract breaks."""
    check(estimator)


def test_linear_model_predicts_as_sklearn_bit_for_bit_from_public_attributes():
    """``LinearModel`` rebuilds ``PLSRegression.predict`` from ``x_mean_``, ``coef_`` and
    ``intercept_``; if scikit-learn changes how it centres X, this fails."""
    from localsoc.models.linear import LinearModel

    X, y = latent_data(3)
    fitted = fit_pls_cv(X, y, max_components=6, cv=5, random_state=0)
    np.testing.assert_array_equal(fitted.x_mean_, X.mean(axis=0))
    linear = LinearModel.from_pls(fitted, [str(i) for i in range(len(y))])
    rng = np.random.default_rng(5)
    for data in (X, X[::-1] + 0.01 * rng.normal(size=X.shape)):
        np.testing.assert_array_equal(linear.predict(data), fitted.predict(data))
        np.testing.assert_array_equal(linear.predict(data),
                                      fitted.estimator_.predict(data).ravel())
