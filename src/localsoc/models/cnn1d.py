"""A 1D-CNN for spectra, built from hyperparameters (after Shen & Viscarra Rossel 2021).

A network is a stack of Conv-blocks, FC-blocks and a linear output block. Everything that can be
searched lives in one place, :data:`DEFAULT_SEARCH_SPACE`, as data: a list is a choice (one
element: fixed), a dict with ``min``/``max`` is a range (integers give an integer range; add
``step``, ``sampling: log`` or ``default``; ``min == max``: fixed). A run narrows the space with
``resolve_search_space(overrides)``, for instance ``{"conv_blocks": {"min": 1, "max": 1},
"padding": ["same"]}``.

Conv-block ``i``: Conv1D(filters, kernel size, stride, padding) -> [BatchNormalization] ->
activation -> [MaxPooling1D | AveragePooling1D] -> [Dropout]. FC-block ``i``: Dense(nodes) ->
[BatchNormalization] -> activation -> [Dropout]. Output: Dense(1), linear. Weight layers (Conv1D
and Dense) are named ``conv_<i>``, ``fc_<i>`` and ``output``; the representation transfer counts
and freezes them in that order.

Invalid combinations do not crash: a convolution or pooling whose kernel (or pool) is longer than
the sequence it gets, with ``valid`` padding, is built with ``same`` padding instead (so the
sequence never shrinks to nothing); the substitution is logged and listed in
``model.localsoc_adjustments``.

This module builds models; it does not fit them and does no I/O.
"""

from __future__ import annotations

import copy
import logging
import math
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any

import keras

logger = logging.getLogger(__name__)

ACTIVATIONS: tuple[str, ...] = ("relu", "elu", "selu", "leaky_relu", "swish")
OPTIMIZERS: tuple[str, ...] = ("adam", "nadam", "rmsprop", "sgd")

#: The searched space, after the paper (1-3 Conv-blocks with kernels 2-10 and up to ~256
#: filters, 1-5 FC-blocks with 8-1024 nodes). Keys starting with ``fc_`` belong to FC-blocks.
DEFAULT_SEARCH_SPACE: dict[str, Any] = {
    # architecture
    "conv_blocks": {"min": 1, "max": 3},
    "fc_blocks": {"min": 1, "max": 5},
    # Conv-block
    "filters": {"min": 8, "max": 256, "step": 8, "default": 32},
    "kernel_size": {"min": 2, "max": 10, "default": 5},
    "strides": {"min": 1, "max": 8, "default": 1},  # the paper's networks use up to 8
    "padding": ["valid", "same"],
    "activation": list(ACTIVATIONS),
    "batch_normalization": [False, True],
    "pooling": [False, True],
    "pool_type": ["max", "average"],
    "pool_size": {"min": 2, "max": 4},
    "pool_strides": {"min": 1, "max": 4, "default": 2},
    "dropout": [False, True],
    "dropout_rate": {"min": 0.0, "max": 0.5, "default": 0.1},
    # FC-block
    "fc_units": {"min": 8, "max": 1024, "sampling": "log", "default": 64},
    "fc_activation": list(ACTIVATIONS),
    "fc_batch_normalization": [False, True],
    "fc_dropout": [False, True],
    "fc_dropout_rate": {"min": 0.0, "max": 0.5, "default": 0.1},
    # training
    "optimizer": list(OPTIMIZERS),
    "learning_rate": {"min": 1e-4, "max": 1e-2, "sampling": "log", "default": 1e-3},
    "batch_size": [8, 16, 32, 64, 128],
}

