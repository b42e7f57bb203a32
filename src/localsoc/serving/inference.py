"""Fast prediction paths for served models, numerically the same as the models' own ``predict``.

``FoldEnsemble.predict`` calls each Keras fold model eagerly, which costs milliseconds per fold
and call in Keras 3; for the small networks of this project the framework overhead, not the
arithmetic, sets the latency. Two faster paths compute the same thing:

- ``NumpyEnsemble`` (used when every layer is one that ``localsoc.models.cnn1d`` builds): the
  fold models' weights stacked along a fold axis and the forward pass written in NumPy, float32
  like Keras (Conv1D as im2col + batched matrix products, BatchNormalization in inference form,
  the search space's activations and poolings; Dropout is the identity at inference).
- ``CompiledEnsemble``: the fold models traced once into one TensorFlow graph.

NumPy is faster for a few spectra (no framework overhead: ~1-3 ms against ~5-8 ms for ten
folds of the demo's networks on a loaded 2-core VM), oneDNN's convolutions for many (about 2-4x
at 100 spectra), so ``HybridEnsemble`` uses the first up to ``NUMPY_MAX_ROWS`` spectra per call
and the second above; networks with a layer NumPy lacks always use the graph.

Both return every fold's standardised output; it is put back in ``y`` units, then averaged and
spread by ``FoldEnsemble``'s own ``fold_mean_and_spread`` (float64 after the float32 network).
They agree with ``FoldEnsemble.predict`` to float32 round-off (tested to 1e-6 SOC %, typically ~1e-7: a
different order of the float32 sums changes the last bits).

A ``LinearModel`` is already a single float64 matrix product and is used as is.

Preprocessing is not repeated here: the service calls ``localsoc.spectra.steps.apply_steps``
with ``check=False`` (it validates each request first), the same functions training uses.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from localsoc.models.ensemble import PREDICT_CHUNK, fold_mean_and_spread


def configure_threads(threads: int | None) -> None:
    """Compute threads for serving: TensorFlow's pools and the BLAS under NumPy (call before the
    first model is loaded)."""
    if not threads:
        return
    from threadpoolctl import threadpool_limits

    threadpool_limits(int(threads))
    import tensorflow as tf

    try:
        tf.config.threading.set_intra_op_parallelism_threads(int(threads))
        tf.config.threading.set_inter_op_parallelism_threads(1)
    except RuntimeError:  # the runtime already started; keep its pools
        pass


class CompiledEnsemble:
    """A ``FoldEnsemble``'s fold models as one traced graph: ``predict(X, return_std)``."""

    def __init__(self, ensemble: Any) -> None:
        import tensorflow as tf

        self.ensemble = ensemble
        self.n_bands = int(ensemble.n_bands)
        self.y_mean_ = np.asarray(ensemble.y_mean_, dtype=np.float64)[:, None]
        self.y_scale_ = np.asarray(ensemble.y_scale_, dtype=np.float64)[:, None]
        models = list(ensemble.models_)

        @tf.function(
            input_signature=[tf.TensorSpec([None, self.n_bands], tf.float32)],
            reduce_retracing=True,
        )
        def fold_outputs(x):
            return tf.concat([model(x, training=False) for model in models], axis=1)

        self._fold_outputs = fold_outputs
        self._fold_outputs(np.zeros((1, self.n_bands), dtype=np.float32))  # trace now

    def predict_folds(self, X: np.ndarray) -> np.ndarray:
        """``(n_folds, n_samples)`` predictions in ``y`` units (as ``FoldEnsemble``)."""
        X = np.ascontiguousarray(X, dtype=np.float32)
        if X.ndim != 2 or X.shape[1] != self.n_bands:
            raise ValueError(f"X must be (samples, {self.n_bands}); got shape {X.shape}")
        parts = [
            self._fold_outputs(X[start : start + PREDICT_CHUNK]).numpy()
            for start in range(0, X.shape[0], PREDICT_CHUNK)
        ]
        # (n_folds, n_samples), C-ordered like FoldEnsemble's stack, so sums run in its order
        standardised = np.ascontiguousarray(np.concatenate(parts, axis=0).T, dtype=np.float64)
        return self.y_mean_ + self.y_scale_ * standardised

    def predict(self, X: np.ndarray, return_std: bool = False):
        return fold_mean_and_spread(self.predict_folds(X), return_std)


