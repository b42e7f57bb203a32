"""Package every site's winner (chosen by the evaluate stage without the test set) for serving.

Two nodes: ``bundle_common`` gathers what every site entry shares (the wavelength grid, the
fitted preprocessing steps, the serving limits, the data version and row counts);
``bundle_winners`` adds per site the winning model from its collection, the residuals its
conformal interval comes from, the applicability domain and the metrics. The result is a
:class:`localsoc.serving.bundle.ServingBundle`; the catalog's ``BentoBundleDataset`` writes it
to the BentoML model store. :func:`package_winners` runs both in one call.

The bundle holds what makes it deterministic, so the same code, data and seed give the same
bundle and tag: the package version (``code_version``), the data version and the models. When
each model was trained and when the bundle was packaged are the run's, not the bundle's: the
dataset keeps them in the store's metadata (``localsoc.datasets.bento_bundle``).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pandas as pd

import localsoc
from localsoc.data.schema import Grid
from localsoc.pipelines.evaluate.stacking import served_stack
from localsoc.provenance import data_version
from localsoc.serving.bundle import (
    BUNDLE_FORMAT,
    DEFAULT_SERVING,
    DIFFICULTY_DESCRIPTIONS,
    INTERVAL_DESCRIPTIONS,
    ServingBundle,
    check_manifest,
    interval_rule,
    model_format,
    site_directory,
)
from localsoc.spectra.steps import check_fitted


def _interval_entry(winner: dict, rows: pd.DataFrame, residuals: np.ndarray) -> dict[str, Any]:
    """The served interval of a winner: its method (``evaluate.interval``), level, and the
    residuals (and difficulties) it is computed from: for ``validation`` the served model's
    residuals on the site's validation samples (``rows``: their prediction rows), else the
    nested out-of-fold calibration residuals (``rows``: the calibration rows)."""
    from localsoc.uncertainty import normalized_score_quantile

    method = winner.get("interval", "plain")
    level = float(winner["interval_level"])
    entry = {
        "method": method,
        "description": INTERVAL_DESCRIPTIONS[method],
        "level": level,
        "halfwidth": _finite_or_none(winner["interval_halfwidth"]),
        "calibration_set": ("validation samples (random, never trained on)"
                            if method == "validation"
                            else "calibration samples (nested out of fold)"),
        "calibration_sample_ids": rows["sample_id"].astype(str).tolist(),
        "calibration_residuals": residuals.tolist(),
    }
    calibration = winner.get("interval_calibration") or {}
    if method == "cv_plus":
        entry.update({"calibration_folds": [int(f) for f in calibration["calibration_folds"]],
                      "fold_estimates": bool(calibration["fold_estimates"])})
    if method == "normalised":
        difficulties = rows["difficulty"].to_numpy(np.float64)
        q, floor = normalized_score_quantile(np.abs(residuals), np.zeros_like(residuals),
                                             difficulties, level)
        kind = calibration.get("difficulty", "domain")
        entry.update({"calibration_difficulties": difficulties.tolist(),
                      "score_quantile": _finite_or_none(q), "difficulty_floor": floor,
                      "difficulty": kind, "level_offset": calibration.get("level_offset"),
                      "difficulty_description": DIFFICULTY_DESCRIPTIONS[kind]})
    return entry


def serving_settings(validate: dict, package: dict) -> dict[str, Any]:
    """The limits the service enforces: package parameters over the defaults, with the
    reflectance range the validation stage accepted for training data."""
    settings = dict(DEFAULT_SERVING)
    given = dict(package["serving"])
    unknown = sorted(set(given) - set(settings))
    if unknown:
        raise ValueError(
            f"package.serving: unknown setting(s) {unknown}; known ones are {sorted(settings)}"
        )
    settings.update(given)
    reflectance = validate["reflectance"]
    settings["reflectance_min_exclusive"] = float(reflectance["min_exclusive"])
    settings["reflectance_max"] = float(reflectance["max"])
    for key in ("max_spectra_per_request", "max_body_bytes"):
        settings[key] = int(settings[key])
        if settings[key] < 1:
            raise ValueError(f"package.serving.{key} must be >= 1; got {settings[key]}")
    return settings


def _model_bands(model: Any) -> int:
    return int(model.n_bands)


def _finite_or_none(value: float | None) -> float | None:
    """JSON-ready: a finite float, or None for missing, NaN or infinite values."""
    if value is None:
        return None
    value = float(value)
    return value if math.isfinite(value) else None


def bundle_common(library_ssl: pd.DataFrame, sites_ssl: pd.DataFrame, grid: dict,
                  preprocessing: dict, validate: dict, package: dict) -> dict[str, Any]:
    """What every site entry of the bundle shares: the wavelength grid (``params:grid``), the
    preprocess stage's fitted chain (``{"steps": [...]}``, MSC's reference included; every site
    ships exactly it), the serving limits (:func:`serving_settings`), the data version and the
    validated rows per library and per site."""
    wavelengths = Grid.from_params(grid).wavelengths_nm
    try:
        steps = check_fitted(preprocessing["steps"], wavelengths.size)
    except ValueError as error:
        raise ValueError(f"the preprocessing chain cannot be shipped: {error}; re-run the "
                         "preprocess stage") from None
    libraries = (library_ssl["library"].astype("string").fillna("(unnamed)").value_counts()
                 .sort_index() if "library" in library_ssl and len(library_ssl) else {})
    return {
        "wavelengths_nm": wavelengths.tolist(),
        "grid": {key: float(grid[key]) for key in ("start_nm", "stop_nm", "step_nm")},
        "preprocessing": steps,
        "serving": serving_settings(validate, package),
        "data_version": data_version(library_ssl, sites_ssl),
        "library_rows": {str(name): int(count) for name, count in dict(libraries).items()},
        "site_rows": ({str(s): int(n) for s, n in sites_ssl["site"].value_counts().items()}
                      if "site" in sites_ssl else None),
    }


def _winner_model(site: str, winner: dict, collections: dict[str, dict], n_bands: int) -> Any:
    """The winner's model from its collection; ValueError when it is missing or takes another
    number of bands than the grid."""
    collection = collections.get(winner["collection"])
    if collection is None:
        raise ValueError(
            f"site {site!r}: winner collection {winner['collection']!r} is not one of "
            f"{sorted(collections)}"
        )
    model = collection.get(winner["model_key"])
    if model is None:
        raise ValueError(
            f"site {site!r}: the winner {winner['method']!r} ({winner['model_key']}) is not "
            f"in the {winner['collection']} models; re-run train/transfer and evaluate"
        )
    if _model_bands(model) != n_bands:
        raise ValueError(
            f"site {site!r}: the winner takes {_model_bands(model)} bands but the grid has "
            f"{n_bands}; package with the grid the models were trained on"
        )
    return model


def _winner_rows(site: str, winner: dict,
                 study_predictions: pd.DataFrame) -> dict[str, pd.DataFrame]:
    """The winner's prediction rows by role (calibration, test, validation) and the rows its
    interval's residuals come from (``interval``)."""
    of_winner = study_predictions.loc[(study_predictions["site"] == site)
                                      & (study_predictions["method"] == winner["method"])]
    rows = {role: of_winner.loc[of_winner["role"] == role]
            for role in ("calibration", "test", "validation")}
    if rows["calibration"].empty:
        raise ValueError(
            f"site {site!r}: study_predictions has no calibration rows of the winner "
            f"{winner['method']!r}; re-run the evaluate stage"
        )
    rows["interval"] = rows["validation" if winner.get("interval") == "validation"
                            else "calibration"]
    if rows["interval"].empty:
        raise ValueError(f"site {site!r}: study_predictions has no validation rows of the "
                         f"winner {winner['method']!r} for its validation interval; re-run "
                         "the evaluate stage")
    return rows


