"""Fold-vectorised training: the K fold models of a trial trained together, one compiled epoch.

``localsoc.models.training.FoldTrainer`` trains the K fold models of a cross-validation one
after another, batch by batch from Python: on 30 spectra a trial's time is almost all Python and
Keras call overhead (K folds x epochs x batches calls). ``train_fold_stack`` trains the K models
as one stacked network instead (``_StackedNetwork``: every weight holds K copies along a first
axis; a layer is one batched product over the K folds, so the graph is one network's whatever
K is), and one ``tf.function`` runs a whole epoch of every fold: each fold's mini-batch steps
on its own rows, then each fold's early-stopping loss, best-weight copy and patience.

Each fold keeps exactly what the loop gives it: its own initial weights (its model, built under
its seed), its own early-stopping rows and per-epoch batch order (drawn from the fold's own
generator in the order ``FoldTrainer.fit`` draws them), its own patience and best weights. The
loss is the sum of the K folds' mean losses; each fold's weights get only its own loss's
gradient, and the optimiser keeps per-weight state (``StackOptimizer``, Keras' arithmetic), so
the K folds train as K separate runs would. Differences from the loop: when the folds' fit
sets need different numbers of batches per epoch, a fold without rows in a step gets a zero
gradient (its optimiser state still moves one step); a short last batch is padded with the
fold's own rows at zero weight (batch normalisation sees them); dropout draws differ; float
summation order. Folds whose patience has run out keep training in the stack; their best
weights are frozen and restored.

TensorFlow backend and the layers ``build_cnn1d`` uses only; anything else raises
``UnsupportedLayer`` before training and ``training.fit_fold_models`` uses the loop. Keras
models in, the same Keras models out, trained, so fold ensembles, saved files and serving are
unchanged.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

import keras
import numpy as np

__all__ = ["StackOptimizer", "UnsupportedLayer", "available", "predict_stack", "train_fold_stack"]


def available() -> bool:
    """Whether the stack can run (the TensorFlow backend)."""
    return keras.backend.backend() == "tensorflow"


def stop_split(n: int, validation_fraction: float, rng: np.random.Generator):
    """(fit rows, early-stopping rows) of ``n`` training rows: a random ``validation_fraction``
    (>= 1 row, only when there are >= 4 rows, and always leaving >= 2 rows to fit). The one
    rule of the stack and of ``training.FoldTrainer``."""
    if validation_fraction > 0 and n >= 4:
        n_stop = min(max(int(round(validation_fraction * n)), 1), n - 2)
    else:
        n_stop = 0
    order = rng.permutation(n)
    return order[n_stop:], order[:n_stop]


class _StackedNetwork:
    """K copies of one architecture as stacked weights: a forward pass over ``(K, rows, bands)``
    whose graph is that of one network (batched matrix products per layer), whatever K is.

    Built from the K fold models (their layers' configurations and current weights); layers it
    does not know make ``UnsupportedLayer`` (the caller then uses the loop). Conv1D is framed
    (``tf.signal.frame``) and contracted with each fold's kernel; Dense is a batched product;
    BatchNormalization keeps each fold's batch moments and moving statistics (inference mode
    when frozen, as Keras); Dropout draws from a stateless generator.
    """

    def __init__(self, models: Sequence[keras.Model], seed: int):
        import tensorflow as tf

        self.tf = tf
        self.k = len(models)
        self.layers: list[tuple[str, Any, dict[str, Any]]] = []
        self.variables: list[Any] = []
        self.trainable: list[Any] = []
        self._links: list[tuple[Any, list[Any]]] = []  # stacked variable, fold variables
        self._seed = tf.Variable([int(seed) % (2**31 - 1), 0], dtype=tf.int64, trainable=False)
        for position, layer in enumerate(models[0].layers):
            folds = [m.layers[position] for m in models]
            self.layers.append(self._describe(layer, folds))

    def _stack(self, folds, attribute: str, trainable: bool):
        tf = self.tf
        fold_variables = [getattr(layer, attribute) for layer in folds]
        stacked = tf.Variable(np.stack([np.asarray(v) for v in fold_variables]).astype(np.float32),
                              trainable=trainable)
        self.variables.append(stacked)
        if trainable:
            self.trainable.append(stacked)
        self._links.append((stacked, fold_variables))
        return stacked

    def _describe(self, layer, folds):
        kind = type(layer).__name__
        if kind in ("InputLayer", "Reshape", "Flatten"):
            return kind, None, {}
        if kind in ("Activation", "LeakyReLU"):
            name = "leaky_relu" if kind == "LeakyReLU" else layer.get_config()["activation"]
            name = {"silu": "swish"}.get(name, name)  # Keras 3 records swish as silu
            if name not in _ACTIVATIONS:
                raise UnsupportedLayer(f"activation {name!r}")
            return "Activation", None, {"name": name}
        if kind == "Dropout":
            return kind, None, {"rate": float(layer.rate)}
        if kind in ("MaxPooling1D", "AveragePooling1D"):
            config = layer.get_config()
            return kind, None, {"size": int(config["pool_size"][0]),
                                "stride": int(config["strides"][0]),
                                "padding": config["padding"].upper()}
        if kind == "Conv1D":
            config = layer.get_config()
            if (config["dilation_rate"] != (1,) or config.get("groups", 1) != 1
                    or config["activation"] != "linear" or not config["use_bias"]
                    or config["padding"] not in ("valid", "same")):
                raise UnsupportedLayer(f"Conv1D {config}")
            weights = [self._stack(folds, "kernel", layer.trainable),
                       self._stack(folds, "bias", layer.trainable)]
            return kind, weights, {"kernel": int(config["kernel_size"][0]),
                                   "stride": int(config["strides"][0]),
                                   "padding": config["padding"]}
        if kind == "Dense":
            config = layer.get_config()
            if config["activation"] != "linear" or not config["use_bias"]:
                raise UnsupportedLayer(f"Dense {config}")
            return kind, [self._stack(folds, "kernel", layer.trainable),
                          self._stack(folds, "bias", layer.trainable)], {}
        if kind == "BatchNormalization":
            if not (layer.center and layer.scale) or layer.axis not in (-1, len(layer.input.shape) - 1) \
                    or getattr(layer, "renorm", False):
                raise UnsupportedLayer("BatchNormalization with other than the default options")
            weights = [self._stack(folds, "gamma", layer.trainable),
                       self._stack(folds, "beta", layer.trainable),
                       self._stack(folds, "moving_mean", False),
                       self._stack(folds, "moving_variance", False)]
            return kind, weights, {"momentum": float(layer.momentum),
                                   "epsilon": float(layer.epsilon),
                                   "trainable": bool(layer.trainable)}
        raise UnsupportedLayer(kind)

    def __call__(self, x, training: bool):
        """``x``: (K, rows, bands) -> (K, rows)."""
        tf = self.tf
        for kind, weights, options in self.layers:
            if kind == "Reshape":
                x = x[..., None]
            elif kind == "Flatten":
                shape = tf.shape(x)
                x = tf.reshape(x, [shape[0], shape[1], -1])
            elif kind == "Activation":
                x = _ACTIVATIONS[options["name"]](x)
            elif kind == "Dropout" and training and options["rate"] > 0:
                seed = self._seed.assign_add([0, 1])
                keep = tf.random.stateless_uniform(tf.shape(x), seed=seed) >= options["rate"]
                x = tf.where(keep, x / (1.0 - options["rate"]), 0.0)
            elif kind in ("MaxPooling1D", "AveragePooling1D"):
                shape = tf.shape(x)
                merged = tf.reshape(x, tf.concat([[-1], shape[2:]], 0))
                pool = tf.nn.max_pool1d if kind == "MaxPooling1D" else tf.nn.avg_pool1d
                merged = pool(merged, options["size"], options["stride"], options["padding"])
                x = tf.reshape(merged, tf.concat([shape[:2], tf.shape(merged)[1:]], 0))
            elif kind == "Conv1D":
                kernel, bias = weights
                width, stride = options["kernel"], options["stride"]
                if options["padding"] == "same":
                    length = x.shape[2]
                    total = max((-(-length // stride) - 1) * stride + width - length, 0)
                    x = tf.pad(x, [[0, 0], [0, 0], [total // 2, total - total // 2], [0, 0]])
                frames = tf.signal.frame(x, width, stride, axis=2)  # (K, rows, L', width, C)
                shape = tf.shape(frames)
                frames = tf.reshape(frames, tf.concat([shape[:3], [-1]], 0))
                flat_kernel = tf.reshape(kernel, [self.k, -1, kernel.shape[-1]])
                x = tf.einsum("krlp,kpf->krlf", frames, flat_kernel) + bias[:, None, None, :]
            elif kind == "Dense":
                kernel, bias = weights
                x = tf.einsum("kri,kio->kro", x, kernel) + bias[:, None, :]
            elif kind == "BatchNormalization":
                gamma, beta, moving_mean, moving_variance = weights
                axes = list(range(1, len(x.shape) - 1))
                expand = [slice(None)] + [None] * len(axes) + [slice(None)]
                if training and options["trainable"]:
                    mean, variance = tf.nn.moments(x, axes=axes)
                    momentum = options["momentum"]
                    moving_mean.assign(moving_mean * momentum + mean * (1.0 - momentum))
                    moving_variance.assign(moving_variance * momentum + variance * (1.0 - momentum))
                else:
                    mean, variance = moving_mean, moving_variance
                x = tf.nn.batch_normalization(
                    x, mean[tuple(expand)], variance[tuple(expand)], beta[tuple(expand)],
                    gamma[tuple(expand)], options["epsilon"])
        return x[..., 0]

    def write_back(self) -> None:
        """Copy the stacked weights into the fold models."""
        for stacked, fold_variables in self._links:
            values = stacked.numpy()
            for k, variable in enumerate(fold_variables):
                variable.assign(values[k])


class UnsupportedLayer(ValueError):
    """A layer the stacked network does not implement (the loop trains such models)."""


def _leaky_relu(x):
    import tensorflow as tf

    return tf.nn.leaky_relu(x, alpha=0.01)


def _activation(name: str):
    def apply(x):
        return keras.activations.get(name)(x)

    return apply


_ACTIVATIONS = {name: _activation(name) for name in ("relu", "elu", "selu", "swish", "linear")}
_ACTIVATIONS["leaky_relu"] = _leaky_relu


class StackOptimizer:
    """The update arithmetic of a Keras optimiser (Adam, Nadam, RMSprop, SGD with momentum:
    ``cnn1d.make_optimizer``'s) over the stacked variables, written out in graph ops.

    Written out because Keras' own ``apply_gradients`` is slow to trace into the trial graph
    (BENCHMARKS.md); these few ops trace quickly. The settings (betas,
    rho, epsilon, momentum, weight decay) are read from the Keras optimiser ``keras_optimizer``,
    and the formulas are Keras 3's ``update_step``s; tests/models/test_fold_stack.py holds the
    two to the same updates.
    """

    KINDS = ("Adam", "Nadam", "RMSprop", "SGD")

    def __init__(self, keras_optimizer, variables: Sequence[Any]):
        import tensorflow as tf

        self.tf = tf
        self.kind = type(keras_optimizer).__name__
        if self.kind not in self.KINDS:
            raise UnsupportedLayer(f"optimizer {self.kind}")
        config = keras_optimizer.get_config()
        for unsupported in ("clipnorm", "clipvalue", "global_clipnorm"):
            if config.get(unsupported) is not None:
                raise UnsupportedLayer(f"optimizer option {unsupported}")
        if config.get("use_ema") or config.get("amsgrad") or config.get("centered") \
                or config.get("nesterov") or (self.kind == "RMSprop" and config.get("momentum")):
            raise UnsupportedLayer(f"optimizer options {config}")
        self.config = config
        self.learning_rate = float(config["learning_rate"])
        self.weight_decay = config.get("weight_decay")
        self.variables = list(variables)
        self.iterations = tf.Variable(0, dtype=tf.int64, trainable=False)
        self.slots = [[tf.Variable(tf.zeros_like(v), trainable=False)
                       for _ in range(2 if self.kind in ("Adam", "Nadam") else 1)]
                      for v in self.variables]
        self.u_product = tf.Variable(1.0, dtype=tf.float32, trainable=False)

    def apply(self, gradients: Sequence[Any]) -> None:
        tf = self.tf
        lr = tf.constant(self.learning_rate, tf.float32)
        step = tf.cast(self.iterations + 1, tf.float32)
        c = self.config
        if self.weight_decay is not None:
            for variable in self.variables:
                variable.assign(variable - variable * float(self.weight_decay) * lr)
        if self.kind == "Nadam":
            beta_1, beta_2 = float(c["beta_1"]), float(c["beta_2"])
            u_t = beta_1 * (1.0 - 0.5 * tf.pow(0.96, step))
            u_t_1 = beta_1 * (1.0 - 0.5 * tf.pow(0.96, step + 1.0))
            self.u_product.assign(self.u_product * u_t)
            u_product_t = self.u_product.read_value()
            u_product_t_1 = u_product_t * u_t_1
            beta_2_power = tf.pow(beta_2, step)
        if self.kind == "Adam":
            beta_1, beta_2 = float(c["beta_1"]), float(c["beta_2"])
            alpha = lr * tf.sqrt(1 - tf.pow(beta_2, step)) / (1 - tf.pow(beta_1, step))
        for variable, gradient, slots in zip(self.variables, gradients, self.slots, strict=True):
            if self.kind == "Adam":
                m, v = slots
                m.assign_add((gradient - m) * (1 - beta_1))
                v.assign_add((tf.square(gradient) - v) * (1 - beta_2))
                variable.assign_sub(m * alpha / (tf.sqrt(v) + float(c["epsilon"])))
            elif self.kind == "Nadam":
                m, v = slots
                m.assign_add((gradient - m) * (1 - beta_1))
                v.assign_add((tf.square(gradient) - v) * (1 - beta_2))
                m_hat = u_t_1 * m / (1 - u_product_t_1) + (1 - u_t) * gradient / (1 - u_product_t)
                v_hat = v / (1 - beta_2_power)
                variable.assign_sub(m_hat * lr / (tf.sqrt(v_hat) + float(c["epsilon"])))
            elif self.kind == "RMSprop":
                (velocity,) = slots
                rho = float(c["rho"])
                velocity.assign(rho * velocity + (1 - rho) * tf.square(gradient))
                variable.assign_sub(lr * gradient / tf.sqrt(velocity + float(c["epsilon"])))
            else:  # SGD
                (m,) = slots
                momentum = float(c["momentum"])
                if momentum:
                    m.assign(m * momentum - gradient * lr)
                    variable.assign_add(m)
                else:
                    variable.assign_sub(gradient * lr)
        self.iterations.assign_add(1)


class _Stack:
    """The compiled epoch of K stacked fold models (one trial)."""

    def __init__(self, network: _StackedNetwork, optimizer, patience: int):
        import tensorflow as tf

        self.tf = tf
        self.network = network
        self.k = network.k
        self.best = [tf.Variable(v, trainable=False) for v in network.variables]
        self.best_loss = tf.Variable(np.full(self.k, np.inf, np.float32), trainable=False)
        self.waited = tf.Variable(np.zeros(self.k, np.int32), trainable=False)
        self.active = tf.Variable(np.ones(self.k, bool), trainable=False)
        self.improved_ever = tf.Variable(np.zeros(self.k, bool), trainable=False)
        self.patience = max(int(patience), 1)  # as Keras' EarlyStopping and FoldTrainer
        self.optimizer = StackOptimizer(optimizer, network.trainable)
        # Written without AutoGraph (an explicit while_loop; the layer code branches on Python
        # values only), which traces faster (BENCHMARKS.md).
        _quiet_retracing()
        self.epoch = tf.function(self._epoch, reduce_retracing=True, autograph=False)

    def _losses(self, x, z, w, training: bool):
        tf = self.tf
        error = self.network(x, training=training) - z
        return tf.reduce_sum(w * error * error, axis=1) / tf.maximum(tf.reduce_sum(w, axis=1), 1.0)

    def _epoch(self, x_fit, z_fit, index, weight, x_stop, z_stop, w_stop):
        """One epoch of every fold. ``x_fit`` (K, rows, bands), ``z_fit`` (K, rows): each fold's
        fit rows (padded); ``index``/``weight`` (steps, K, batch): each fold's rows per step, 1
        for real rows and 0 for padding; ``x_stop``/``z_stop``/``w_stop``: each fold's
        early-stopping rows (padded, weights)."""
        tf = self.tf
        variables = self.network.trainable

        def step(s, last):
            x = tf.gather(x_fit, index[s], batch_dims=1)
            z = tf.gather(z_fit, index[s], batch_dims=1)
            with tf.GradientTape() as tape:
                losses = self._losses(x, z, weight[s], training=True)
                total = tf.reduce_sum(losses)
            gradients = tape.gradient(total, variables)
            self.optimizer.apply(gradients)
            return s + 1, losses

        _, last = tf.while_loop(lambda s, _: s < tf.shape(index)[0], step,
                                (tf.constant(0), tf.zeros([self.k], tf.float32)))
        finite = tf.math.is_finite(last)
        stop_loss = self._losses(x_stop, z_stop, w_stop, training=False)
        has_stop = tf.reduce_sum(w_stop, axis=1) > 0
        active = self.active.read_value()
        improved = active & has_stop & (stop_loss < self.best_loss) & finite
        for best, variable in zip(self.best, self.network.variables, strict=True):
            mask = tf.reshape(improved, [self.k] + [1] * (len(variable.shape) - 1))
            best.assign(tf.where(mask, variable, best))
        self.best_loss.assign(tf.where(improved, stop_loss, self.best_loss))
        self.improved_ever.assign(self.improved_ever | improved)
        waited = tf.where(improved, 0, self.waited + tf.cast(active & has_stop, tf.int32))
        self.waited.assign(waited)
        self.active.assign(active & finite & ~(has_stop & (waited >= self.patience)))
        return active

    def restore_best(self) -> None:
        improved = np.asarray(self.improved_ever.numpy())
        for best, variable in zip(self.best, self.network.variables, strict=True):
            mask = improved.reshape([self.k] + [1] * (len(variable.shape) - 1))
            variable.assign(np.where(mask, best.numpy(), variable.numpy()))


def _pad(rows: np.ndarray, size: int) -> tuple[np.ndarray, np.ndarray]:
    """``rows`` padded to ``size`` by repeating its own rows (weight 0): padding never feeds a
    loss, and batch statistics see only the fold's own spectra."""
    weight = np.zeros(size, np.float32)
    weight[: rows.size] = 1.0
    if rows.size == 0:
        return np.zeros(size, np.int32), weight
    return np.resize(rows, size).astype(np.int32), weight


def _stacked(arrays: Sequence[np.ndarray], size: int) -> tuple[np.ndarray, np.ndarray]:
    """(K, size, ...) float32 of each fold's rows padded by repetition, and (K, size) weights."""
    stacked, weights = [], []
    for a in arrays:
        rows, w = _pad(np.arange(a.shape[0]), size)
        stacked.append(a[rows] if a.shape[0] else np.zeros((size,) + a.shape[1:]))
        weights.append(w)
    return np.stack(stacked).astype(np.float32), np.stack(weights)


def train_fold_stack(
    models: Sequence[keras.Model],
    fold_data: Sequence[tuple[np.ndarray, np.ndarray]],
    settings: Any,
    seeds: Sequence[int],
    make_optimizer,
) -> list[int]:
    """Train ``models[k]`` on ``fold_data[k] = (X, z)`` (standardised targets) for every fold at
    once; returns the epochs each fold ran (as ``FoldTrainer.fit`` counts them).

    ``settings``: a ``TrainingSettings``; ``seeds[k]``: fold k's seed (its early-stopping rows
    and batch order); ``make_optimizer(name, learning_rate)``: a fresh Keras optimiser. The
    models are trained in place and hold their best weights afterwards. Raises
    ``UnsupportedLayer`` (before training anything) for a layer the stack does not implement.
    """
    k_folds = len(models)
    if not models[0].trainable_weights:  # fully frozen (transfer at full depth): not trained
        return [0] * k_folds
    network = _StackedNetwork(models, seeds[0])
    rngs = [np.random.default_rng(int(s)) for s in seeds]
    splits = [stop_split(X.shape[0], float(settings.validation_fraction), rng)
              for (X, _), rng in zip(fold_data, rngs, strict=True)]
    fit_sizes = [fit.size for fit, _ in splits]
    batch = [int(max(1, min(int(settings.batch_size), n))) for n in fit_sizes]
    steps = max(-(-n // b) for n, b in zip(fit_sizes, batch, strict=True))
    width = max(batch)

    arrays = _stacked_folds(fold_data, splits)
    stack = _Stack(network, make_optimizer(settings.optimizer, settings.learning_rate),
                   settings.patience)

    def epoch_batches():
        return _epoch_batches(rngs, fit_sizes, batch, steps, width)

    max_epochs = int(settings.max_epochs)
    if not any(stop.size for _, stop in splits):
        epochs = _train_every_epoch(stack, arrays, epoch_batches, max_epochs, k_folds)
    else:
        epochs = _train_until_stopped(stack, arrays, epoch_batches, max_epochs, k_folds)
    stack.restore_best()
    network.write_back()
    return epochs.tolist()


def _stacked_folds(fold_data, splits) -> tuple:
    """(x_fit, z_fit, x_stop, z_stop, w_stop) as TensorFlow constants: every fold's fit and
    early-stopping rows stacked along a first axis, padded (``w_stop``: 0 on padding)."""
    import tensorflow as tf

    pairs = list(zip(fold_data, splits, strict=True))
    fit_size = max(fit.size for fit, _ in splits)
    x_fit, _ = _stacked([X[fit] for (X, _), (fit, _) in pairs], fit_size)
    z_fit, _ = _stacked([z[fit] for (_, z), (fit, _) in pairs], fit_size)
    stop_size = max(1, max(stop.size for _, stop in splits))
    x_stop, w_stop = _stacked([X[stop] for (X, _), (_, stop) in pairs], stop_size)
    z_stop, _ = _stacked([z[stop] for (_, z), (_, stop) in pairs], stop_size)
    return tuple(tf.constant(a) for a in (x_fit, z_fit, x_stop, z_stop, w_stop))


def _epoch_batches(rngs, fit_sizes, batch, steps: int, width: int):
    """One epoch's (row index, row weight), each (steps, K, width): fold k's rows in the order
    of a permutation from its own generator, cut into its batches, padded at zero weight."""
    index = np.zeros((steps, len(rngs), width), np.int32)
    weight = np.zeros((steps, len(rngs), width), np.float32)
    for k, rng in enumerate(rngs):
        order = rng.permutation(fit_sizes[k])
        for s in range(steps):
            index[s, k], weight[s, k] = _pad(order[s * batch[k]: (s + 1) * batch[k]], width)
    return index, weight


def _train_every_epoch(stack, arrays, epoch_batches, max_epochs: int, k_folds: int):
    """No early stopping: every fold runs every epoch, so all epochs' steps go in one call (the
    same batches, drawn in the same order; no Python between epochs)."""
    import tensorflow as tf

    x_fit, z_fit, x_stop, z_stop, w_stop = arrays
    batches = [epoch_batches() for _ in range(max_epochs)]
    stack.epoch(x_fit, z_fit, tf.constant(np.concatenate([i for i, _ in batches])),
                tf.constant(np.concatenate([w for _, w in batches])), x_stop, z_stop, w_stop)
    return np.full(k_folds, max_epochs)  # (a diverged fold: non-finite estimates)


def _train_until_stopped(stack, arrays, epoch_batches, max_epochs: int, k_folds: int):
    """Epoch by epoch until every fold's patience has run out; the epochs each fold ran."""
    import tensorflow as tf

    x_fit, z_fit, x_stop, z_stop, w_stop = arrays
    epochs = np.zeros(k_folds, int)
    for _ in range(max_epochs):
        index, weight = epoch_batches()
        was_active = np.asarray(stack.epoch(x_fit, z_fit, tf.constant(index),
                                            tf.constant(weight), x_stop, z_stop, w_stop))
        epochs += was_active
        if not np.asarray(stack.active.numpy()).any():
            break
    return epochs


class _NewNetworkTraces(logging.Filter):
    """Drops TensorFlow's "N out of the last N calls to <function ...> triggered tf.function
    retracing" warning for this module's two functions: each ``predict_stack`` call and each
    trial's ``_Stack`` wrap a new stacked network (new variables) in a new ``tf.function``, so
    one trace per call is by design, and the warning would only break the progress bars of a
    run. Other retracing warnings pass."""

    OURS = ("predict_stack.<locals>", "_Stack._epoch")

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        return not ("triggered tf.function retracing" in message
                    and any(name in message for name in self.OURS))


_TRACE_FILTER = _NewNetworkTraces()


def _quiet_retracing() -> None:
    import tensorflow as tf

    if _TRACE_FILTER not in tf.get_logger().filters:
        tf.get_logger().addFilter(_TRACE_FILTER)


def predict_stack(models: Sequence[keras.Model], arrays: Sequence[np.ndarray],
                  chunk: int = 4096) -> list[np.ndarray]:
    """``models[k]``'s standardised predictions of ``arrays[k]`` (float64): one stacked forward
    pass for all K models per chunk of rows (the Keras models' own predict for layers the stack
    does not implement)."""
    import tensorflow as tf

    try:
        network = _StackedNetwork(models, 0)
    except UnsupportedLayer:
        return [np.asarray(m.predict_on_batch(a)).reshape(-1).astype(np.float64) if len(a)
                else np.empty(0) for m, a in zip(models, arrays, strict=True)]
    _quiet_retracing()
    forward = tf.function(lambda x: network(x, training=False), reduce_retracing=True,
                          autograph=False)
    sizes = [a.shape[0] for a in arrays]
    out: list[list[np.ndarray]] = [[] for _ in models]
    for start in range(0, max(sizes, default=0), chunk):
        parts = [a[start: start + chunk] for a in arrays]
        stacked, _ = _stacked(parts, max(p.shape[0] for p in parts))
        values = np.asarray(forward(tf.constant(stacked)), np.float64)
        for k, p in enumerate(parts):
            out[k].append(values[k, : p.shape[0]])
    return [np.concatenate(o) if o else np.empty(0) for o in out]
