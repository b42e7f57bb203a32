"""A bundle in the BentoML store is verified against the SHA-256 the store recorded when it was
packaged, by `localsoc predict` as by the service (one function), and its models are checked
when they are loaded."""

from __future__ import annotations

import copy
import hashlib
import json
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner

from localsoc.command_line import main
from localsoc.serving.bundle import MANIFEST_FILE, BundleIntegrityError, ServingBundle

SITE = "sweden_site"


@pytest.fixture
def packaged(study, tmp_path):
    """A project whose store holds the study's PLSR site as its bundle: (root, store path)."""
    from localsoc.datasets.bento_bundle import stored_model
    from tests.serving.study import save_bundle

    bundle = study["bundle"]
    manifest = copy.deepcopy(bundle.manifest)
    manifest["sites"] = {SITE: manifest["sites"][SITE]}
    tag = save_bundle(ServingBundle(manifest=manifest, models={SITE: bundle.models[SITE]}),
                      tmp_path)
    spectra = study["sites_ssl"].loc[study["sites_ssl"]["site"] == SITE].head(5)
    spectra.drop(columns=["library", "site", "country", "lat", "lon"]).to_csv(
        tmp_path / "spectra.csv", index=False)
    return tmp_path, Path(stored_model(tag, str(tmp_path / "bentoml")).path)


def predict(root: Path):
    return CliRunner().invoke(
        main, ["predict", "--site", SITE, str(root / "spectra.csv"), "--spectra", "reflectance",
               "--out", str(root / "out.csv")],
        env={"LOCALSOC_PROJECT": str(root), "BENTOML_HOME": str(root / "bentoml")})


def change_model_and_its_listed_hash(store: Path) -> None:
    """A model changed, and bundle.json's list of file hashes changed with it."""
    manifest = json.loads((store / MANIFEST_FILE).read_text())
    name = next(n for n in manifest["files"] if n.endswith("linear_model.json"))
    model = json.loads((store / name).read_text())
    model["intercept"] += 10.0
    (store / name).write_text(json.dumps(model))
    manifest["files"][name] = hashlib.sha256((store / name).read_bytes()).hexdigest()
    (store / MANIFEST_FILE).write_text(json.dumps(manifest, indent=1))


def drop_the_store_record(store: Path) -> None:
    info = yaml.safe_load((store / "model.yaml").read_text())
    del info["metadata"]["bundle_sha256"]
    (store / "model.yaml").write_text(yaml.safe_dump(info))


@pytest.mark.parametrize(("tamper", "message"), [
    (change_model_and_its_listed_hash, "changed since it was packaged"),
    (drop_the_store_record, "records no bundle_sha256"),
])
def test_predict_and_the_service_refuse_a_bundle_the_store_did_not_record(packaged, tamper,
                                                                          message):
    root, store = packaged
    assert predict(root).exit_code == 0
    tamper(store)
    result = predict(root)
    assert result.exit_code != 0 and message in result.output, result.output
    assert not isinstance(result.exception, Exception) or isinstance(result.exception,
                                                                      SystemExit)
    from localsoc.datasets.bento_bundle import stored_model
    from localsoc.serving.bundle import read_stored_bundle

    tag = (root / "data/06_models/bento_tag.txt").read_text().strip()
    with pytest.raises(BundleIntegrityError, match=message):  # what the service calls
        read_stored_bundle(stored_model(tag, str(root / "bentoml")))


def linear_bundle_on_disk(study, directory: Path, change) -> Path:
    """The PLSR site written as a bundle whose model file ``change`` edits (hashes updated:
    a bundle packaged that way, not one changed afterwards)."""
    from localsoc.serving.bundle import write_bundle

    bundle = study["bundle"]
    manifest = copy.deepcopy(bundle.manifest)
    manifest["sites"] = {SITE: manifest["sites"][SITE]}
    write_bundle(ServingBundle(manifest=manifest, models={SITE: bundle.models[SITE]}), directory)
    listed = json.loads((directory / MANIFEST_FILE).read_text())
    name = next(n for n in listed["files"] if n.endswith("linear_model.json"))
    model = json.loads((directory / name).read_text())
    change(model)
    (directory / name).write_text(json.dumps(model))
    listed["files"][name] = hashlib.sha256((directory / name).read_bytes()).hexdigest()
    (directory / MANIFEST_FILE).write_text(json.dumps(listed, indent=1))
    return directory


def shorter_coefficients(model):
    model["coef"] = model["coef"][:-1]
    model["x_mean"] = model["x_mean"][:-1]


def shorter_coefficients_than_x_mean(model):
    model["coef"] = model["coef"][:-1]


def a_nan_coefficient(model):
    model["coef"][3] = float("nan")


def an_infinite_intercept(model):
    model["intercept"] = float("inf")