def _data_record(site: str, rows: dict[str, pd.DataFrame], common: dict) -> dict[str, Any]:
    """What the site's model was built and tested on, for its model card: the number of
    calibration, validation and test samples, the site's validated rows and each library's
    validated rows (the libraries the study could draw from)."""
    site_rows = common["site_rows"]
    return {
        "calibration_samples": int(len(rows["calibration"])),
        "validation_samples": int(len(rows["validation"])),
        "test_samples": int(len(rows["test"])),
        "site_rows": None if site_rows is None else site_rows.get(site, 0),
        "library_rows": dict(common["library_rows"]),
    }


def site_entry(site: str, winner: dict, model: Any, rows: dict[str, pd.DataFrame],
               common: dict) -> dict[str, Any]:
    """One site's entry of the bundle manifest."""
    interval_rows = rows["interval"]
    residuals = (interval_rows["observed"].to_numpy(np.float64)
                 - interval_rows["estimated"].to_numpy(np.float64))
    info = getattr(model, "info", None) or {}
    return {
        "site": site, "country": winner.get("country"), "method": winner["method"],
        "model_key": winner["model_key"], "collection": winner["collection"],
        "family": winner["family"], "trained_on": winner["trained_on"],
        "model_format": model_format(model), "model_dir": site_directory(site),
        "training_data_hash": getattr(model, "training_data_hash", None),
        "model_data_version": getattr(model, "data_version", None) or info.get("data_version"),
        "wavelengths_nm": list(common["wavelengths_nm"]),
        "grid": dict(common["grid"]),
        "preprocessing": common["preprocessing"],
        "cal_rmse": float(winner["cal_rmse"]),
        "test_metrics": {k: _finite_or_none(v)
                         for k, v in (winner.get("test_metrics") or {}).items()},
        "best_on_test": winner.get("best_on_test"),
        "interval": _interval_entry(winner, interval_rows, residuals),
        "data": _data_record(site, rows, common),
        "selection": {key: winner.get(key) for key in (
            "rule", "candidates", "cal_rmse_se", "cal_rmse_unnested",
            "winner_was_best_on_test")},
        "domain": winner["domain"],
    }


