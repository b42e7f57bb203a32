"""The study on several real fields, both directions of library and field: each Geeves cluster
large enough is a field with NIRsoil and the other Geeves clusters as its library, and each
NIRsoil cluster large enough is a field with Geeves and the other NIRsoil clusters as its
library. Per field and seed: the served model, its test RMSE against PLSR Local's and against
the best servable method's on test, and the coverage of its served (validation) interval.

    python bench/real_fields.py [--seeds 42 43 44] [--workdir /tmp/localsoc_fields]
                                [--fields geeves_c0 nirsoil_c1 ...] [--geeves-clusters 4]
                                [--nirsoil-clusters 4] [--env demo] [--reuse]

Both shipped libraries are clustered as the real-data example does
(``examples/real_data/prepare.py``: k-means on the first principal components of
log10(1/R) + SNV over 1100-2450 nm): Geeves (391 Australian wheat-belt soils, reflectance,
total carbon) by ``geeves_clusters``, NIRsoil (825 Belgian soils, absorbance, organic carbon
"Ciso"; no location or grouping column) by ``nirsoil_clusters``. Every cluster with at least
n_calibration + n_validation + min_test labelled rows (conf/base/parameters_split.yml) becomes
a field of its labelled rows; its library is the other library whole and the other clusters of
its own library, so a field never sees its own samples (nor its own unlabelled scans) in the
library. Each field gets its own scratch project (imports through `localsoc import` /
`localsoc site --no-dvc`), and the study's stages run in-process once per seed, seed by seed
over the fields (``study.seed``:
the validation draw, folds, CNN searches), the package and report stages left out. The outputs
of each run are copied to ``WORKDIR/<field>/seed_<seed>/data/``, which
``bench/real_rules.py``, ``bench/validation_rule.py`` and ``bench/ratio_noise.py`` read as
projects.

It prints per field and seed the served model and its figures, then the summary: the mean
ratio of the served model's test RMSE to PLSR Local's, the share of field-seeds where it is at
most 1.03, the coverage of the served 90 % interval pooled over every test sample, and the
best-on-test oracle's mean ratio (the headroom); then the CNN rows and per servable method the
coverage and mean width of every interval pooled over fields and seeds.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench._common import machine_line, print_frame  # noqa: E402
from bench.study_seeds import cnn_rows, pooled_coverage, scratch  # noqa: E402
from examples.real_data.prepare import geeves_clusters, nirsoil_clusters  # noqa: E402

GRID = ["--grid-start", "1100", "--grid-stop", "2450", "--grid-step", "10"]
OUTPUTS = ("data/07_model_output/study_predictions.csv", "data/08_reporting/study_metrics.csv",
           "data/08_reporting/study_winners.json", "data/08_reporting/data_summary.csv",
           # the model inputs bench/validation_rule.py and bench/weighted_conformal.py read
           "data/05_model_input/site_calibration.parquet",
           "data/05_model_input/site_test.parquet", "data/04_feature/library_spectra.parquet",
           "data/05_model_input/rslocal_selection.csv")
# how each shipped library's file is read: spectra, carbon column and kind, country
SOURCES = {
    "geeves": ["--spectra", "reflectance", "--carbon-column", "TotalCarbon", "--carbon-kind",
               "total", "--country", "AU"],
    "nirsoil": ["--spectra", "absorbance", "--carbon-column", "Ciso", "--carbon-kind",
                "organic", "--country", "BE"],
}
CARBON = {"geeves": "TotalCarbon", "nirsoil": "Ciso"}
PLSR_LOCAL = "PLSR Local"
PREPARED = ".imported"  # written in a field's scratch project once its imports are done


@dataclass
class Field:
    """A field (its labelled rows, read from ``source``) and its libraries: name -> (source,
    rows)."""

    name: str
    source: str
    rows: pd.DataFrame
    libraries: dict[str, tuple[str, pd.DataFrame]]


def localsoc(project: Path, *arguments: str) -> None:
    """One `localsoc` command in ``project`` (its output shown only when it fails)."""
    done = subprocess.run([sys.executable, "-m", "localsoc.command_line", *arguments],
                          cwd=project, capture_output=True, text=True)
    if done.returncode:
        raise SystemExit(f"localsoc {' '.join(arguments)} failed:\n{done.stdout}\n{done.stderr}")


def with_ids(frame: pd.DataFrame, prefix: str) -> pd.DataFrame:
    frame = frame.copy()
    frame.insert(0, "sample_id", [f"{prefix}-{i}" for i in range(len(frame))])
    return frame


def fields(geeves_k: int, nirsoil_k: int, smallest: int) -> list[Field]:
    """Every Geeves and NIRsoil cluster with at least ``smallest`` labelled rows, as a field of
    those rows with the other library and the rest of its own as its libraries."""
    nirsoil, geeves, geeves_labels, _ = geeves_clusters(0, geeves_k)
    nirsoil_labels = nirsoil_clusters(0, nirsoil_k)[1]
    tables = {"geeves": (with_ids(geeves, "geeves"), geeves_labels, geeves_k),
              "nirsoil": (with_ids(nirsoil, "nirsoil"), nirsoil_labels, nirsoil_k)}
    out = []
    for source, (table, labels, k) in tables.items():
        other = next(s for s in tables if s != source)
        for cluster in range(k):
            members = labels == cluster
            rows = table.loc[members & table[CARBON[source]].notna().to_numpy()]
            if len(rows) >= smallest:
                out.append(Field(f"{source}_c{cluster}", source, rows, {
                    other: (other, tables[other][0]),
                    f"{source}_rest": (source, table.loc[~members])}))
    return out


def prepare(project: Path, field: Field) -> None:
    """Write the field's files into ``project`` and import them."""
    files = project / "data/examples"
    files.mkdir(parents=True, exist_ok=True)
    for name, (source, rows) in field.libraries.items():
        rows.to_csv(files / f"{name}.csv.gz", index=False)
        localsoc(project, "import", str(files / f"{name}.csv.gz"), "--library", name,
                 *SOURCES[source], "--id-column", "sample_id", "--no-dvc", *GRID)
    field.rows.to_csv(files / "site.csv.gz", index=False)
    localsoc(project, "site", str(files / "site.csv.gz"), "--site", field.name,
             *SOURCES[field.source], "--id-column", "sample_id", "--no-dvc", *GRID)


