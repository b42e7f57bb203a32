"""The report's field summary and model cards, from the tiny serving study's stored bundle."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from localsoc.datasets.bento_bundle import load_stored_bundle
from localsoc.field import site_field_summary
from localsoc.pipelines.evaluate.nodes import study_table_markdown
from localsoc.pipelines.report.nodes import field_summary_section, write_report
from localsoc.uncertainty import split_conformal_coverage_law

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def manifest(project):
    _, home, tag = project
    return load_stored_bundle(tag, str(home), load_models=False).manifest


def with_field_columns(sites_ssl: pd.DataFrame) -> pd.DataFrame:
    table = sites_ssl.copy()
    table.insert(7, "stratum", np.where(np.arange(len(table)) % 2, "upper", "lower"))
    table.insert(8, "bulk_density_g_cm3", 1.25)
    table.insert(9, "depth_cm", 20.0)
    return table


def test_report_has_the_field_summary_and_a_model_card_per_site(study, recorded_predictions,
                                                                 manifest):
    sites = with_field_columns(study["sites_ssl"])
    report, html = write_report(
        pd.DataFrame({"set": ["sites"], "samples": [len(sites)]}), {"tables": []},
        pd.DataFrame(columns=["site", "scope", "rank", "sample_id", "soc"]),
        pd.DataFrame(columns=["site", "scope", "pool_size"]), study["calibration"],
        study["metrics"], study["winners"], study_table_markdown(study["metrics"]),
        pd.DataFrame(), sites.iloc[0:0], sites, {"seed": 7}, recorded_predictions,
        manifest)
    field = report.split("## Field summary")[1].split("## Model cards")[0]
    cards = report.split("## Model cards")[1]
    for site in manifest["sites"]:
        assert f"### Model card: site {site}" in cards
        assert f"| {site} | all |" in field
        assert f"| {site} | lower |" in field and f"| {site} | upper |" in field
    assert "observed mean (check)" in field and "stock t C/ha" in field
    assert '<h2 id="model-cards">Model cards</h2>' in html
    assert report.index("## Field summary") < report.index("## Contents")  # answer first
    assert "` sha256 `" not in cards.split("<details")[0]  # the file hashes are collapsed
    assert "SHA-256 of the served model files" in cards.split("<details")[1]
    # how one site's realised coverage varies over validation draws, for the m it was served
    # with (a site falling back to CV+ has no such line)
    uncertainty = report.split("## Uncertainty and applicability domain")[1]
    served = study["metrics"].loc[study["metrics"]["interval"] == "validation"]
    assert not served.empty
    for m, rows in served.groupby("n_validation"):
        law = split_conformal_coverage_law(int(m), 0.9)
        sites = ", ".join(sorted(set(rows["site"])))
        assert f"{sites}: with m = {int(m)} validation samples" in uncertainty
        assert f"Beta({law.rank}, {int(m) + 1 - law.rank})" in uncertainty
        assert f"percentile {law.q05:.2f}-{law.q95:.2f}" in uncertainty


def test_the_field_summary_uses_estimates_only(study, recorded_predictions, manifest):
    sites = with_field_columns(study["sites_ssl"])
    site = "sweden_site"
    entry = manifest["sites"][site]
    section = "\n".join(field_summary_section(manifest, recorded_predictions, sites)).splitlines()
    tested = recorded_predictions.loc[(recorded_predictions["site"] == site)
                                      & (recorded_predictions["method"] == entry["method"])
                                      & (recorded_predictions["role"] == "test")]
    expected = site_field_summary(entry, tested["estimated"].to_numpy(np.float64),
                                  bulk_density_g_cm3=np.full(len(tested), 1.25),
                                  depth_cm=np.full(len(tested), 20.0))[0]
    line = next(row for row in section if row.startswith(f"| {site} | all |"))
    cells = [cell.strip() for cell in line.strip("|").split("|")]
    assert float(cells[3]) == pytest.approx(expected.soc.estimate, abs=5e-4)
    assert float(cells[-4]) == pytest.approx(expected.stock.estimate, abs=5e-4)
    assert float(cells[-1]) == pytest.approx(tested["observed"].mean(), abs=5e-4)
    # other lab values change the check column only
    changed = recorded_predictions.copy()
    changed.loc[changed["role"] == "test", "observed"] += 1.0
    other = next(row for row in "\n".join(field_summary_section(manifest, changed, sites))
                 .splitlines() if row.startswith(f"| {site} | all |"))
    assert other.rsplit("|", 2)[0] == line.rsplit("|", 2)[0]
    assert other != line


def test_without_a_bundle_the_report_says_so(study, recorded_predictions):
    section = field_summary_section(None, recorded_predictions, study["sites_ssl"])
    assert "run the package stage" in section[-1]


def test_blank_strata_and_a_one_sample_stratum_do_not_stop_the_report(study,
                                                                     recorded_predictions,
                                                                     manifest):
    """Blank stratum cells (allowed by the importer) and a stratum of one sample: the report
    still has the field summary; the lone stratum is shown without an interval."""
    sites = with_field_columns(study["sites_ssl"])
    strata = sites["stratum"].astype("string").to_numpy(dtype=object)
    strata[0] = None
    tested = recorded_predictions.loc[recorded_predictions["role"] == "test", "sample_id"]
    strata[sites["sample_id"].astype(str).isin(tested.astype(str).iloc[:1]).to_numpy()] = "lone"
    sites["stratum"] = pd.array(strata, dtype="string")
    lines = field_summary_section(manifest, recorded_predictions, sites)
    text = "\n".join(lines)
    assert "| all |" in text and "| lone |" in text


def test_the_report_follows_from_its_inputs_alone(study, recorded_predictions, manifest):
    """Built twice from the same inputs, the report is byte-identical and names no time (a
    clock time or stage times would change report.md and report.html, which DVC hashes, on
    every run); the pages beside it are linked whether or not they exist yet."""
    import datetime as dt

    def report():
        return write_report(
            pd.DataFrame({"set": ["sites"], "samples": [len(study["sites_ssl"])]}),
            {"tables": []}, pd.DataFrame(columns=["site", "scope", "rank", "sample_id", "soc"]),
            pd.DataFrame(columns=["site", "scope", "pool_size"]), study["calibration"],
            study["metrics"], study["winners"], study_table_markdown(study["metrics"]),
            pd.DataFrame(), study["sites_ssl"].iloc[0:0], study["sites_ssl"], {"seed": 7},
            recorded_predictions, manifest)

    first, second = report(), report()
    assert first == second
    today = dt.datetime.now(dt.UTC)
    for text in first:
        assert f"{today:%Y-%m-%d}" not in text
        assert "Generated" not in text
    data = first[0].split("## Data and validation")[1]
    assert "Data Docs (the checks of every validated table)](data_docs/index.html)" in data
    assert "(pipeline/index.html)" in data and 'href="data_docs/index.html"' in first[1]
