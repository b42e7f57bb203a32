"""KerasEnsembleDataset: save/load round trip of a fold ensemble, through Kedro too."""

from __future__ import annotations

import json

import keras
import numpy as np
import pytest
from kedro.io import DataCatalog, DatasetError

from localsoc.datasets import KerasEnsembleDataset
from localsoc.models.cnn1d import build_cnn1d
from localsoc.models.ensemble import FoldEnsemble, make_folds

N_BANDS = 24
HYPERPARAMETERS = {
    "conv_blocks": 1,
    "conv_0_filters": 4,
    "conv_0_kernel_size": 3,
    "conv_0_strides": 1,
    "conv_0_padding": "same",
    "conv_0_activation": "selu",
    "conv_0_batch_normalization": True,
    "conv_0_pooling": True,
    "conv_0_pool_type": "average",
    "conv_0_pool_size": 2,
    "conv_0_pool_strides": 2,
    "conv_0_dropout": True,
    "conv_0_dropout_rate": 0.2,
    "fc_blocks": 1,
    "fc_0_units": 8,
    "fc_0_activation": "leaky_relu",
    "fc_0_batch_normalization": False,
    "fc_0_dropout": False,
    "optimizer": "adam",
    "learning_rate": 0.001,
    "batch_size": 8,
}


@pytest.fixture
def ensemble():
    """An untrained three-fold ensemble with random weights (weights, not training, matter)."""
    keras.utils.set_random_seed(11)
    models = [build_cnn1d(HYPERPARAMETERS, N_BANDS) for _ in range(3)]
    for model in models:  # perturb batch-norm statistics so they must be saved too
        bn = model.get_layer("conv_0_batch_normalization")
        bn.moving_mean.assign(np.random.default_rng(1).normal(size=4))
    ids = [f"site_a_{i}" for i in range(12)]
    return FoldEnsemble(
        models_=models,
        y_mean_=[1.0, 1.1, 0.9],
        y_scale_=[0.5, 0.6, 0.4],
        folds=make_folds(ids, 3, seed=2),
        hyperparameters=HYPERPARAMETERS,
        seed=2,
        oof_predictions_=np.linspace(0.5, 2.0, 12),
        fold_rmse_=[0.3, 0.2, 0.25],
        training_data_hash="abc123",
        data_version="dvc:md5:0f0f",
        info={"kind": "search", "trial_id": "3"},
    )


def spectra(n: int = 7) -> np.ndarray:
    return np.random.default_rng(5).normal(size=(n, N_BANDS)).astype("float32")


def test_round_trip_gives_identical_predictions_and_metadata(ensemble, tmp_path):
    dataset = KerasEnsembleDataset(filepath=str(tmp_path / "library_cnn"))
    assert not dataset.exists()
    dataset.save(ensemble)
    assert dataset.exists()
    files = sorted(p.name for p in (tmp_path / "library_cnn").iterdir())
    assert files == ["fold_00.keras", "fold_01.keras", "fold_02.keras", "metadata.json"]

    loaded = dataset.load()
    X = spectra()
    mean, spread = ensemble.predict(X, return_std=True)
    mean_loaded, spread_loaded = loaded.predict(X, return_std=True)
    np.testing.assert_array_equal(mean_loaded, mean)
    np.testing.assert_array_equal(spread_loaded, spread)
    assert loaded.folds == ensemble.folds and loaded.folds.seed == 2
    assert loaded.hyperparameters == HYPERPARAMETERS
    np.testing.assert_array_equal(loaded.oof_predictions_, ensemble.oof_predictions_)
    np.testing.assert_array_equal(loaded.fold_rmse_, ensemble.fold_rmse_)
    np.testing.assert_array_equal(loaded.y_scale_, ensemble.y_scale_)
    assert (loaded.training_data_hash, loaded.data_version, loaded.seed) == (
        "abc123", "dvc:md5:0f0f", 2)
    assert loaded.info == {"kind": "search", "trial_id": "3"}

    metadata = json.loads((tmp_path / "library_cnn" / "metadata.json").read_text())
    assert metadata["folds"]["validation_sample_ids"] == ensemble.folds.validation_ids()
    # the architecture can be rebuilt from the stored hyperparameters alone
    rebuilt = build_cnn1d(metadata["hyperparameters"], metadata["n_bands"])
    rebuilt.set_weights(loaded.models_[0].get_weights())
    np.testing.assert_allclose(
        np.asarray(rebuilt(X, training=False)).ravel(),
        np.asarray(ensemble.models_[0](X, training=False)).ravel(), rtol=1e-6,
    )


def test_saving_again_replaces_the_ensemble(ensemble, tmp_path):
    dataset = KerasEnsembleDataset(filepath=str(tmp_path / "cnn"))
    dataset.save(ensemble)
    smaller = FoldEnsemble(
        models_=ensemble.models_[:2], y_mean_=[0.0, 0.0], y_scale_=[1.0, 1.0],
        folds=make_folds(4, 2, seed=0), hyperparameters=HYPERPARAMETERS,
    )
    dataset.save(smaller)
    loaded = dataset.load()
    assert loaded.n_folds == 2 and loaded.oof_predictions_ is None
    assert not (tmp_path / "cnn" / "fold_02.keras").exists()
    assert [p.name for p in tmp_path.iterdir()] == ["cnn"]  # no staging leftovers


def test_through_a_kedro_catalog(ensemble, tmp_path):
    catalog = DataCatalog.from_config({
        "library_cnn": {
            "type": "localsoc.datasets.KerasEnsembleDataset",
            "filepath": str(tmp_path / "06_models" / "library_cnn"),
        }
    })
    catalog.save("library_cnn", ensemble)
    loaded = catalog.load("library_cnn")
    X = spectra(3)
    np.testing.assert_array_equal(loaded.predict(X), ensemble.predict(X))
    assert "library_cnn" in str(catalog["library_cnn"])


def test_errors_say_what_is_wrong(tmp_path):
    dataset = KerasEnsembleDataset(filepath=str(tmp_path / "missing"))
    with pytest.raises(DatasetError, match="metadata.json is missing"):
        dataset.load()
    with pytest.raises(DatasetError, match="FoldEnsemble"):
        dataset.save({"not": "an ensemble"})
    with pytest.raises(DatasetError, match="local file system"):
        KerasEnsembleDataset(filepath="s3://bucket/cnn")
