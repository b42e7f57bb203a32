"""The study end to end on conf/test: no leakage, the winner rule, tables, report (the DVC
runs of the same study: tests/pipelines/test_dvc_runs.py)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from localsoc.datasets.model_collection import ModelCollectionDataset
from localsoc.methods import method_order, servable_families
from localsoc.models.gpr import PLSGPModel
from localsoc.models.linear import LinearModel
from localsoc.pipelines.evaluate.nodes import evaluate_sites
from tests.conftest import SMALL_GRID, load_params, make_ssl

pytestmark = pytest.mark.slow


def _collection(root: Path, name: str) -> dict:
    return ModelCollectionDataset(filepath=str(root / "data/06_models" / name)).load()


def _trained_ids(model) -> set[str]:
    if isinstance(model, LinearModel | PLSGPModel):
        return set(model.sample_ids)
    return set(model.folds.sample_ids.tolist())


def test_no_test_row_reaches_any_fit(study_project):
    root, _ = study_project
    test_ids = set(pd.read_parquet(root / "data/05_model_input/site_test.parquet")["sample_id"])
    site_ids = set(pd.read_parquet(root / "data/02_intermediate/sites_ssl.parquet")["sample_id"])
    assert test_ids
    for name in ("site_models", "transfer_models"):
        for key, model in _collection(root, name).items():
            assert not (_trained_ids(model) & test_ids), f"{name}/{key} saw test rows"
    for key, model in _collection(root, "library_models").items():
        assert not (_trained_ids(model) & site_ids), f"library model {key} saw site rows"
    selection = pd.read_csv(root / "data/05_model_input/rslocal_selection.csv")
    assert not (set(selection["sample_id"]) & site_ids)
    folds = pd.read_csv(root / "data/05_model_input/site_folds.csv")
    assert not (set(folds["sample_id"]) & test_ids)


def test_every_site_gets_every_method_and_a_winner_chosen_on_calibration(study_project):
    root, _ = study_project
    metrics = pd.read_csv(root / "data/08_reporting/study_metrics.csv")
    winners = json.loads((root / "data/08_reporting/study_winners.json").read_text())
    for site, table in metrics.groupby("site"):
        assert list(table["method"]) == method_order()
        assert table.loc[table["method"] == "Local", "drmse"].iloc[0] == 0.0
        assert table["coverage"].between(0, 1).all()
        servable = table.loc[table["family"].isin(servable_families())]
        lowest = servable.sort_values("cal_rmse", kind="stable").iloc[0]
        winner = winners[site]["method"]
        assert table.loc[table["winner"], "method"].tolist() == [winner]
        assert winners[site]["lowest_cal_rmse"]["method"] == lowest["method"]
        # the winner is within one standard error of the lowest nested calibration RMSE
        assert winners[site]["cal_rmse"] <= lowest["cal_rmse"] + lowest["cal_rmse_se"] + 1e-12
        assert winner in winners[site]["candidates"]
        mbl = table.loc[table["family"] == "mbl"]
        assert len(mbl) == 4 and mbl["rmse"].notna().all()
        # the new methods are scored like the others (the spiked PLSR and GPR may win)
        new = table.set_index("method").loc[["RS-LOCAL+PLSR g w", "GPR Local", "Stack"]]
        assert new[["rmse", "cal_rmse", "cal_rmse_se", "coverage", "mean_width"]].notna().all(
            axis=None)
        assert {"plsr_spiked", "gpr"} <= set(servable["family"])
    summary = json.loads((root / "data/08_reporting/method_metrics.json").read_text())
    assert "mean_drmse_DTL-Ig" in summary["summary"]
    headline = json.loads((root / "data/08_reporting/metrics.json").read_text())
    assert headline["rmse"] == {site: round(w["test_metrics"]["rmse"], 4)
                                for site, w in winners.items()}
    report = (root / "data/08_reporting/report.md").read_text()
    assert "DTL-Ig mean dRMSE against Local over 2 sites" in report
    assert "## Winners" in report and "## Run time per stage" not in report


def test_label_driven_methods_are_scored_on_nested_estimates(study_project):
    root, _ = study_project
    nested = pd.read_parquet(root / "data/07_model_output/nested_estimates.parquet")
    choices = pd.read_csv(root / "data/07_model_output/nested_choices.csv")
    metrics = pd.read_csv(root / "data/08_reporting/study_metrics.csv")
    calibration = pd.read_parquet(root / "data/05_model_input/site_calibration.parquet")
    test = pd.read_parquet(root / "data/05_model_input/site_test.parquet")
    folds = pd.read_csv(root / "data/05_model_input/site_folds.csv").query("dataset == 'n'")
    for (site, label), rows in nested.groupby(["site", "method"]):
        cal = rows.loc[rows["role"] == "calibration"].set_index("sample_id")
        local = calibration.loc[calibration["site"] == site].set_index("sample_id")
        assert sorted(cal.index) == sorted(local.index)  # each local once, by its outer fold
        stored = folds.loc[folds["site"] == site].set_index("sample_id")["fold"]
        assert (cal["fold"] == stored.loc[cal.index]).all()
        k = stored.nunique()
        assert len(rows.loc[rows["role"] == "test"]) == k * (test["site"] == site).sum()
        row = metrics.loc[(metrics["site"] == site) & (metrics["method"] == label)].iloc[0]
        residual = cal["estimated"] - local.loc[cal.index, "soc"]
        assert row["cal_rmse"] == pytest.approx(float(np.sqrt(np.mean(residual**2))))
    assert {"PLSR Local", "RS-LOCAL+PLSR g", "DTL-Ig", "DTL-Rg", "DTL-IRg"} <= set(
        nested["method"])
    rslocal = choices.loc[choices["nested"] == "rslocal"]
    assert (rslocal["n_library"] > 0).all() and rslocal["overlap_with_full_selection"].lt(1).any()
    transfer = choices.loc[choices["method"].isin(["DTL-Rg", "DTL-IRg"])]
    assert transfer["base_fold"].notna().all()
    # no nested procedure: the library-only models are scored as before
    library_only = metrics.loc[metrics["method"] == "Global"]
    assert (library_only["cal_rmse"] == library_only["cal_rmse_unnested"]).all()


def test_validation_samples_calibrate_the_served_interval(study_project):
    from localsoc.uncertainty import conformal_halfwidth

    root, _ = study_project
    metrics = pd.read_csv(root / "data/08_reporting/study_metrics.csv")
    predictions = pd.read_csv(root / "data/07_model_output/study_predictions.csv",
                              dtype={"sample_id": str})
    holdout = pd.read_parquet(root / "data/05_model_input/site_test.parquet")
    winners = json.loads((root / "data/08_reporting/study_winners.json").read_text())
    for site, table in metrics.groupby("site"):
        validation = set(holdout.loc[(holdout["site"] == site)
                                     & (holdout["holdout"] == "validation"), "sample_id"])
        assert len(validation) == 20 and (table["n_validation"] == 20).all()
        assert (table["interval"] == "validation").all()
        of_site = predictions.loc[predictions["site"] == site]
        assert not validation & set(of_site.loc[of_site["role"].isin(
            ["calibration", "test", "test_fold"]), "sample_id"])
        for row in table.to_dict("records"):
            rows = of_site.loc[of_site["method"] == row["method"]]
            val = rows.loc[rows["role"] == "validation"]
            assert set(val["sample_id"]) == validation
            half = conformal_halfwidth(val["observed"], val["estimated"], 0.9)
            assert row["interval_halfwidth"] == pytest.approx(half)
            tested = rows.loc[rows["role"] == "test"]
            np.testing.assert_allclose(tested["upper"], tested["estimated"] + half)
            inside = ((tested["observed"] >= np.maximum(tested["estimated"] - half, 0))
                      & (tested["observed"] <= tested["estimated"] + half))
            assert row["coverage"] == pytest.approx(inside.mean())
            assert row["val_rmse"] == pytest.approx(
                float(np.sqrt(np.mean((val["observed"] - val["estimated"]) ** 2))))
        assert winners[site]["interval"] == "validation" and winners[site]["n_validation"] == 20


def _linear(ids, oof, offset, n_bands):
    return LinearModel(x_mean=np.zeros(n_bands), coef=np.zeros(n_bands), intercept=offset,
                       n_components=1, sample_ids=list(ids), oof_predictions_=np.asarray(oof),
                       cv_rmse_by_components=[0.0])


def test_winner_rule_ignores_the_test_set():
    """Two models: the one with the better calibration OOF RMSE wins even if worse on test."""
    cal = make_ssl(20, seed=11, site="s1", library=None)
    test = make_ssl(15, seed=12, site="s1", library=None)
    cal["soc"] = 1.0
    test["soc"] = 3.0
    library = make_ssl(50, seed=13)
    ids = cal["sample_id"].tolist()
    n_bands = len(SMALL_GRID)
    # Local: perfect OOF on calibration, predicts 1.0 (bad on test, which sits at 3.0).
    # PLSR Local: poor OOF on calibration, predicts 3.0 (perfect on test).
    site_models = {
        "s1/local": _linear(ids, np.full(20, 1.0), 1.0, n_bands),
        "s1/plsr_local": _linear(ids, np.full(20, 2.0), 3.0, n_bands),
    }
    params = {**load_params()["evaluate"], "domain": {"n_components": 2, "quantile": 0.99}}
    _, metrics, winners = evaluate_sites(cal, test, library, pd.DataFrame(
        columns=["site", "scope", "rank", "sample_id"]), {}, site_models, {}, params)
    assert winners["s1"]["method"] == "Local"
    assert winners["s1"]["best_on_test"] == "PLSR Local"
    assert winners["s1"]["winner_was_best_on_test"] is False
    assert metrics.set_index("method").loc["PLSR Local", "rmse"] == pytest.approx(0.0)


@pytest.mark.parametrize("m, served", [(8, "cv_plus"), (9, "validation")])
def test_too_few_validation_samples_fall_back_to_a_finite_interval(m, served, caplog):
    """At 90 % the validation interval needs m >= 9 (rank ceil((m + 1) 0.9) <= m): with 8 it
    would be unbounded, and the site is served the fallback; with 9 its half-width is the
    largest |validation residual|."""
    cal = make_ssl(20, seed=21, site="s1", library=None)
    holdout = make_ssl(25, seed=22, site="s1", library=None)
    holdout["holdout"] = ["validation"] * m + ["test"] * (25 - m)
    ids = cal["sample_id"].tolist()
    site_models = {"s1/plsr_local": _linear(ids, cal["soc"] + 0.1, 1.5, len(SMALL_GRID))}
    params = {**load_params()["evaluate"], "interval_level": 0.9, "interval": "validation",
              "interval_fallback": "cv_plus", "domain": {"n_components": 2, "quantile": 0.99}}
    with caplog.at_level("WARNING"):
        predictions, metrics, winners = evaluate_sites(
            cal, holdout, make_ssl(50, seed=23),
            pd.DataFrame(columns=["site", "scope", "rank", "sample_id"]), {}, site_models, {},
            params)
    row = metrics.set_index("method").loc["PLSR Local"]
    assert row["interval"] == served == winners["s1"]["interval"]
    assert row["n_validation"] == m and row["n_test"] == 25 - m
    assert np.isfinite(row["interval_halfwidth"]) and np.isfinite(row["mean_width"])
    if served == "validation":
        val = holdout.iloc[:m]
        assert row["interval_halfwidth"] == pytest.approx(np.max(np.abs(val["soc"] - 1.5)))
    else:
        assert "too few for a finite 90 % validation interval" in caplog.text
        assert row["coverage_validation"] == 1.0  # reported, unbounded, not served
