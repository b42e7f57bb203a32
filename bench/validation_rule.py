"""What if the winner rule read the validation samples instead of the nested Kennard-Stone
estimates? A post-hoc comparison on finished studies; the study itself does not do this.

    python bench/validation_rule.py [PROJECT ...] [--draws 400]   (default: this project)

Per site of each PROJECT, among the servable models, with the study's own rule (lowest RMSE,
the simplest within one s.e.: ``evaluate._apply_rule``) fed different estimates:

- nested: the study's winner (nested out-of-fold RMSE on the n Kennard-Stone samples);
- validation: the rule on each model's RMSE over the m validation samples; its interval from
  the same m residuals (the samples chose the model and set its width: optimistic by the
  selection);
- split: ``--draws`` random halves of the validation samples: the rule on one half's RMSE,
  the interval (split conformal at 90 %) from the other half's residuals of the chosen model
  (honest, but m / 2 residuals: ceil((m/2 + 1) 0.9)-th smallest).

Printed per site: each rule's pick and test RMSE, and the coverage and mean width on test of
its interval; then the means over sites: test RMSE against the nested winner's, coverage (min
and mean) and width. Refits nothing; seconds.
"""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench._common import check_study_projects, machine_line, study_projects_parser  # noqa: E402

from localsoc.methods import servable_families  # noqa: E402
from localsoc.pipelines.evaluate.nodes import _apply_rule, _rmse_se  # noqa: E402

LEVEL = 0.9


def _pick(servable: pd.DataFrame, residuals: dict[str, np.ndarray]) -> str:
    """The rule's pick with RMSE and s.e. taken from ``residuals`` per method."""
    table = servable.copy()
    table["cal_rmse"] = [float(np.sqrt(np.mean(residuals[m] ** 2))) for m in table["method"]]
    table["cal_rmse_se"] = [_rmse_se(residuals[m], np.zeros_like(residuals[m]))
                            for m in table["method"]]
    return str(_apply_rule(table)[0]["method"])


def _interval_figures(half: float, test: pd.DataFrame) -> tuple[float, float]:
    """Coverage and mean width on test of estimate +- half, lower bound clipped at 0."""
    lower = np.maximum(test["estimated"] - half, 0.0)
    upper = test["estimated"] + half
    covered = (test["observed"] >= lower) & (test["observed"] <= upper)
    return float(covered.mean()), float((upper - lower).mean())


def _half(residuals: np.ndarray) -> float:
    rank = math.ceil((residuals.size + 1) * LEVEL)
    return float("inf") if rank > residuals.size else float(np.sort(residuals)[rank - 1])


def sites(project: Path, draws: int, rng: np.random.Generator) -> list[dict]:
    predictions = pd.read_csv(project / "data/07_model_output/study_predictions.csv",
                              low_memory=False)
    metrics = pd.read_csv(project / "data/08_reporting/study_metrics.csv")
    winners = json.loads((project / "data/08_reporting/study_winners.json").read_text())
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
        nested = winner["method"]
        for name, pick in (("nested", nested), ("validation", _pick(servable, residual))):
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
    pd.set_option("display.width", 250)
    pd.set_option("display.max_columns", 30)
    print(table.to_string(index=False, float_format=lambda v: f"{v:.3f}"))
    print(f"\nover {len(table)} site(-seed)s; test RMSE / the nested winner's, coverage min / mean,"
          " mean width:")
    for name in ("nested", "validation", "split"):
        ratio = table[f"{name} test RMSE"] / table["nested test RMSE"]
        print(f"  {name:<10} RMSE ratio {ratio.mean():.3f} ({ratio.min():.3f}-{ratio.max():.3f})"
              f"; coverage {table[f'{name} cov'].min():.3f} / {table[f'{name} cov'].mean():.3f}"
              f"; width {table[f'{name} width'].mean():.3f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