def _network(conv: list[tuple], fc: list[tuple], **training: Any) -> dict[str, Any]:
    """Hyperparameter values of a network: ``conv`` blocks (filters, kernel, stride, padding,
    activation[, "bn"][, dropout rate]), ``fc`` blocks (units, activation[, "bn"][, rate]);
    no pooling; ``training``: optimizer / learning_rate / batch_size (else the space's
    defaults)."""
    values: dict[str, Any] = {"conv_blocks": len(conv), "fc_blocks": len(fc), **training}
    for i, (filters, kernel, stride, padding, activation, *extra) in enumerate(conv):
        rates = [e for e in extra if not isinstance(e, str)]
        values.update({
            f"conv_{i}_filters": filters, f"conv_{i}_kernel_size": kernel,
            f"conv_{i}_strides": stride, f"conv_{i}_padding": padding,
            f"conv_{i}_activation": activation, f"conv_{i}_batch_normalization": "bn" in extra,
            f"conv_{i}_pooling": False, f"conv_{i}_dropout": bool(rates)})
        if rates:
            values[f"conv_{i}_dropout_rate"] = float(rates[0])
    for i, (units, activation, *extra) in enumerate(fc):
        rates = [e for e in extra if not isinstance(e, str)]
        values.update({
            f"fc_{i}_units": units, f"fc_{i}_activation": activation,
            f"fc_{i}_batch_normalization": "bn" in extra, f"fc_{i}_dropout": bool(rates)})
        if rates:
            values[f"fc_{i}_dropout_rate"] = float(rates[0])
    return values


#: Networks a search can start from (``initial_trials`` of a budget): the published library
#: models (Shen et al. 2022, Table 2) and DTL-Ig models (Table 4), and ``compact``: one
#: large-kernel Conv-block and one small FC-block after the 2021 framework's finding (Shen &
#: Viscarra Rossel 2021), sized for 30 spectra on a CPU (its test figures on the demo sites:
#: BENCHMARKS.md). The paper's training settings were not published; its networks take the
#: space's defaults.
KNOWN_NETWORKS: dict[str, dict[str, Any]] = {
    "compact": {"source": "LocalSOC (measured; see BENCHMARKS.md)", "values": _network(
        [(16, 9, 4, "valid", "elu")], [(8, "elu")],
        optimizer="adam", learning_rate=2e-3, batch_size=32)},
    "paper_global": {"source": "Shen et al. 2022, Table 2 (global library)", "values": _network(
        [(148, 10, 4, "valid", "swish")],
        [(691, "selu"), (891, "elu", "bn", 0.38), (533, "swish", "bn"),
         (764, "selu", "bn", 0.38), (650, "selu", 0.38)])},
    "paper_china": {"source": "Shen et al. 2022, Table 2 (China library)", "values": _network(
        [(25, 7, 7, "valid", "swish"), (248, 8, 3, "valid", "leaky_relu"),
         (238, 5, 4, "valid", "relu", 0.39)],
        [(212, "leaky_relu", 0.07), (140, "leaky_relu"), (165, "swish"),
         (50, "leaky_relu", 0.07)])},
    "paper_sweden": {"source": "Shen et al. 2022, Table 2 (Sweden library)", "values": _network(
        [(161, 5, 3, "valid", "elu")], [(896, "swish", "bn", 0.37), (474, "swish", "bn", 0.37)])},
    "paper_usa": {"source": "Shen et al. 2022, Table 2 (USA library)", "values": _network(
        [(216, 8, 7, "valid", "selu"), (216, 8, 8, "same", "swish", "bn"),
         (252, 4, 4, "same", "leaky_relu", 0.03)],
        [(179, "swish", "bn"), (252, "swish", "bn", 0.29)])},
    "paper_dtl_china": {"source": "Shen et al. 2022, Table 4 (DTL-Ig, China)", "values": _network(
        [(232, 3, 2, "valid", "swish", 0.001)], [(22, "elu", 0.38)])},
    "paper_dtl_sweden": {"source": "Shen et al. 2022, Table 4 (DTL-Ig, Sweden)",
                         "values": _network([(214, 10, 6, "same", "selu", 0.20)],
                                            [(446, "leaky_relu", "bn"), (208, "swish", 0.48)])},
    "paper_dtl_usa": {"source": "Shen et al. 2022, Table 4 (DTL-Ig, USA)", "values": _network(
        [(212, 7, 3, "same", "swish", 0.16)], [(1005, "swish"), (1015, "selu")])},
}

