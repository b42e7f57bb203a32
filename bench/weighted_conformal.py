"""Weighted conformal (covariate shift) against the served CV+ on finished studies; asserts nothing.

The honest-evaluation issue asks for weighted conformal (Tibshirani, Barber, Candès & Ramdas
2019) "if it measures better": Kennard-Stone puts the spectral extremes in the calibration set,
so calibration and field spectra differ in distribution, which is the case weighted conformal
is made for. This script measures it on the outputs of studies already run (no training):

- per site, density ratios w(x) of the site's other spectra (validation and test) to its
  calibration spectra from the spectra alone (``localsoc.uncertainty.ShiftWeights``: a quadratic logistic classifier on PCA
  scores; no SOC value used);
- per method, the weighted conformal half-width of the nested out-of-fold calibration
  residuals at each test spectrum (``weighted_conformal_halfwidth``: +inf where the spectrum's
  weight is too large for the calibration weights to reach the level), around the served
  estimate; and the weighted nested calibration RMSE sqrt(sum w r^2 / sum w);
- beside them the served CV+ interval's coverage and width (study_metrics.csv).

Printed: per method, pooled over the studies' sites (weighted by test samples): coverage and
width of both, the share of test spectra whose weighted interval is infinite, and the mean of
nested / test and weighted nested / test RMSE.

    python bench/weighted_conformal.py [/tmp/localsoc_seeds/seed_42 ...]   (bench/study_seeds.py
    leaves one project per seed; default: this project, after make run)
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench._common import check_study_projects, machine_line, study_projects_parser  # noqa: E402

from localsoc.data.schema import spectra_of  # noqa: E402
from localsoc.study.data import site_data  # noqa: E402
from localsoc.uncertainty import ShiftWeights, weighted_conformal_halfwidth  # noqa: E402


def study_rows(project: Path, level: float, components: int) -> list[dict]:
    data = project / "data"
    calibration = pd.read_parquet(data / "05_model_input/site_calibration.parquet")
    test = pd.read_parquet(data / "05_model_input/site_test.parquet")
    library = pd.read_parquet(data / "04_feature/library_spectra.parquet")
    selection = pd.read_csv(data / "05_model_input/rslocal_selection.csv")
    predictions = pd.read_csv(data / "07_model_output/study_predictions.csv",
                              dtype={"sample_id": str})
    metrics = pd.read_csv(data / "08_reporting/study_metrics.csv")
    rows = []
    for site, held in test.groupby("site"):
        X_cal, _, ids_cal = site_data(library, calibration, selection, site)
        # the field's other spectra (validation and test: spectra only, no SOC) are the
        # target; coverage is scored on the test samples (``holdout``, as evaluate does)
        site_test = (held.loc[held["holdout"].astype(str) != "validation"]
                     if "holdout" in held else held)
        X_test = spectra_of(site_test)
        ids_test = site_test["sample_id"].astype(str).tolist()
        shift = ShiftWeights.fit(X_cal, spectra_of(held), components)
        w_cal, w_test = shift(X_cal), shift(X_test)
        of_site = predictions.loc[predictions["site"] == site]
        for label, group in of_site.groupby("method", sort=False):
            cal = group.loc[group["role"] == "calibration"].set_index("sample_id").loc[ids_cal]
            new = group.loc[group["role"] == "test"].set_index("sample_id").loc[ids_test]
            residual = (cal["observed"] - cal["estimated"]).to_numpy(float)
            half = weighted_conformal_halfwidth(np.abs(residual), w_cal, w_test, level)
            lower = np.maximum(new["estimated"].to_numpy(float) - half, 0.0)
            upper = new["estimated"].to_numpy(float) + half
            observed = new["observed"].to_numpy(float)
            row = metrics.loc[(metrics["site"] == site) & (metrics["method"] == label)].iloc[0]
            finite = np.isfinite(half)
            rows.append({
                "study": project.name, "site": site, "method": label, "n_test": len(ids_test),
                "cov cv_plus": row["coverage_cv_plus"], "width cv_plus": row["width_cv_plus"],
                "cov weighted": float(np.mean((observed >= lower) & (observed <= upper))),
                "width weighted (finite)": (float(np.mean((upper - lower)[finite]))
                                            if finite.any() else np.nan),
                "infinite share": float(np.mean(~finite)),
                "nested/test": row["cal_rmse"] / row["rmse"],
                "weighted nested/test": float(np.sqrt(np.average(residual**2, weights=w_cal)))
                / row["rmse"],
                "weight range": f"{w_cal.min():.2f}-{w_cal.max():.2f} / "
                                f"{w_test.min():.2f}-{w_test.max():.2f}",
            })
    return rows


def main() -> None:
    parser = study_projects_parser(__doc__, ROOT, draws=False)
    parser.add_argument("--level", type=float, default=0.9)
    parser.add_argument("--components", type=int, default=5)
    args = parser.parse_args()
    check_study_projects(args.projects)
    print(machine_line())
    table = pd.DataFrame([r for p in args.projects for r in study_rows(p, args.level,
                                                                         args.components)])
    fmt = {"float_format": lambda v: f"{v:.3f}"}
    sites = table.drop_duplicates(["study", "site"])
    print("\nWeights (calibration min-max / test min-max) per study and site:")
    print(sites[["study", "site", "weight range"]].to_string(index=False))
    pooled = []
    for label, group in table.groupby("method", sort=False):
        weights = group["n_test"].to_numpy(float)
        pooled.append({
            "method": label, "site-studies": len(group),
            **{c: float(np.average(group[c], weights=weights))
               for c in ("cov cv_plus", "width cv_plus", "cov weighted", "infinite share")},
            "width weighted (finite)": float(np.nanmean(group["width weighted (finite)"])),
            "nested/test": float(group["nested/test"].mean()),
            "weighted nested/test": float(group["weighted nested/test"].mean()),
        })
    print(f"\nPer method, pooled over {len(sites)} site-studies (level {args.level}):")
    print(pd.DataFrame(pooled).to_string(index=False, **fmt))


if __name__ == "__main__":
    main()
