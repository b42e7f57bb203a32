"""The study on several real fields: each Geeves cluster large enough is a field, the rest of
Geeves and NIRsoil its library; per field and seed the winner, its calibration / validation /
test RMSE and the coverage and width of the served (validation) and CV+ intervals.

    python bench/real_fields.py [--seeds 42 43 44] [--workdir /tmp/localsoc_fields]
                                [--clusters 4] [--env demo] [--reuse]

The shipped Geeves library (391 Australian wheat-belt soils, total carbon) is clustered as the
real-data example does (``examples/real_data/prepare.py``: k-means on the first principal
components of log10(1/R) + SNV over 1100-2450 nm). Every cluster with at least
n_calibration + n_validation + min_test rows (30 + 20 + 10 in conf/base) becomes a field, all
its rows labelled; its library is NIRsoil (825 Belgian soils) and the Geeves rows of the other
clusters, so a field never sees its own samples in the library. Each field gets its own scratch
project (imports through `localsoc import` / `localsoc site --no-dvc`), and the study's stages
run in-process once per seed (``study.seed``: the validation draw, folds, CNN searches), the
package and report stages left out. The outputs of each run are copied to
``WORKDIR/<field>/seed_<seed>/data/``, which ``bench/validation_draws.py`` and
``bench/ratio_noise.py`` read as projects.

It prints per field and seed the winner and its figures, the CNN rows (the Local CNN's test
CCC, the best CNN against PLSR Local), and per servable method the coverage
and mean width of every interval pooled over fields and seeds (weighted by test samples).
About 1.5 minutes per field and seed on 2 cores.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench._common import machine_line, print_frame  # noqa: E402
from bench.study_seeds import cnn_rows, pooled_coverage, scratch, winner_rows  # noqa: E402
from examples.real_data.prepare import geeves_clusters  # noqa: E402

GRID = ["--grid-start", "1100", "--grid-stop", "2450", "--grid-step", "10"]
OUTPUTS = ("data/07_model_output/study_predictions.csv", "data/08_reporting/study_metrics.csv",
           "data/08_reporting/study_winners.json", "data/08_reporting/data_summary.csv",
           # the model inputs bench/validation_rule.py and bench/weighted_conformal.py read
           "data/05_model_input/site_calibration.parquet",
           "data/05_model_input/site_test.parquet", "data/04_feature/library_spectra.parquet",
           "data/05_model_input/rslocal_selection.csv")


def localsoc(project: Path, *arguments: str) -> None:
    """One `localsoc` command in ``project`` (its output shown only when it fails)."""
    done = subprocess.run([sys.executable, "-m", "localsoc.command_line", *arguments],
                          cwd=project, capture_output=True, text=True)
    if done.returncode:
        raise SystemExit(f"localsoc {' '.join(arguments)} failed:\n{done.stdout}\n{done.stderr}")


def fields(clusters: int, smallest: int) -> list[tuple[str, pd.DataFrame, pd.DataFrame,
                                                      pd.DataFrame]]:
    """(name, field rows, its Geeves library rows, NIRsoil) per Geeves cluster of at least
    ``smallest`` rows."""
    nirsoil, geeves, labels, _ = geeves_clusters(0, clusters)
    nirsoil = nirsoil.copy()
    nirsoil.insert(0, "sample_id", [f"nirsoil-{i}" for i in range(len(nirsoil))])
    geeves = geeves.copy()
    geeves.insert(0, "sample_id", [f"geeves-{i}" for i in range(len(geeves))])
    out = []
    for cluster in range(clusters):
        members = labels == cluster
        if members.sum() >= smallest:
            out.append((f"geeves_c{cluster}", geeves.loc[members], geeves.loc[~members],
                        nirsoil))
    return out


def prepare(project: Path, name: str, site: pd.DataFrame, rest: pd.DataFrame,
            nirsoil: pd.DataFrame) -> None:
    files = project / "data/examples"
    files.mkdir(parents=True, exist_ok=True)
    for frame, file in ((site, "site.csv.gz"), (rest, "geeves_rest.csv.gz"),
                        (nirsoil, "nirsoil.csv.gz")):
        frame.to_csv(files / file, index=False)
    localsoc(project, "import", str(files / "nirsoil.csv.gz"), "--as", "nirsoil", "--spectra",
             "absorbance", "--carbon-column", "Ciso", "--carbon-kind", "organic",
             "--id-column", "sample_id", "--country", "BE", "--no-dvc", *GRID)
    localsoc(project, "import", str(files / "geeves_rest.csv.gz"), "--as", "geeves_rest",
             "--spectra", "reflectance", "--carbon-column", "TotalCarbon", "--carbon-kind",
             "total", "--id-column", "sample_id", "--country", "AU", "--no-dvc", *GRID)
    localsoc(project, "site", str(files / "site.csv.gz"), "--name", name, "--spectra",
             "reflectance", "--carbon-column", "TotalCarbon", "--carbon-kind", "total",
             "--id-column", "sample_id", "--country", "AU", "--no-dvc", *GRID)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[42, 43, 44])
    parser.add_argument("--workdir", type=Path, default=Path("/tmp/localsoc_fields"))
    parser.add_argument("--clusters", type=int, default=4)
    parser.add_argument("--env", default="demo")
    parser.add_argument("--reuse", action="store_true",
                        help="read the outputs already in --workdir instead of running")
    args = parser.parse_args()
    args.workdir = args.workdir.resolve()  # the imports run in the scratch projects

    from localsoc.command_line import run_stages
    from localsoc.methods import servable_families
    from localsoc.pipeline_registry import STAGES
    from localsoc.workflow import study_runtime_params

    split = yaml.safe_load((ROOT / "conf/base/parameters_split.yml").read_text())["split"]
    smallest = sum(int(split[key]) for key in ("n_calibration", "n_validation", "min_test"))
    print(machine_line())
    winners_table, all_metrics, cnn_table = [], [], []
    for name, site, rest, nirsoil in fields(args.clusters, smallest):
        print(f"field {name}: {len(site)} samples; library NIRsoil {len(nirsoil)} + Geeves "
              f"{len(rest)}", flush=True)
        project = args.workdir / name / "project"
        if not args.reuse:
            project = scratch(project)
            prepare(project, name, site, rest, nirsoil)
        for seed in args.seeds:
            out = args.workdir / name / f"seed_{seed}"
            if not args.reuse:
                os.chdir(project)
                params = study_runtime_params(project, name, ["nirsoil", "geeves_rest"], None,
                                              False)
                params["study"] = {**params.get("study", {}), "seed": seed}
                run_stages([s for s in STAGES if s not in ("package", "report")], args.env,
                           params=params, project=project)
                for relative in OUTPUTS:
                    (out / relative).parent.mkdir(parents=True, exist_ok=True)
                    shutil.copy(project / relative, out / relative)
            metrics = pd.read_csv(out / "data/08_reporting/study_metrics.csv")
            winners = json.loads((out / "data/08_reporting/study_winners.json").read_text())
            metrics.insert(0, "seed", seed)
            all_metrics.append(metrics)
            winners_table += winner_rows(seed, metrics, winners)
            cnn_table += cnn_rows(seed, metrics)
    os.chdir(ROOT)
    table = pd.DataFrame(winners_table)
    print_frame(table, "\nWinners per field and seed (served interval: validation):")
    print(f"\nWinner coverage: min {table['coverage'].min():.3f}, pooled (mean) "
          f"{table['coverage'].mean():.3f}; nested/test {table['nested/test'].min():.3f}-"
          f"{table['nested/test'].max():.3f}; validation/test "
          f"{table['validation/test'].min():.3f}-{table['validation/test'].max():.3f}")
    metrics = pd.concat(all_metrics, ignore_index=True)
    by = metrics.set_index(["seed", "site", "method"])
    cv_plus = [float(by.loc[(row.seed, row.site, row.winner), "coverage_cv_plus"])
               for row in table.itertuples()]
    print(f"Winner CV+ coverage: min {min(cv_plus):.3f}, mean {np.mean(cv_plus):.3f}")
    cnns = pd.DataFrame(cnn_table)
    print_frame(cnns, "\nCNNs per field and seed (test set):")
    print(f"Local CNN CCC: min {cnns['Local CCC'].min():.3f}, mean {cnns['Local CCC'].mean():.3f};"
          f" best CNN / PLSR Local {cnns['best CNN / PLSR'].min():.3f}-"
          f"{cnns['best CNN / PLSR'].max():.3f}, a CNN at least as good at "
          f"{int((cnns['best CNN / PLSR'] <= 1).sum())} of {len(cnns)}")
    drmse = metrics.loc[metrics["method"] == "DTL-Ig", "drmse"].to_numpy(np.float64)
    print(f"DTL-Ig dRMSE against the Local CNN: mean {drmse.mean():+.1f} %, s.d. "
          f"{drmse.std(ddof=1):.1f} % over {drmse.size} field-seeds (paper: +25.8 %)")
    best = metrics.loc[metrics["family"].isin(servable_families())].groupby(["seed", "site"])["rmse"].min()
    chosen = table.set_index(["seed", "site"])["test RMSE"]
    plsr = metrics.loc[metrics["method"] == "PLSR Local"].set_index(["seed", "site"])["rmse"]
    for name, against in (("PLSR Local's", plsr), ("the best servable model's (an oracle)",
                                                    best)):
        ratio = chosen / against
        print(f"winner's test RMSE / {name}: {ratio.min():.3f}-{ratio.max():.3f}, mean "
              f"{ratio.mean():.3f}")
    pooled = pooled_coverage(metrics)
    shown = ["method", "family", "site-seeds", "nested/test", "validation/test",
             "cov validation", "width validation", "cov cv_plus", "width cv_plus"]
    print_frame(pooled[[c for c in shown if c in pooled]],
                "\nPer method, pooled over fields and seeds:")
    servable = pooled.loc[pooled["family"].isin(servable_families())]
    for name in ("validation", "cv_plus"):
        values = servable[f"cov {name}"].to_numpy(np.float64)
        print(f"servable methods, {name}: pooled coverage {values.min():.3f}-{values.max():.3f}"
              f", mean |pooled - 0.9| {np.mean(np.abs(values - 0.9)):.3f}, mean width "
              f"{servable[f'width {name}'].mean():.3f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
