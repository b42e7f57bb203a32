"""A model's training time goes to the run log beside a model collection, not into its files:
the same models trained at two times give byte-identical files (DVC's md5s stay put)."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np

from localsoc.datasets.model_collection import ModelCollectionDataset
from localsoc.datasets.run_info import run_log_path, without_run_info
from localsoc.families.stack import StackModel
from localsoc.models.linear import LinearModel


def digests(directory: Path) -> dict[str, str]:
    return {p.relative_to(directory).as_posix(): hashlib.md5(p.read_bytes()).hexdigest()
            for p in sorted(directory.rglob("*")) if p.is_file()}


def linear_model(trained_at: str) -> LinearModel:
    return LinearModel(x_mean=np.zeros(4), coef=np.arange(4.0), intercept=1.5, n_components=2,
                       sample_ids=["a", "b"], oof_predictions_=np.array([1.0, 2.0]),
                       info={"data": "n", "trained_at": trained_at})


def test_the_training_time_goes_to_the_run_log_not_the_model_files(tmp_path):
    first, second = tmp_path / "first" / "site_models", tmp_path / "second" / "site_models"
    ModelCollectionDataset(filepath=str(first)).save(
        {"s1/plsr": linear_model("2031-01-01T00:00:00+00:00")})
    model = linear_model("2032-06-07T08:09:10+00:00")
    ModelCollectionDataset(filepath=str(second)).save({"s1/plsr": model})

    assert digests(first) == digests(second)  # the same model, trained at another time
    assert "trained_at" not in (second / "s1/plsr/linear_model.json").read_text()
    assert model.info["trained_at"] == "2032-06-07T08:09:10+00:00"  # the caller's is kept
    log = run_log_path(second)
    assert log.name == "site_models.run.json" and log.parent == second.parent
    assert json.loads(log.read_text()) == {
        "models": {"s1/plsr": {"trained_at": "2032-06-07T08:09:10+00:00"}}}
    loaded = ModelCollectionDataset(filepath=str(second)).load()
    assert loaded["s1/plsr"].info == {"data": "n", "trained_at": "2032-06-07T08:09:10+00:00"}


def test_a_collection_without_its_run_log_loads_without_times(tmp_path):
    path = tmp_path / "site_models"
    ModelCollectionDataset(filepath=str(path)).save({"s1/plsr": linear_model("2031-01-01")})
    run_log_path(path).unlink()
    assert ModelCollectionDataset(filepath=str(path)).load()["s1/plsr"].info == {"data": "n"}


def test_the_parts_of_a_stack_lose_their_times_while_saved(tmp_path):
    part = linear_model("2031-01-01T00:00:00+00:00")
    stack = StackModel(components=[("PLSR Local", "plsr", part)], weights=np.ones(1),
                       fold_weights=np.ones((1, 1)), folds=None, sample_ids=["a", "b"],
                       oof_predictions_=np.array([1.0, 2.0]),
                       info={"trained_at": "2031-01-02T00:00:00+00:00"})
    with without_run_info({"s1/stack": stack}) as taken:
        assert taken == {"s1/stack": {"trained_at": "2031-01-02T00:00:00+00:00"}}
        assert "trained_at" not in stack.info and "trained_at" not in part.info
    assert part.info["trained_at"] == "2031-01-01T00:00:00+00:00"
    assert stack.info["trained_at"] == "2031-01-02T00:00:00+00:00"
