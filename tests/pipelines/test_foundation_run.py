"""The foundation pipelines end to end through a real Kedro session (conf/test sizes)."""

from __future__ import annotations

import json

import pandas as pd
import pytest

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def project(study_project):
    return study_project


def read(root, path):
    path = root / path
    return pd.read_parquet(path) if path.suffix == ".parquet" else pd.read_csv(path)


def test_every_row_is_kept_or_quarantined(project):
    root, _ = project
    for raw, kept, quarantined in (
        ("data/01_raw/library_raw.parquet", "data/02_intermediate/library_ssl.parquet",
         "data/02_intermediate/library_quarantine.csv"),
        ("data/01_raw/sites_raw.parquet", "data/02_intermediate/sites_ssl.parquet",
         "data/02_intermediate/sites_quarantine.csv"),
    ):
        assert len(read(root, raw)) == len(read(root, kept)) + len(read(root, quarantined))
    report = json.loads((root / "data/08_reporting/validation_report.json").read_text())
    assert {t["table"] for t in report["tables"]} == {"library", "sites"}


def test_split_gives_n_calibration_per_site_and_disjoint_test_rows(project):
    root, _ = project
    cal = read(root, "data/05_model_input/site_calibration.parquet")
    test = read(root, "data/05_model_input/site_test.parquet")
    sites = read(root, "data/02_intermediate/sites_ssl.parquet")
    assert set(cal["sample_id"]).isdisjoint(test["sample_id"])
    assert cal.groupby("site").size().eq(30).all()
    labelled = sites.loc[sites["soc"].notna()].groupby("site").size()
    both = cal.groupby("site").size() + test.groupby("site").size()
    assert both.sort_index().equals(labelled.sort_index())


def test_preprocessed_spectra_are_snv(project):
    from localsoc.data.schema import spectra_of

    root, _ = project
    spectra = spectra_of(read(root, "data/04_feature/library_spectra.parquet"))
    assert abs(spectra.mean(axis=1)).max() < 1e-9
    scores = read(root, "data/04_feature/pca_scores.parquet")
    assert {"library", "site"} == set(scores["kind"])


def test_summary_lists_every_library_country_and_site(project):
    root, seconds = project
    summary = read(root, "data/08_reporting/data_summary.csv")
    assert set(summary["kind"]) == {"library", "country library", "site"}
    sites = summary.loc[summary["kind"] == "site"]
    assert (sites["calibration"] == 30).all()
    assert (sites["validation"] == 20).all()  # split.n_validation random samples
    assert (sites["test"] == sites["samples"] - 30 - 20).all()
    assert list(seconds)[:4] == ["ingest", "validate", "preprocess", "split"]
