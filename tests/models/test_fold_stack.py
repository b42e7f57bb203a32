"""Fold-vectorised training (models/fold_stack.py) against the one-fold-at-a-time loop."""

import keras
import numpy as np
import pytest

from localsoc.models import fold_stack
from localsoc.models.cnn1d import build_cnn1d, make_optimizer
from localsoc.models.ensemble import make_folds
from localsoc.models.training import TrainingSettings, cross_validate, fit_fold_models

BASE = {
    "conv_blocks": 1, "fc_blocks": 1, "conv_0_filters": 8, "conv_0_kernel_size": 9,
    "conv_0_strides": 4, "conv_0_padding": "valid", "conv_0_activation": "elu",
    "conv_0_batch_normalization": False, "conv_0_pooling": False, "conv_0_dropout": False,
    "fc_0_units": 8, "fc_0_activation": "elu", "fc_0_batch_normalization": False,
    "fc_0_dropout": False,
}
#: Every deterministic layer kind the stack implements, in one network.
WIDE = {
    **BASE, "conv_blocks": 2, "fc_blocks": 2,
    "conv_0_padding": "same", "conv_0_activation": "leaky_relu",
    "conv_0_batch_normalization": True, "conv_0_pooling": True, "conv_0_pool_type": "max",
    "conv_0_pool_size": 3, "conv_0_pool_strides": 2,
    "conv_1_filters": 8, "conv_1_kernel_size": 3, "conv_1_strides": 1, "conv_1_padding": "valid",
    "conv_1_activation": "swish", "conv_1_batch_normalization": False, "conv_1_pooling": True,
    "conv_1_pool_type": "average", "conv_1_pool_size": 2, "conv_1_pool_strides": 2,
    "conv_1_dropout": False, "fc_0_activation": "selu", "fc_0_batch_normalization": True,
    "fc_1_units": 4, "fc_1_activation": "relu", "fc_1_batch_normalization": False,
    "fc_1_dropout": False,
}


def _data(n=40, bands=60, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, bands)).astype(np.float32)
    y = X[:, :10].sum(axis=1) + 0.3 * rng.normal(size=n)
    return X, y


def _both(hp, n=40, folds=5, **settings):
    X, y = _data(n)
    split = make_folds(np.array([f"s{i}" for i in range(n)]), folds, 3)
    out = {}
    for engine in ("loop", "stack"):
        run = TrainingSettings(engine=engine, **settings)
        out[engine] = cross_validate(lambda fold: build_cnn1d(hp, X.shape[1], {}), X, y, split,
                                     run, seed=11)
    return out


@pytest.mark.parametrize(("hp", "batch", "tolerance"), [(BASE, 8, 1e-3), (WIDE, 64, 1e-2)],
                         ids=["conv-fc", "bn-pooling-same"])
def test_stacked_folds_train_as_the_loop_does(hp, batch, tolerance):
    """Every fold has 22 fit rows (30 rows, 5 folds, 2 early-stopping rows): in mini-batches of
    8 (8, 8, 6) or one full batch (batch normalisation: no padded rows in its moments), the
    stack's updates are the loop's, so the same epochs, and predictions equal to float
    precision (batch normalisation's moments are summed in another order: 25 epochs of
    training take that to ~5e-3 of the estimates)."""
    fold_stack._StackedNetwork([build_cnn1d(hp, 60, {})], 0)  # the stack, not its fallback
    out = _both(hp, n=30, folds=5, learning_rate=3e-3, batch_size=batch, max_epochs=25, patience=4,
                validation_fraction=0.1)
    loop, stack = out["loop"], out["stack"]
    assert stack.epochs == loop.epochs
    np.testing.assert_allclose(stack.oof_predictions, loop.oof_predictions, rtol=tolerance,
                               atol=tolerance)
    if hp is BASE:  # (a bias before batch normalisation has no gradient but float noise,
        # which Adam scales to full steps: equal predictions, not equal weights)
        for a, b in zip(stack.models, loop.models, strict=True):
            for wa, wb in zip(a.get_weights(), b.get_weights(), strict=True):
                np.testing.assert_allclose(wa, wb, rtol=tolerance, atol=tolerance / 10)
    assert all(isinstance(m, keras.Model) for m in stack.models)


def test_without_early_stopping_all_epochs_run_in_one_call_as_the_loop_runs_them():
    """validation_fraction 0 (the site budgets): every epoch's batches in one compiled call;
    the same fold models as the loop's, epoch by epoch."""
    out = _both(BASE, n=30, folds=5, learning_rate=3e-3, batch_size=8, max_epochs=12,
                validation_fraction=0.0)
    assert out["stack"].epochs == out["loop"].epochs == [12] * 5
    np.testing.assert_allclose(out["stack"].oof_predictions, out["loop"].oof_predictions,
                               rtol=1e-3, atol=1e-3)


def test_uneven_folds_and_dropout_are_comparable():
    """Folds of different sizes (a zero-row step for some) and dropout (other random draws):
    not the same numbers, a comparable fit."""
    hp = {**BASE, "conv_0_dropout": True, "conv_0_dropout_rate": 0.1}
    out = _both(hp, n=47, folds=4, learning_rate=3e-3, batch_size=8, max_epochs=40, patience=8)
    loop, stack = out["loop"].cv_rmse, out["stack"].cv_rmse
    assert np.isfinite(stack)
    assert 0.7 < stack / loop < 1.4


