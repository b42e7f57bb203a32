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