def field_seed_rows(seed: int, metrics: pd.DataFrame, winners: dict,
                    servable: list[str]) -> list[dict]:
    """Per site of one seed's outputs: the served model and its test figures against PLSR
    Local's and the best servable method's on test."""
    rows = []
    for site, winner in sorted(winners.items()):
        group = metrics.loc[metrics["site"] == site]
        by = group.set_index("method")
        served = by.loc[winner["method"]]
        candidates = group.loc[group["family"].isin(servable)]
        best = candidates.loc[candidates["rmse"].idxmin()]
        plsr = float(by.loc[PLSR_LOCAL, "rmse"])
        rows.append({
            "field": site, "seed": seed, "winner": winner["method"],
            "test RMSE": float(served["rmse"]), "PLSR Local RMSE": plsr,
            "ratio": float(served["rmse"]) / plsr, "best on test": best["method"],
            "best / PLSR": float(best["rmse"]) / plsr, "best coverage": float(best["coverage"]),
            "nested/test": float(served["cal_rmse"]) / float(served["rmse"]),
            "coverage": float(served["coverage"]), "width": float(served["mean_width"]),
            "n_test": int(served["n_test"]),
        })
    return rows


def summary_line(table: pd.DataFrame, label: str, ratio: str = "ratio",
                 coverage: str = "coverage") -> str:
    """#29's figures over the field-seeds of ``table``: mean ratio to PLSR Local, share with
    ratio <= 1.03, coverage pooled over test samples (coverage weighted by n_test)."""
    values = table[ratio].to_numpy(np.float64)
    pooled = float(np.average(table[coverage], weights=table["n_test"]))
    return (f"{label:<34} mean ratio {values.mean():.3f} (median {np.median(values):.3f}, "
            f"{values.min():.3f}-{values.max():.3f}); <= 1.03 at {(values <= 1.03).mean():.1%} "
            f"({int((values <= 1.03).sum())}/{values.size}); pooled coverage {pooled:.3f}")


def run_seed(field: Field, seed: int, workdir: Path, env: str, fresh: bool) -> None:
    """The study stages of ``field`` for one seed, its outputs copied to
    WORKDIR/<field>/seed_<seed>; the field's scratch project is made and imported first when
    ``fresh`` or when no finished one is there."""
    from localsoc.command_line import run_stages
    from localsoc.pipeline_registry import STAGES
    from localsoc.workflow import study_runtime_params

    project = workdir / field.name / "project"
    if fresh or not (project / PREPARED).exists():
        project = scratch(project)
        prepare(project, field)
        (project / PREPARED).touch()
    out = workdir / field.name / f"seed_{seed}"
    os.chdir(project)
    params = study_runtime_params(project, field.name, list(field.libraries), None, False)
    params["study"] = {**params.get("study", {}), "seed": seed}
    run_stages([s for s in STAGES if s not in ("package", "report")], env,
               params=params, project=project)
    for relative in OUTPUTS:
        (out / relative).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(project / relative, out / relative)
    os.chdir(ROOT)
    print(f"  {field.name} seed {seed} done", flush=True)


