"""The 1D-CNN builder: every block option, the search space as data, invalid combinations."""

from __future__ import annotations

import keras
import keras_tuner
import numpy as np
import pytest

from localsoc.models.cnn1d import (
    ACTIVATIONS,
    DEFAULT_SEARCH_SPACE,
    OPTIMIZERS,
    build_cnn1d,
    declare_training_hyperparameters,
    fold_builder,
    make_optimizer,
    resolve_search_space,
    weight_layers,
)


def conv_block(i: int = 0, **changes) -> dict:
    values = {
        f"conv_{i}_filters": 8,
        f"conv_{i}_kernel_size": 3,
        f"conv_{i}_strides": 1,
        f"conv_{i}_padding": "valid",
        f"conv_{i}_activation": "relu",
        f"conv_{i}_batch_normalization": False,
        f"conv_{i}_pooling": False,
        f"conv_{i}_dropout": False,
    }
    values.update({f"conv_{i}_{key}": value for key, value in changes.items()})
    return values


def fc_block(i: int = 0, **changes) -> dict:
    values = {
        f"fc_{i}_units": 8,
        f"fc_{i}_activation": "relu",
        f"fc_{i}_batch_normalization": False,
        f"fc_{i}_dropout": False,
    }
    values.update({f"fc_{i}_{key}": value for key, value in changes.items()})
    return values


def architecture(conv: list[dict], fc: list[dict]) -> dict:
    values = {"conv_blocks": len(conv), "fc_blocks": len(fc)}
    for block in conv + fc:
        values.update(block)
    return values


def layers_of(model: keras.Model, kind: type) -> list:
    return [layer for layer in model.layers if isinstance(layer, kind)]


def predict(model: keras.Model, n_bands: int) -> np.ndarray:
    X = np.random.default_rng(0).normal(size=(4, n_bands)).astype("float32")
    return np.asarray(model(X, training=False))


@pytest.mark.parametrize("activation", ACTIVATIONS)
def test_every_activation_in_conv_and_fc_blocks(activation):
    values = architecture([conv_block(activation=activation)], [fc_block(activation=activation)])
    model = build_cnn1d(values, 32)
    names = {layer.name: layer for layer in model.layers}
    for block in ("conv_0_activation", "fc_0_activation"):
        layer = names[block]
        if activation == "leaky_relu":
            assert isinstance(layer, keras.layers.LeakyReLU)
        else:
            assert isinstance(layer, keras.layers.Activation)
            # Keras spells swish "silu" in a layer's config
            expected = {"swish": "silu"}.get(activation, activation)
            assert layer.get_config()["activation"] == expected
    out = predict(model, 32)
    assert out.shape == (4, 1) and np.isfinite(out).all()


@pytest.mark.parametrize("pool_type, pool_class", [
    ("max", keras.layers.MaxPooling1D),
    ("average", keras.layers.AveragePooling1D),
])
def test_conv_block_with_batch_norm_pooling_and_dropout(pool_type, pool_class):
    block = conv_block(
        filters=16, kernel_size=5, strides=2, padding="same", batch_normalization=True,
        pooling=True, pool_type=pool_type, pool_size=3, pool_strides=2, dropout=True,
        dropout_rate=0.3,
    )
    model = build_cnn1d(architecture([block], [fc_block()]), 40)
    conv = model.get_layer("conv_0")
    assert (conv.filters, conv.kernel_size, conv.strides, conv.padding) == (16, (5,), (2,), "same")
    assert isinstance(model.get_layer("conv_0_batch_normalization"),
                      keras.layers.BatchNormalization)
    pool = model.get_layer("conv_0_pooling")
    assert isinstance(pool, pool_class) and pool.pool_size == (3,) and pool.strides == (2,)
    assert model.get_layer("conv_0_dropout").rate == pytest.approx(0.3)
    # 40 bands -> conv 'same' stride 2 -> 20 -> pool 3 stride 2 'valid' -> 9 steps x 16 filters
    assert model.get_layer("flatten").output.shape[-1] == 9 * 16
    assert predict(model, 40).shape == (4, 1)


def test_blocks_without_options_have_no_optional_layers():
    model = build_cnn1d(architecture([conv_block()], [fc_block()]), 32)
    for kind in (keras.layers.BatchNormalization, keras.layers.Dropout,
                 keras.layers.MaxPooling1D, keras.layers.AveragePooling1D):
        assert layers_of(model, kind) == []


def test_fc_block_with_batch_norm_and_dropout_and_several_blocks():
    fc = [
        fc_block(0, units=1024, batch_normalization=True, dropout=True, dropout_rate=0.25),
        fc_block(1, units=8, activation="selu"),
        fc_block(2, units=17, activation="swish", dropout=True, dropout_rate=0.5),
    ]
    conv = [conv_block(0), conv_block(1, filters=256, kernel_size=10), conv_block(2)]
    model = build_cnn1d(architecture(conv, fc), 64)
    assert [layer.name for layer in weight_layers(model)] == [
        "conv_0", "conv_1", "conv_2", "fc_0", "fc_1", "fc_2", "output"
    ]
    assert [model.get_layer(f"fc_{i}").units for i in range(3)] == [1024, 8, 17]
    assert model.get_layer("fc_0_dropout").rate == pytest.approx(0.25)
    assert model.get_layer("fc_2_dropout").rate == pytest.approx(0.5)
    assert isinstance(model.get_layer("fc_0_batch_normalization"),
                      keras.layers.BatchNormalization)
    output = model.get_layer("output")
    assert output.units == 1 and output.get_config()["activation"] == "linear"
    assert predict(model, 64).shape == (4, 1)


