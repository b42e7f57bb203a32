"""1D-CNN search benchmark: seconds per trial (10-fold CV) and peak memory; asserts nothing.

Cases (DESIGN 5), on simulated spectra (absorbance + SNV, 400-2500 nm every 10 nm, 211 bands):
  * local: n = 30 calibration samples of one site;
  * k + n = 130: 100 library samples (drawn at random here; RS-LOCAL picks them in the study,
    which does not change the cost) plus the 30 local ones;
  * library: 10,000 samples of the simulated global library.

Each case runs (a) a fixed reference architecture (paper-like: two Conv-blocks, two FC-blocks)
as a one-trial search with early stopping off, so it trains exactly --epochs epochs per fold and
gives a per-epoch figure comparable across machines; (b) a search of --trials trials from the
default space (Bayesian, early stopping on), which is what a user gets and whose cost varies
with the architectures drawn. The library case uses --library-epochs and, for (b),
--library-trials with the batch size narrowed to --library-batch-size (the default space's
batch sizes down to 8 would take hours per trial on two cores).

Usage: python bench/cnn_search.py [--quick] [--trials N] [--epochs N] [--library-size N]
       [--library-epochs N] [--library-trials N] [--library-batch-size N] [--cases ...]
       [--threads N] [--seed N]
"""

from __future__ import annotations

import argparse
import logging
import os
import tempfile

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("KEDRO_DISABLE_TELEMETRY", "true")

import numpy as np  # noqa: E402

from _common import measure, peak_rss_mib, print_header, row  # noqa: E402
from localsoc.data.schema import spectra_of  # noqa: E402
from localsoc.data.simulate import simulate_ssl  # noqa: E402
from localsoc.models.ensemble import make_folds  # noqa: E402
from localsoc.models.runtime import configure_tensorflow  # noqa: E402
from localsoc.models.search import search_cnn  # noqa: E402
from localsoc.spectra import Absorbance, StandardNormalVariate  # noqa: E402

#: A paper-like network (Shen et al. 2022, Tables 2 and 4: 1-3 Conv-blocks with large kernels
#: and many filters, no pooling, 1-5 FC-blocks), fixed so its cost is comparable across runs.
REFERENCE = {
    "conv_blocks": [2],
    "filters": [64],
    "kernel_size": {"min": 7, "max": 7},
    "strides": [2],
    "padding": ["valid"],
    "activation": ["elu"],
    "batch_normalization": [True],
    "pooling": [False],
    "dropout": [False],
    "fc_blocks": [2],
    "fc_units": [64],
    "fc_activation": ["relu"],
    "fc_batch_normalization": [False],
    "fc_dropout": [True],
    "fc_dropout_rate": {"min": 0.2, "max": 0.2},
    "optimizer": ["adam"],
    "learning_rate": {"min": 1e-3, "max": 1e-3},
    "batch_size": [32],
}


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