class _Unsupported(Exception):
    """A layer the NumPy forward pass does not implement."""


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-x))


def _elu(x: np.ndarray, alpha: float = 1.0) -> np.ndarray:
    return np.where(x > 0, x, alpha * np.expm1(np.minimum(x, 0)))


_SELU_ALPHA = np.float32(1.6732632423543772)
_SELU_SCALE = np.float32(1.0507009873554805)

_ACTIVATIONS = {
    "linear": lambda x: x,
    "relu": lambda x: np.maximum(x, 0),
    "elu": _elu,
    "selu": lambda x: _SELU_SCALE * _elu(x, _SELU_ALPHA),
    "swish": lambda x: x * _sigmoid(x),
    "silu": lambda x: x * _sigmoid(x),
}


def _activation_name(activation: Any) -> str:
    name = getattr(activation, "__name__", str(activation))
    if name not in _ACTIVATIONS:
        raise _Unsupported(f"activation {name!r}")
    return name


def _same_padding(length: int, window: int, stride: int) -> tuple[int, int, int]:
    """(output length, left pad, right pad) of TensorFlow's 'same' padding."""
    out = -(-length // stride)
    total = max((out - 1) * stride + window - length, 0)
    return out, total // 2, total - total // 2


def _windows(x: np.ndarray, window: int, stride: int, padding: str, fill: float):
    """(folds, n, out, channels, window) sliding windows over axis 2 of (folds, n, L, C)."""
    if padding == "same":
        _, left, right = _same_padding(x.shape[2], window, stride)
        if left or right:
            x = np.pad(x, ((0, 0), (0, 0), (left, right), (0, 0)), constant_values=fill)
    elif padding != "valid":
        raise _Unsupported(f"padding {padding!r}")
    view = np.lib.stride_tricks.sliding_window_view(x, window, axis=2)
    return view[:, :, ::stride]


class NumpyEnsemble:
    """The fold models of a ``FoldEnsemble`` as one NumPy forward pass with a fold axis.

    Raises ``ValueError`` (from :meth:`from_ensemble`) when a layer is not one of those
    ``build_cnn1d`` makes or the folds differ in architecture.
    """

    def __init__(self, ensemble: Any, steps: list[tuple[str, dict[str, Any]]]) -> None:
        self.n_bands = int(ensemble.n_bands)
        self.steps = steps
        self.y_mean_ = np.asarray(ensemble.y_mean_, dtype=np.float64)[:, None]
        self.y_scale_ = np.asarray(ensemble.y_scale_, dtype=np.float64)[:, None]

    @classmethod
    def from_ensemble(cls, ensemble: Any) -> NumpyEnsemble:
        try:
            folds = [cls._layers(model) for model in ensemble.models_]
        except _Unsupported as error:
            raise ValueError(f"no NumPy forward pass for this network: {error}") from None
        signature = [[(kind, {k: v for k, v in p.items() if not isinstance(v, np.ndarray)})
                      for kind, p in layers] for layers in folds]
        if any(s != signature[0] for s in signature[1:]):
            raise ValueError("the fold models differ in architecture; no stacked NumPy pass")
        steps = []
        for position, (kind, params) in enumerate(folds[0]):
            stacked = dict(params)
            for key, value in params.items():
                if isinstance(value, np.ndarray):
                    stacked[key] = np.stack([f[position][1][key] for f in folds])
            steps.append((kind, stacked))
        return cls(ensemble, steps)

    @staticmethod
    def _layers(model: Any) -> list[tuple[str, dict[str, Any]]]:
        import keras

        layers: list[tuple[str, dict[str, Any]]] = []
        for layer in model.layers:
            config = layer.get_config()
            if isinstance(layer, keras.layers.InputLayer):
                continue
            if isinstance(layer, (keras.layers.Dropout, keras.layers.Flatten,
                                  keras.layers.Reshape)):
                kind = type(layer).__name__.lower()
                if kind == "reshape" and tuple(config["target_shape"])[-1:] != (1,):
                    raise _Unsupported(f"reshape to {config['target_shape']}")
                layers.append((kind, {}))
                continue
            weights = [np.asarray(w, dtype=np.float32) for w in layer.get_weights()]
            if isinstance(layer, keras.layers.Conv1D):
                if (tuple(config["dilation_rate"]) != (1,) or config.get("groups", 1) != 1
                        or config["data_format"] != "channels_last"):
                    raise _Unsupported(f"Conv1D {layer.name} with dilation/groups/format")
                kernel = weights[0]
                bias = weights[1] if config["use_bias"] else np.zeros(kernel.shape[-1],
                                                                      np.float32)
                layers.append(("conv", {
                    "kernel": kernel.reshape(-1, kernel.shape[-1]), "bias": bias[None, :],
                    "window": int(kernel.shape[0]), "stride": int(config["strides"][0]),
                    "padding": config["padding"]}))
            elif isinstance(layer, keras.layers.Dense):
                bias = weights[1] if config["use_bias"] else np.zeros(weights[0].shape[-1],
                                                                      np.float32)
                layers.append(("dense", {"kernel": weights[0], "bias": bias[None, :]}))
            elif isinstance(layer, keras.layers.BatchNormalization):
                if config["axis"] not in (-1, [-1]) and config["axis"] != [len(layer.input.shape) - 1]:
                    raise _Unsupported(f"BatchNormalization over axis {config['axis']}")
                named = {w.path.rsplit("/", 1)[-1]: np.asarray(w, dtype=np.float32)
                         for w in layer.weights}
                inverse = (1.0 / np.sqrt(named["moving_variance"]
                                         + np.float32(config["epsilon"]))).astype(np.float32)
                if config["scale"]:
                    inverse = inverse * named["gamma"]
                offset = named["beta"] if config["center"] else np.float32(0)
                layers.append(("affine", {"scale": inverse,
                                          "shift": offset - named["moving_mean"] * inverse}))
            elif isinstance(layer, keras.layers.LeakyReLU):
                layers.append(("leaky_relu", {"slope": float(config["negative_slope"])}))
            elif isinstance(layer, keras.layers.Activation):
                layers.append(("activation", {"name": _activation_name(layer.activation)}))
            elif isinstance(layer, (keras.layers.MaxPooling1D, keras.layers.AveragePooling1D)):
                if config["data_format"] != "channels_last":
                    raise _Unsupported(f"pooling {layer.name} data format")
                kind = "max_pool" if isinstance(layer, keras.layers.MaxPooling1D) else "avg_pool"
                layers.append((kind, {"window": int(config["pool_size"][0]),
                                      "stride": int(config["strides"][0]),
                                      "padding": config["padding"]}))
            else:
                raise _Unsupported(f"layer {layer.name} ({type(layer).__name__})")
            if "activation" in config and kind_needs_activation(layers[-1][0]):
                name = _activation_name(layer.activation)
                if name != "linear":
                    layers.append(("activation", {"name": name}))
        return layers

    def fold_outputs(self, X: np.ndarray) -> np.ndarray:
        """Standardised output of every fold model, ``(n_folds, n_samples)``, float32."""
        n_folds = self.y_mean_.shape[0]
        a = np.broadcast_to(np.asarray(X, dtype=np.float32)[None], (n_folds, *X.shape))
        for kind, p in self.steps:
            if kind == "reshape":
                a = a[..., None]
            elif kind == "conv":
                windows = _windows(a, p["window"], p["stride"], p["padding"], 0.0)
                folds, n, length = windows.shape[:3]
                # (folds, n, out, C, k) -> (folds, n * out, k * C), the kernel's (k, C) order
                patches = windows.transpose(0, 1, 2, 4, 3).reshape(folds, n * length, -1)
                a = (np.matmul(patches, p["kernel"]) + p["bias"]).reshape(folds, n, length, -1)
            elif kind == "dense":
                a = np.matmul(a, p["kernel"]) + p["bias"]
            elif kind == "affine":
                shape = (a.shape[0],) + (1,) * (a.ndim - 2) + (a.shape[-1],)
                a = a * p["scale"].reshape(shape) + p["shift"].reshape(shape)
            elif kind == "activation":
                a = _ACTIVATIONS[p["name"]](a)
            elif kind == "leaky_relu":
                a = np.where(a >= 0, a, np.float32(p["slope"]) * a)
            elif kind == "max_pool":
                a = _windows(a, p["window"], p["stride"], p["padding"], -np.inf).max(axis=-1)
            elif kind == "avg_pool":
                total = _windows(a, p["window"], p["stride"], p["padding"], 0.0).sum(axis=-1)
                ones = np.ones((1, 1, a.shape[2], 1), dtype=np.float32)
                count = _windows(ones, p["window"], p["stride"], p["padding"], 0.0).sum(axis=-1)
                a = total / count
            elif kind == "flatten":
                a = a.reshape(a.shape[0], a.shape[1], -1)
            # dropout: the identity at inference
            a = a.astype(np.float32, copy=False)
        return a.reshape(a.shape[0], a.shape[1])

    def predict_folds(self, X: np.ndarray) -> np.ndarray:
        X = np.asarray(X, dtype=np.float32)
        if X.ndim != 2 or X.shape[1] != self.n_bands:
            raise ValueError(f"X must be (samples, {self.n_bands}); got shape {X.shape}")
        parts = [self.fold_outputs(X[start : start + PREDICT_CHUNK])
                 for start in range(0, X.shape[0], PREDICT_CHUNK)]
        standardised = np.ascontiguousarray(np.concatenate(parts, axis=1), dtype=np.float64)
        return self.y_mean_ + self.y_scale_ * standardised

    def predict(self, X: np.ndarray, return_std: bool = False):
        return fold_mean_and_spread(self.predict_folds(X), return_std)


def kind_needs_activation(kind: str) -> bool:
    """Conv1D and Dense carry an ``activation`` argument of their own (linear in cnn1d)."""
    return kind in ("conv", "dense")


class HybridEnsemble:
    """NumPy for calls of up to ``max_numpy_rows`` spectra, the TensorFlow graph above."""

    def __init__(self, numpy_path: NumpyEnsemble, graph_path: CompiledEnsemble,
                 max_numpy_rows: int) -> None:
        self.numpy_path = numpy_path
        self.graph_path = graph_path
        self.max_numpy_rows = int(max_numpy_rows)

    def predict(self, X: np.ndarray, return_std: bool = False):
        path = self.numpy_path if len(X) <= self.max_numpy_rows else self.graph_path
        return path.predict(X, return_std=return_std)

    def predict_folds(self, X: np.ndarray) -> np.ndarray:
        path = self.numpy_path if len(X) <= self.max_numpy_rows else self.graph_path
        return path.predict_folds(X)


#: Spectra per call up to which ``HybridEnsemble`` uses NumPy (measured crossover: 10-25).
NUMPY_MAX_ROWS = 16
BACKENDS = ("auto", "numpy", "tensorflow")


def fast_predictor(model: Any, backend: str = "auto") -> Any:
    """The serving predictor of a bundled model.

    ``backend``: for fold ensembles, "numpy" (:class:`NumpyEnsemble`, an error if a layer is
    not supported), "tensorflow" (:class:`CompiledEnsemble`) or "auto" (:class:`HybridEnsemble`
    when NumPy supports the network, else the graph).
    """
    from localsoc.models.ensemble import FoldEnsemble

    if backend not in BACKENDS:
        raise ValueError(f"backend must be one of {BACKENDS}; got {backend!r}")
    if not isinstance(model, FoldEnsemble):
        return model
    if backend == "tensorflow":
        return CompiledEnsemble(model)
    try:
        numpy_path = NumpyEnsemble.from_ensemble(model)
    except ValueError:
        if backend == "numpy":
            raise
        return CompiledEnsemble(model)
    if backend == "numpy":
        return numpy_path
    return HybridEnsemble(numpy_path, CompiledEnsemble(model), NUMPY_MAX_ROWS)
