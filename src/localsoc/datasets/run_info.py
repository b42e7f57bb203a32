"""What a run adds to a model that the model's files must not hold: when it was trained.

DVC hashes every output, so a model file that records the wall-clock time it was trained changes
``dvc.lock`` on every run of the same code, data and seed. The training code still records
``info["trained_at"]`` (``localsoc.study.utc_now``); the datasets that write models keep the
keys of :data:`RUN_INFO_KEYS` out of the model files (:func:`without_run_info`) and write them to
a run log beside the output instead (:func:`run_log_path`: ``<output>.run.json``, git-ignored,
not a DVC output), from which loading puts them back (:func:`with_run_info`).
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from localsoc.datasets.atomic import write_text

#: The keys of a model's ``info`` that describe a run rather than the model.
RUN_INFO_KEYS = ("trained_at",)
RUN_LOG_SUFFIX = ".run.json"


def run_log_path(output: str | Path) -> Path:
    """The run log of an output file or directory: ``<output>.run.json`` beside it."""
    output = Path(output)
    return output.with_name(output.name + RUN_LOG_SUFFIX)


def _info(model: Any) -> dict | None:
    info = getattr(model, "info", None)
    return info if isinstance(info, dict) else None


def _parts(model: Any) -> list[Any]:
    """A model and, for a model made of others (a stack's ``components``: ``(label, family,
    model)``), each of those, whose ``info`` its files hold too."""
    components = getattr(model, "components", None) or []
    return [model, *(part for component in components for part in _parts(component[-1]))]


def _take(model: Any) -> dict[str, Any]:
    info = _info(model)
    return {name: info.pop(name) for name in RUN_INFO_KEYS if info and name in info}


@contextmanager
def without_run_info(models: Mapping[str, Any]) -> Iterator[dict[str, dict[str, Any]]]:
    """Take the :data:`RUN_INFO_KEYS` out of each model's ``info`` (and its parts') for the
    ``with`` block (what is saved inside it is then the same for the same model) and put them
    back after it. Yields ``{model key: {info key: value}}`` of the models that had any."""
    taken = [(part, _take(part)) for model in models.values() for part in _parts(model)]
    try:
        yield {key: found for key, model in models.items()
               for part, found in taken if part is model and found}
    finally:
        for part, found in taken:
            if found:
                _info(part).update(found)


def read_run_log(path: str | Path) -> dict[str, Any]:
    """A run log's content; ``{}`` when it is missing or unreadable (it is informational)."""
    try:
        content = json.loads(Path(path).read_text())
    except (OSError, ValueError):
        return {}
    return content if isinstance(content, dict) else {}


def write_run_log(path: str | Path, content: Mapping[str, Any]) -> None:
    write_text(path, json.dumps(dict(content), indent=1, sort_keys=True) + "\n")


def with_run_info(models: Mapping[str, Any], logged: Mapping[str, Any]) -> None:
    """Put the run information of ``logged`` (``{model key: {info key: value}}``, a run log's
    ``models``) back into the ``info`` of each loaded model."""
    for key, model in models.items():
        info, found = _info(model), logged.get(key)
        if info is not None and isinstance(found, Mapping):
            info.update({name: found[name] for name in RUN_INFO_KEYS if name in found})
