"""The bundle format: write, verify (SHA-256 of every file), read; and its BentoML dataset."""

from __future__ import annotations

import copy
import json

import numpy as np
import pytest

from localsoc.serving.bundle import (
    MANIFEST_FILE,
    BundleError,
    BundleIntegrityError,
    ServingBundle,
    interval_halfwidth,
    interval_rule,
    read_bundle,
    site_directory,
    verify_bundle,
    write_bundle,
)


@pytest.fixture
def linear_bundle(study) -> ServingBundle:
    """The study's bundle cut down to its PLSR site (fast to write and read)."""
    bundle = study["bundle"]
    manifest = copy.deepcopy(bundle.manifest)
    manifest["sites"] = {"sweden_site": manifest["sites"]["sweden_site"]}
    return ServingBundle(manifest=manifest, models={"sweden_site": bundle.models["sweden_site"]})


def test_round_trip_keeps_manifest_and_models(study, tmp_path):
    bundle = study["bundle"]
    digest = write_bundle(bundle, tmp_path)
    loaded = read_bundle(tmp_path, digest)
    assert loaded.sites == ["china_site", "sweden_site"]
    original = {k: v for k, v in bundle.manifest.items() if k != "files"}
    assert {k: v for k, v in loaded.manifest.items() if k != "files"} == original
    assert all(name.startswith("sites/") for name in loaded.manifest["files"])
    X = study["test"].filter(like="nm_").to_numpy()[:7]
    for site in bundle.sites:
        mean, spread = loaded.models[site].predict(X, return_std=True)
        expected, expected_spread = bundle.models[site].predict(X, return_std=True)
        np.testing.assert_array_equal(mean, expected)
        np.testing.assert_array_equal(spread, expected_spread)
    cnn_files = [n for n in loaded.manifest["files"]
                 if n.startswith(loaded.manifest["sites"]["china_site"]["model_dir"])]
    assert sorted(n.rsplit("/", 1)[1] for n in cnn_files) == [
        "fold_00.keras", "fold_01.keras", "fold_02.keras", "metadata.json"]


def test_a_changed_model_file_is_refused(linear_bundle, tmp_path):
    digest = write_bundle(linear_bundle, tmp_path)
    name = next(iter(json.loads((tmp_path / MANIFEST_FILE).read_text())["files"]))
    path = tmp_path / name
    data = json.loads(path.read_text())
    data["intercept"] += 1.0
    path.write_text(json.dumps(data))
    with pytest.raises(BundleIntegrityError, match="changed since it was packaged"):
        read_bundle(tmp_path, digest)


def test_a_missing_model_file_is_refused(linear_bundle, tmp_path):
    write_bundle(linear_bundle, tmp_path)
    name = next(iter(json.loads((tmp_path / MANIFEST_FILE).read_text())["files"]))
    (tmp_path / name).unlink()
    with pytest.raises(BundleIntegrityError, match="missing"):
        verify_bundle(tmp_path)


def test_a_changed_manifest_is_refused(linear_bundle, tmp_path):
    digest = write_bundle(linear_bundle, tmp_path)
    manifest = json.loads((tmp_path / MANIFEST_FILE).read_text())
    manifest["sites"]["sweden_site"]["interval"]["halfwidth"] = 0.0
    (tmp_path / MANIFEST_FILE).write_text(json.dumps(manifest, indent=1))
    with pytest.raises(BundleIntegrityError, match=MANIFEST_FILE):
        verify_bundle(tmp_path, digest)
    # without the store's record, the half-width no longer follows from the residuals
    loaded = read_bundle(tmp_path)
    with pytest.raises(BundleError, match="disagrees with its calibration residuals"):
        interval_halfwidth(loaded.site("sweden_site"))


def test_a_normalised_interval_follows_from_its_residuals_and_difficulties():
    from localsoc.uncertainty import normalized_score_quantile

    rng = np.random.default_rng(3)
    residuals, difficulties = rng.normal(size=30), 1 + rng.uniform(size=30)
    q, floor = normalized_score_quantile(np.abs(residuals), np.zeros(30), difficulties, 0.9)
    entry = {"site": "s", "interval": {
        "method": "normalised", "level": 0.9, "halfwidth": float(np.sort(np.abs(residuals))[27]),
        "calibration_residuals": residuals.tolist(),
        "calibration_difficulties": difficulties.tolist(), "score_quantile": q,
        "difficulty": "domain"}}
    rule = interval_rule(entry)
    # a spectrum of difficulty d gets q (d + floor): the same order statistic as evaluation
    scores = np.sort(np.abs(residuals) / (difficulties + floor))
    assert rule.score_quantile == scores[int(np.ceil(0.9 * 31)) - 1]
    np.testing.assert_allclose(rule.halfwidths(np.array([1.0, 2.0])),
                               q * (np.array([1.0, 2.0]) + floor))
    tampered = copy.deepcopy(entry)
    tampered["interval"]["score_quantile"] *= 0.5
    with pytest.raises(BundleError, match="score quantile"):
        interval_rule(tampered)


def test_a_cv_plus_interval_uses_the_fold_estimates_of_the_served_model():
    from localsoc.uncertainty import cv_plus_interval

    rng = np.random.default_rng(4)
    residuals, folds = rng.normal(size=20), np.repeat(np.arange(4), 5)
    entry = {"site": "s", "interval": {
        "method": "cv_plus", "level": 0.8, "halfwidth": float(np.sort(np.abs(residuals))[16]),
        "calibration_residuals": residuals.tolist(), "calibration_folds": folds.tolist(),
        "fold_estimates": True}}
    rule = interval_rule(entry)
    per_fold = rng.normal(size=(4, 3))
    lower, upper = rule.bounds(per_fold.mean(axis=0), per_fold, np.ones(3))
    expected = cv_plus_interval(np.abs(residuals), np.zeros(20), folds, per_fold, 0.8)
    np.testing.assert_allclose(lower, np.maximum(expected[0], 0.0))
    np.testing.assert_allclose(upper, np.maximum(expected[1], 0.0))
    single = copy.deepcopy(entry)
    single["interval"]["fold_estimates"] = False
    with pytest.raises(BundleError, match="fold estimates"):
        interval_rule(single)


