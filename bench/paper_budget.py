"""Accuracy against CNN budget at the paper's library size (issue #30, item 2): what more compute
buys, and what conf/base's budgets would cost.

A *budget run* is one whole study at global size 50,422 (the paper's sizes; the same simulated
data and seed in every run) with one set of CNN budgets. Each run's two result files are kept
under docs/data/paper_budget/<label>/ (a few kB, so the table and figure can be rebuilt without
rerunning an hour of training):

- ``study_metrics.csv``: every method's test RMSE per site (data/08_reporting/);
- ``library_search_trials.csv``: every library search trial with its CV RMSE (data/07_model_output/);
- ``budget.yaml``: the run's train parameters (library_budget, library_by_scope, site_budget)
  and its stage seconds where the run kept them; ``rerun_stages`` where only those stages ran
  with this budget on another run's project (its winners are then not this budget's).

``--collect LABEL=PROJECT`` copies them from a finished project (a `make paper` clone, or a
bench/study_scale.py size project). Printed: per budget the library CNNs' CV RMSE (best completed
trial of each library search: the network the study transfers) and the study's test RMSE per
transfer method and site; written: docs/img/paper-budget.png.

``--project-base`` prints what conf/base's budgets (50 trials, 10 folds, up to 300 epochs per
library) would cost, from per-epoch wall seconds measured on 2 cores (``EPOCH_WALL_S``): a range
from "every trial stops at its patience" to "every trial runs every epoch". A GPU's figure needs
a measured time per training step on that GPU: none was lent to the sessions that wrote this
(``--gpu-step-ms`` prints the projection for a step time you measured).

    python bench/paper_budget.py --collect paper=/tmp/paper_clone
    python bench/paper_budget.py [--figure docs/img/paper-budget.png] [--project-base]
"""

from __future__ import annotations

import argparse
import json
import math
import shutil
import sys
from pathlib import Path

import pandas as pd
import yaml

ROOT = Path(__file__).resolve().parents[1]
RUNS = ROOT / "docs/data/paper_budget"
#: Budget labels in the order of the table (least compute first); runs not collected are skipped.
ORDER = ("demo", "paper", "larger")
TRANSFER_METHODS = ("Global", "DTL-Rg", "DTL-Rc", "DTL-IRg", "DTL-IRc")
LIBRARIES = ("global", "country_CN", "country_SE", "country_US")
SAVED = {"study_metrics.csv": "data/08_reporting/study_metrics.csv",
         "library_search_trials.csv": "data/07_model_output/library_search_trials.csv"}

#: Wall seconds per epoch per 1,000 training spectra on 2 cores (AMD, 211 bands, the search's
#: fold stack), from make paper's library searches at 50,422 (2026-12-07): a trial's seconds /
#: (folds x its mean epochs x spectra per fold). compact: 0.028 (China), 0.021 (Sweden), 0.016
#: (USA), 0.020 (global): 0.02. paper_global was not trained by make paper: 6.6x paper_china's,
#: the ratio of the two in a one-fit probe at load 9 (3.30 / 0.50 CPU s).
EPOCH_WALL_S = {"compact": 0.02, "paper_china": 0.314, "paper_usa": 0.600,
                "paper_sweden": 6.49, "paper_global": 2.07}
#: The paper's library sizes (conf/paper; the countries follow from the global size).
PAPER_SIZES = {"global": 50422, "country_CN": 5183, "country_SE": 2319, "country_US": 4155}


def collect(label: str, project: Path) -> Path:
    """Copy a finished project's result files and budgets to docs/data/paper_budget/<label>/."""
    out = RUNS / label
    out.mkdir(parents=True, exist_ok=True)
    for name, relative in SAVED.items():
        shutil.copyfile(project / relative, out / name)
    params = yaml.safe_load((project / "params.yaml").read_text())
    train = params["train"]
    budget = {key: train.get(key) for key in ("library_budget", "library_by_scope", "site_budget")}
    seconds = project / "data/08_reporting/stage_seconds.json"
    if seconds.exists():
        budget["stage_seconds"] = json.loads(seconds.read_text())
    budget["global_size"] = params["ingest"]["simulate"]["global_size"]
    (out / "budget.yaml").write_text(yaml.safe_dump(budget, sort_keys=False))
    print(f"collected {project} -> {out}")
    return out


