"""What if the winner rule read the validation samples instead of the nested Kennard-Stone
estimates? A post-hoc comparison on finished studies; the study itself does not do this.

    python bench/validation_rule.py [PROJECT ...] [--draws 400]   (default: this project)

Per site of each PROJECT, among the servable models, with the study's own rule (lowest RMSE,
the simplest within one s.e.: ``evaluate.apply_rule``) fed different estimates:

- nested: the study's winner (nested out-of-fold RMSE on the n Kennard-Stone samples);
- validation: the rule on each model's RMSE over the m validation samples; its interval from
  the same m residuals (the samples chose the model and set its width: optimistic by the
  selection);
- split: ``--draws`` random halves of the validation samples: the rule on one half's RMSE,
  the interval (split conformal at 90 %) from the other half's residuals of the chosen model
  (honest, but m / 2 residuals: ceil((m/2 + 1) 0.9)-th smallest);
- weighted field / weighted validation (where the project still holds the study's model
  inputs): the rule on the nested out-of-fold RMSE weighted to the field, sqrt(sum w r^2 /
  sum w) with w the density ratio target / calibration of each calibration spectrum
  (``uncertainty.ShiftWeights``, spectra only: importance-weighted cross-validation,
  Sugiyama, Krauledat & Mueller 2007, JMLR 8:985-1005); the target is the validation and test
  spectra (field) or the 20 validation spectra only (validation: no test row touched); its
  interval is the validation one (the validation labels did not choose it).

Printed per site: each rule's pick and test RMSE, and the coverage and mean width on test of
its interval; then the means over sites: test RMSE against the nested winner's, coverage (min
and mean) and width. Refits nothing; seconds.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench._common import (  # noqa: E402
    check_study_projects,
    machine_line,
    print_frame,
    study_projects_parser,
)

from localsoc.data.schema import spectra_of  # noqa: E402
from localsoc.methods import servable_families  # noqa: E402
from localsoc.pipelines.evaluate.nodes import apply_rule  # noqa: E402
from localsoc.pipelines.evaluate.scoring import rmse_se  # noqa: E402
from localsoc.study.data import site_data  # noqa: E402
from localsoc.uncertainty import (  # noqa: E402
    ShiftWeights,
    clip_interval,
    conformal_halfwidth,
    interval_coverage,
)

LEVEL = 0.9


def _weighted_rmse_se(residuals: np.ndarray, weights: np.ndarray) -> tuple[float, float]:
    """sqrt(sum w r^2 / sum w) and its delta-method standard error (weights normalised)."""
    w = weights / weights.sum()
    squared = residuals**2
    mse = float(w @ squared)
    se_mse = float(np.sqrt(np.sum(w**2 * (squared - mse) ** 2)))
    rmse = float(np.sqrt(mse))
    return rmse, (se_mse / (2 * rmse) if rmse > 0 else 0.0)


def _pick(servable: pd.DataFrame, residuals: dict[str, np.ndarray],
          weights: np.ndarray | None = None) -> str:
    """The rule's pick with RMSE and s.e. taken from ``residuals`` per method (weighted by
    ``weights`` when given)."""
    table = servable.copy()
    if weights is None:
        table["cal_rmse"] = [float(np.sqrt(np.mean(residuals[m] ** 2))) for m in table["method"]]
        table["cal_rmse_se"] = [rmse_se(residuals[m], np.zeros_like(residuals[m]))
                                for m in table["method"]]
    else:
        figures = [_weighted_rmse_se(residuals[m], weights) for m in table["method"]]
        table["cal_rmse"] = [f[0] for f in figures]
        table["cal_rmse_se"] = [f[1] for f in figures]
    return str(apply_rule(table, "simplest_within_one_se")[0]["method"])


def _shift_weights(project: Path) -> dict[str, dict[str, tuple[list[str], np.ndarray]]] | None:
    """Per site and target, its calibration ids and their density-ratio weights target /
    calibration (``uncertainty.ShiftWeights`` on the spectra alone). Targets: ``field``, the
    validation and test spectra; ``validation``, the validation spectra only (what a study
    could use without touching its test rows). None when the project lacks the study's model
    inputs."""
    data = project / "data"
    needed = [data / "05_model_input/site_calibration.parquet",
              data / "05_model_input/site_test.parquet",
              data / "04_feature/library_spectra.parquet",
              data / "05_model_input/rslocal_selection.csv"]
    if not all(path.exists() for path in needed):
        return None
    calibration, test, library = (pd.read_parquet(path) for path in needed[:3])
    selection = pd.read_csv(needed[3])
    out = {}
    for site, held in test.groupby("site"):
        X_cal, _, ids_cal = site_data(library, calibration, selection, site)
        ids = [str(i) for i in ids_cal]
        validation = held.loc[held["holdout"].astype(str) == "validation"]
        out[site] = {"field": (ids, ShiftWeights.fit(X_cal, spectra_of(held))(X_cal))}
        if len(validation) >= 2:
            out[site]["validation"] = (
                ids, ShiftWeights.fit(X_cal, spectra_of(validation))(X_cal))
    return out


def _interval_figures(half: float, test: pd.DataFrame) -> tuple[float, float]:
    """Coverage and mean width on test of estimate +- half, lower bound clipped at 0."""
    estimate = test["estimated"].to_numpy(np.float64)
    lower, upper = clip_interval(estimate - half, estimate + half)
    return interval_coverage(test["observed"], lower, upper), float(np.mean(upper - lower))


def _half(residuals: np.ndarray) -> float:
    """The split-conformal half-width of absolute residuals (``conformal_halfwidth``)."""
    return conformal_halfwidth(residuals, np.zeros_like(residuals), LEVEL)


def sites(project: Path, draws: int, rng: np.random.Generator) -> list[dict]:
    predictions = pd.read_csv(project / "data/07_model_output/study_predictions.csv",
                              low_memory=False)
    metrics = pd.read_csv(project / "data/08_reporting/study_metrics.csv")
    winners = json.loads((project / "data/08_reporting/study_winners.json").read_text())
    weights = _shift_weights(project)
    out = []
    for site, winner in winners.items():
        servable = metrics.loc[(metrics["site"] == site)
                               & metrics["family"].isin(servable_families())]
        rows = predictions.loc[predictions["site"] == site]
        validation = {m: g.sort_values("sample_id") for m, g in
                      rows.loc[rows["role"] == "validation"].groupby("method")}
        tests = {m: g for m, g in rows.loc[rows["role"] == "test"].groupby("method")}
        if not validation or not tests:
            continue
        servable = servable.loc[servable["method"].isin(validation)]
        residual = {m: np.abs((g["observed"] - g["estimated"]).to_numpy(np.float64))
                    for m, g in validation.items()}
        m = len(next(iter(residual.values())))
        row = {"project": "/".join(project.parts[-2:]), "site": site, "m": m}
        picks = {"nested": winner["method"], "validation": _pick(servable, residual)}
        targets = (weights or {}).get(site, {})
        if targets:  # the nested residuals in the order of the weights' calibration ids
            ids_cal = next(iter(targets.values()))[0]
            nested_residual = {}
            for label, group in rows.loc[rows["role"] == "calibration"].groupby("method"):
                by_id = group.set_index(group["sample_id"].astype(str)).loc[ids_cal]
                nested_residual[label] = np.abs((by_id["observed"] - by_id["estimated"])
                                                .to_numpy(np.float64))
        for target, (_, w) in targets.items():
            picks[f"weighted {target}"] = _pick(servable, nested_residual, w)
        for name, pick in picks.items():
            coverage, width = _interval_figures(_half(residual[pick]), tests[pick])
            row.update({f"{name} pick": pick,
                        f"{name} test RMSE": float(np.sqrt(np.mean(
                            (tests[pick]["observed"] - tests[pick]["estimated"]) ** 2))),
                        f"{name} cov": coverage, f"{name} width": width})
        rmses, covers, widths = [], [], []
        for _ in range(draws):
            order = rng.permutation(m)
            choose, calibrate = order[: m // 2], order[m // 2:]
            pick = _pick(servable, {k: v[choose] for k, v in residual.items()})
            coverage, width = _interval_figures(_half(residual[pick][calibrate]), tests[pick])
            rmses.append(float(np.sqrt(np.mean((tests[pick]["observed"]
                                                - tests[pick]["estimated"]) ** 2))))
            covers.append(coverage)
            widths.append(width)
        row.update({"split test RMSE": float(np.mean(rmses)), "split cov": float(np.mean(covers)),
                    "split width": float(np.mean(widths))})
        out.append(row)
    return out


def main() -> int:
    parser = study_projects_parser(__doc__, ROOT)
    parser.set_defaults(draws=400)
    args = parser.parse_args()
    check_study_projects(args.projects)
    rng = np.random.default_rng(args.seed)
    print(machine_line())
    table = pd.DataFrame([row for p in args.projects for row in sites(p, args.draws, rng)])
    print_frame(table)
    print(f"\nover {len(table)} site(-seed)s; test RMSE / the nested winner's, coverage min / mean,"
          " mean width:")
    for name in ("nested", "validation", "split", "weighted field", "weighted validation"):
        if f"{name} test RMSE" not in table or table[f"{name} test RMSE"].isna().all():
            continue
        ratio = table[f"{name} test RMSE"] / table["nested test RMSE"]
        print(f"  {name:<10} RMSE ratio {ratio.mean():.3f} ({ratio.min():.3f}-{ratio.max():.3f})"
              f"; coverage {table[f'{name} cov'].min():.3f} / {table[f'{name} cov'].mean():.3f}"
              f"; width {table[f'{name} width'].mean():.3f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