def read_outputs(workdir: Path, names: list[str], seeds: list[int]
                 ) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(#29's rows per field-seed, every field-seed's metrics with a seed column)."""
    from localsoc.methods import servable_families

    rows, all_metrics = [], []
    for name in names:
        for seed in seeds:
            out = workdir / name / f"seed_{seed}"
            if not (out / OUTPUTS[1]).exists():
                print(f"  {name} seed {seed}: no outputs in {out}")
                continue
            metrics = pd.read_csv(out / OUTPUTS[1])
            winners = json.loads((out / OUTPUTS[2]).read_text())
            rows += field_seed_rows(seed, metrics, winners, list(servable_families()))
            all_metrics.append(metrics.assign(seed=seed))
    return pd.DataFrame(rows), pd.concat(all_metrics, ignore_index=True)


def print_details(metrics: pd.DataFrame) -> None:
    """The CNN rows and the per-method pooled coverage of every interval."""
    from localsoc.methods import servable_families

    cnns = pd.DataFrame([row for seed, group in metrics.groupby("seed")
                         for row in cnn_rows(seed, group)])
    print_frame(cnns, "\nCNNs per field and seed (test set):")
    print(f"Local CNN CCC: min {cnns['Local CCC'].min():.3f}, mean {cnns['Local CCC'].mean():.3f};"
          f" best CNN / PLSR Local {cnns['best CNN / PLSR'].min():.3f}-"
          f"{cnns['best CNN / PLSR'].max():.3f}, a CNN at least as good at "
          f"{int((cnns['best CNN / PLSR'] <= 1).sum())} of {len(cnns)}")
    drmse = metrics.loc[metrics["method"] == "DTL-Ig", "drmse"].to_numpy(np.float64)
    print(f"DTL-Ig dRMSE against the Local CNN: mean {drmse.mean():+.1f} %, s.d. "
          f"{drmse.std(ddof=1):.1f} % over {drmse.size} field-seeds (paper: +25.8 %)")
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


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[42, 43, 44])
    parser.add_argument("--workdir", type=Path, default=Path("/tmp/localsoc_fields"))
    parser.add_argument("--fields", nargs="+", help="run only these fields (default: all)")
    parser.add_argument("--geeves-clusters", type=int, default=4)
    parser.add_argument("--nirsoil-clusters", type=int, default=4)
    parser.add_argument("--env", default="demo")
    parser.add_argument("--reuse", action="store_true",
                        help="keep the field-seeds (and imports) already in --workdir; run only "
                             "the missing field-seeds")
    parser.add_argument("--details", action="store_true",
                        help="also print the CNN rows and every interval's pooled figures")
    args = parser.parse_args()
    args.workdir = args.workdir.resolve()  # the imports run in the scratch projects

    split = yaml.safe_load((ROOT / "conf/base/parameters_split.yml").read_text())["split"]
    smallest = sum(int(split[key]) for key in ("n_calibration", "n_validation", "min_test"))
    print(machine_line())
    chosen = fields(args.geeves_clusters, args.nirsoil_clusters, smallest)
    unknown = set(args.fields or []) - {f.name for f in chosen}
    if unknown:
        raise SystemExit(f"no such field: {sorted(unknown)}; fields: {[f.name for f in chosen]}")
    chosen = [f for f in chosen if not args.fields or f.name in args.fields]
    for field in chosen:
        libraries = " + ".join(f"{name} {len(rows)}"
                               for name, (_, rows) in field.libraries.items())
        print(f"field {field.name}: {len(field.rows)} labelled samples; library {libraries}",
              flush=True)
    prepared = set()  # seed by seed, so that a run cut short leaves whole seeds
    for seed in args.seeds:
        for field in chosen:
            if args.reuse and (args.workdir / field.name / f"seed_{seed}" / OUTPUTS[1]).exists():
                continue
            run_seed(field, seed, args.workdir, args.env,
                     fresh=not args.reuse and field.name not in prepared)
            prepared.add(field.name)
    table, metrics = read_outputs(args.workdir, [f.name for f in chosen], args.seeds)
    print_frame(table, "\nServed model per field and seed (served interval: validation):")
    print()
    print(summary_line(table, "served model / PLSR Local"))
    print(summary_line(table, "best servable on test (oracle)", ratio="best / PLSR",
                       coverage="best coverage"))
    if args.details:
        print_details(metrics)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
