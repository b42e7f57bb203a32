"""The method registry: a family and a method added here flow through every stage that reads it.

The dummy family below is declared in this test only (its module is a namespace object): with
no other edit of the package, its model is stored in a model collection, scored by evaluate,
chosen as the winner, named in the report, packaged into the serving bundle, and loaded back
from the bundle by its own store.
"""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest

from localsoc.datasets.model_collection import ModelCollectionDataset
from localsoc.methods import Family, Method, extended, family, method_order, methods
from localsoc.models.linear import LinearModel
from localsoc.pipelines.evaluate.nodes import evaluate_sites, study_table_markdown
from localsoc.pipelines.package.nodes import package_winners
from localsoc.pipelines.report.nodes import write_report
from localsoc.serving.bundle import read_bundle, write_bundle
from tests.conftest import SMALL_GRID, load_params, make_ssl

GRID = {"start_nm": SMALL_GRID.start_nm, "stop_nm": SMALL_GRID.stop_nm,
        "step_nm": SMALL_GRID.step_nm}


class MeanModel:
    """Predicts a constant; its out-of-fold estimates are given."""

    def __init__(self, value: float, sample_ids, oof, n_bands: int):
        self.value, self.sample_ids, self.n_bands = float(value), list(sample_ids), n_bands
        self.oof_predictions_ = np.asarray(oof, dtype=np.float64)
        self.info = {"trained_at": "2026-01-01T00:00:00+00:00"}

    def predict(self, X, return_std: bool = False):
        estimate = np.full(len(X), self.value)
        return (estimate, np.full(len(X), 0.5)) if return_std else estimate


class MeanModelStore:
    model_format = "mean_model"
    marker = "mean_model.json"

    def owns(self, model) -> bool:
        return isinstance(model, MeanModel)

    def save(self, model: MeanModel, folder: Path) -> None:
        folder.mkdir(parents=True, exist_ok=True)
        (folder / self.marker).write_text(json.dumps({
            "value": model.value, "sample_ids": model.sample_ids, "n_bands": model.n_bands,
            "oof": model.oof_predictions_.tolist()}))

    def load(self, folder: Path) -> MeanModel:
        data = json.loads((folder / self.marker).read_text())
        return MeanModel(data["value"], data["sample_ids"], data["oof"], data["n_bands"])


DUMMY_MODULE = SimpleNamespace(STORE=MeanModelStore(), serving_predictor=lambda model: model)
DUMMY_FAMILY = Family("dummy", "a constant", DUMMY_MODULE, servable=True, simplicity=0)
DUMMY_METHOD = Method("Dummy mean", "{site}/dummy", "train_sites", "n", "dummy")


@pytest.fixture
def site():
    calibration = make_ssl(20, seed=21, site="s1", library=None)
    test = make_ssl(12, seed=22, site="s1", library=None)
    library = make_ssl(40, seed=23)
    calibration["soc"] = 2.0 + 0.01 * np.arange(20)
    return calibration, test, library


def test_a_registered_family_and_method_flow_through_evaluate_report_and_package(site, tmp_path):
    calibration, test, library = site
    ids = calibration["sample_id"].tolist()
    n_bands = len(SMALL_GRID)
    y = calibration["soc"].to_numpy()
    dummy = MeanModel(2.1, ids, y + 0.001, n_bands)  # near-perfect OOF: it must win
    plsr = LinearModel(x_mean=np.zeros(n_bands), coef=np.zeros(n_bands), intercept=2.0,
                       n_components=1, sample_ids=ids, oof_predictions_=np.full(20, 2.0),
                       cv_rmse_by_components=[0.0])
    selection = pd.DataFrame(columns=["site", "scope", "rank", "sample_id"])
    params = {**load_params()["evaluate"], "domain": {"n_components": 2, "quantile": 0.99}}

    assert "Dummy mean" not in method_order()
    with extended(families=[DUMMY_FAMILY], methods=[DUMMY_METHOD]):
        assert family("dummy") is DUMMY_FAMILY and DUMMY_METHOD in methods("train_sites")
        # stored and loaded by its own store inside a model collection
        collection = ModelCollectionDataset(filepath=str(tmp_path / "site_models"))
        collection.save({"s1/dummy": dummy, "s1/plsr_local": plsr})
        loaded = collection.load()
        assert isinstance(loaded["s1/dummy"], MeanModel)
        assert loaded["s1/dummy"].value == 2.1

        predictions, metrics, winners = evaluate_sites(calibration, test, library, selection,
                                                       {}, loaded, {}, params)
        row = metrics.set_index("method").loc["Dummy mean"]
        assert row["family"] == "dummy" and row["trained_on"] == "n"
        assert row["cal_rmse"] == pytest.approx(0.001)
        assert list(metrics["method"]) == ["PLSR Local", "Dummy mean"]  # registry order
        assert winners["s1"]["method"] == "Dummy mean"
        assert winners["s1"]["collection"] == "site"
        tested = predictions.loc[(predictions["method"] == "Dummy mean")
                                 & (predictions["role"] == "test")]
        assert (tested["spread"] == 0.5).all() and len(tested) == len(test)

        table = study_table_markdown(metrics)
        report, _ = write_report(
            pd.DataFrame({"set": ["s1"], "samples": [32]}), {"tables": []}, selection,
            pd.DataFrame(columns=["site", "scope", "pool_size"]), calibration, metrics,
            winners, table, pd.DataFrame(), library, calibration, {"seed": 7})
        assert "| Dummy mean |" in report and "Dummy mean" in report.split("## Winners")[1]

        bundle = package_winners(winners, predictions, {}, loaded, {}, library, calibration,
                                 GRID, {"steps": ["absorbance", "snv"]},
                                 {"reflectance": {"min_exclusive": 0.0, "max": 1.0}},
                                 {"serving": {}})
        entry = bundle.site("s1")
        assert (entry["method"], entry["family"], entry["model_format"]) == (
            "Dummy mean", "dummy", "mean_model")
        write_bundle(bundle, tmp_path / "bundle")
        served = read_bundle(tmp_path / "bundle")
        assert isinstance(served.models["s1"], MeanModel)
        assert served.models["s1"].predict(np.zeros((3, n_bands))).tolist() == [2.1] * 3
    assert "Dummy mean" not in method_order()  # the registry is as it was


def test_a_model_no_family_stores_is_refused_by_the_collection(tmp_path):
    collection = ModelCollectionDataset(filepath=str(tmp_path / "models"))
    with pytest.raises(Exception, match="no registered model family stores a MeanModel"):
        collection.save({"s1/dummy": MeanModel(1.0, ["a"], [1.0], 3)})


def test_every_method_names_a_registered_family_and_a_unique_label():
    labels = [m.label for m in methods()]
    assert len(labels) == len(set(labels))
    for entry in methods():
        assert family(entry.family).name == entry.family
    with pytest.raises(ValueError, match="unknown stage"):
        Method("X", "{site}/x", "no_such_stage", "n", "plsr")
