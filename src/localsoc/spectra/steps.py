"""Preprocessing as data: an ordered chain of named steps with parameters (and fitted state),
shared by the pipelines and serving.

The configuration (``preprocess.steps``) lists the steps in order, each as a bare name (its
default parameters) or a one-key mapping of name to parameters::

    steps: [absorbance, snv]                                  # today's default
    steps: [{absorbance: {}}, {savgol: {window: 11, polyorder: 2, deriv: 1}}, {snv: {}}]

:func:`parse_steps` turns either form into the stored form, one ``{"name", "params"}`` mapping per
step with every parameter spelled out (plus ``"state"`` once fitted), and raises ``ValueError``
naming the step and the key for an unknown step, an unknown parameter or a bad value.

Most steps treat each spectrum on its own (absorbance, SNV, Savitzky-Golay, detrend). MSC has
fitted state, its reference spectrum: :func:`fit_steps` fits it on the rows it is given, which
must be training rows (the library, or calibration rows), never a site's test rows; the fitted
chain is what the package stage ships in the bundle and what serving applies. Each step is one
plain function with its own module (``localsoc.spectra.<module>``), the same function its
scikit-learn transformer calls, so pipelines and serving run the same arithmetic. Adding a step
means one :data:`STEPS` entry plus its module.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from sklearn.utils import check_array

from localsoc.spectra.absorbance import absorbance, check_absorbance_parameters
from localsoc.spectra.detrend import check_detrend_parameters, detrend
from localsoc.spectra.msc import fit_msc_reference, msc
from localsoc.spectra.savgol import check_savgol_parameters, savgol
from localsoc.spectra.snv import check_snv_parameters, snv


def _fit_msc(X: np.ndarray) -> dict[str, Any]:
    return {"reference": fit_msc_reference(X, check=False).tolist()}


def _no_parameters() -> None:
    return None


@dataclass(frozen=True)
class StepKind:
    """One preprocessing step: ``function(X, **params, **state, check=...)``, its parameters'
    defaults and checker, and for a step with fitted state the function that fits it on
    training rows (``fit(X) -> state``) and the state's keys."""

    function: Callable[..., np.ndarray]
    defaults: Mapping[str, Any]
    check_parameters: Callable[..., None]
    fit: Callable[[np.ndarray], dict[str, Any]] | None = None
    state_keys: tuple[str, ...] = field(default=())


#: Every preprocessing step by its configuration name.
STEPS: dict[str, StepKind] = {
    "absorbance": StepKind(absorbance, {"base": 10.0, "floor": 1e-6, "clip_zero": False},
                           check_absorbance_parameters),
    "snv": StepKind(snv, {"ddof": 1}, check_snv_parameters),
    "savgol": StepKind(savgol, {"window": 11, "polyorder": 2, "deriv": 0},
                       check_savgol_parameters),
    "detrend": StepKind(detrend, {"order": 2}, check_detrend_parameters),
    "msc": StepKind(msc, {}, _no_parameters, fit=_fit_msc, state_keys=("reference",)),
}

STEP_NAMES = tuple(STEPS)


def _where(position: int, name: str) -> str:
    return f"preprocessing step {position} ({name!r})"


def _parse_one(position: int, item: Any) -> dict[str, Any]:
    state = None
    if isinstance(item, str):
        name, given = item, {}
    elif isinstance(item, Mapping) and "name" in item:  # the stored form
        unknown = sorted(set(item) - {"name", "params", "state"})
        if unknown:
            raise ValueError(f"preprocessing step {position}: unknown key(s) {unknown}; a "
                             "stored step has 'name', 'params' and (once fitted) 'state'")
        name, given, state = item["name"], item.get("params") or {}, item.get("state")
    elif isinstance(item, Mapping) and len(item) == 1:
        ((name, given),) = item.items()
        given = {} if given is None else given
    else:
        raise ValueError(
            f"preprocessing step {position} is {item!r}; write a step as its name (snv) or as "
            "a one-key mapping of name to parameters ({savgol: {window: 11, polyorder: 2}})")
    if not isinstance(name, str) or name not in STEPS:
        raise ValueError(f"unknown preprocessing step {name!r} (step {position}); known steps "
                         f"are {sorted(STEPS)} (set preprocess.steps in the parameters)")
    kind = STEPS[name]
    if not isinstance(given, Mapping):
        raise ValueError(f"{_where(position, name)}: its parameters must be a mapping of "
                         f"parameter to value; got {given!r}")
    unknown = sorted(set(map(str, given)) - set(kind.defaults))
    if unknown:
        known = ", ".join(sorted(kind.defaults)) or "none"
        raise ValueError(f"{_where(position, name)}: unknown parameter(s) {unknown}; its "
                         f"parameters are {known}")
    params = {**kind.defaults, **given}
    try:
        kind.check_parameters(**params)
    except ValueError as error:
        raise ValueError(f"{_where(position, name)}: {error}") from None
    step: dict[str, Any] = {"name": name, "params": params}
    if state is not None:
        step["state"] = _check_state(position, name, kind, state)
    return step


