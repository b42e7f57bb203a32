"""The one place that uses BentoML internals: a model store under a chosen home directory.

BentoML's public API reaches only the store of ``$BENTOML_HOME`` as it was when BentoML first
used it (``bentoml.models.get`` / ``create``). Tests and ``BentoBundleDataset(home=...)`` need a
store elsewhere, which BentoML offers only through its internal ``ModelStore`` class and the
private ``_model_store`` keyword of ``bentoml.models.get`` / ``create`` (BentoML 1.4). Everything
that depends on them is here; ``tests/serving/test_bentoml_store.py`` fails, naming the
installed BentoML version, when they change.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any


def model_store(home: str | None) -> Any | None:
    """The BentoML model store under ``home``; None: under ``$BENTOML_HOME`` as it is now
    (BentoML itself fixes its home the first time it is used), else BentoML's default store."""
    home = home or os.environ.get("BENTOML_HOME") or None
    if home is None:
        return None
    from bentoml._internal.models import ModelStore

    models = Path(home).expanduser() / "models"
    models.mkdir(parents=True, exist_ok=True)
    return ModelStore(str(models))


def store_options(home: str | None) -> dict[str, Any]:
    """Keyword arguments of ``bentoml.models.get`` / ``create`` for the store under ``home``."""
    store = model_store(home)
    return {} if store is None else {"_model_store": store}
