"""Package every site's winner (chosen by the evaluate stage without the test set) for serving.

The node gathers, per site: the winning model from its collection, the calibration residuals
the conformal interval came from, the applicability domain, the metrics, the wavelength grid and
the preprocessing steps; plus the serving limits and the data and code versions. The result is
a :class:`localsoc.serving.bundle.ServingBundle`; the catalog's ``BentoBundleDataset`` writes it
to the BentoML model store.
"""

from __future__ import annotations

import datetime as dt
import math
from typing import Any

import numpy as np
import pandas as pd

from localsoc.data.schema import Grid
from localsoc.provenance import code_version, data_version
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


def _data_record(site: str, calibration: pd.DataFrame, test: pd.DataFrame,
                 library_ssl: pd.DataFrame, sites_ssl: pd.DataFrame,
                 validation: pd.DataFrame | None = None) -> dict[str, Any]:
    """What the site's model was built and tested on, for its model card: the number of
    calibration and test samples, the site's validated rows and each library's validated rows
    (the libraries the study could draw from)."""
    libraries = (library_ssl["library"].astype("string").fillna("(unnamed)").value_counts()
                 .sort_index() if "library" in library_ssl and len(library_ssl) else {})
    return {
        "calibration_samples": int(len(calibration)),
        "validation_samples": int(len(validation)) if validation is not None else 0,
        "test_samples": int(len(test)),
        "site_rows": int((sites_ssl["site"] == site).sum()) if "site" in sites_ssl else None,
        "library_rows": {str(name): int(count) for name, count in dict(libraries).items()},
    }


def serving_settings(validate: dict, package: dict) -> dict[str, Any]:
    """The limits the service enforces: package parameters over the defaults, with the
    reflectance range the validation stage accepted for training data."""
    settings = dict(DEFAULT_SERVING)
    given = dict(package.get("serving") or {})
    unknown = sorted(set(given) - set(settings))
    if unknown:
        raise ValueError(
            f"package.serving: unknown setting(s) {unknown}; known ones are {sorted(settings)}"
        )
    settings.update(given)
    reflectance = validate.get("reflectance") or {}
    if "min_exclusive" in reflectance:
        settings["reflectance_min_exclusive"] = float(reflectance["min_exclusive"])
    if "max" in reflectance:
        settings["reflectance_max"] = float(reflectance["max"])
    for key in ("max_spectra_per_request", "max_body_bytes"):
        settings[key] = int(settings[key])
        if settings[key] < 1:
            raise ValueError(f"package.serving.{key} must be >= 1; got {settings[key]}")
    return settings


def _model_bands(model: Any) -> int:
    return int(model.n_bands)


def _trained_at(model: Any, packaged_at: str) -> tuple[str, str]:
    """When the model was trained, if its training recorded it; else the packaging time."""
    stamp = (getattr(model, "info", None) or {}).get("trained_at")
    return (str(stamp), "training") if stamp else (packaged_at, "packaging")


def _finite_or_none(value: float | None) -> float | None:
    """JSON-ready: a finite float, or None for missing, NaN or infinite values."""
    if value is None:
        return None
    value = float(value)
    return value if math.isfinite(value) else None


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
    """One serving bundle holding every site's winner and what serving it needs
    (``nested_models``: the outer-fold ensembles of the ``nested`` stage, which represent the
    methods with a nested procedure). ``preprocessing`` is the preprocess stage's fitted chain
    (``{"steps": [...]}``, MSC's reference included); every site entry ships exactly it."""
    if not study_winners:
        raise ValueError("study_winners is empty: run the evaluate stage before package")
    collections = {"library": library_models, "site": site_models, "transfer": transfer_models,
                   "nested": nested_models or {}}
    wavelengths = Grid.from_params(grid).wavelengths_nm
    grid_record = {key: float(grid[key]) for key in ("start_nm", "stop_nm", "step_nm")}
    try:
        steps = check_fitted(preprocessing["steps"], wavelengths.size)
    except ValueError as error:
        raise ValueError(f"the preprocessing chain cannot be shipped: {error}; re-run the "
                         "preprocess stage") from None
    packaged_at = dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
    calibration = study_predictions.loc[study_predictions["role"] == "calibration"]
    sites: dict[str, Any] = {}
    models: dict[str, Any] = {}
    for site, winner in sorted(study_winners.items()):
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
        if _model_bands(model) != wavelengths.size:
            raise ValueError(
                f"site {site!r}: the winner takes {_model_bands(model)} bands but the grid has "
                f"{wavelengths.size}; package with the grid the models were trained on"
            )
        rows = calibration.loc[
            (calibration["site"] == site) & (calibration["method"] == winner["method"])
        ]
        if rows.empty:
            raise ValueError(
                f"site {site!r}: study_predictions has no calibration rows of the winner "
                f"{winner['method']!r}; re-run the evaluate stage"
            )
        tested = study_predictions.loc[(study_predictions["role"] == "test")
                                       & (study_predictions["site"] == site)
                                       & (study_predictions["method"] == winner["method"])]
        validated = study_predictions.loc[(study_predictions["role"] == "validation")
                                          & (study_predictions["site"] == site)
                                          & (study_predictions["method"] == winner["method"])]
        interval_rows = validated if winner.get("interval") == "validation" else rows
        if interval_rows.empty:
            raise ValueError(f"site {site!r}: study_predictions has no validation rows of the "
                             f"winner {winner['method']!r} for its validation interval; re-run "
                             "the evaluate stage")
        interval_residuals = (interval_rows["observed"].to_numpy(np.float64)
                              - interval_rows["estimated"].to_numpy(np.float64))
        trained_at, trained_at_source = _trained_at(model, packaged_at)
        info = getattr(model, "info", None) or {}
        sites[site] = {
            "site": site,
            "country": winner.get("country"),
            "method": winner["method"],
            "model_key": winner["model_key"],
            "collection": winner["collection"],
            "family": winner["family"],
            "trained_on": winner["trained_on"],
            "model_format": model_format(model),
            "model_dir": site_directory(site),
            "trained_at": trained_at,
            "trained_at_source": trained_at_source,
            "training_data_hash": getattr(model, "training_data_hash", None),
            "model_data_version": getattr(model, "data_version", None) or info.get("data_version"),
            "wavelengths_nm": wavelengths.tolist(),
            "grid": grid_record,
            "preprocessing": steps,
            "cal_rmse": float(winner["cal_rmse"]),
            "test_metrics": {k: _finite_or_none(v)
                             for k, v in (winner.get("test_metrics") or {}).items()},
            "best_on_test": winner.get("best_on_test"),
            "interval": _interval_entry(winner, interval_rows, interval_residuals),
            "data": _data_record(site, rows, tested, library_ssl, sites_ssl, validated),
            "selection": {key: winner.get(key) for key in (
                "rule", "candidates", "cal_rmse_se", "cal_rmse_unnested",
                "winner_was_best_on_test")},
            "domain": winner["domain"],
        }
        interval_rule(sites[site])  # the stored numbers must follow from the residuals
        models[site] = model
    manifest = {
        "format": BUNDLE_FORMAT,
        "packaged_at": packaged_at,
        "code_version": code_version(),
        "data_version": data_version(library_ssl, sites_ssl),
        "data_version_of": "validated library and site tables (library_ssl, sites_ssl)",
        "serving": serving_settings(validate, package),
        "sites": sites,
    }
    check_manifest(manifest)
    return ServingBundle(manifest=manifest, models=models)