def _check_state(position: int, name: str, kind: StepKind, state: Any) -> dict[str, Any]:
    if kind.fit is None:
        raise ValueError(f"{_where(position, name)} has no fitted state, but one is stored")
    if not isinstance(state, Mapping) or set(state) != set(kind.state_keys):
        raise ValueError(f"{_where(position, name)}: its fitted state must hold exactly "
                         f"{list(kind.state_keys)}; got {state!r:.80}")
    for key in kind.state_keys:
        values = np.asarray(state[key], dtype=np.float64)
        if values.ndim != 1 or values.size < 2 or not np.isfinite(values).all():
            raise ValueError(f"{_where(position, name)}: its fitted {key} must be a finite "
                             "spectrum; re-run the preprocess stage")
    return {key: list(state[key]) for key in kind.state_keys}


def parse_steps(steps: Any) -> list[dict[str, Any]]:
    """The stored form of a chain given as configuration or as stored: a list of
    ``{"name", "params"[, "state"]}`` with every parameter spelled out; ``ValueError`` naming the
    step and the key for anything that is not a known step with valid parameters."""
    if isinstance(steps, str | bytes) or not hasattr(steps, "__iter__"):
        raise ValueError(f"preprocess.steps must be a list of steps; got {steps!r}")
    return [_parse_one(position, item) for position, item in enumerate(steps)]


def check_steps(steps: Any) -> list[dict[str, Any]]:
    """:func:`parse_steps` (the name the package stage and serving use)."""
    return parse_steps(steps)


def unfitted_steps(steps: Any) -> list[str]:
    """Names of the steps of the chain that need fitting and hold no fitted state."""
    return [step["name"] for step in parse_steps(steps)
            if STEPS[step["name"]].fit is not None and "state" not in step]


def fit_steps(steps: Any, training_reflectance: np.ndarray) -> list[dict[str, Any]]:
    """The chain with every stateful step fitted on ``training_reflectance`` (samples x bands).

    The rows must be training rows only (the library, or calibration rows), never rows the
    model is evaluated on. Each stateful step is fitted on the training rows as the earlier steps
    leave them; stateless steps are returned as parsed. Refits a step that already holds state.
    """
    chain = parse_steps(steps)
    values = check_array(training_reflectance, dtype=np.float64)
    fitted = []
    for step in chain:
        kind = STEPS[step["name"]]
        step = {"name": step["name"], "params": step["params"]}
        if kind.fit is not None:
            step["state"] = kind.fit(values)
        values = kind.function(values, **step["params"], **_state_arrays(step), check=True)
        fitted.append(step)
    return fitted


def _state_arrays(step: Mapping[str, Any]) -> dict[str, np.ndarray]:
    return {key: np.asarray(value, dtype=np.float64)
            for key, value in (step.get("state") or {}).items()}


def check_fitted(steps: Any, n_bands: int | None = None) -> list[dict[str, Any]]:
    """The parsed chain; ``ValueError`` if a stateful step holds no fitted state or (given
    ``n_bands``) a fitted spectrum of another length."""
    chain = parse_steps(steps)
    for position, step in enumerate(chain):
        kind = STEPS[step["name"]]
        if kind.fit is None:
            continue
        if "state" not in step:
            raise ValueError(
                f"{_where(position, step['name'])} needs its state fitted on training rows "
                "(fit_steps on the library or calibration rows) before it is applied")
        for key, values in step["state"].items():
            if n_bands is not None and len(values) != n_bands:
                raise ValueError(f"{_where(position, step['name'])}: its fitted {key} has "
                                 f"{len(values)} bands, the spectra {n_bands}")
    return chain


def apply_steps(reflectance: np.ndarray, steps: Any, check: bool = True) -> np.ndarray:
    """Apply a chain to a (samples x bands) reflectance matrix (C-contiguous float64).

    ``steps`` is a chain in either form (:func:`parse_steps`); a stateful step must hold its
    fitted state (:func:`fit_steps`), else ``ValueError``. ``check=True`` validates the input as
    the transformers do (a finite 2-D numeric matrix, reflectance in range for absorbance);
    ``check=False`` is for input validated before (the prediction service) and runs the same
    arithmetic without those checks (flat spectra still raise from SNV).
    """
    chain = check_fitted(steps)
    if check:
        values = check_array(reflectance, dtype=np.float64)
    else:
        values = np.asarray(reflectance, dtype=np.float64)
    for step in chain:
        values = STEPS[step["name"]].function(values, **step["params"], **_state_arrays(step),
                                               check=check)
    return np.ascontiguousarray(values)


def _format(value: Any) -> str:
    if isinstance(value, float) and math.isfinite(value):
        return f"{value:g}"
    return str(value)


def describe_steps(steps: Any) -> list[str]:
    """One label per step: its name, followed by all its parameters in brackets when any
    differs from the default (``savgol(window=11, polyorder=2, deriv=1)``); ``msc`` is named
    with the number of bands of its fitted reference."""
    labels = []
    for step in parse_steps(steps):
        kind = STEPS[step["name"]]
        label = step["name"]
        if step["params"] != dict(kind.defaults):
            label += "(" + ", ".join(f"{key}={_format(value)}"
                                     for key, value in step["params"].items()) + ")"
        if "state" in step:
            label += " [fitted: " + ", ".join(f"{key} of {len(value)} bands"
                                              for key, value in step["state"].items()) + "]"
        labels.append(label)
    return labels
