"""Representation transfer: base choice, exact freezing, fine-tuning, depth selection."""

from __future__ import annotations

import keras
import numpy as np
import pytest

from localsoc.models.cnn1d import build_cnn1d, weight_layers
from localsoc.models.ensemble import FoldEnsemble, make_folds
from localsoc.models.training import TrainingSettings, cross_validate
from localsoc.models.transfer import freeze_layers, select_base_model, transfer_representation

N_BANDS = 48
# conv_0 (+ batch normalisation), fc_0, output: three weight layers
HYPERPARAMETERS = {
    "conv_blocks": 1,
    "conv_0_filters": 4,
    "conv_0_kernel_size": 5,
    "conv_0_strides": 2,
    "conv_0_padding": "valid",
    "conv_0_activation": "elu",
    "conv_0_batch_normalization": True,
    "conv_0_pooling": False,
    "conv_0_dropout": False,
    "fc_blocks": 1,
    "fc_0_units": 8,
    "fc_0_activation": "relu",
    "fc_0_batch_normalization": False,
    "fc_0_dropout": False,
    "optimizer": "adam",
    "learning_rate": 0.01,
    "batch_size": 16,
}
FINE_TUNE = {"max_epochs": 8, "patience": 4, "folds": 3}


def simulated(n: int, shift: float, seed: int):
    rng = np.random.default_rng(seed)
    grid = np.linspace(0.0, 1.0, N_BANDS)
    features = np.stack([np.exp(-0.5 * ((grid - c) / 0.06) ** 2) for c in (0.2, 0.5, 0.8)])
    amounts = rng.uniform(0.0, 1.0, size=(n, 3))
    X = amounts @ features + 0.01 * rng.normal(size=(n, N_BANDS))
    y = 1.0 + shift + 2.0 * amounts[:, 0] - amounts[:, 1] + 0.05 * rng.normal(size=n)
    return X.astype("float32"), y


@pytest.fixture(scope="module")
def base():
    """A library ensemble (3 folds), trained directly with fixed hyperparameters."""
    X, y = simulated(120, 0.0, seed=1)
    folds = make_folds(120, 3, seed=0)
    outcome = cross_validate(
        lambda fold: build_cnn1d(HYPERPARAMETERS, N_BANDS), X, y, folds,
        TrainingSettings(learning_rate=0.01, batch_size=16, max_epochs=10, patience=5), seed=0,
    )
    return FoldEnsemble(
        models_=outcome.models, y_mean_=outcome.y_mean, y_scale_=outcome.y_scale, folds=folds,
        hyperparameters=HYPERPARAMETERS, seed=0, oof_predictions_=outcome.oof_predictions,
        fold_rmse_=outcome.fold_rmse,
    )


@pytest.fixture(scope="module")
def site():
    return simulated(30, 0.4, seed=2)  # the site's relation is offset: the library is biased


def weights_by_layer(model: keras.Model) -> dict[str, list[np.ndarray]]:
    return {layer.name: [np.array(w) for w in layer.weights] for layer in model.layers
            if layer.weights}


def test_freeze_layers_counts_weight_layers_and_their_blocks():
    model = build_cnn1d(HYPERPARAMETERS, N_BANDS)
    assert [layer.name for layer in weight_layers(model)] == ["conv_0", "fc_0", "output"]
    assert freeze_layers(model, 0) == []
    assert all(layer.trainable for layer in model.layers if layer.weights)
    assert freeze_layers(model, 1) == ["conv_0", "conv_0_batch_normalization"]
    assert not model.get_layer("conv_0_batch_normalization").trainable
    assert model.get_layer("fc_0").trainable and model.get_layer("output").trainable
    assert freeze_layers(model, 2) == ["conv_0", "conv_0_batch_normalization", "fc_0"]
    assert [w.path for w in model.trainable_weights] == ["output/kernel", "output/bias"]
    assert freeze_layers(model, 3)[-1] == "output" and model.trainable_weights == []
    with pytest.raises(ValueError, match="depth"):
        freeze_layers(model, 4)


def test_base_is_the_fold_model_best_on_the_site(base, site):
    X, y = site
    fold, errors = select_base_model(base, X, y)
    manual = [np.sqrt(np.mean((p - y) ** 2)) for p in base.predict_folds(X)]
    np.testing.assert_allclose(errors, manual)
    assert fold == int(np.argmin(manual))


