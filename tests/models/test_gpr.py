"""GP regression on PLS scores (``localsoc.models.gpr``, the GPR family's store)."""

from __future__ import annotations

import numpy as np

from localsoc.families import gpr
from localsoc.models.ensemble import make_folds
from localsoc.models.gpr import GPSettings, fit_pls_gp_cv, score_curve

SETTINGS = GPSettings(4, 0, (1e-3, 1e3), (1e-2, 1e3), (1e-4, 10.0))
TRAIN = {"gpr": {"max_components": 4, "restarts": 0, "signal_bounds": [1e-3, 1e3],
                 "length_scale_bounds": [1e-2, 1e3], "noise_bounds": [1e-4, 10.0]},
         "site_budget": {"folds": 4}}


def _data(seed=0, n=40, bands=12):
    rng = np.random.default_rng(seed)
    latent = rng.normal(size=(n, 2))  # two latent variables seen through 12 bands
    X = latent @ np.random.default_rng(99).normal(size=(2, bands)) + 0.01 * rng.normal(
        size=(n, bands))
    return X, np.sin(1.5 * latent[:, 0]) + 0.3 * latent[:, 1] + 0.05 * rng.normal(size=n)


def test_a_nonlinear_relation_is_learned_and_the_scores_are_chosen_by_cv():
    X, y = _data()
    cv = list(make_folds(len(y), 5, 0).split())
    part, curve, oof = fit_pls_gp_cv(X, y, cv, SETTINGS, 0)
    assert part.scores.shape[1] == int(np.argmin(curve)) + 1
    np.testing.assert_allclose(curve.min(), np.sqrt(np.mean((oof - y) ** 2)))
    assert curve.min() < 0.5 * y.std()
    assert np.allclose(score_curve(X, y, cv, SETTINGS, 0)[0], curve)


def test_the_stored_model_serves_what_was_trained(tmp_path):
    X, y = _data(1)
    ids = [f"s{i}" for i in range(len(y))]
    folds = make_folds(ids, 4, 0)
    model, _ = gpr.train_site_model(X, y, ids, folds, 0, TRAIN, "x", "n")
    X_new = _data(2, n=7)[0]
    gpr.STORE.save(model, tmp_path / "m")
    loaded = gpr.STORE.load(tmp_path / "m")
    for a, b in zip(model.predict(X_new, return_std=True),
                    loaded.predict(X_new, return_std=True), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-8, atol=1e-10)
    fold_data = [(X[train], y[train], [X[held], X_new]) for train, held in folds.split()]
    results, build = gpr.refit_folds(model, fold_data, TRAIN, 0)
    oof = np.empty(len(y))
    for (_, held), ((estimate, _), _) in zip(folds.split(), results, strict=True):
        oof[held] = estimate
    outer = build(folds, oof)
    np.testing.assert_allclose(outer.predict_folds(X_new),
                               np.stack([r[0][1] for r in results]), rtol=1e-8, atol=1e-10)
    gpr.STORE.save(outer, tmp_path / "o")
    again = gpr.STORE.load(tmp_path / "o")
    np.testing.assert_allclose(again.predict(X_new), outer.predict(X_new), rtol=1e-8)
    assert again.folds == folds
