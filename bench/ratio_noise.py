"""How often sampling noise alone puts a winner's calibration RMSE below 0.9 x its test RMSE.

    python bench/ratio_noise.py [PROJECT ...] [--draws 4000]   (default: this project)

The honest-evaluation issue asks for nested calibration RMSE >= 0.9 x test RMSE at every
site-seed. Both RMSEs are estimates: 30 calibration residuals (s.e. about 13 %) and the test
set's. Per site of each PROJECT (a study's project directory) this takes the winner's nested
out-of-fold calibration residuals and its test residuals from ``study_predictions.csv`` and
bootstraps both (``--draws`` resamples each, independently), giving the spread of
log(nested RMSE / test RMSE) around its observed value. It prints per winner the observed ratio,
the bootstrap s.d. of the ratio and the probability that an estimator with that spread and no
bias at all (true ratio 1) falls below 0.9; and the probability that at least one of the
winners does, their draws independent. Refits nothing; seconds.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench._common import check_study_projects, machine_line, study_projects_parser  # noqa: E402

FLOOR = 0.9


def residuals(project: Path) -> list[tuple[str, str, np.ndarray, np.ndarray]]:
    """Per site: (site, winner, nested calibration residuals, test residuals)."""
    predictions = pd.read_csv(project / "data/07_model_output/study_predictions.csv",
                              low_memory=False)
    winners = json.loads((project / "data/08_reporting/study_winners.json").read_text())
    out = []
    for site, entry in winners.items():
        rows = predictions.loc[(predictions["site"] == site)
                               & (predictions["method"] == entry["method"])]
        by_role = {role: (part["observed"] - part["estimated"]).to_numpy(np.float64)
                   for role, part in rows.groupby("role")}
        if by_role.get("test") is not None and by_role["test"].size:
            out.append((site, entry["method"], by_role["calibration"], by_role["test"]))
    return out


def main() -> int:
    parser = study_projects_parser(__doc__, ROOT)
    args = parser.parse_args()
    check_study_projects(args.projects)
    rng = np.random.default_rng(args.seed)
    print(machine_line())
    print(f"{'project':<22} {'site':<14} {'winner':<16} {'n':>3} {'test':>4} {'ratio':>6} "
          f"{'s.d.':>6} {'P(unbiased < 0.9)':>18}")
    below = []
    for project in args.projects:
        for site, label, cal, test in residuals(project):
            def rmse(r, picks):
                return np.sqrt(np.mean(r[picks] ** 2, axis=1))

            ratio = np.sqrt(np.mean(cal**2) / np.mean(test**2))
            boot = (rmse(cal, rng.integers(0, cal.size, (args.draws, cal.size)))
                    / rmse(test, rng.integers(0, test.size, (args.draws, test.size))))
            log_spread = np.log(boot) - np.log(ratio)  # the estimator's noise around its value
            p = float(np.mean(log_spread < np.log(FLOOR)))  # ... were its true ratio 1
            below.append(p)
            print(f"{'/'.join(project.parts[-2:]):<22} {site:<14} {label:<16} {cal.size:>3} {test.size:>4} "
                  f"{ratio:6.3f} {np.std(boot):6.3f} {p:18.3f}")
    every = 1 - np.prod(1 - np.asarray(below))
    print(f"P(at least one of {len(below)} unbiased estimates < {FLOOR} x test): {every:.3f}; "
          f"expected count {np.sum(below):.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
