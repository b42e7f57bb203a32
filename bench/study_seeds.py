"""Repeat the demo study over several seeds: honest winners and intervals, and DTL-Ig's dRMSE.

This script runs the whole study (conf/demo budgets unless --env says otherwise) once per seed
in a scratch copy of the project, with the run seed (study.seed: simulator, PCA, RS-LOCAL,
folds, CNN searches, transfer, MBL) set to that seed, and prints:

- per seed and site: the winner, its nested calibration RMSE and its validation RMSE against
  its test RMSE (ratios), the coverage and mean width of its served interval on test;
- per method, pooled over seeds and sites: the coverage and mean width of every interval
  (validation, CV+, normalised, plain, normalised CV+) and the mean nested / test and
  validation / test RMSE ratios;
- per seed: DTL-Ig's mean dRMSE against Local (the paper, Shen et al. 2022: +25.8 %).

It takes about one demo run per seed. ``--reuse`` reads the outputs of an earlier run of the
same work directory instead of running again.

    python bench/study_seeds.py --seeds 42 43 44 [--env demo] [--workdir /tmp/localsoc_seeds]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench._common import machine_line  # noqa: E402


def scratch(root: Path) -> Path:
    if root.exists():
        shutil.rmtree(root)
    root.mkdir(parents=True)
    shutil.copy(ROOT / "pyproject.toml", root / "pyproject.toml")
    shutil.copytree(ROOT / "conf", root / "conf", ignore=shutil.ignore_patterns("local"))
    (root / "conf/local").mkdir()
    (root / "src").mkdir()
    (root / "data").mkdir()
    return root


def seed_params(seed: int) -> dict:
    return {"study": {"seed": seed}}  # the one run seed every pipeline reads


def winner_rows(seed: int, metrics: pd.DataFrame, winners: dict) -> list[dict]:
    rows = []
    for site, winner in sorted(winners.items()):
        row = metrics.loc[(metrics["site"] == site) & (metrics["method"] == winner["method"])]
        row = row.iloc[0]
        rows.append({
            "seed": seed, "site": site, "winner": winner["method"],
            "nested cal RMSE": row["cal_rmse"], "un-nested cal RMSE": row["cal_rmse_unnested"],
            "test RMSE": row["rmse"], "nested/test": row["cal_rmse"] / row["rmse"],
            "validation RMSE": row.get("val_rmse", np.nan),
            "validation/test": row.get("val_rmse", np.nan) / row["rmse"],
            "coverage": row["coverage"], "mean width": row["mean_width"],
            "rule nested/test": (np.nan if winner.get("cal_rmse_selection") is None
                                 else winner["cal_rmse_selection"] / row["rmse"]),
            "best on test": winner["best_on_test"],
        })
    return rows


def pooled_coverage(metrics: pd.DataFrame) -> pd.DataFrame:
    """Per method, pooled over every seed and site (weighted by test samples)."""
    names = [c.removeprefix("coverage_") for c in metrics.columns if c.startswith("coverage_")]
    rows = []
    for label, group in metrics.groupby("method", sort=False):
        weights = group["n_test"].to_numpy(float)
        row = {"method": label, "family": group["family"].iloc[0], "site-seeds": len(group),
               "nested/test": float((group["cal_rmse"] / group["rmse"]).mean()),
               "un-nested/test": float((group["cal_rmse_unnested"] / group["rmse"]).mean()),
               "validation/test": (float((group["val_rmse"] / group["rmse"]).mean())
                                   if "val_rmse" in group else np.nan)}
        for name in names:  # site-seeds where an interval was not scored (NaN) are left out
            for figure, column in (("cov", f"coverage_{name}"), ("width", f"width_{name}")):
                values = group[column].to_numpy(float)
                known = np.isfinite(values)
                row[f"{figure} {name}"] = (float(np.average(values[known],
                                                            weights=weights[known]))
                                           if known.any() else np.nan)
        rows.append(row)
    return pd.DataFrame(rows)


def cnn_rows(seed: int, metrics: pd.DataFrame) -> list[dict]:
    """Per site: the Local CNN's test CCC, the best CNN on test against PLSR Local (the CNN
    issue's figures)."""
    rows = []
    for site, group in metrics.groupby("site"):
        by = group.set_index("method")
        cnn = group.loc[group["family"] == "cnn"]
        best = cnn.loc[cnn["rmse"].idxmin()]
        plsr = float(by.loc["PLSR Local", "rmse"])
        rows.append({"seed": seed, "site": site, "Local CCC": float(by.loc["Local", "ccc"]),
                     "Local RMSE": float(by.loc["Local", "rmse"]),
                     "DTL-Ig CCC": float(by.loc["DTL-Ig", "ccc"]),
                     "best CNN": best["method"], "best CNN RMSE": float(best["rmse"]),
                     "PLSR Local RMSE": plsr, "best CNN / PLSR": float(best["rmse"]) / plsr})
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[42, 43, 44])
    parser.add_argument("--env", default="demo")
    parser.add_argument("--workdir", type=Path, default=Path("/tmp/localsoc_seeds"))
    parser.add_argument("--reuse", action="store_true",
                        help="read the outputs already in --workdir instead of running")
    args = parser.parse_args()

    from localsoc.command_line import run_stages
    from localsoc.pipeline_registry import STAGES

    print(machine_line())
    rows, winners_table, all_metrics, cnn_table = [], [], [], []
    for seed in args.seeds:
        project = args.workdir / f"seed_{seed}"
        seconds = {}
        if not args.reuse:
            project = scratch(project)
            os.chdir(project)
            seconds = run_stages([s for s in STAGES if s not in ("package", "report")], args.env,
                                 params=seed_params(seed), project=project)
        metrics = pd.read_csv(project / "data/08_reporting/study_metrics.csv")
        winners = json.loads((project / "data/08_reporting/study_winners.json").read_text())
        by = metrics.pivot(index="site", columns="method", values="drmse")
        rmse = metrics.pivot(index="site", columns="method", values="rmse")
        row = {
            "seed": seed,
            "DTL-Ig mean dRMSE %": by["DTL-Ig"].mean(),
            **{f"DTL-Ig dRMSE {site} %": value for site, value in by["DTL-Ig"].items()},
            "Local RMSE mean": rmse["Local"].mean(),
            "DTL-Ig RMSE mean": rmse["DTL-Ig"].mean(),
            "PLSR Local RMSE mean": rmse["PLSR Local"].mean(),
            "RS-LOCAL+PLSR g RMSE mean": rmse["RS-LOCAL+PLSR g"].mean(),
            "winners": ", ".join(f"{s}: {w['method']}" for s, w in sorted(winners.items())),
            "seconds": sum(seconds.values()),
        }
        rows.append(row)
        winners_table += winner_rows(seed, metrics, winners)
        cnn_table += cnn_rows(seed, metrics)
        all_metrics.append(metrics.assign(seed=seed))
        print(json.dumps(row, default=float), flush=True)
    table = pd.DataFrame(rows)
    values = table["DTL-Ig mean dRMSE %"].to_numpy()
    fmt = {"float_format": lambda v: f"{v:.3f}"}
    print()
    print(table.to_string(index=False, **fmt))
    print(f"\nDTL-Ig mean dRMSE over sites, {len(values)} seeds: mean {values.mean():+.1f} %, "
          f"s.d. {values.std(ddof=1) if len(values) > 1 else float('nan'):.1f} % "
          f"(paper: +25.8 %); env {args.env}")
    cnn = pd.DataFrame(cnn_table)
    print("\nCNNs per seed and site (test set):")
    print(cnn.to_string(index=False, **fmt))
    within = (cnn["best CNN / PLSR"] <= 1.10).groupby(cnn["seed"]).sum()
    print(f"Local CNN CCC: min {cnn['Local CCC'].min():.3f}, mean {cnn['Local CCC'].mean():.3f}; "
          f"sites per seed with a CNN within 10 % of PLSR Local: {within.to_dict()}; "
          f"with a CNN at least as good: "
          f"{(cnn['best CNN / PLSR'] <= 1.0).groupby(cnn['seed']).sum().to_dict()}")
    won = pd.DataFrame(winners_table)
    print("\nWinners per seed and site (served interval: "
          f"{all_metrics[0]['interval'].iloc[0] if 'interval' in all_metrics[0] else 'plain'}):")
    print(won.to_string(index=False, **fmt))
    pooled = pd.concat(all_metrics, ignore_index=True)
    weights = pooled.loc[pooled["winner"]]["n_test"].to_numpy(float)
    winner_cov = np.average(won["coverage"].to_numpy(float), weights=weights)
    print(f"\nWinner coverage: min {won['coverage'].min():.3f} over {len(won)} site-seeds, "
          f"pooled {winner_cov:.3f}; nested/test min {won['nested/test'].min():.3f} "
          f"(the rule's own nested RMSE / test min {won['rule nested/test'].min():.3f}; "
          f"validation / test min {won['validation/test'].min():.3f}); "
          f"mean width {won['mean width'].mean():.3f}")
    print("\nPer method, pooled over seeds and sites:")
    print(pooled_coverage(pooled).to_string(index=False, **fmt))


if __name__ == "__main__":
    main()
