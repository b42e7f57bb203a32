"""The package pipeline: the winners' bundle from the evaluate outputs, saved through the catalog."""

from __future__ import annotations

import copy
import time
from pathlib import Path

import numpy as np
import pytest

from localsoc.pipelines.package.nodes import package_winners, serving_settings
from tests.serving.study import GRID, PACKAGE, PREPROCESS, VALIDATE


def _package(study, **changes):
    arguments = {
        "study_winners": study["winners"], "study_predictions": study["predictions"],
        "library_models": {}, "site_models": study["models"], "transfer_models": {},
        "library_ssl": study["calibration"].iloc[0:0], "sites_ssl": study["sites_ssl"],
        "grid": GRID, "preprocessing": PREPROCESS, "validate": VALIDATE, "package": PACKAGE,
    }
    arguments.update(changes)
    return package_winners(**arguments)


def test_bundle_holds_each_sites_winner_and_what_serving_needs(study):
    bundle = _package(study)
    assert bundle.sites == sorted(study["winners"])
    for site, winner in study["winners"].items():
        entry = bundle.site(site)
        assert bundle.models[site] is study["models"][winner["model_key"]]
        assert (entry["method"], entry["model_key"], entry["family"]) == (
            winner["method"], winner["model_key"], winner["family"])
        assert entry["interval"]["halfwidth"] == winner["interval_halfwidth"]
        assert entry["domain"] == winner["domain"]
        assert entry["test_metrics"]["rmse"] == winner["test_metrics"]["rmse"]
        # the interval's residuals: the validation samples' for a validation interval, else
        # the calibration samples' (nested out of fold)
        role = "validation" if winner["interval"] == "validation" else "calibration"
        predictions = study["predictions"]
        rows = predictions.loc[(predictions["site"] == site)
                               & (predictions["method"] == winner["method"])
                               & (predictions["role"] == role)]
        assert entry["interval"]["calibration_sample_ids"] == rows["sample_id"].tolist()
        np.testing.assert_allclose(entry["interval"]["calibration_residuals"],
                                   rows["observed"] - rows["estimated"])
    assert {w["interval"] for w in study["winners"].values()} == {"validation", "cv_plus"}
    assert bundle.manifest["data_version"] and bundle.manifest["code_version"]
    assert bundle.manifest["serving"]["reflectance_max"] == VALIDATE["reflectance"]["max"]


def test_a_missing_winner_model_is_an_error(study):
    models = {k: v for k, v in study["models"].items() if not k.startswith("china_site")}
    with pytest.raises(ValueError, match="china_site.*not in the site models"):
        _package(study, site_models=models)


def test_a_grid_the_models_were_not_trained_on_is_an_error(study):
    with pytest.raises(ValueError, match="bands but the grid has"):
        _package(study, grid={"start_nm": 400, "stop_nm": 2500, "step_nm": 20})


def test_missing_calibration_rows_are_an_error(study):
    predictions = study["predictions"].loc[study["predictions"]["role"] == "test"]
    with pytest.raises(ValueError, match="no calibration rows"):
        _package(study, study_predictions=predictions)


def test_an_interval_that_does_not_follow_from_the_residuals_is_an_error(study):
    winners = copy.deepcopy(study["winners"])
    winners["sweden_site"]["interval_halfwidth"] *= 2
    with pytest.raises(ValueError, match="disagrees with its calibration residuals"):
        _package(study, study_winners=winners)


def test_empty_winners_and_unknown_settings_are_errors(study):
    with pytest.raises(ValueError, match="run the evaluate stage"):
        _package(study, study_winners={})
    with pytest.raises(ValueError, match="unknown setting"):
        serving_settings(VALIDATE, {"serving": {"max_spectra": 3}})
    with pytest.raises(ValueError, match=">= 1"):
        serving_settings(VALIDATE, {"serving": {"max_spectra_per_request": 0}})