def test_kernel_longer_than_sequence_does_not_crash():
    # 6 bands: kernel 10 'valid' would leave nothing; stride 3 shrinks the next blocks further
    conv = [
        conv_block(0, kernel_size=10, strides=3),
        conv_block(1, kernel_size=9, strides=3, pooling=True, pool_type="max", pool_size=4,
                   pool_strides=4),
        conv_block(2, kernel_size=8, strides=2),
    ]
    model = build_cnn1d(architecture(conv, [fc_block()]), 6)
    assert model.get_layer("conv_0").padding == "same"
    assert model.get_layer("conv_1_pooling").padding == "same"
    assert len(model.localsoc_adjustments) >= 3
    assert model.get_layer("flatten").output.shape[-1] >= 1
    out = predict(model, 6)
    assert out.shape == (4, 1) and np.isfinite(out).all()


def test_random_points_of_the_default_space_all_build():
    hp = keras_tuner.HyperParameters()
    build_cnn1d(hp, 12)  # registers the space
    names = {p.name for p in hp.space}
    for i in range(3):
        for option in ("filters", "kernel_size", "strides", "padding", "activation",
                       "batch_normalization", "pooling", "pool_type", "pool_size",
                       "pool_strides", "dropout", "dropout_rate"):
            assert f"conv_{i}_{option}" in names
    for i in range(5):
        for option in ("units", "activation", "batch_normalization", "dropout", "dropout_rate"):
            assert f"fc_{i}_{option}" in names
    oracle = keras_tuner.oracles.RandomSearchOracle(
        objective=keras_tuner.Objective("loss", "min"), max_trials=50, seed=3
    )
    oracle.hyperparameters = hp
    for trial_number in range(12):
        values = oracle.populate_space(str(trial_number))["values"]
        model = build_cnn1d(values, 12)  # a short spectrum: kernels and strides often overrun
        assert model.output.shape[-1] == 1
        assert np.isfinite(predict(model, 12)).all()


def test_keras_tuner_values_rebuild_the_same_architecture():
    hp = keras_tuner.HyperParameters()
    hp.values.update({"conv_blocks": 2, "fc_blocks": 2})
    first = build_cnn1d(hp, 50)
    second = build_cnn1d(dict(hp.values), 50)
    assert [(layer.name, tuple(w.shape for w in layer.weights)) for layer in first.layers] == [
        (layer.name, tuple(w.shape for w in layer.weights)) for layer in second.layers
    ]


@pytest.mark.parametrize("batch_norm", [False, True])
def test_fold_builder_gives_the_weights_build_cnn1d_gives_under_the_same_seed(batch_norm):
    values = architecture([conv_block(batch_normalization=batch_norm, dropout=True,
                                      dropout_rate=0.1), conv_block(1, filters=4)],
                          [fc_block(units=5, batch_normalization=batch_norm)])
    make_model = fold_builder(values, 40)
    for seed in (3, 4, 5):  # the first call builds, the later ones copy its configuration
        keras.utils.set_random_seed(seed)
        built = make_model(seed)
        keras.utils.set_random_seed(seed)
        direct = build_cnn1d(values, 40)
        assert [layer.name for layer in built.layers] == [layer.name for layer in direct.layers]
        for a, b in zip(built.get_weights(), direct.get_weights(), strict=True):
            np.testing.assert_array_equal(a, b)
    keras.utils.set_random_seed(6)
    other = make_model(6)
    assert not np.array_equal(other.get_weights()[0], built.get_weights()[0])


def test_missing_hyperparameter_names_the_key():
    values = architecture([conv_block()], [fc_block()])
    del values["conv_0_kernel_size"]
    with pytest.raises(KeyError, match="conv_0_kernel_size"):
        build_cnn1d(values, 32)


def test_search_space_overrides_and_errors():
    space = resolve_search_space({"conv_blocks": {"min": 2, "max": 2}, "padding": "same",
                                  "activation": ("elu",)})
    assert space["padding"] == ["same"] and space["activation"] == ["elu"]
    assert DEFAULT_SEARCH_SPACE["padding"] == ["valid", "same"]  # defaults untouched
    hp = keras_tuner.HyperParameters()
    model = build_cnn1d(hp, 30, space)
    assert len(layers_of(model, keras.layers.Conv1D)) == 2
    assert hp.values["conv_0_padding"] == "same"
    with pytest.raises(ValueError, match="unknown search-space key 'kernel'"):
        resolve_search_space({"kernel": [3]})
    with pytest.raises(ValueError, match="activation"):
        resolve_search_space({"activation": ["tanhh"]})
    with pytest.raises(ValueError, match="min 5 > max 2"):
        resolve_search_space({"kernel_size": {"min": 5, "max": 2}})


def test_training_hyperparameters_and_optimizers():
    hp = keras_tuner.HyperParameters()
    training = declare_training_hyperparameters(hp)
    assert training["optimizer"] in OPTIMIZERS
    assert 1e-4 <= training["learning_rate"] <= 1e-2
    assert training["batch_size"] in DEFAULT_SEARCH_SPACE["batch_size"]
    for name in OPTIMIZERS:
        optimizer = make_optimizer(name, 0.01)
        assert float(np.asarray(optimizer.learning_rate)) == pytest.approx(0.01)
    with pytest.raises(ValueError, match="optimizer"):
        make_optimizer("adagrad", 0.01)
