"""Fast prediction paths for served models, numerically the same as the models' own ``predict``.

``FoldEnsemble.predict`` calls each Keras fold model eagerly, which costs milliseconds per fold
and call in Keras 3. A served site's fold models are instead traced once into one TensorFlow
graph (``tf.function``) that returns every fold's standardised output for a batch; the fold
outputs are then put back in ``y`` units, averaged and spread exactly as ``FoldEnsemble`` does
(float32 network, float64 arithmetic after it). The graph runs the same kernels as the eager
calls; predictions agree with ``FoldEnsemble.predict`` to float32 round-off (about 1e-7 of the
output; batch size can change the last bits of the matrix products).

A ``LinearModel`` is already a single float64 matrix product and is used as is.

``preprocess`` is ``localsoc.spectra.steps.apply_steps`` without scikit-learn's per-call input
validation (which costs more than the arithmetic for one spectrum): the same operations in the
same order, with the transformers' own default parameters, so the result is bit for bit the
same (tested). The service validates the input before (finite, reflectance in range).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from localsoc.models.ensemble import PREDICT_CHUNK
from localsoc.spectra.absorbance import Absorbance
from localsoc.spectra.snv import StandardNormalVariate
from localsoc.spectra.steps import apply_steps

_ABSORBANCE = Absorbance()
_SNV = StandardNormalVariate()


def _absorbance(X: np.ndarray) -> np.ndarray:
    R = np.maximum(X, _ABSORBANCE.floor) if _ABSORBANCE.floor > 0 else X
    return -np.log(R) / np.log(_ABSORBANCE.base)


def _snv(X: np.ndarray) -> np.ndarray:
    n_bands = X.shape[1]
    mean = X.mean(axis=1, keepdims=True)
    centred = X - mean
    sd = np.sqrt((centred**2).sum(axis=1, keepdims=True) / (n_bands - _SNV.ddof))
    scale = np.maximum(np.abs(mean), 1.0)
    if n_bands - _SNV.ddof < 1 or np.any(sd[:, 0] <= 1e-12 * scale[:, 0]):
        return _SNV.fit_transform(X)  # raises the transformer's own error for flat spectra
    return centred / sd


_FAST_STEPS = {"absorbance": _absorbance, "snv": _snv}


def preprocess(reflectance: np.ndarray, steps) -> np.ndarray:
    """``apply_steps(reflectance, steps)`` for validated reflectance, without re-validating."""
    steps = list(steps)
    if any(step not in _FAST_STEPS for step in steps):
        return apply_steps(reflectance, steps)
    values = np.asarray(reflectance, dtype=np.float64)
    for step in steps:
        values = _FAST_STEPS[step](values)
    return np.ascontiguousarray(values)


def configure_threads(threads: int | None) -> None:
    """TensorFlow thread pools for serving (call before the first model is loaded)."""
    if not threads:
        return
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
        per_fold = self.predict_folds(X)
        mean = per_fold.mean(axis=0)
        if return_std:
            return mean, per_fold.std(axis=0)
        return mean


def fast_predictor(model: Any) -> Any:
    """The serving predictor of a bundled model (a ``CompiledEnsemble`` for fold ensembles)."""
    from localsoc.models.ensemble import FoldEnsemble

    if isinstance(model, FoldEnsemble):
        return CompiledEnsemble(model)
    return model
