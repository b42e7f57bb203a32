"""Repeat the demo study over several seeds: DTL-Ig's mean dRMSE against Local per seed.

The paper (Shen et al. 2022) reports +25.8 % for DTL-Ig averaged over its three sites. This
script runs the whole study (conf/demo budgets unless --env says otherwise) once per seed in a
scratch copy of the project, with the run seed (study.seed: simulator, PCA, RS-LOCAL, folds,
CNN searches, transfer, MBL) set to that seed, and prints per seed and over seeds: DTL-Ig,
Local, PLSR and winner figures. It takes about one demo run per seed.

    python bench/study_seeds.py --seeds 42 43 44 [--env demo] [--workdir /tmp/localsoc_seeds]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
from pathlib import Path

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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[42, 43, 44])
    parser.add_argument("--env", default="demo")
    parser.add_argument("--workdir", type=Path, default=Path("/tmp/localsoc_seeds"))
    args = parser.parse_args()

    from localsoc.command_line import run_stages
    from localsoc.pipeline_registry import STAGES

    print(machine_line())
    rows = []
    for seed in args.seeds:
        project = scratch(args.workdir / f"seed_{seed}")
        os.chdir(project)
        seconds = run_stages([s for s in STAGES if s != "package"], args.env,
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
        print(json.dumps(row, default=float), flush=True)
    table = pd.DataFrame(rows)
    values = table["DTL-Ig mean dRMSE %"].to_numpy()
    print()
    print(table.to_string(index=False, float_format=lambda v: f"{v:.3f}"))
    print(f"\nDTL-Ig mean dRMSE over sites, {len(values)} seeds: mean {values.mean():+.1f} %, "
          f"s.d. {values.std(ddof=1) if len(values) > 1 else float('nan'):.1f} % "
          f"(paper: +25.8 %); env {args.env}")


if __name__ == "__main__":
    main()
