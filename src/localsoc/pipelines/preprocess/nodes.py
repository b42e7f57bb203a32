"""Preprocess spectra (the chain of ``preprocess.steps``, fitted on the library) and fit the PCA of
the library for plots and domain checks."""

from __future__ import annotations

import numpy as np
import pandas as pd
from sklearn.decomposition import PCA

from localsoc.data.schema import META_COLUMNS, band_columns, spectra_of, wavelengths_of
from localsoc.spectra.steps import apply_steps, describe_steps, fit_steps


def fit_preprocessing(library_ssl: pd.DataFrame, params: dict) -> dict:
    """The chain of ``params["steps"]`` with its fitted state (MSC's reference spectrum) fitted
    on the validated library rows only: the library is training data of every model, and no
    site row (calibration or test) is used. Stored as plain data; the package stage ships it in
    the bundle and serving applies exactly it."""
    steps = fit_steps(params["steps"], spectra_of(library_ssl))
    return {
        "steps": steps,
        "description": describe_steps(steps),
        "fitted_on": "library_ssl",
        "fitted_on_rows": int(len(library_ssl)),
    }


def preprocess_table(table: pd.DataFrame, preprocessing: dict) -> pd.DataFrame:
    """The same table with its spectra replaced by those of the chain ``preprocessing["steps"]``
    (the fitted chain of :func:`fit_preprocessing`; a configuration without stateful steps works
    too)."""
    values = apply_steps(spectra_of(table), preprocessing["steps"])
    bands = band_columns(table)
    head = table[list(META_COLUMNS)].reset_index(drop=True)
    body = pd.DataFrame(values, columns=bands, index=head.index)
    return pd.concat([head, body], axis=1)


def fit_library_pca(library_spectra: pd.DataFrame, params: dict, study: dict) -> dict:
    """PCA of the (preprocessed) library, stored as plain data (no pickles); seeded by
    ``study.seed``."""
    pca_params = params["pca"]
    n_components = min(int(pca_params["n_components"]), len(library_spectra) - 1)
    pca = PCA(n_components=n_components, random_state=int(study["seed"]))
    pca.fit(spectra_of(library_spectra))
    return {
        "wavelengths_nm": wavelengths_of(library_spectra).tolist(),
        "mean": pca.mean_.tolist(),
        "components": pca.components_.tolist(),
        "explained_variance": pca.explained_variance_.tolist(),
        "explained_variance_ratio": pca.explained_variance_ratio_.tolist(),
        "fitted_on_rows": int(len(library_spectra)),
    }


def pca_scores(pca: dict, table: pd.DataFrame) -> np.ndarray:
    mean = np.asarray(pca["mean"])
    components = np.asarray(pca["components"])
    return (spectra_of(table) - mean) @ components.T


def project_on_pca(
    pca: dict, library_spectra: pd.DataFrame, sites_spectra: pd.DataFrame
) -> pd.DataFrame:
    """Scores of every library and site sample on the library's principal components."""
    frames = []
    for kind, table in (("library", library_spectra), ("site", sites_spectra)):
        scores = pca_scores(pca, table)
        head = table[["sample_id", "library", "country", "site", "soc"]].reset_index(drop=True)
        head.insert(1, "kind", kind)
        pcs = pd.DataFrame(
            scores, columns=[f"pc{i + 1}" for i in range(scores.shape[1])], index=head.index
        )
        frames.append(pd.concat([head, pcs], axis=1))
    return pd.concat(frames, ignore_index=True)