def test_file_paths_outside_the_bundle_are_refused(linear_bundle, tmp_path):
    write_bundle(linear_bundle, tmp_path)
    manifest = json.loads((tmp_path / MANIFEST_FILE).read_text())
    manifest["files"]["../elsewhere.json"] = "0" * 64
    (tmp_path / MANIFEST_FILE).write_text(json.dumps(manifest))
    with pytest.raises(BundleError, match="leaves the bundle"):
        verify_bundle(tmp_path)


def test_writing_checks_models_against_sites(linear_bundle, tmp_path):
    with pytest.raises(BundleError, match="one model per site"):
        write_bundle(ServingBundle(linear_bundle.manifest, {}), tmp_path / "a")
    broken = copy.deepcopy(linear_bundle.manifest)
    broken["sites"]["sweden_site"]["model_format"] = "fold_ensemble"
    with pytest.raises(BundleError, match="model_format"):
        write_bundle(ServingBundle(broken, linear_bundle.models), tmp_path / "b")
    broken = copy.deepcopy(linear_bundle.manifest)
    del broken["sites"]["sweden_site"]["domain"]
    with pytest.raises(BundleError, match="domain"):
        write_bundle(ServingBundle(broken, linear_bundle.models), tmp_path / "c")
    write_bundle(linear_bundle, tmp_path / "d")
    with pytest.raises(BundleError, match="already holds a bundle"):
        write_bundle(linear_bundle, tmp_path / "d")


def test_the_manifest_holds_data_not_pickles(study, tmp_path):
    write_bundle(study["bundle"], tmp_path)
    suffixes = {path.suffix for path in tmp_path.rglob("*") if path.is_file()}
    assert suffixes <= {".json", ".keras"}
    site = json.loads((tmp_path / MANIFEST_FILE).read_text())["sites"]["china_site"]
    assert [step["name"] for step in site["preprocessing"]] == ["absorbance", "snv"]
    assert site["preprocessing"][0]["params"] == {"base": 10.0, "floor": 1e-6, "clip_zero": False}
    assert len(site["wavelengths_nm"]) == 211
    # no validation samples at china_site: CV+ from the 30 nested out-of-fold residuals
    assert site["interval"]["method"] == "cv_plus"
    assert len(site["interval"]["calibration_residuals"]) == 30
    # sweden_site's validation interval: the served model's residuals on its 20 validation
    # samples, the half-width their 19th smallest |residual| (ceil(21 * 0.9))
    sweden = json.loads((tmp_path / MANIFEST_FILE).read_text())["sites"]["sweden_site"]
    interval = sweden["interval"]
    assert interval["method"] == "validation" and "validation" in interval["calibration_set"]
    assert len(interval["calibration_residuals"]) == 20 == sweden["data"]["validation_samples"]
    assert interval["halfwidth"] == np.sort(np.abs(interval["calibration_residuals"]))[18]
    validation = study["test"].loc[study["test"]["holdout"] == "validation", "sample_id"]
    assert sorted(interval["calibration_sample_ids"]) == sorted(validation.astype(str))
    assert {"mean", "components", "variances", "t2_limit", "q_limit"} <= set(site["domain"])


def test_site_directories_are_safe_and_distinct():
    assert site_directory("../../etc") != site_directory("..-..-etc")
    assert ".." not in site_directory("../../etc").split("/")
    assert site_directory("a b") != site_directory("a_b")


def test_dataset_saves_to_the_store_and_writes_the_tag(linear_bundle, tmp_path):
    from localsoc.datasets.bento_bundle import BentoBundleDataset, stored_model

    home = tmp_path / "bentoml"
    dataset = BentoBundleDataset(filepath=str(tmp_path / "bento_tag.txt"), home=str(home))
    assert not dataset.exists()
    dataset.save(linear_bundle)
    tag = (tmp_path / "bento_tag.txt").read_text().strip()
    assert tag.startswith("localsoc_bundle:")
    stored = stored_model(tag, str(home))
    assert stored.info.metadata["sites"] == "sweden_site"
    assert stored.info.labels["project"] == "localsoc"
    loaded = dataset.load()
    assert loaded.manifest["tag"] == tag
    assert loaded.sites == ["sweden_site"]
    # the version is the bundle's digest: the same bundle saved again keeps its tag
    assert tag.split(":")[1].startswith("sha256-")
    dataset.save(linear_bundle)
    assert (tmp_path / "bento_tag.txt").read_text().strip() == tag


def test_dataset_load_refuses_a_tampered_store_model(linear_bundle, tmp_path):
    from kedro.io import DatasetError

    from localsoc.datasets.bento_bundle import BentoBundleDataset, stored_model

    home = tmp_path / "bentoml"
    dataset = BentoBundleDataset(filepath=str(tmp_path / "bento_tag.txt"), home=str(home))
    dataset.save(linear_bundle)
    path = stored_model(dataset.tag(), str(home)).path
    manifest_path = f"{path}/{MANIFEST_FILE}"
    manifest = json.loads(open(manifest_path).read())
    manifest["serving"]["max_spectra_per_request"] = 10**9
    with open(manifest_path, "w") as handle:
        json.dump(manifest, handle)
    with pytest.raises(DatasetError, match="changed since it was packaged"):
        dataset.load()
