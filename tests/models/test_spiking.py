"""Spiked PLSR (``localsoc.models.spiking``): the weighted fit and the choice of w."""

from __future__ import annotations

import numpy as np
from sklearn.cross_decomposition import PLSRegression

from localsoc.models.ensemble import make_folds
from localsoc.models.linear import LinearModel
from localsoc.models.spiking import SpikedPLS, repeated_rows


def _data(seed=0, n_library=80, n_local=20, bands=15):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n_library + n_local, bands))
    y = X[:, 0] - 0.5 * X[:, 1] + 0.1 * rng.normal(size=len(X))
    y[n_library:] += 2.0 + X[n_library:, 2]  # the field differs from the library
    local = np.arange(len(X)) >= n_library
    return X, y, local


def test_weight_one_is_plain_pls_and_the_served_model_predicts_the_same():
    X, y, local = _data()
    cv = list(make_folds(len(y), 5, 0).split())
    fitted = SpikedPLS([1], 6, cv).fit(X, y, local)
    plain = PLSRegression(fitted.n_components_, scale=False).fit(X, y)
    np.testing.assert_allclose(fitted.predict(X), plain.predict(X).ravel(), rtol=1e-10)
    served = LinearModel.from_pls(fitted, [str(i) for i in range(len(y))])
    np.testing.assert_allclose(served.predict(X), fitted.predict(X), rtol=1e-9, atol=1e-12)


def test_repeating_a_row_w_times_is_weighting_it():
    X, y, local = _data(n_library=10, n_local=4, bands=5)
    X_w, y_w = repeated_rows(X, y, local, 3)
    assert len(y_w) == 10 + 3 * 4
    np.testing.assert_allclose(X_w.mean(axis=0),
                               np.average(X, axis=0, weights=np.where(local, 3, 1)))


def test_a_field_unlike_the_library_gets_a_higher_weight():
    X, y, local = _data(seed=1)
    cv = list(make_folds(len(y), 5, 0).split())
    fitted = SpikedPLS([1, 2, 5, 10], 8, cv).fit(X, y, local)
    assert fitted.weight_ > 1
    curves = fitted.cv_rmse_by_weight_
    assert min(curves[fitted.weight_]) <= min(curves[1])