@pytest.mark.parametrize(("change", "message"), [
    (shorter_coefficients, "does not take the site's spectra"),
    (shorter_coefficients_than_x_mean, "coef has"),
    (a_nan_coefficient, "not finite"),
    (an_infinite_intercept, "not finite"),
])
def test_a_model_that_cannot_serve_is_refused_when_the_bundle_loads(study, tmp_path, change,
                                                                   message):
    from localsoc.serving.bundle import BundleError, read_bundle
    from localsoc.serving.predictor import BundlePredictor

    directory = linear_bundle_on_disk(study, tmp_path, change)
    with pytest.raises(BundleError, match=message) as error:
        BundlePredictor(read_bundle(directory), "test:1")
    assert SITE in str(error.value)


def test_a_non_finite_estimate_is_never_answered_as_a_success(study, tmp_path):
    from localsoc.data.schema import spectra_of, wavelengths_of
    from localsoc.serving.bundle import read_bundle
    from localsoc.serving.predictor import BundlePredictor, RequestError

    predictor = BundlePredictor(read_bundle(linear_bundle_on_disk(study, tmp_path, dict)),
                                "test:1")
    predictor.site(SITE).predictor.coef[3] = float("nan")  # broken after loading
    table = study["sites_ssl"].loc[study["sites_ssl"]["site"] == SITE].head(2)
    with pytest.raises(RequestError) as error:
        predictor.answer(SITE, wavelengths_of(table).tolist(), spectra_of(table).tolist())
    assert error.value.status == 500 and "non-finite" in error.value.message


def change_bundle_json_and_the_store_record(store: Path) -> None:
    """The probe's rewrite: bundle.json's interval narrowed to +-0.0001 and its SHA-256 in the
    store's model.yaml changed with it (whoever can write the store can do both)."""
    manifest = json.loads((store / MANIFEST_FILE).read_text())
    manifest["sites"][SITE]["interval"]["halfwidth"] = 0.0001
    text = json.dumps(manifest, indent=1)
    (store / MANIFEST_FILE).write_text(text)
    info = yaml.safe_load((store / "model.yaml").read_text())
    info["metadata"]["bundle_sha256"] = hashlib.sha256(text.encode()).hexdigest()
    (store / "model.yaml").write_text(yaml.safe_dump(info))


def test_the_tag_pins_the_bundle_outside_the_store(packaged):
    root, store = packaged
    from localsoc.datasets.bento_bundle import stored_model
    from localsoc.serving.bundle import PIN_PREFIX, read_stored_bundle

    tag = (root / "data/06_models/bento_tag.txt").read_text().strip()
    digest = hashlib.sha256((store / MANIFEST_FILE).read_bytes()).hexdigest()
    assert tag.split(":")[1] == PIN_PREFIX + digest[:48]
    assert predict(root).exit_code == 0
    change_bundle_json_and_the_store_record(store)
    result = predict(root)
    assert result.exit_code != 0 and "not the one its tag pins" in result.output, result.output
    with pytest.raises(BundleIntegrityError, match="not the one its tag pins"):
        read_stored_bundle(stored_model(tag, str(root / "bentoml")))


def test_the_environment_pins_the_bundle_digest(packaged, monkeypatch):
    root, store = packaged
    from localsoc.datasets.bento_bundle import stored_model
    from localsoc.serving.bundle import PIN_VARIABLE, BundleError, read_stored_bundle

    tag = (root / "data/06_models/bento_tag.txt").read_text().strip()
    model = stored_model(tag, str(root / "bentoml"))
    digest = hashlib.sha256((store / MANIFEST_FILE).read_bytes()).hexdigest()
    monkeypatch.setenv(PIN_VARIABLE, digest.upper())
    assert read_stored_bundle(model, load_models=False).sites == [SITE]
    monkeypatch.setenv(PIN_VARIABLE, "0" * 64)
    with pytest.raises(BundleIntegrityError, match=f"not the one {PIN_VARIABLE} pins"):
        read_stored_bundle(model, load_models=False)
    monkeypatch.setenv(PIN_VARIABLE, "abc")
    with pytest.raises(BundleError, match="64 hex digits"):
        read_stored_bundle(model, load_models=False)
    # the pin holds without the store's record, and is what the bundle is checked against
    drop_the_store_record(store)
    monkeypatch.setenv(PIN_VARIABLE, digest)
    assert read_stored_bundle(stored_model(tag, str(root / "bentoml")),
                              load_models=False).sites == [SITE]
    result = CliRunner().invoke(
        main, ["predict", "--site", SITE, str(root / "spectra.csv"), "--spectra", "reflectance",
               "--out", str(root / "out.csv")],
        env={"LOCALSOC_PROJECT": str(root), "BENTOML_HOME": str(root / "bentoml"),
             PIN_VARIABLE: "f" * 64})
    assert result.exit_code != 0, result.output
    assert f"{PIN_VARIABLE} is not the one its tag pins" in result.output, result.output
