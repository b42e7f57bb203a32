"""Nested RS-LOCAL + PLSR estimates are honest where the un-nested ones are provably optimistic.

The library is pure noise: its SOC values have nothing to do with its spectra, so no library
sample can truly help. RS-LOCAL can still pick k of them whose noise happens to fit the 30 local
labels; scored out-of-fold on those same 30 labels (the un-nested estimate), the k + n model
looks far better than it is on an independent test set. The nested estimate, which reruns
RS-LOCAL and the component choice inside each outer fold, matches the test RMSE within sampling
error.
"""

from __future__ import annotations

import numpy as np
import pytest

from localsoc.models.ensemble import make_folds
from localsoc.models.pls import fit_rslocal_pls
from localsoc.study.nested import nested_rslocal_pls, unnested_rslocal_pls

RSLOCAL = {"k": 60, "b": 20, "retain": 0.9, "n_components": 5, "n_jobs": 1,
           "backend": "native"}
N_BANDS = 40


def _replicate(seed: int) -> tuple[float, float, float]:
    rng = np.random.default_rng(seed)

    def field(n):  # a weak true relation at the site
        X = rng.normal(size=(n, N_BANDS))
        return X, 0.5 * X[:, 0] + rng.normal(size=n)

    X_library, y_library = rng.normal(size=(600, N_BANDS)), rng.normal(size=600) + 1.0
    X_local, y_local = field(30)
    X_test, y_test = field(300)
    folds = make_folds(30, 5, seed)
    unnested = unnested_rslocal_pls(X_library, y_library, X_local, y_local, folds, RSLOCAL,
                                    max_components=10, seed=seed)
    nested = nested_rslocal_pls(X_library, y_library, X_local, y_local, folds, RSLOCAL,
                                max_components=10, seed=seed)
    model = fit_rslocal_pls(X_library, y_library, unnested.selections[0], X_local, y_local,
                            max_components=10, cv=5, random_state=0)
    test = float(np.sqrt(np.mean((model.predict(X_test) - y_test) ** 2)))
    assert len(nested.selections) == 5 and np.isfinite(nested.oof_predictions).all()
    return unnested.rmse(y_local), nested.rmse(y_local), test


def test_the_nested_estimate_matches_an_independent_test_set_where_the_unnested_one_does_not():
    ratios = np.array([[u / t, n / t] for u, n, t in map(_replicate, range(8))])
    unnested, nested = ratios[:, 0], ratios[:, 1]
    assert unnested.mean() < 0.75, unnested  # provably optimistic: ~0.6 x the test RMSE
    assert (unnested < nested).all()
    # within sampling error (an RMSE from 30 samples has ~13 % s.e.; 8 replicates)
    assert 0.85 < nested.mean() < 1.25, nested


def test_outer_folds_must_cover_the_local_samples():
    rng = np.random.default_rng(0)
    with pytest.raises(ValueError, match="outer folds cover 20 samples"):
        nested_rslocal_pls(rng.normal(size=(200, 5)), rng.normal(size=200),
                           rng.normal(size=(30, 5)), rng.normal(size=30), make_folds(20, 4, 0),
                           RSLOCAL)