def bundle_winners(
    study_winners: dict,
    study_predictions: pd.DataFrame,
    library_models: dict,
    site_models: dict,
    transfer_models: dict,
    nested_models: dict | None,
    common: dict,
) -> ServingBundle:
    """One serving bundle holding every site's winner and what serving it needs
    (``nested_models``: the outer-fold ensembles of the ``nested`` stage, which represent the
    methods with a nested procedure; ``common``: :func:`bundle_common`'s)."""
    if not study_winners:
        raise ValueError("study_winners is empty: run the evaluate stage before package")
    collections = {"library": library_models, "site": site_models, "transfer": transfer_models,
                   "nested": nested_models or {}}
    sites: dict[str, Any] = {}
    models: dict[str, Any] = {}
    for site, winner in sorted(study_winners.items()):
        if winner["family"] == "stack":  # made from the other methods' models and estimates
            of_site = study_predictions.loc[(study_predictions["site"] == site)
                                            & (study_predictions["role"] == "calibration")]
            model = served_stack(site, winner.get("country"), of_site, collections)
        else:
            model = _winner_model(site, winner, collections, len(common["wavelengths_nm"]))
        rows = _winner_rows(site, winner, study_predictions)
        sites[site] = site_entry(site, winner, model, rows, common)
        interval_rule(sites[site])  # the stored numbers must follow from the residuals
        models[site] = model
    manifest = {
        "format": BUNDLE_FORMAT, "code_version": localsoc.__version__,
        "data_version": common["data_version"],
        "data_version_of": "validated library and site tables (library_ssl, sites_ssl)",
        "serving": dict(common["serving"]), "sites": sites,
    }
    check_manifest(manifest)
    return ServingBundle(manifest=manifest, models=models)


def package_winners(
    study_winners: dict,
    study_predictions: pd.DataFrame,
    library_models: dict,
    site_models: dict,
    transfer_models: dict,
    library_ssl: pd.DataFrame,
    sites_ssl: pd.DataFrame,
    grid: dict,
    preprocessing: dict,
    validate: dict,
    package: dict,
    nested_models: dict | None = None,
) -> ServingBundle:
    """The package pipeline's two nodes in one call (``bundle_common``, ``bundle_winners``),
    for scripts and tests."""
    common = bundle_common(library_ssl, sites_ssl, grid, preprocessing, validate, package)
    return bundle_winners(study_winners, study_predictions, library_models, site_models,
                          transfer_models, nested_models, common)