def test_pipeline_saves_the_bundle_through_the_catalog(study, tmp_path):
    from kedro.io import DataCatalog, MemoryDataset
    from kedro.runner import SequentialRunner

    from localsoc.datasets.bento_bundle import BentoBundleDataset
    from localsoc.pipelines.package import create_pipeline

    inputs = {
        "study_winners": study["winners"], "study_predictions": study["predictions"],
        "library_models": {}, "site_models": study["models"], "transfer_models": {},
        "nested_models": {},
        "library_ssl": study["calibration"].iloc[0:0], "sites_ssl": study["sites_ssl"],
        "params:grid": GRID, "preprocessing": PREPROCESS, "params:validate": VALIDATE,
        "params:package": {"serving": {"max_spectra_per_request": 7}},
    }
    tag_file = tmp_path / "data/06_models/bento_tag.txt"
    catalog = DataCatalog({name: MemoryDataset(value) for name, value in inputs.items()})
    catalog["serving_bundle"] = BentoBundleDataset(filepath=str(tag_file),
                                                   home=str(tmp_path / "bentoml"))
    pipeline = create_pipeline()
    assert pipeline.outputs() == {"serving_bundle"}  # what the stage persists
    SequentialRunner().run(pipeline, catalog)
    loaded = catalog.load("serving_bundle")
    assert loaded.manifest["tag"] == tag_file.read_text().strip()
    assert loaded.sites == sorted(study["winners"])
    assert loaded.manifest["serving"]["max_spectra_per_request"] == 7


def test_the_registry_runs_report_after_package():
    from localsoc.pipeline_registry import STAGES, register_pipelines

    assert STAGES[-2:] == ("package", "report")  # the report shows the bundle's model cards
    assert "serving_bundle" in register_pipelines()["__default__"].all_outputs()


def test_the_default_pipeline_packages_before_the_report_reads_the_bundle():
    # the report reads the bundle back as serving_manifest (the same store file as
    # serving_bundle, without the models), which Kedro cannot tie to the package node itself
    from localsoc.pipeline_registry import register_pipelines

    names = [node.name for node in register_pipelines()["__default__"].nodes]
    assert names.index("package_winners") < names.index("write_report")
    report = register_pipelines()["report"]
    assert {"serving_manifest", "study_predictions"} <= report.inputs()


def test_packaging_the_same_winners_twice_gives_the_same_bundle_and_tag(study, tmp_path):
    """The same winners packaged at two times, their models trained at two times, give
    byte-identical bundle files and so the same tag (data/06_models/bento_tag.txt, which DVC
    hashes); the times go to the store's metadata."""
    from localsoc.datasets.bento_bundle import BentoBundleDataset, stored_model
    from tests.datasets.test_run_info import digests

    models = {site: study["models"][winner["model_key"]]
              for site, winner in study["winners"].items()}
    kept = {site: dict(model.info) for site, model in models.items()}
    tags, contents = [], []
    try:
        for run, stamp in enumerate(("2031-01-01T00:00:00+00:00", "2032-02-02T00:00:00+00:00")):
            for model in models.values():
                model.info["trained_at"] = stamp
            if run:
                time.sleep(2.1)  # a zip entry's time has 2-second steps; Keras's date_saved, 1 s
            home = tmp_path / f"bentoml_{run}"
            dataset = BentoBundleDataset(filepath=str(tmp_path / f"tag_{run}.txt"), home=str(home))
            dataset.save(_package(study))
            tags.append(dataset.tag())
            stored = stored_model(tags[-1], str(home))
            contents.append({name: digest for name, digest in digests(Path(stored.path)).items()
                             if name != "model.yaml"})  # BentoML's record: its creation time
            assert stored.info.metadata["trained_at"] == {site: stamp for site in models}
            assert stored.info.metadata["packaged_at"]
            served = _served_identities(stored)  # the service answers with the store's times
            assert {i.trained_at for i in served} == {stamp}
            assert {i.trained_at_source for i in served} == {"training"}
            assert {i.packaged_at for i in served} == {stored.info.metadata["packaged_at"]}
    finally:
        for site, model in models.items():
            model.info.clear()
            model.info.update(kept[site])
    assert tags[0] == tags[1]
    assert any(name.endswith(".keras") for name in contents[0])
    assert contents[0] == contents[1]


def _served_identities(stored) -> list:
    """The model identity each site's answers carry, loaded as a service worker loads it."""
    from localsoc.serving.bundle import read_stored_bundle, with_store_times
    from localsoc.serving.predictor import BundlePredictor

    bundle = read_stored_bundle(stored)
    with_store_times(bundle.manifest, dict(stored.info.metadata or {}))
    return [site.identity for site in BundlePredictor(bundle, str(stored.tag)).sites.values()]
