"""A tiny study for the serving tests: two simulated sites, real evaluate and package nodes.

Site ``china_site`` gets a 1D-CNN fold ensemble (3 folds, a few epochs) as its only model and
``sweden_site`` a local PLSR, so the bundle holds both model families. The evaluate stage's own
node records the predictions the service must reproduce.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import yaml

from localsoc.data.schema import Grid, spectra_of
from localsoc.data.simulate import default_sites, simulate_ssl
from localsoc.models.ensemble import FoldEnsemble, make_folds
from localsoc.models.linear import LinearModel
from localsoc.models.pls import fit_pls_cv
from localsoc.pipelines.evaluate.nodes import evaluate_sites
from localsoc.pipelines.package.nodes import package_winners
from localsoc.pipelines.preprocess.nodes import preprocess_table

GRID = {"start_nm": 400, "stop_nm": 2500, "step_nm": 10}
PREPROCESS = {"steps": ["absorbance", "snv"]}
VALIDATE = {"reflectance": {"min_exclusive": 0.0, "max": 1.0}}
#: The package parameters of conf/base (conf/ is the one source of defaults).
PACKAGE = yaml.safe_load((Path(__file__).parents[2] / "conf/base/parameters_package.yml")
                         .read_text())["package"]
EVALUATE = {"winner_rule": "lowest", "interval_level": 0.9, "interval": "validation",
            "interval_fallback": "cv_plus", "difficulty": "domain",
            "domain": {"n_components": 5, "quantile": 0.99}}
#: sweden_site gets this many random validation samples (its interval: validation);
#: china_site none (its interval falls back to cv_plus)
N_VALIDATION = 20
N_CALIBRATION = 30
CNN_HYPERPARAMETERS = {
    "conv_blocks": 1, "fc_blocks": 1,
    "conv_0_filters": 4, "conv_0_kernel_size": 5, "conv_0_strides": 2, "conv_0_padding": "valid",
    "conv_0_activation": "relu", "conv_0_batch_normalization": False, "conv_0_pooling": False,
    "conv_0_dropout": False,
    "fc_0_units": 8, "fc_0_activation": "relu", "fc_0_batch_normalization": False,
    "fc_0_dropout": False,
}


def simulate_sites() -> pd.DataFrame:
    """The validated site table (raw reflectance) of two simulated sites."""
    _, sites = simulate_ssl(global_size=100, seed=7, grid=Grid(), sites=default_sites()[:2],
                            country_sizes={})
    return sites


def split(sites_ssl: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The first n samples of each site calibrate, the rest are held out (preprocessed
    tables): at sweden_site N_VALIDATION random ones validate (``holdout``), the rest test."""
    spectra = preprocess_table(sites_ssl, PREPROCESS)
    calibration = spectra.groupby("site", sort=True).head(N_CALIBRATION)
    test = spectra.drop(index=calibration.index).reset_index(drop=True)
    sweden = np.flatnonzero(test["site"] == "sweden_site")
    drawn = np.random.default_rng(11).choice(sweden, N_VALIDATION, replace=False)
    test["holdout"] = "test"
    test.loc[drawn, "holdout"] = "validation"
    return calibration.reset_index(drop=True), test


def cnn_ensemble(X: np.ndarray, y: np.ndarray, ids: list[str], seed: int = 3) -> FoldEnsemble:
    import keras

    from localsoc.models.cnn1d import build_cnn1d
    from localsoc.models.training import TrainingSettings, cross_validate

    folds = make_folds(ids, 3, seed)

    def make_model(fold):
        keras.utils.set_random_seed(seed + fold)
        return build_cnn1d(CNN_HYPERPARAMETERS, X.shape[1])

    outcome = cross_validate(make_model, X, y, folds,
                             TrainingSettings(max_epochs=4, patience=2, batch_size=16), seed=seed)
    return FoldEnsemble(
        models_=outcome.models, y_mean_=outcome.y_mean, y_scale_=outcome.y_scale, folds=folds,
        hyperparameters=CNN_HYPERPARAMETERS, seed=seed, oof_predictions_=outcome.oof_predictions,
        fold_rmse_=outcome.fold_rmse, info={"kind": "test"},
    )


def plsr(X: np.ndarray, y: np.ndarray, ids: list[str]) -> LinearModel:
    folds = make_folds(ids, 5, 1)
    return LinearModel.from_pls(fit_pls_cv(X, y, max_components=5, cv=list(folds.split())), ids)


def build_study(sites_ssl: pd.DataFrame) -> dict:
    """Models, the evaluate node's outputs and the package node's bundle."""
    calibration, test = split(sites_ssl)
    models = {}
    for site, make in (("china_site", cnn_ensemble), ("sweden_site", plsr)):
        rows = calibration.loc[calibration["site"] == site]
        key = f"{site}/local" if make is cnn_ensemble else f"{site}/plsr_local"
        models[key] = make(spectra_of(rows), rows["soc"].to_numpy(np.float64),
                           rows["sample_id"].astype(str).tolist())
    library = calibration.iloc[0:0]
    selection = pd.DataFrame(columns=["site", "scope", "sample_id", "rank"])
    predictions, metrics, winners = evaluate_sites(calibration, test, library, selection, {},
                                                    models, {}, EVALUATE)
    # the evaluate stage's outputs go through CSV and JSON files in a real run
    bundle = package_winners(winners, predictions, {}, models, {}, library, sites_ssl, GRID,
                             PREPROCESS, VALIDATE, {"serving": {"max_spectra_per_request": 500,
                                                                "max_body_bytes": 4_000_000}})
    return {"calibration": calibration, "test": test, "models": models,
            "predictions": predictions, "metrics": metrics, "winners": winners,
            "bundle": bundle}


def save_bundle(bundle, root: Path) -> str:
    from localsoc.datasets.bento_bundle import BentoBundleDataset

    dataset = BentoBundleDataset(filepath=str(root / "data/06_models/bento_tag.txt"),
                                 home=str(root / "bentoml"))
    dataset.save(bundle)
    return dataset.tag()
