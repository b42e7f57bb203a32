"""Two preprocessing chains compared on the real-data example: NIRsoil library -> Geeves field.

Prints test RMSE (SOC %) per chain and model, asserts nothing. The data are those of the README's
worked example (``examples/real_data/prepare.py``, seed 0), imported as the README's commands do
(1100-2450 nm every 10 nm) and validated by the project's validation node (quarantined rows
left out). Each chain is fitted on the library only (``fit_preprocessing``: MSC's reference, if
any, comes from library rows) and applied to library and field alike.

The field's split is the study's (Kennard-Stone, n = ``split.n_calibration`` from conf/base) on
the spectra of the FIRST chain, and is kept for every chain, so that all chains are scored on
the same test rows. Models (cheap, deterministic; no CNNs):

- PLSR Local: PLSR on the n calibration rows, components by 10-fold CV (``train`` parameters);
- RS-LOCAL + PLSR: RS-LOCAL (``localise`` parameters, seed ``study.seed``) keeps k library rows
  for the field; PLSR on those k + the n calibration rows, components by 10-fold CV.

Usage: python bench/preprocessing_chains.py [--seed 0]
"""

from __future__ import annotations

import argparse
import importlib.util
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

from _common import print_header, row
from localsoc.data.importers import import_wide
from localsoc.data.schema import spectra_of
from localsoc.models.ensemble import make_folds
from localsoc.models.linear import LinearModel
from localsoc.models.pls import fit_pls_cv
from localsoc.pipelines.preprocess.nodes import fit_preprocessing, preprocess_table
from localsoc.pipelines.validate.nodes import validate_table
from localsoc.selection import KennardStone, RSLocal
from localsoc.spectra.steps import describe_steps
from localsoc.workflow import project_parameters

ROOT = Path(__file__).resolve().parents[1]


def _prepare_module():
    """examples/real_data/prepare.py, loaded from its file (bench/ scripts run from bench/)."""
    spec = importlib.util.spec_from_file_location("prepare", ROOT / "examples/real_data/prepare.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


GRID = {"start_nm": 1100.0, "stop_nm": 2450.0, "step_nm": 10.0}
CHAINS = {
    "today: absorbance, snv": ["absorbance", "snv"],
    "SG 1st derivative": [{"absorbance": {}},
                          {"savgol": {"window": 11, "polyorder": 2, "deriv": 1}},
                          {"snv": {}}],
}


def load(seed: int, params: dict) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The validated library and the field's labelled rows, as the README's commands import
    them."""
    with tempfile.TemporaryDirectory() as folder:
        _prepare_module().build(Path(folder), seed=seed)
        library, _ = import_wide(Path(folder) / "nirsoil_library.csv.gz", grid=GRID,
                                 library="nirsoil", spectra="absorbance", carbon_column="Ciso",
                                 id_column="sample_id", country="BE")
        field, _ = import_wide(Path(folder) / "geeves_site.csv.gz", grid=GRID,
                               library="geeves_field", site="geeves_field",
                               spectra="reflectance", carbon_column="TotalCarbon",
                               id_column="sample_id", country="AU")
    library, _, _ = validate_table(library, params["validate"], GRID, role="library",
                                   name="library nirsoil")
    field, _, _ = validate_table(field, params["validate"], GRID, role="site",
                                 name="site geeves_field")
    library = library.loc[library["soc"].notna()].reset_index(drop=True)
    field = field.loc[field["soc"].notna()].reset_index(drop=True)
    return library, field


def plsr(X, y, seed: int, max_components: int) -> LinearModel:
    ids = [str(i) for i in range(len(y))]
    folds = make_folds(ids, 10, seed)
    fitted = fit_pls_cv(X, y, max_components=min(max_components, len(y) - len(y) // 10 - 1),
                        cv=list(folds.split()))
    return LinearModel.from_pls(fitted, ids)


def rmse(estimate, observed) -> float:
    return float(np.sqrt(np.mean((np.asarray(estimate) - observed) ** 2)))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seed", type=int, default=None, help="default: study.seed")
    args = parser.parse_args()
    params = project_parameters(ROOT, "demo")
    seed = int(params["study"]["seed"] if args.seed is None else args.seed)
    local = params["localise"]
    n_cal = int(params["split"]["n_calibration"])
    max_components = int(params["train"]["pls_max_components"])
    print_header("Preprocessing chains on the real-data example (NIRsoil -> Geeves field)")
    start = time.perf_counter()
    library, field = load(seed, params)
    row("library (labelled, validated)", f"{len(library)} rows x {spectra_of(library).shape[1]}")
    row("field (labelled, validated)", f"{len(field)} rows")

    first = fit_preprocessing(library, {"steps": next(iter(CHAINS.values()))})
    split = KennardStone(n_select=n_cal).fit(spectra_of(preprocess_table(field, first)))
    calibration = np.zeros(len(field), bool)
    calibration[split.selected_indices_] = True
    row("split (Kennard-Stone on the first chain)",
        f"{calibration.sum()} calibration, {(~calibration).sum()} test rows, for every chain")
    y_lib = library["soc"].to_numpy(np.float64)
    y = field["soc"].to_numpy(np.float64)
    print(f"\n{'chain':<28} {'steps':<58} {'PLSR Local':>11} {'RS-LOCAL+PLSR':>14}")
    for label, steps in CHAINS.items():
        chain = fit_preprocessing(library, {"steps": steps})
        X_lib = spectra_of(preprocess_table(library, chain))
        X = spectra_of(preprocess_table(field, chain))
        X_cal, y_cal, X_test, y_test = X[calibration], y[calibration], X[~calibration], y[
            ~calibration]
        local_model = plsr(X_cal, y_cal, seed, max_components)
        selector = RSLocal(k=int(local["k"]), b=float(local["b"]), retain=float(local["retain"]),
                           n_components=int(local["n_components"]), scoring=local["scoring"],
                           retain_by=local["retain_by"], random_state=seed,
                           n_jobs=int(local["n_jobs"]))
        selector.fit(X_lib, y_lib, X_cal, y_cal)
        chosen = selector.selected_indices_
        joint = plsr(np.vstack([X_lib[chosen], X_cal]), np.concatenate([y_lib[chosen], y_cal]),
                     seed, max_components)
        print(f"{label:<28} {', '.join(describe_steps(chain['steps'])):<58} "
              f"{rmse(local_model.predict(X_test), y_test):>11.3f} "
              f"{rmse(joint.predict(X_test), y_test):>14.3f}")
    print(f"\ntest RMSE in SOC %; {time.perf_counter() - start:.0f} s in all")


if __name__ == "__main__":
    main()
