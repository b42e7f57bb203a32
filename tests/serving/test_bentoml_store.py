"""The BentoML internals LocalSOC relies on (localsoc.datasets.bentoml_store) are still there.

If BentoML changes them, these tests fail first and name the installed version, so the adapter
is the one file to update.
"""

from __future__ import annotations

import inspect
from pathlib import Path

import bentoml

from localsoc.datasets.bentoml_store import model_store, store_options

VERSION = f"bentoml {bentoml.__version__}"


def test_the_internal_model_store_class_and_keyword_exist():
    from bentoml._internal.models import ModelStore  # noqa: F401  (the adapter's import)

    for function in (bentoml.models.get, bentoml.models.create):
        parameters = inspect.signature(function).parameters
        assert "_model_store" in parameters, (
            f"{VERSION}: bentoml.models.{function.__name__} no longer takes _model_store; "
            "update localsoc/datasets/bentoml_store.py")


def test_a_model_saved_in_a_chosen_home_is_found_there_only(tmp_path):
    home = tmp_path / "bentoml"
    with bentoml.models.create("adapter_probe", **store_options(str(home))) as model:
        (Path(model.path) / "probe.txt").write_text("probe")
    found = bentoml.models.get(str(model.tag), **store_options(str(home)))
    assert found.tag == model.tag, VERSION
    assert str(found.path).startswith(str(home)), f"{VERSION}: the model left the chosen home"
    assert (Path(found.path) / "probe.txt").read_text() == "probe"
    assert model_store(None) is None or model_store(None) is not model_store(str(home))
