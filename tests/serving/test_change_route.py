"""POST /change, `localsoc change` and `localsoc plan --campaign later` on the serving tests'
bundle; the drift check on spectra with a wavelength shift or a detector's gain step.

The change the server answers must be ``localsoc.change.change_summary`` of the estimates the
evaluate step recorded for the same spectra and the bundle's own residuals.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from localsoc.change import ALL, Campaign, change_interval, change_summary
from localsoc.data.schema import spectra_of, wavelengths_of
from localsoc.field import site_residuals
from localsoc.serving.change_answer import answer_change
from localsoc.serving.predictor import BundlePredictor, RequestError
from localsoc.serving.schemas import ChangeRequest
from tests.serving.test_service import MAX_ERROR_BYTES, site_test_rows

pytestmark = pytest.mark.slow
SITE = "sweden_site"  # PLSR: float64 throughout, estimates equal to 1e-9


def campaigns(study, recorded):
    """(baseline scans, later scans, baseline estimates, later estimates): the site's test rows
    as the baseline; the later campaign visits the same ids, each now scanned like the next
    row (a location whose soil changed), the last id not revisited."""
    raw, rows = site_test_rows(study, recorded, SITE)
    spectra = spectra_of(raw)
    grid = wavelengths_of(study["sites_ssl"]).tolist()
    ids = rows["sample_id"].astype(str).tolist()
    baseline = {"wavelengths_nm": grid, "reflectance": spectra.tolist(), "sample_id": ids,
                "stratum": ["a" if i % 2 else "b" for i in range(len(ids))]}
    later = {"wavelengths_nm": grid, "reflectance": spectra[1:].tolist(), "sample_id": ids[:-1],
             "stratum": ["a" if i % 2 else "b" for i in range(len(ids) - 1)]}
    estimates = rows["estimated"].to_numpy(np.float64)
    return baseline, later, estimates, estimates[1:]


def test_change_is_the_change_of_the_served_estimates(client, study, recorded_predictions):
    baseline, later, est_b, est_l = campaigns(study, recorded_predictions)
    response = client.post("/change", json={"site": SITE, "baseline": baseline,
                                            "later": later, "design": "paired"})
    assert response.status_code == 200, response.text
    answer = response.json()
    entry = study["bundle"].site(SITE)
    expected = change_summary(
        Campaign(est_b[:-1], site_residuals(entry), "m", strata=baseline["stratum"][:-1]),
        Campaign(est_l, site_residuals(entry), "m"), design="paired")
    assert answer["n_pairs"] == len(est_l) and answer["design"] == "paired"
    assert [g["stratum"] for g in answer["summaries"]] == [ALL, "a", "b"]
    for group, summary in zip(answer["summaries"], expected, strict=True):
        assert group["models"] == "one" and group["n_baseline"] == summary.n_baseline
        for key in ("estimate", "lower", "upper", "sampling_se", "detectable_change"):
            assert group["soc"][key] == pytest.approx(getattr(summary.soc, key), abs=1e-9), key
    whole = answer["summaries"][0]
    assert whole["soc"]["estimate"] == pytest.approx(np.mean(est_l - est_b[:-1]), abs=1e-9)
    assert whole["soc"]["model_se"] == 0.0  # one model: its bias cancels
    assert any("1 of" in note and "baseline" in note for note in whole["notes"])
    assert len(answer["baseline"]["predictions"]) == len(est_b)
    # independent: the campaigns' spreads add (Welch)
    independent = client.post("/change", json={"site": SITE, "baseline": baseline,
                                               "later": later}).json()
    welch = change_interval(est_b, est_l, site_residuals(entry))
    assert independent["summaries"][0]["soc"]["upper"] == pytest.approx(welch.upper, abs=1e-9)


@pytest.mark.parametrize(("where", "changes", "status", "field", "words"), [
    ("site", {"site": "atlantis"}, 422, "site", SITE),
    ("later", {"stratum": ["a"]}, 400, "later.stratum", "one per spectrum"),
    ("baseline", {"bulk_density_g_cm3": "SIZE:9.0"}, 422, "baseline.bulk_density_g_cm3",
     "(0.01, 3]"),
    ("later", {"reflectance": []}, 400, "later.reflectance", "at least one spectrum"),
    ("request", {"design": "before-after"}, 400, "design", "paired"),
    ("paired", {"sample_id": None}, 422, "baseline.sample_id", "no sample_id"),
    ("later", {"absorbance": "REFLECTANCE", "reflectance": None}, 422, "later.absorbance",
     "outside the model's domain"),
], ids=["unknown site", "stratum length", "bulk density", "empty later", "design",
        "paired without ids", "later in the wrong units"])
def test_bad_change_input_gets_a_small_4xx(client, study, recorded_predictions, where, changes,
                                           status, field, words):
    baseline, later, _, _ = campaigns(study, recorded_predictions)
    payload = {"site": SITE, "baseline": baseline, "later": later}
    if where == "paired":
        payload["design"] = "paired"
        payload["baseline"] = {**baseline, **changes}
    elif where in ("baseline", "later"):
        scans = payload[where]
        for key, value in changes.items():
            if value == "REFLECTANCE":
                value = scans["reflectance"]
            elif isinstance(value, str) and value.startswith("SIZE:"):
                value = [float(value[5:])] * len(scans["reflectance"])
            scans = {**scans, key: value}
        payload[where] = {k: v for k, v in scans.items() if v is not None}
    else:
        payload.update(changes)
    response = client.post("/change", json=payload)
    assert response.status_code == status, response.text
    assert len(response.content) < MAX_ERROR_BYTES
    error = response.json()
    assert set(error) == {"error", "field"} and error["field"] == field, error
    assert words in error["error"], error


def shifted(spectra: np.ndarray, grid: np.ndarray, shift_nm: float) -> np.ndarray:
    """The spectra as an instrument whose wavelength scale is off by ``shift_nm`` records them."""
    return np.stack([np.interp(grid + shift_nm, grid, row) for row in spectra])


def detector_gain(spectra: np.ndarray, grid: np.ndarray, gain: float) -> np.ndarray:
    """The spectra with the gain of the detector above 1800 nm (a FieldSpec's SWIR2) changed."""
    return np.minimum(spectra * np.where(grid > 1800, gain, 1.0), 1.0)


@pytest.mark.parametrize(("drift", "argument"), [(shifted, 4.0), (detector_gain, 1.02)],
                         ids=["wavelength shift 4 nm", "SWIR2 gain x1.02"])
def test_a_drifted_later_campaign_is_flagged(study, recorded_predictions, drift, argument):
    """The same locations rescanned unchanged by a drifted instrument: flagged in the summary
    (a spurious change of about -0.03 and -0.08 % SOC) and per spectrum (more spectra outside
    the model's domain than at the baseline); the same soils rescanned undrifted are not. (At
    6 nm or x1.06 most later spectra leave the domain and the change is refused, 422.)"""
    predictor = BundlePredictor(study["bundle"], "localsoc_bundle:test")
    scans, _, _, _ = campaigns(study, recorded_predictions)
    grid = np.asarray(scans["wavelengths_nm"])
    spectra = np.asarray(scans["reflectance"])

    def scanned(seed: int) -> np.ndarray:  # a scan's noise: 0.2 % per band
        noise = np.random.default_rng(seed).normal(1, 0.002, spectra.shape)
        return np.clip(spectra * noise, 1e-4, 1)

    baseline = {**scans, "reflectance": scanned(2).tolist()}
    rescan = scanned(3)
    for later_spectra, drifted in ((rescan, False), (drift(rescan, grid, argument), True)):
        request = ChangeRequest(site=SITE, baseline=baseline, design="paired",
                                later={**baseline, "reflectance": later_spectra.tolist()})
        answer = answer_change(predictor, request)
        whole = answer.summaries[0]
        print(f"\n{drift.__name__} {argument if drifted else 'none'}: drift p "
              f"{whole.drift.p_value:.2g}, median Q ratio {whole.drift.median_q_ratio:.2f}, "
              f"change {whole.soc.estimate:+.3f} % SOC, "
              f"{sum('q_beyond_baseline' in p.flags for p in answer.later.predictions)} "
              f"spectra beyond the baseline's Q, {answer.later.out_of_domain} out of domain")
        assert ("spectral_drift" in whole.flags) == drifted
        assert (answer.later.out_of_domain > answer.baseline.out_of_domain + 3) == drifted
        assert whole.n_out_of_domain_later == answer.later.out_of_domain


def test_a_paired_change_without_matching_ids_is_refused(study, recorded_predictions):
    predictor = BundlePredictor(study["bundle"], "localsoc_bundle:test")
    baseline, later, _, _ = campaigns(study, recorded_predictions)
    later = {**later, "sample_id": [f"x{i}" for i in range(len(later["sample_id"]))]}
    with pytest.raises(RequestError, match="only 0 location"):
        answer_change(predictor, ChangeRequest(site=SITE, baseline=baseline, later=later,
                                               design="paired"))


def test_localsoc_change_and_plan_later(project, study, recorded_predictions, tmp_path):
    from click.testing import CliRunner

    from localsoc.command_line import main

    root, home, _ = project
    raw, rows = site_test_rows(study, recorded_predictions, SITE)
    source = raw.drop(columns=["soc"]).assign(bulk_density_g_cm3=1.2, depth_cm=25.0)
    later = source.iloc[:-1].copy()
    later.loc[:, [c for c in source if c.startswith("nm_")]] = spectra_of(raw)[1:]
    paths = {name: tmp_path / f"{name}.csv" for name in ("baseline", "later")}
    source.to_csv(paths["baseline"], index=False)
    later.to_csv(paths["later"], index=False)
    out = tmp_path / "change.csv"
    env = {"LOCALSOC_PROJECT": str(root), "BENTOML_HOME": str(home)}
    result = CliRunner().invoke(
        main, ["change", "--site", SITE, "--baseline", str(paths["baseline"]), "--later",
               str(paths["later"]), "--design", "paired", "--id-column", "sample_id",
               "--out", str(out)], env=env, catch_exceptions=False)
    assert result.exit_code == 0, result.output
    assert "Change of the mean SOC" in result.output and "difference of two" in result.output
    table = pd.read_csv(out)
    estimates = rows["estimated"].to_numpy(np.float64)
    assert table["change_soc"].iloc[0] == pytest.approx(np.mean(estimates[1:] - estimates[:-1]))
    assert table["change_stock_t_ha"].iloc[0] == pytest.approx(30.0 * table["change_soc"][0])
    assert (root / f"data/07_model_output/change_{SITE}_spectra.csv").exists()
    result = CliRunner().invoke(
        main, ["plan", str(paths["baseline"]), "--site", SITE, "--campaign", "later",
               "--target-change", "0.3", "--id-column", "sample_id"], env=env,
        catch_exceptions=False)
    assert result.exit_code == 0, result.output
    words = " ".join(result.output.split())  # the table wraps with the temporary path's length
    assert "detectable change" in words and "n_later" in words
