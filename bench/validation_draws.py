"""How much the validation interval's coverage at one field varies with m, the validation count.

    python bench/validation_draws.py [PROJECT ...] [--sizes 10 20 30 40 60] [--draws 4000]

(default PROJECT: this project, after `make run`.)

Each PROJECT is a study's project directory (a ``bench/study_seeds.py`` work directory's
``seed_N``, or the real-data example's project after ``localsoc study``). Per site and servable
method it pools the served model's estimates of the validation and test samples (the samples
Kennard-Stone did not pick: exchangeable with each other, since the split drew the validation
samples at random from them), and per validation size m redraws ``--draws`` random validation
sets from that pool without refitting anything (the served model never saw any of these
samples): the validation interval's half-width from the m drawn residuals, its coverage on
the pool's other samples. Prints per m:

- over every site and servable method: the mean coverage, the share of draws below 0.83 and
  the 5th percentile, beside an exactly valid split-conformal interval's Beta(k, m + 1 - k)
  (k = ceil((m + 1) 0.9)) before the finite test set adds its own binomial noise (the pool's
  other samples are the test set here: a larger m leaves fewer, and that noise grows; the
  share of the pool covered would not remove it, since the drawn samples are part of it);
- for the study's winners: the same, and the chance that at least one of the projects' winners
  falls below 0.83 when every site draws its own validation set (the issue's "every site-seed"
  line), by simulation over the same draws.

It refits nothing; a demo project takes seconds. The figures go to BENCHMARKS.md.
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

from localsoc.methods import servable_families  # noqa: E402
from localsoc.uncertainty import conformal_halfwidth, split_conformal_coverage_law  # noqa: E402

LEVEL = 0.9
FLOOR = 0.83


def pools(project: Path) -> tuple[dict, dict]:
    """Per (site, method) the absolute residuals of the served model on the validation and test
    samples, and per site the winner's method."""
    predictions = pd.read_csv(project / "data/07_model_output/study_predictions.csv",
                              low_memory=False)
    metrics = pd.read_csv(project / "data/08_reporting/study_metrics.csv")
    winners = json.loads((project / "data/08_reporting/study_winners.json").read_text())
    servable = metrics.loc[metrics["family"].isin(servable_families()), ["site", "method"]]
    held = predictions.loc[predictions["role"].isin(["validation", "test"])]
    out = {}
    for site, label in servable.itertuples(index=False):
        rows = held.loc[(held["site"] == site) & (held["method"] == label)]
        rows = rows.drop_duplicates("sample_id")  # a test_validation sample has both roles
        out[(site, label)] = np.abs(rows["observed"].to_numpy(np.float64)
                                    - rows["estimated"].to_numpy(np.float64))
    chosen = {site: entry["method"] for site, entry in winners.items()}
    return out, chosen


def draw_coverages(residuals: np.ndarray, m: int, draws: int,
                   rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Coverage on the rest of the pool, and the interval's width, of ``draws`` validation sets
    of size ``m`` drawn from ``residuals`` (the served model's absolute residuals)."""
    n = residuals.size
    coverage, width = np.empty(draws), np.empty(draws)
    for d in range(draws):
        order = rng.permutation(n)
        half = conformal_halfwidth(residuals[order[:m]], np.zeros(m), LEVEL)
        coverage[d] = np.mean(residuals[order[m:]] <= half)
        width[d] = 2 * half
    return coverage, width


def main() -> int:
    parser = study_projects_parser(__doc__, ROOT)
    parser.add_argument("--sizes", nargs="+", type=int, default=[10, 20, 30, 40, 60])
    args = parser.parse_args()
    check_study_projects(args.projects)
    rng = np.random.default_rng(args.seed)
    per_project = [pools(p) for p in args.projects]
    print(machine_line())
    sizes = ", ".join(f"{site} {len(r)}" for residuals, _ in per_project
                      for (site, label), r in residuals.items() if label == "PLSR Local")
    print(f"{len(args.projects)} project(s); pool of validation + test samples per site: {sizes}")
    print(f"{'m':>3} {'set':<8} {'mean cov':>8} {'P<0.83':>7} {'q05':>6} {'width':>6}   "
          f"{'Beta mean':>9} {'P<0.83':>7} {'q05':>6}   P(any winner < 0.83)")
    for m in args.sizes:
        try:
            law = split_conformal_coverage_law(m, LEVEL)
        except ValueError:
            print(f"{m:>3} too few for a finite {LEVEL:.0%} interval")
            continue
        every, winner_draws = [], []
        for residuals, chosen in per_project:
            for (site, label), r in residuals.items():
                if r.size <= m:
                    continue
                coverage, width = draw_coverages(r, m, args.draws, rng)
                every.append((coverage, width))
                if chosen.get(site) == label:
                    winner_draws.append((coverage, width))
        for name, group in (("all", every), ("winners", winner_draws)):
            if not group:
                continue
            coverage = np.concatenate([c for c, _ in group])
            width = np.concatenate([w for _, w in group])
            line = (f"{m:>3} {name:<8} {coverage.mean():8.3f} {np.mean(coverage < FLOOR):7.3f} "
                    f"{np.quantile(coverage, 0.05):6.3f} {width.mean():6.3f}   "
                    f"{law.mean:9.3f} {law.below(FLOOR):7.3f} {law.q05:6.3f}")
            if name == "winners":
                # each winner draws its own validation set: draw d of every winner together
                below = np.vstack([c < FLOOR for c, _ in group]).any(axis=0)
                line += (f"   {below.mean():.3f} over {len(group)} winners "
                         f"(exact Beta: {1 - (1 - law.below(FLOOR)) ** len(group):.3f})")
            print(line)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