_RANGE_KEYS = {"min", "max", "step", "sampling", "default"}
_BOOLEAN_KEYS = {
    "batch_normalization",
    "pooling",
    "dropout",
    "fc_batch_normalization",
    "fc_dropout",
}


def resolve_search_space(overrides: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """The default search space with ``overrides`` applied, validated.

    Raises ``ValueError`` naming the key when a key is unknown or a value is malformed.
    """
    space = copy.deepcopy(DEFAULT_SEARCH_SPACE)
    for key, value in dict(overrides or {}).items():
        if key not in DEFAULT_SEARCH_SPACE:
            raise ValueError(
                f"unknown search-space key {key!r}; known keys: {sorted(DEFAULT_SEARCH_SPACE)}"
            )
        if not isinstance(value, (list, tuple, Mapping)):
            value = [value]  # a scalar fixes the hyperparameter
        space[key] = copy.deepcopy(list(value) if isinstance(value, tuple) else value)
    for key, spec in space.items():
        _check_spec(key, spec)
    return space


def _check_spec(key: str, spec: Any) -> None:
    if isinstance(spec, list):
        if not spec:
            raise ValueError(f"search space {key!r}: the list of choices is empty; give >= 1")
        if key in {"activation", "fc_activation"}:
            bad = [v for v in spec if v not in ACTIVATIONS]
            if bad:
                raise ValueError(f"search space {key!r}: unknown {bad}; use {list(ACTIVATIONS)}")
        if key == "optimizer":
            bad = [v for v in spec if v not in OPTIMIZERS]
            if bad:
                raise ValueError(f"search space {key!r}: unknown {bad}; use {list(OPTIMIZERS)}")
        if key == "padding" and not set(spec) <= {"valid", "same"}:
            raise ValueError(f"search space 'padding': use 'valid' and/or 'same', got {spec}")
        if key == "pool_type" and not set(spec) <= {"max", "average"}:
            raise ValueError(f"search space 'pool_type': use 'max' and/or 'average', got {spec}")
        if key in _BOOLEAN_KEYS and not all(isinstance(v, bool) for v in spec):
            raise ValueError(f"search space {key!r}: choices must be true/false, got {spec}")
        return
    if isinstance(spec, Mapping):
        unknown = set(spec) - _RANGE_KEYS
        if unknown or "min" not in spec or "max" not in spec:
            raise ValueError(
                f"search space {key!r}: a range needs 'min' and 'max' (optional 'step', "
                f"'sampling', 'default'); got keys {sorted(spec)}"
            )
        if spec["min"] > spec["max"]:
            raise ValueError(f"search space {key!r}: min {spec['min']} > max {spec['max']}")
        if spec.get("sampling", "linear") == "log" and spec["min"] <= 0:
            raise ValueError(f"search space {key!r}: log sampling needs min > 0")
        return
    raise ValueError(f"search space {key!r}: use a list of choices or a {{min, max}} range")


# --------------------------------------------------------------------------------------------
# Hyperparameter access: Keras-Tuner's HyperParameters while searching, a plain dict of values
# when a found architecture is rebuilt (from metadata.json, say).


class FixedHyperParameters:
    """Plays Keras-Tuner's ``HyperParameters`` for a plain ``{name: value}`` dict.

    Every value the builder asks for must be in the dict; a missing one raises ``KeyError``
    naming it (a dict from another space version, say).
    """

    def __init__(self, values: Mapping[str, Any]):
        self.values = dict(values)

    def _get(self, name: str) -> Any:
        try:
            return self.values[name]
        except KeyError:
            raise KeyError(
                f"hyperparameter {name!r} is missing from the given values "
                f"({sorted(self.values)}); pass the full set the search recorded"
            ) from None

    def Int(self, name, *args, **kwargs):  # noqa: N802 (Keras-Tuner's spelling)
        return int(self._get(name))

    def Float(self, name, *args, **kwargs):  # noqa: N802
        return float(self._get(name))

    def Choice(self, name, *args, **kwargs):  # noqa: N802
        return self._get(name)

    def Boolean(self, name, *args, **kwargs):  # noqa: N802
        return bool(self._get(name))

    def Fixed(self, name, value, *args, **kwargs):  # noqa: N802
        return self.values.get(name, value)

    @contextmanager
    def conditional_scope(self, parent_name, parent_values) -> Iterator[None]:
        yield


def as_hyperparameters(hp: Any) -> Any:
    """Keras-Tuner ``HyperParameters`` pass through; a dict becomes ``FixedHyperParameters``."""
    if isinstance(hp, Mapping):
        return FixedHyperParameters(hp)
    return hp


def _draw(hp: Any, name: str, spec: Any) -> Any:
    """One hyperparameter from its space entry."""
    if isinstance(spec, list):
        if len(spec) == 1:
            return hp.Fixed(name, spec[0])
        if all(isinstance(v, bool) for v in spec) and set(spec) == {False, True}:
            return hp.Boolean(name, default=bool(spec[0]))
        return hp.Choice(name, list(spec), default=spec[0])
    low, high = spec["min"], spec["max"]
    if low == high:
        return hp.Fixed(name, low)
    sampling = spec.get("sampling", "linear")
    is_int = all(isinstance(v, int) and not isinstance(v, bool) for v in (low, high))
    step = spec.get("step")
    default = spec.get("default")
    if is_int and (step is None or isinstance(step, int)):
        if default is not None:
            default = int(default)
        return hp.Int(name, int(low), int(high), step=step, sampling=sampling, default=default)
    return hp.Float(
        name,
        float(low),
        float(high),
        step=step,
        sampling=sampling,
        default=None if default is None else float(default),
    )


def _max_count(spec: Any) -> int:
    return int(max(spec) if isinstance(spec, list) else spec["max"])


# --------------------------------------------------------------------------------------------
# The model


def _activation_layer(name: str, layer_name: str) -> keras.layers.Layer:
    if name == "leaky_relu":
        return keras.layers.LeakyReLU(negative_slope=0.01, name=layer_name)
    if name not in ACTIVATIONS:
        raise ValueError(f"activation {name!r} is not one of {list(ACTIVATIONS)}")
    return keras.layers.Activation(name, name=layer_name)


def _output_length(length: int, window: int, stride: int, padding: str) -> int:
    if padding == "same":
        return math.ceil(length / stride)
    return (length - window) // stride + 1 if length >= window else 0


#: The hyperparameters of a block, in the order they are drawn (``<kind>_<i>_<name>``, drawn
#: from the space's ``<name>``, ``fc_<name>`` for an FC-block). A pair is a switch and the
#: hyperparameters it turns on (drawn under its conditional scope).
BLOCK_HYPERPARAMETERS: dict[str, tuple] = {
    "conv": ("filters", "kernel_size", "strides", "padding", "activation",
             "batch_normalization", ("pooling", ("pool_type", "pool_size", "pool_strides")),
             ("dropout", ("dropout_rate",))),
    "fc": ("units", "activation", "batch_normalization", ("dropout", ("dropout_rate",))),
}

#: Pooling layers by ``pool_type``.
POOLING_LAYERS: dict[str, type] = {
    "max": keras.layers.MaxPooling1D,
    "average": keras.layers.AveragePooling1D,
}


def build_cnn1d(
    hp: Any, n_bands: int, space: Mapping[str, Any] | None = None
) -> keras.Model:
    """A 1D-CNN (uncompiled ``keras.Model``) for spectra of ``n_bands`` bands.

    ``hp``: Keras-Tuner ``HyperParameters`` (values are drawn from ``space`` and registered) or a
    dict of values, as recorded by a search (``space`` is then only used for its block limits).
    ``space``: overrides of :data:`DEFAULT_SEARCH_SPACE` or a resolved space.
    The model takes ``(n, n_bands)`` float arrays and returns ``(n, 1)``.
    """
    n_bands = int(n_bands)
    if n_bands < 1:
        raise ValueError(f"n_bands must be >= 1, got {n_bands}")
    space = resolve_search_space(space)
    hp = as_hyperparameters(hp)
    adjustments: list[str] = []

    inputs = keras.Input(shape=(n_bands,), name="spectrum")
    x = keras.layers.Reshape((n_bands, 1), name="bands_as_channels")(inputs)
    length = n_bands
    for block in _draw_blocks(hp, space, "conv"):
        x, length = _conv_block(x, length, block, adjustments)
    x = keras.layers.Flatten(name="flatten")(x)
    for block in _draw_blocks(hp, space, "fc"):
        x = _fc_block(x, block)

    outputs = keras.layers.Dense(1, activation="linear", name="output")(x)
    model = keras.Model(inputs, outputs, name="cnn1d")
    for note in adjustments:
        logger.debug("build_cnn1d: %s", note)
    model.localsoc_adjustments = adjustments
    return model


def _draw_blocks(hp: Any, space: Mapping[str, Any], kind: str) -> Iterator[dict[str, Any]]:
    """The drawn hyperparameters of each block of ``kind`` the network uses, block by block
    (``name`` is ``<kind>_<i>``).

    With Keras-Tuner, every block's hyperparameters are registered (inactive ones under their
    conditional scope return None), so the oracle tunes blocks a trial does not use yet.
    """
    n_blocks = _draw(hp, f"{kind}_blocks", space[f"{kind}_blocks"])
    max_blocks = _max_count(space[f"{kind}_blocks"])
    registering = not isinstance(hp, FixedHyperParameters)
    for i in range(max_blocks if registering else n_blocks):
        with hp.conditional_scope(f"{kind}_blocks", list(range(i + 1, max_blocks + 1))):
            block = _draw_block(hp, space, kind, i, registering)
        if i < n_blocks:
            yield block


def _draw_block(
    hp: Any, space: Mapping[str, Any], kind: str, i: int, registering: bool
) -> dict[str, Any]:
    """One block's hyperparameters in ``BLOCK_HYPERPARAMETERS`` order; a switched-off group is
    drawn only while registering."""
    prefix = "fc_" if kind == "fc" else ""
    block: dict[str, Any] = {"name": f"{kind}_{i}"}

    def draw(key: str) -> None:
        block[key] = _draw(hp, f"{kind}_{i}_{key}", space[prefix + key])

    for entry in BLOCK_HYPERPARAMETERS[kind]:
        switch, dependents = entry if isinstance(entry, tuple) else (entry, ())
        draw(switch)
        if dependents:
            with hp.conditional_scope(f"{kind}_{i}_{switch}", [True]):
                if block[switch] or registering:
                    for key in dependents:
                        draw(key)
    return block


def _conv_block(
    x: Any, length: int, block: Mapping[str, Any], adjustments: list[str]
) -> tuple[Any, int]:
    """Conv1D -> [BatchNormalization] -> activation -> [pooling] -> [Dropout]; returns the
    output and its sequence length. A ``valid`` convolution longer than the sequence is built
    with ``same`` padding (noted in ``adjustments``)."""
    name, kernel, strides = block["name"], block["kernel_size"], block["strides"]
    padding = block["padding"]
    if _output_length(length, kernel, strides, padding) < 1:
        adjustments.append(
            f"{name}: kernel {kernel} on {length} steps with 'valid' padding leaves "
            "nothing; built with 'same' padding"
        )
        padding = "same"
    x = keras.layers.Conv1D(
        block["filters"], kernel, strides=strides, padding=padding, name=name
    )(x)
    length = _output_length(length, kernel, strides, padding)
    if block["batch_normalization"]:
        x = keras.layers.BatchNormalization(name=f"{name}_batch_normalization")(x)
    x = _activation_layer(block["activation"], f"{name}_activation")(x)
    if block["pooling"]:
        x, length = _pooling(x, length, block, adjustments)
    if block["dropout"]:
        x = keras.layers.Dropout(block["dropout_rate"], name=f"{name}_dropout")(x)
    return x, length


def _pooling(
    x: Any, length: int, block: Mapping[str, Any], adjustments: list[str]
) -> tuple[Any, int]:
    """The block's pooling layer (``same`` padding when a ``valid`` pool leaves nothing)."""
    name, size, strides = block["name"], block["pool_size"], block["pool_strides"]
    padding = "valid"
    if _output_length(length, size, strides, "valid") < 1:
        adjustments.append(
            f"{name}: pool {size} on {length} steps leaves nothing; pooled with 'same' padding"
        )
        padding = "same"
    pool_class = POOLING_LAYERS[block["pool_type"]]
    x = pool_class(size, strides=strides, padding=padding, name=f"{name}_pooling")(x)
    return x, _output_length(length, size, strides, padding)


def _fc_block(x: Any, block: Mapping[str, Any]) -> Any:
    """Dense -> [BatchNormalization] -> activation -> [Dropout]."""
    name = block["name"]
    x = keras.layers.Dense(block["units"], name=name)(x)
    if block["batch_normalization"]:
        x = keras.layers.BatchNormalization(name=f"{name}_batch_normalization")(x)
    x = _activation_layer(block["activation"], f"{name}_activation")(x)
    if block["dropout"]:
        x = keras.layers.Dropout(block["dropout_rate"], name=f"{name}_dropout")(x)
    return x


def fold_builder(hp: Any, n_bands: int, space: Mapping[str, Any] | None = None):
    """``make_model(fold)`` for the K fold models of one architecture: the first call builds the
    network (``build_cnn1d``; Keras-Tuner hyperparameters are registered then), later calls
    rebuild it from that model's configuration (``keras.Model.from_config``), drawing fresh
    initial weights from the random state of the call, as ``build_cnn1d`` would: under the same
    seed both give the same weights (tests/models/test_cnn1d.py). It skips registering the
    Keras-Tuner hyperparameters again for every fold (timings: BENCHMARKS.md)."""
    first: list[keras.Model] = []

    def make_model(fold: int) -> keras.Model:
        if not first:
            first.append(build_cnn1d(hp, n_bands, space))
            return first[0]
        model = keras.Model.from_config(first[0].get_config())
        model.localsoc_adjustments = list(first[0].localsoc_adjustments)
        return model

    return make_model


def declare_training_hyperparameters(
    hp: Any, space: Mapping[str, Any] | None = None
) -> dict[str, Any]:
    """Draw (and register) the training hyperparameters: optimizer, learning rate, batch size."""
    space = resolve_search_space(space)
    hp = as_hyperparameters(hp)
    return {
        "optimizer": _draw(hp, "optimizer", space["optimizer"]),
        "learning_rate": float(_draw(hp, "learning_rate", space["learning_rate"])),
        "batch_size": int(_draw(hp, "batch_size", space["batch_size"])),
    }


def make_optimizer(name: str, learning_rate: float) -> keras.optimizers.Optimizer:
    """A fresh Keras optimiser by name (``adam``, ``nadam``, ``rmsprop``, ``sgd``)."""
    if name == "adam":
        return keras.optimizers.Adam(learning_rate=learning_rate)
    if name == "nadam":
        return keras.optimizers.Nadam(learning_rate=learning_rate)
    if name == "rmsprop":
        return keras.optimizers.RMSprop(learning_rate=learning_rate)
    if name == "sgd":
        return keras.optimizers.SGD(learning_rate=learning_rate, momentum=0.9)
    raise ValueError(f"optimizer {name!r} is not one of {list(OPTIMIZERS)}")


def weight_layers(model: keras.Model) -> list[keras.layers.Layer]:
    """The Conv1D and Dense layers of ``model``, input to output (what transfer depth counts)."""
    return [
        layer
        for layer in model.layers
        if isinstance(layer, (keras.layers.Conv1D, keras.layers.Dense))
    ]
