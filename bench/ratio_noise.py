"""How often sampling noise alone puts a winner's calibration RMSE below 0.9 x its test RMSE.

    python bench/ratio_noise.py [PROJECT ...] [--draws 4000]   (default: this project)

The honest-evaluation issue asks for nested calibration RMSE >= 0.9 x test RMSE at every
site-seed. Both RMSEs are estimates: 30 calibration residuals (s.e. about 13 %) and the test
set's. Per site of each PROJECT (a study's project directory) this takes the winner's nested
out-of-fold calibration residuals and its test residuals from ``study_predictions.csv`` and
bootstraps the samples, giving the spread of log(nested RMSE / test RMSE) around its observed
value. The projects of one site (seeds) share samples: Kennard-Stone picks the same
calibration samples at every seed, and the test sets differ only by the validation draw. So
each draw resamples a site's samples once, by sample id (calibration and the rest apart), and
every project of that site scores the same resample. It prints per winner the observed ratio,
the bootstrap s.d. of the ratio and the probability that an estimator with that spread and no
bias at all (true ratio 1) falls below 0.9; and, over the same joint draws, the probability
that at least one winner does. The winner is the model with the lowest nested RMSE (within
one s.e., simplest first), which biases its estimate low: these probabilities are a floor.
Refits nothing; seconds.
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


def residuals(project: Path) -> list[tuple[str, str, pd.Series, pd.Series]]:
    """Per site: (site, winner, nested calibration residuals, test residuals), by sample id."""
    predictions = pd.read_csv(project / "data/07_model_output/study_predictions.csv",
                              low_memory=False)
    winners = json.loads((project / "data/08_reporting/study_winners.json").read_text())
    out = []
    for site, entry in winners.items():
        rows = predictions.loc[(predictions["site"] == site)
                               & (predictions["method"] == entry["method"])]
        by_role = {role: pd.Series((part["observed"] - part["estimated"]).to_numpy(np.float64),
                                   index=part["sample_id"].astype(str))
                   for role, part in rows.groupby("role")}
        if "test" in by_role and len(by_role["test"]):
            out.append((site, entry["method"], by_role["calibration"], by_role["test"]))
    return out


def resample_rmse(residual: pd.Series, ids: np.ndarray, counts: np.ndarray) -> np.ndarray:
    """Per draw, the RMSE of ``residual`` over the resampled ids (``counts[d, j]``: how often
    draw d took ``ids[j]``; ids the series lacks count 0)."""
    present = np.isin(ids, residual.index.to_numpy())
    squared = np.zeros(ids.size)
    squared[present] = residual.reindex(ids[present]).to_numpy() ** 2
    weights = counts * present
    return np.sqrt((weights @ squared) / weights.sum(axis=1))


def main() -> int:
    parser = study_projects_parser(__doc__, ROOT)
    args = parser.parse_args()
    check_study_projects(args.projects)
    rng = np.random.default_rng(args.seed)
    print(machine_line())
    entries = [(project, *entry) for project in args.projects for entry in residuals(project)]
    sites = sorted({site for _, site, *_ in entries})
    # one joint resample per site and draw: how often each calibration id and each other id
    # (the union of the site's test sets) is taken
    counts = {}
    for site in sites:
        own = [e for e in entries if e[1] == site]
        cal_ids = np.array(sorted(set().union(*(set(e[3].index) for e in own))))
        rest_ids = np.array(sorted(set().union(*(set(e[4].index) for e in own))))
        counts[site] = tuple(
            (ids, rng.multinomial(ids.size, np.full(ids.size, 1 / ids.size), size=args.draws))
            for ids in (cal_ids, rest_ids))
    print(f"{'project':<22} {'site':<14} {'winner':<16} {'n':>3} {'test':>4} {'ratio':>6} "
          f"{'s.d.':>6} {'P(unbiased < 0.9)':>18}")
    below = []
    for project, site, label, cal, test in entries:
        (cal_ids, cal_counts), (rest_ids, rest_counts) = counts[site]
        ratio = np.sqrt(np.mean(cal.to_numpy() ** 2) / np.mean(test.to_numpy() ** 2))
        boot = (resample_rmse(cal, cal_ids, cal_counts)
                / resample_rmse(test, rest_ids, rest_counts))
        noise = np.log(boot) - np.log(ratio)  # the estimator's noise around its value
        below.append(noise < np.log(FLOOR))  # ... were its true ratio 1
        print(f"{'/'.join(project.parts[-2:]):<22} {site:<14} {label:<16} {len(cal):>3} "
              f"{len(test):>4} {ratio:6.3f} {np.std(boot):6.3f} {below[-1].mean():18.3f}")
    joint = np.vstack(below)
    print(f"P(at least one of {len(below)} unbiased estimates < {FLOOR} x test), joint draws: "
          f"{joint.any(axis=0).mean():.3f} (were the {len(below)} independent: "
          f"{1 - np.prod(1 - joint.mean(axis=1)):.3f}); expected count "
          f"{joint.sum(axis=0).mean():.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