def run_case(name, X, y, ids, *, trials, epochs, space, seed, reference, tuner="bayesian"):
    folds = make_folds(ids, 10, seed=seed)
    budget = {
        "trials": trials,
        "max_epochs": epochs,
        "patience": epochs if reference else max(5, epochs // 10),
        "folds": 10,
    }
    label = "reference architecture" if reference else f"{tuner} search, default space"
    if space and not reference:
        label += f" with {space}"
    with tempfile.TemporaryDirectory() as directory, measure() as used:
        result = search_cnn(
            X,
            y,
            folds=folds,
            budget=budget,
            seed=seed,
            directory=directory,
            tuner=tuner,
            space=space,
            progress=True,
        )
    table = result.trials
    seconds = table["seconds"].to_numpy(float)
    epochs_run = table["mean_epochs"].to_numpy(float)
    print(f"\n-- {name}: n = {len(y)} x {X.shape[1]} bands, 10 folds; {label}")
    print(f"   budget {budget}")
    for _, trial in table.iterrows():
        hp = trial["hyperparameters"]
        shape = (
            f"{hp.get('conv_blocks')} conv x {hp.get('fc_blocks')} fc, batch {hp.get('batch_size')}"
        )
        row(
            f"trial {trial['trial_id']} ({shape})",
            f"{trial['seconds']:8.1f} s   {trial['mean_epochs']:6.1f} epochs/fold   "
            f"cv_rmse {trial['cv_rmse']:.3f}",
        )
    row(
        "seconds per trial (mean / min / max)",
        f"{seconds.mean():8.1f} / {seconds.min():.1f} / {seconds.max():.1f} s",
    )
    per_epoch = seconds / (10 * epochs_run)
    row("seconds per fold-epoch (mean over trials)", f"{1e3 * per_epoch.mean():8.1f} ms")
    row("peak RSS during the case (above its start)", f"{used.peak_rss_delta_mib:8.0f} MiB")
    return seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--quick",
        action="store_true",
        help="tiny budgets: 2 trials, 10 epochs, a 2,000-sample library, 1 epoch",
    )
    parser.add_argument("--trials", type=int, default=None, help="search trials (default 3)")
    parser.add_argument(
        "--epochs", type=int, default=None, help="max epochs, local and k+n (default 100)"
    )
    parser.add_argument("--library-size", type=int, default=None, help="default 10,000")
    parser.add_argument("--library-epochs", type=int, default=None, help="default 3")
    parser.add_argument("--library-trials", type=int, default=None, help="default 1")
    parser.add_argument("--library-batch-size", type=int, default=128)
    parser.add_argument("--cases", default="local,k+n,library")
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    quick = args.quick
    trials = args.trials or (2 if quick else 3)
    epochs = args.epochs or (10 if quick else 100)
    library_size = args.library_size or (2_000 if quick else 10_000)
    library_epochs = args.library_epochs or (1 if quick else 3)
    library_trials = args.library_trials or 1
    logging.basicConfig(level=logging.WARNING)

    print_header("1D-CNN search: seconds per trial (10-fold CV) and peak memory")
    info = configure_tensorflow(args.threads)
    import keras

    if info["backend"] == "tensorflow":
        import tensorflow as tf

        print(
            f"TensorFlow {tf.__version__}, Keras {keras.__version__} (tensorflow backend); "
            f"devices {info['devices']}; intra-op threads {info['intra_op_threads']}, "
            f"inter-op {info['inter_op_threads']}, op determinism {info['deterministic']}"
        )
    else:
        backend = __import__(info["backend"])
        print(
            f"Keras {keras.__version__} ({info['backend']} {backend.__version__} backend, "
            f"not TensorFlow); devices {info['devices']}"
        )
    gpus = [d for d in info["devices"] if d.startswith(("GPU", "CUDA"))]
    print(f"training ran on: {gpus[0] if gpus else 'CPU'}")
    print(
        f"settings: trials {trials}, epochs {epochs}, library {library_size} samples with "
        f"{library_epochs} epochs and {library_trials} trial(s), seed {args.seed}"
        + (" (--quick)" if quick else "")
    )

    cases = make_cases(library_size, args.seed)
    wanted = [c.strip() for c in args.cases.split(",") if c.strip()]
    for name in wanted:
        X, y, ids = cases[name]
        is_library = name == "library"
        case_epochs = library_epochs if is_library else epochs
        run_case(
            name,
            X,
            y,
            ids,
            trials=1,
            epochs=case_epochs,
            space=REFERENCE,
            seed=args.seed,
            reference=True,
        )
        search_space = {"batch_size": [args.library_batch_size]} if is_library else None
        run_case(
            name,
            X,
            y,
            ids,
            trials=library_trials if is_library else trials,
            epochs=case_epochs,
            space=search_space,
            seed=args.seed,
            reference=False,
        )
    row("\npeak RSS of the whole run", f"{peak_rss_mib():.0f} MiB")


if __name__ == "__main__":
    main()
