"""TensorFlow/Keras run-time set-up: one purpose, the threads, determinism and devices a run uses.

``configure_tensorflow`` fixes TensorFlow's thread pools and turns on op determinism (the search,
the transfer and a distributed worker call it before training); ``compute_devices`` names the
devices the Keras backend sees (recorded with every search and in the benchmarks). Training
itself is ``localsoc.models.training``.
"""

from __future__ import annotations

import logging
import os
from typing import Any

import keras

__all__ = ["compute_devices", "configure_tensorflow"]

logger = logging.getLogger(__name__)


def configure_tensorflow(threads: int | None = None, deterministic: bool = True) -> dict[str, Any]:
    """Thread pools and op determinism for the TensorFlow backend; returns what is in effect.

    Thread counts can only be set before TensorFlow starts its runtime; later calls keep the
    running values (logged at debug level). ``threads=None``: all CPU cores for intra-op work,
    one inter-op thread (small convolutions gain nothing from running ops side by side).
    """
    info: dict[str, Any] = {"backend": keras.backend.backend()}
    if keras.backend.backend() != "tensorflow":
        info["devices"] = compute_devices()
        return info
    import tensorflow as tf

    threads = int(threads or os.cpu_count() or 1)
    try:
        if tf.config.threading.get_intra_op_parallelism_threads() != threads:
            tf.config.threading.set_intra_op_parallelism_threads(threads)
        if tf.config.threading.get_inter_op_parallelism_threads() != 1:
            tf.config.threading.set_inter_op_parallelism_threads(1)
    except RuntimeError as error:  # the runtime is already initialised
        logger.debug("TensorFlow thread pools already fixed: %s", error)
    if deterministic:
        try:
            tf.config.experimental.enable_op_determinism()
        except Exception as error:  # pragma: no cover - depends on the TF build
            logger.warning("could not enable TensorFlow op determinism: %s", error)
    info.update(
        intra_op_threads=tf.config.threading.get_intra_op_parallelism_threads(),
        inter_op_threads=tf.config.threading.get_inter_op_parallelism_threads(),
        deterministic=bool(deterministic),
        devices=compute_devices(),
    )
    return info


def compute_devices() -> list[str]:
    """The devices the Keras backend sees, e.g. ``["CPU:0"]`` or ``["CPU:0", "GPU:0 (NVIDIA
    H100 80GB HBM3)"]`` (TensorFlow); for JAX or torch, the backend's own device names."""
    backend = keras.backend.backend()
    if backend == "jax":
        import jax

        return [f"{d.platform.upper()}:{d.id} ({d.device_kind})" for d in jax.devices()]
    if backend == "torch":
        import torch

        if torch.cuda.is_available():
            return [f"GPU:{i} ({torch.cuda.get_device_name(i)})"
                    for i in range(torch.cuda.device_count())]
        return ["CPU:0"]
    if backend != "tensorflow":
        return [backend]
    import tensorflow as tf

    names = []
    for device in tf.config.list_physical_devices():
        label = device.name.replace("/physical_device:", "")
        if device.device_type == "GPU":
            details = tf.config.experimental.get_device_details(device)
            label += f" ({details.get('device_name', 'GPU')})"
        names.append(label)
    return names
