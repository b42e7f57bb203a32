"""localsoc.datasets: custom Kedro datasets, the only home of model-store I/O.

Imports are lazy, so reading a catalog does not start TensorFlow.
"""

from __future__ import annotations

from typing import Any

__all__ = ["KerasEnsembleDataset"]


def __getattr__(name: str) -> Any:
    if name == "KerasEnsembleDataset":
        from localsoc.datasets.keras_ensemble import KerasEnsembleDataset

        return KerasEnsembleDataset
    raise AttributeError(f"module 'localsoc.datasets' has no attribute {name!r}")
