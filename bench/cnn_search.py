"""1D-CNN search benchmark: trials per minute, fold loop against fold stack; asserts nothing.

Cases (DESIGN 5), on simulated spectra (absorbance + SNV, 400-2500 nm every 10 nm, 211 bands):
  * local: n = 30 calibration samples of one site;
  * k + n = 130: 100 library samples (drawn at random here; RS-LOCAL picks them in the study,
    which does not change the cost) plus the 30 local ones;
  * library: --library-size samples of the simulated global library (not by default).

Each case runs at 5 and 10 folds (--folds) the same random search twice in one process: once
with ``engine: loop`` (the K fold models one after another, batch by batch: the old way) and
once with ``engine: stack`` (models/fold_stack.py: the K folds in one compiled epoch). The
oracle is seeded and random, so both engines train the same trials. The budget is the demo's
site budget shape (no early-stopping split, --epochs epochs per fold, the demo search space,
the search starting from the compact network), so every trial trains a known number of
epochs. Printed: seconds per trial, trials per minute, the ratio, and the mean |difference|
of the two engines' CV RMSE.

Usage: python bench/cnn_search.py [--quick] [--trials N] [--epochs N] [--folds 5,10]
       [--cases local,k+n] [--library-size N] [--threads N] [--seed N]
"""

from __future__ import annotations

import argparse
import logging
import os
import tempfile

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("KEDRO_DISABLE_TELEMETRY", "true")

from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402

from _common import measure, peak_rss_mib, print_header, row  # noqa: E402
from localsoc.data.schema import spectra_of  # noqa: E402
from localsoc.data.simulate import simulate_ssl  # noqa: E402
from localsoc.models.ensemble import make_folds  # noqa: E402
from localsoc.models.runtime import configure_tensorflow  # noqa: E402
from localsoc.models.search import search_cnn  # noqa: E402
from localsoc.spectra import Absorbance, StandardNormalVariate  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]


def preprocess(table) -> np.ndarray:
    reflectance = spectra_of(table)
    absorbance = Absorbance().fit_transform(reflectance)
    return StandardNormalVariate().fit_transform(absorbance).astype(np.float32)


def make_cases(library_size: int, seed: int) -> dict[str, tuple[np.ndarray, np.ndarray, list]]:
    library, sites = simulate_ssl(global_size=max(library_size, 2_000), seed=seed)
    library = library[library["soc"].notna()]
    rng = np.random.default_rng(seed)
    site = sites[sites["site"] == sites["site"].iloc[0]]
    local = site.iloc[np.sort(rng.choice(len(site), size=30, replace=False))]
    instances = library.iloc[np.sort(rng.choice(len(library), size=100, replace=False))]
    big = library.iloc[np.sort(rng.choice(len(library), size=library_size, replace=False))]

    def arrays(table):
        return preprocess(table), table["soc"].to_numpy(float), table["sample_id"].tolist()

    k_plus_n = arrays(instances)
    local_arrays = arrays(local)
    return {
        "local": local_arrays,
        "k+n": (
            np.vstack([k_plus_n[0], local_arrays[0]]),
            np.concatenate([k_plus_n[1], local_arrays[1]]),
            k_plus_n[2] + local_arrays[2],
        ),
        "library": arrays(big),
    }


def demo_space() -> dict:
    """The demo's search space, as conf/demo/parameters_train.yml gives it."""
    import yaml

    config = yaml.safe_load((ROOT / "conf/demo/parameters_train.yml").read_text())
    return config["train"]["space"]


def run_engine(X, y, folds, budget, engine, seed):
    with tempfile.TemporaryDirectory() as directory, measure() as used:
        result = search_cnn(X, y, folds=folds, budget={**budget, "engine": engine}, seed=seed,
                            directory=directory, tuner="random", space=demo_space(),
                            progress=False)
    return result.trials.merge(result.timings, on="trial_id").sort_values("trial_id"), used


def run_case(name, X, y, ids, *, folds, trials, epochs, seed):
    split = make_folds(ids, folds, seed=seed)
    budget = {"trials": trials, "max_epochs": epochs, "patience": epochs, "folds": folds,
              "validation_fraction": 0.0, "initial_trials": ["compact"]}
    for engine in ("loop", "stack"):  # the process's one-time TensorFlow set-up, not timed
        run_engine(X, y, split, {**budget, "trials": 1, "max_epochs": 2}, engine, seed)
    out = {engine: run_engine(X, y, split, budget, engine, seed) for engine in ("loop", "stack")}
    print(f"\n-- {name}: n = {len(y)} x {X.shape[1]} bands, {folds} folds, {trials} trials of "
          f"{epochs} epochs per fold (random search, demo space, compact first)")
    per_trial = {}
    for engine, (table, used) in out.items():
        seconds = table["seconds"].to_numpy(float)
        per_trial[engine] = seconds.mean()
        row(f"{engine}: seconds per trial (mean / min / max)",
            f"{seconds.mean():7.2f} / {seconds.min():.2f} / {seconds.max():.2f} s   "
            f"{60 / seconds.mean():6.1f} trials/min   peak +{used.peak_rss_delta_mib:.0f} MiB")
    loop, stack = out["loop"][0], out["stack"][0]
    same = [dict(a) == dict(b) for a, b in zip(loop["hyperparameters"], stack["hyperparameters"],
                                                strict=True)]
    difference = np.abs(loop["cv_rmse"].to_numpy(float) - stack["cv_rmse"].to_numpy(float))
    row("stack / loop trials per minute", f"{per_trial['loop'] / per_trial['stack']:7.1f} x")
    row("same trials in both; mean |cv_rmse loop - stack|",
        f"{all(same)}; {difference.mean():.2e} (cv_rmse {loop['cv_rmse'].mean():.3f})")
    return per_trial


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="2 trials of 20 epochs")
    parser.add_argument("--trials", type=int, default=None, help="search trials (default 3)")
    parser.add_argument("--epochs", type=int, default=None,
                        help="epochs per fold (default 300, the demo site budget)")
    parser.add_argument("--folds", default="5,10")
    parser.add_argument("--cases", default="local,k+n")
    parser.add_argument("--library-size", type=int, default=2_000)
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    trials = args.trials or (2 if args.quick else 3)
    epochs = args.epochs or (20 if args.quick else 300)
    logging.basicConfig(level=logging.WARNING)

    print_header("1D-CNN search: trials per minute, fold loop vs fold stack")
    info = configure_tensorflow(args.threads)
    import keras

    print(f"Keras {keras.__version__} ({info['backend']} backend); devices {info['devices']}; "
          f"intra-op threads {info.get('intra_op_threads')}, op determinism "
          f"{info.get('deterministic')}")
    gpus = [d for d in info["devices"] if d.startswith(("GPU", "CUDA"))]
    print(f"training ran on: {gpus[0] if gpus else 'CPU'}")
    cases = make_cases(args.library_size, args.seed)
    for name in [c.strip() for c in args.cases.split(",") if c.strip()]:
        X, y, ids = cases[name]
        for folds in [int(f) for f in args.folds.split(",")]:
            run_case(name, X, y, ids, folds=folds, trials=trials, epochs=epochs, seed=args.seed)
    row("\npeak RSS of the whole run", f"{peak_rss_mib():.0f} MiB")


if __name__ == "__main__":
    main()