def test_nested_fold_data_of_different_rows():
    """fit_fold_models with each fold's own training rows and arrays to predict (the nested
    evaluation's use): the stack gives the loop's predictions."""
    X, y = _data(60)
    folds = [(X[:30], y[:30], [X[50:], X[:2]]), (X[10:48], y[10:48], [X[50:], X[:2]]),
             (X[20:44], y[20:44], [X[50:], X[:0]])]
    results = {}
    for engine in ("loop", "stack"):
        settings = TrainingSettings(engine=engine, learning_rate=3e-3, batch_size=48,
                                    max_epochs=15, patience=4)
        results[engine] = fit_fold_models(lambda fold: build_cnn1d(BASE, X.shape[1], {}), folds,
                                          settings, seed=5)
    (_, m1, s1, e1, p1), (_, m2, s2, e2, p2) = results["loop"], results["stack"]
    np.testing.assert_array_equal(m1, m2)
    np.testing.assert_array_equal(s1, s2)
    assert e1 == e2
    for a, b in zip(p1, p2, strict=True):
        assert [x.shape for x in a] == [x.shape for x in b]
        for pa, pb in zip(a, b, strict=True):
            np.testing.assert_allclose(pa, pb, rtol=1e-3, atol=1e-3)


@pytest.mark.parametrize("activation", ["relu", "elu", "selu", "leaky_relu", "swish"])
def test_every_searched_layer_kind_is_stacked(activation):
    """Every activation and block option of the search space builds a stacked network whose
    forward pass equals each fold model's own."""
    import tensorflow as tf

    hp = {**WIDE, "conv_0_activation": activation, "fc_1_activation": activation,
          "conv_0_dropout": True, "conv_0_dropout_rate": 0.2, "fc_0_dropout": True,
          "fc_0_dropout_rate": 0.1}
    models = [build_cnn1d(hp, 60, {}) for _ in range(3)]
    network = fold_stack._StackedNetwork(models, 0)
    X = np.random.default_rng(0).normal(size=(3, 7, 60)).astype(np.float32)
    stacked = network(tf.constant(X), training=False).numpy()
    for k, model in enumerate(models):
        np.testing.assert_allclose(stacked[k], model.predict_on_batch(X[k])[:, 0], rtol=1e-5,
                                   atol=1e-5)


@pytest.mark.parametrize("name", ["adam", "nadam", "rmsprop", "sgd"])
def test_stack_optimizer_updates_as_keras(name):
    """The stack's optimiser arithmetic gives Keras' own updates, step after step."""
    import tensorflow as tf

    rng = np.random.default_rng(1)
    start = rng.normal(size=(3, 4)).astype(np.float32)
    grads = [rng.normal(size=(3, 4)).astype(np.float32) for _ in range(4)]
    keras_var, stack_var = tf.Variable(start), tf.Variable(start)
    reference = make_optimizer(name, 0.01)
    reference.build([keras_var])
    ours = fold_stack.StackOptimizer(make_optimizer(name, 0.01), [stack_var])
    for g in grads:
        reference.apply_gradients([(tf.constant(g), keras_var)])
        ours.apply([tf.constant(g)])
    np.testing.assert_allclose(stack_var.numpy(), keras_var.numpy(), rtol=1e-5, atol=1e-6)
    assert not np.allclose(stack_var.numpy(), start)


def test_an_unsupported_layer_falls_back_to_the_loop():
    """A layer the stack does not implement: the folds are trained by the loop (same result as
    asking for the loop)."""
    def make_model(fold):
        inputs = keras.Input(shape=(20,))
        x = keras.layers.GaussianNoise(0.0)(inputs)
        return keras.Model(inputs, keras.layers.Dense(1)(x))

    X, y = _data(20, bands=20)
    split = make_folds(20, 4, 0)
    with pytest.raises(fold_stack.UnsupportedLayer):
        fold_stack._StackedNetwork([make_model(0)], 0)
    runs = [cross_validate(make_model, X, y, split,
                           TrainingSettings(engine=engine, max_epochs=5, batch_size=8), seed=2)
            for engine in ("loop", "stack")]
    np.testing.assert_array_equal(runs[0].oof_predictions, runs[1].oof_predictions)


def test_repeated_stacked_predictions_do_not_warn_about_retracing():
    """Each predict_stack call traces its own new network by design; TensorFlow's retracing
    warning (from the fifth such call on, at most twice per process) is filtered, and only
    that warning. The loop below shows it only when no earlier test used up those two
    warnings; the records after it check the filter itself."""
    import logging

    import tensorflow as tf

    records: list[logging.LogRecord] = []

    class Keep(logging.Handler):
        def emit(self, record):
            records.append(record)

    keep = Keep(level=logging.WARNING)
    tf.get_logger().addHandler(keep)
    try:
        X, _ = _data(12)
        for _ in range(8):
            models = [build_cnn1d(BASE, X.shape[1], {}) for _ in range(2)]
            outputs = fold_stack.predict_stack(models, [X, X[:7]])
            assert [o.shape for o in outputs] == [(12,), (7,)]
        tf.get_logger().warning("an unrelated warning")
    finally:
        tf.get_logger().removeHandler(keep)
    messages = [r.getMessage() for r in records]
    assert messages == ["an unrelated warning"], messages
    # a trial's epoch function is new per trial too; another function's retracing still shows
    text = "5 out of the last 5 calls to <{}> triggered tf.function retracing. Tracing is..."
    kept = [fold_stack._TRACE_FILTER.filter(logging.LogRecord(
        "tensorflow", logging.WARNING, __file__, 1, text.format(name), None, None))
        for name in ("function predict_stack.<locals>.<lambda> at 0x7f00", "bound method "
                     "_Stack._epoch of <_Stack object>", "function my_model_step")]
    assert kept == [False, False, True]
