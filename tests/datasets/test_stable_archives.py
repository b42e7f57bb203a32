"""The same models saved twice give byte-identical files (DVC's md5s, dvc.lock, stay put)."""

from __future__ import annotations

import hashlib
import json
import time
import zipfile
from pathlib import Path

from localsoc.datasets import KerasEnsembleDataset
from localsoc.datasets.model_collection import ModelCollectionDataset
from localsoc.datasets.stable_archives import FIXED_TIME, fix_zip_times
from tests.models.test_keras_dataset import ensemble  # noqa: F401  (a pytest fixture)


def digests(directory: Path) -> dict[str, str]:
    return {p.relative_to(directory).as_posix(): hashlib.md5(p.read_bytes()).hexdigest()
            for p in sorted(directory.rglob("*")) if p.is_file()}


def test_two_saves_of_the_same_models_are_byte_identical(ensemble, tmp_path):  # noqa: F811
    first, second = tmp_path / "first", tmp_path / "second"
    KerasEnsembleDataset(filepath=str(first / "ensemble")).save(ensemble)
    ModelCollectionDataset(filepath=str(first / "collection")).save({"site_a/local": ensemble})
    time.sleep(2.1)  # a zip entry's time has 2-second steps; Keras's date_saved, 1 second
    KerasEnsembleDataset(filepath=str(second / "ensemble")).save(ensemble)
    ModelCollectionDataset(filepath=str(second / "collection")).save({"site_a/local": ensemble})
    saved = digests(first)
    assert any(name.endswith(".keras") for name in saved)
    assert saved == digests(second)
    reloaded = KerasEnsembleDataset(filepath=str(second / "ensemble")).load()
    assert len(reloaded.models_) == len(ensemble.models_)


def test_an_archive_keeps_its_entries_with_the_fixed_time(tmp_path):
    path = tmp_path / "model.keras"
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("metadata.json", json.dumps({"keras_version": "3",
                                                      "date_saved": "2031-05-06@07:08:09"}))
        archive.writestr(zipfile.ZipInfo("model.weights.h5", (2031, 5, 6, 7, 8, 10)), b"w" * 9)
    fix_zip_times(path)
    with zipfile.ZipFile(path) as archive:
        assert [i.filename for i in archive.infolist()] == ["metadata.json", "model.weights.h5"]
        assert {i.date_time for i in archive.infolist()} == {FIXED_TIME}
        assert json.loads(archive.read("metadata.json")) == {
            "keras_version": "3", "date_saved": "1980-01-01@00:00:00"}
        assert archive.read("model.weights.h5") == b"w" * 9


def test_shared_objects_are_numbered_not_named_by_their_address(tmp_path):
    """Keras names an object that layers share (a dtype policy) by its memory address, which
    differs on every run; the archive numbers them in the order they appear instead."""
    path = tmp_path / "model.keras"
    policy = {"class_name": "DTypePolicy", "shared_object_id": 139853408165520}
    other = {"class_name": "DTypePolicy", "shared_object_id": 140184928017872}
    config = {"layers": [{"config": {"dtype": policy}}, {"config": {"dtype": other}},
                         {"config": {"dtype": policy}}]}
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("config.json", json.dumps(config))
    fix_zip_times(path)
    with zipfile.ZipFile(path) as archive:
        fixed = json.loads(archive.read("config.json"))
    assert [layer["config"]["dtype"]["shared_object_id"] for layer in fixed["layers"]] == [1, 2, 1]