def load_runs() -> dict[str, dict]:
    runs = {}
    for label in ORDER:
        folder = RUNS / label
        if not (folder / "study_metrics.csv").exists():
            continue
        runs[label] = {"metrics": pd.read_csv(folder / "study_metrics.csv"),
                       "trials": pd.read_csv(folder / "library_search_trials.csv"),
                       "budget": yaml.safe_load((folder / "budget.yaml").read_text())
                       if (folder / "budget.yaml").exists() else {}}
    return runs


def library_table(runs: dict[str, dict]) -> pd.DataFrame:
    """Per budget and library: trials completed, the best CV RMSE and the mean epochs it ran;
    a library model reused from an earlier run with the same data and budget (status REUSED)
    gives that run's CV RMSE, with ``reused`` set."""
    rows = []
    for label, run in runs.items():
        trials = run["trials"]
        for library in LIBRARIES:
            done = trials[(trials["model"] == library)
                          & trials["status"].isin(["COMPLETED", "REUSED"])]
            if done.empty:
                continue
            best = done.loc[done["cv_rmse"].idxmin()]
            rows.append({"budget": label, "library": library,
                         "trials": int((done["status"] == "COMPLETED").sum()),
                         "best_cv_rmse": best["cv_rmse"], "best_epochs": best["mean_epochs"],
                         "reused": best["status"] == "REUSED"})
    return pd.DataFrame(rows)


def method_table(runs: dict[str, dict]) -> pd.DataFrame:
    """Per budget and transfer method: test RMSE per site and the mean over sites."""
    rows = []
    for label, run in runs.items():
        metrics = run["metrics"]
        for method in TRANSFER_METHODS:
            chosen = metrics[metrics["method"] == method].set_index("site")["rmse"]
            rows.append({"budget": label, "method": method, **chosen.to_dict(),
                         "mean": chosen.mean()})
    return pd.DataFrame(rows)


def winners(runs: dict[str, dict]) -> pd.DataFrame:
    """The served model per site and budget; a run that reran some stages but not nested
    (``rerun_stages`` in its budget.yaml) chose with another run's nested models: skipped."""
    rows = []
    for label, run in runs.items():
        rerun = run["budget"].get("rerun_stages")
        if rerun and "nested" not in rerun:
            continue
        metrics = run["metrics"]
        for _, row in metrics[metrics["winner"].astype(bool)].iterrows():
            rows.append({"budget": label, "site": row["site"], "winner": row["method"],
                         "test_rmse": row["rmse"]})
    return pd.DataFrame(rows)