@pytest.mark.parametrize("depth", [1, 2])
def test_frozen_layers_keep_the_base_weights_and_the_rest_is_fine_tuned(base, site, depth):
    X, y = site
    result = transfer_representation(base, X, y, X_site_cal=X, y_site_cal=y, depths=[depth],
                                     fine_tune=FINE_TUNE, seed=0, progress=False)
    assert result.depth == depth and list(result.cv_rmse_by_depth) == [depth]
    base_model = base.models_[result.base_fold]
    before = weights_by_layer(base_model)
    frozen = {"conv_0", "conv_0_batch_normalization"} | ({"fc_0"} if depth == 2 else set())
    assert set(result.ensemble.info["frozen_layers"]) == frozen
    assert result.ensemble.n_folds == 3
    for model in result.ensemble.models_:
        after = weights_by_layer(model)
        for name, arrays in before.items():
            same = all(np.array_equal(a, b) for a, b in zip(arrays, after[name], strict=True))
            # frozen layers (batch-norm moving statistics included) are untouched; others moved
            assert same == (name in frozen), name
            assert model.get_layer(name).trainable == (name not in frozen)
    # fine-tuning keeps the base fold model's y standardisation
    assert np.all(result.ensemble.y_mean_ == base.y_mean_[result.base_fold])
    assert np.isfinite(result.oof_predictions).all()


def test_every_depth_is_scored_and_the_best_is_kept(base, site):
    X, y = site
    folds = make_folds([f"site{i}" for i in range(30)], 3, seed=4)
    result = transfer_representation(base, X, y, X_site_cal=X, y_site_cal=y, folds=folds,
                                     fine_tune=FINE_TUNE, seed=0, progress=False)
    assert sorted(result.cv_rmse_by_depth) == [0, 1, 2]  # default: 0 .. n_weight_layers - 1
    assert result.table["depth"].tolist() == [0, 1, 2]
    scores = result.cv_rmse_by_depth
    assert result.depth == min(scores, key=scores.get)
    assert result.cv_rmse == pytest.approx(result.ensemble.cv_rmse_)
    assert result.ensemble.folds == folds
    oof = result.oof_predictions
    fold_rmse = [np.sqrt(np.mean((y[v] - oof[v]) ** 2)) for _, v in folds.split()]
    assert np.mean(fold_rmse) == pytest.approx(scores[result.depth])


def test_bad_transfer_arguments(base, site):
    X, y = site
    with pytest.raises(ValueError, match="depths must lie in 0..3"):
        transfer_representation(base, X, y, X_site_cal=X, y_site_cal=y, depths=[5],
                                fine_tune=FINE_TUNE, progress=False)
    with pytest.raises(ValueError, match="unknown fine-tune key"):
        transfer_representation(base, X, y, X_site_cal=X, y_site_cal=y, fine_tune={"lr": 1},
                                progress=False)
    with pytest.raises(ValueError, match="bands"):
        transfer_representation(base, X[:, :20], y, X_site_cal=X, y_site_cal=y,
                                progress=False)


def test_transfer_config_from_the_transfer_parameters(base, site):
    """``TransferConfig.from_params`` reads the conf keys of ``params:transfer``; the
    fine-tuning settings take the base's searched values where the budget says ``None``."""
    from localsoc.models.transfer import (
        DEFAULT_FINE_TUNE,
        TransferConfig,
        fine_tune_settings,
    )

    params = {"depths": [0, 1], "fine_tune": FINE_TUNE, "progress": False, "threads": 2}
    config = TransferConfig.from_params(params, 9)
    assert config == TransferConfig(depths=[0, 1], fine_tune=FINE_TUNE, seed=9, progress=False,
                                    threads=2)
    settings = fine_tune_settings({**DEFAULT_FINE_TUNE, "learning_rate_factor": 0.1},
                                  HYPERPARAMETERS)
    assert settings.learning_rate == pytest.approx(0.001)  # 0.01 searched x 0.1
    assert (settings.optimizer, settings.batch_size) == ("adam", 16)
    X, y = site
    with pytest.raises(TypeError, match="not both"):
        transfer_representation(base, X, y, config, X_site_cal=X, y_site_cal=y, seed=1)