def figure(libraries: pd.DataFrame, methods: pd.DataFrame, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    budgets = list(dict.fromkeys(methods["budget"]))
    x = range(len(budgets))
    sites = [c for c in methods.columns if c.endswith("_site")]
    fig, axes = plt.subplots(1, 1 + len(sites), figsize=(4.2 * (1 + len(sites)), 3.8))
    for library in LIBRARIES:
        rows = libraries[libraries["library"] == library].set_index("budget").reindex(budgets)
        axes[0].plot(x, rows["best_cv_rmse"], marker="o", label=library)
    axes[0].set_title("library CNNs: best CV RMSE")
    axes[0].set_yscale("log")
    for axis, site in zip(axes[1:], sites, strict=True):
        for method in TRANSFER_METHODS:
            rows = methods[methods["method"] == method].set_index("budget").reindex(budgets)
            axis.plot(x, rows[site], marker="o", label=method)
        axis.set_title(f"{site}: test RMSE")
    for axis in axes:
        axis.set_xticks(list(x), budgets)
        axis.set_xlabel("CNN budget")
        axis.set_ylabel("SOC %")
        axis.legend(fontsize=7)
    fig.suptitle("The study at 50,422 library spectra against the CNN budget")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    print(f"figure: {path}")


def project_base(gpu_step_ms: float | None) -> None:
    """conf/base's library budgets on 2 CPU cores (and on a GPU at a measured step time): wall
    hours per library search."""
    base = yaml.safe_load((ROOT / "conf/base/parameters_train.yml").read_text())["train"]
    budget = base["library_budget"]
    trials, folds, max_epochs = budget["trials"], budget["folds"], budget["max_epochs"]
    least_epochs = budget["patience"] + 1
    initial = [name for name in budget["initial_trials"] if name in EPOCH_WALL_S]
    # the trials after the initial ones draw from the whole space: costed at the median of the
    # measured networks (the space spans compact to the paper's largest)
    typical = sorted(EPOCH_WALL_S.values())[len(EPOCH_WALL_S) // 2]
    print(f"\nconf/base library budgets: {trials} trials x {folds} folds x {least_epochs}-"
          f"{max_epochs} epochs; initial trials {initial}, the other {trials - len(initial)} "
          f"costed at {typical} s per epoch per 1,000 spectra (the measured median)")
    print("| library | spectra per fold fit | hours on 2 cores (every trial stops at patience) "
          "| hours (every epoch) | training steps (batch 32, every epoch) |")
    print("|---|---|---|---|---|")
    total = [0.0, 0.0, 0.0]
    for library, size in PAPER_SIZES.items():
        per_fold = size * (folds - 1) / folds
        per_epoch = sum(EPOCH_WALL_S[name] for name in initial) + typical * (trials - len(initial))
        hours_low = per_epoch * per_fold / 1000 * folds * least_epochs / 3600
        hours_high = per_epoch * per_fold / 1000 * folds * max_epochs / 3600
        steps = trials * folds * max_epochs * math.ceil(per_fold / 32)
        total = [total[0] + hours_low, total[1] + hours_high, total[2] + steps]
        print(f"| {library} | {per_fold:,.0f} | {hours_low:,.0f} | {hours_high:,.0f} | {steps:,} |")
    print(f"| all four | | {total[0]:,.0f} | {total[1]:,.0f} | {total[2]:,.0f} |")
    print("Wall hours on 2 CPU cores (AMD), from the per-epoch figures of make paper's searches.")
    if gpu_step_ms is not None:
        hours = total[2] * gpu_step_ms / 1000 / 3600
        print(f"on a GPU at {gpu_step_ms} ms per training step (your measurement): at most "
              f"{hours:,.1f} h for the four library searches (every epoch run)")


def markdown(frame: pd.DataFrame, digits: int = 3) -> str:
    return frame.to_markdown(index=False, floatfmt=f".{digits}f")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--collect", action="append", default=[], metavar="LABEL=PROJECT",
                        help=f"copy a finished project's results (LABEL one of {ORDER})")
    parser.add_argument("--figure", type=Path, default=ROOT / "docs/img/paper-budget.png")
    parser.add_argument("--project-base", action="store_true",
                        help="print what conf/base's library budgets would cost")
    parser.add_argument("--gpu-step-ms", type=float, default=None,
                        help="a measured GPU time per training step, for --project-base")
    args = parser.parse_args()
    for item in args.collect:
        label, _, project = item.partition("=")
        if label not in ORDER or not project:
            parser.error(f"--collect {item!r}: give LABEL=PROJECT with LABEL one of {ORDER}")
        collect(label, Path(project))
    runs = load_runs()
    if runs:
        libraries, methods = library_table(runs), method_table(runs)
        print("library CNNs (best completed trial of each search):")
        print(markdown(libraries))
        print("\nstudy test RMSE (SOC %) per transfer method:")
        print(markdown(methods))
        print("\nserved models:")
        print(markdown(winners(runs)))
        figure(libraries, methods, args.figure)
    else:
        print(f"no budget runs under {RUNS}: --collect one first", file=sys.stderr)
    if args.project_base:
        project_base(args.gpu_step_ms)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
