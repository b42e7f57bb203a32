"""Bring your own library and site: the functions behind `localsoc import/site/study/predict`.

They call the same importers, validation, pipelines and serving code as everything else; the
command line only parses arguments and prints.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from localsoc.data.importers import import_asd, import_ossl, import_wide
from localsoc.data.schema import Grid, spectra_of, wavelengths_of
from localsoc.datasets.atomic import remove_path, remove_stale_staging, staging_path, write_text
from localsoc.datasets.imported_tables import (
    CARBON_KINDS,
    PLAN_SUFFIX,
    check_name,
    read_grid,
    read_plan,
    read_table,
    write_plan,
    write_table,
)
from localsoc.pipelines.validate.nodes import validate_table
from localsoc.study import derived_seed
from localsoc.study.plan import plan_lab_samples, unmet_plan

IMPORTS = Path("data/01_raw/imports")
PLANS = IMPORTS / "plans"


def plan_path(project: Path, site: str) -> Path:
    """Where a site's lab plan is stored (``localsoc plan``; read by the split stage)."""
    return project / PLANS / f"{check_name(site, 'site name')}{PLAN_SUFFIX}"


def project_parameters(project: Path, env: str) -> dict:
    from kedro.config import OmegaConfigLoader

    loader = OmegaConfigLoader(conf_source=str(project / "conf"), base_env="base",
                               default_run_env=env, merge_strategy={"parameters": "soft"})
    return loader["parameters"]


def grid_from_options(start: float | None, stop: float | None, step: float | None,
                      default: dict) -> dict:
    grid = dict(default)
    for key, value in (("start_nm", start), ("stop_nm", stop), ("step_nm", step)):
        if value is not None:
            grid[key] = float(value)
    Grid.from_params(grid)  # checks it
    return grid


@dataclass
class ImportOutcome:
    name: str
    kind: str  # library | site
    path: Path
    table: pd.DataFrame
    report: dict
    quarantine: pd.DataFrame
    validation: dict
    dvc: str
    plan: pd.DataFrame | None = None  # a site's lab plan, met by this import
    plan_note: str | None = None


class DvcAddError(ValueError):
    """``dvc add`` of an imported table failed (the import is undone)."""


def dvc_add(project: Path, path: Path) -> str:
    """Track ``path`` with ``dvc add``, run as ``python -m dvc`` by this interpreter (as
    ``localsoc run`` runs ``dvc repro``: no ``dvc`` on PATH needed); the status line to print.
    A project without ``.dvc`` is not versioned (a status, not an error); a failing ``dvc add``
    raises :class:`DvcAddError` with the end of DVC's message."""
    relative = path.relative_to(project)
    if not (project / ".dvc").is_dir():
        return "not a DVC repository: the file is not versioned (run `dvc init` to version it)"
    done = subprocess.run([sys.executable, "-m", "dvc", "add", str(relative)], cwd=project,
                          capture_output=True, text=True)
    if done.returncode != 0:
        message = (done.stderr.strip() or done.stdout.strip())[-300:]
        raise DvcAddError(f"`dvc add {relative}` failed: {message}")
    return f"tracked by DVC ({relative}.dvc); `dvc push` sends it to the remote"


def _dvc_files(path: Path) -> dict[Path, bytes | None]:
    """The small files ``dvc add`` of ``path`` writes (its ``.dvc`` file and the folder's
    ``.gitignore``) as they are now (None: absent), to put them back."""
    files = (path.with_name(path.name + ".dvc"), path.parent / ".gitignore")
    return {file: file.read_bytes() if file.exists() else None for file in files}


def _keep_previous(path: Path) -> Path | None:
    """A hard link (or, where links fail, a copy) of the table at ``path`` under a hidden
    staging name (``localsoc.datasets.atomic.staging_path``); None when there is no table."""
    if not path.exists():
        return None
    kept = staging_path(path)
    try:
        os.link(path, kept, follow_symlinks=False)  # a DVC symlink stays a symlink
    except OSError:
        shutil.copy2(path, kept)
    return kept


def _roll_back(path: Path, previous: Path | None, dvc_files: dict[Path, bytes | None]) -> str:
    """Put the previous table (or no table) and DVC's small files back; what was done."""
    for file, content in dvc_files.items():
        if content is None:
            file.unlink(missing_ok=True)
        elif not file.exists() or file.read_bytes() != content:
            write_text(file, content.decode())
    if previous is not None:
        os.replace(previous, path)
        return "the previous table is back"
    path.unlink(missing_ok=True)
    return "no table was stored"


def store_table(project: Path, path: Path, table: pd.DataFrame, grid: dict,
                carbon_kind: str | None, track: bool) -> str:
    """Write an imported table (``write_table``: atomic, the grid inside) and track it with DVC
    when ``track``, all or nothing: when anything fails after the write (``dvc add``, an
    interrupt) the previous table and its ``.dvc`` file are put back, or a new table removed,
    and the error says so. Stale staging leftovers of killed imports in the folder are removed
    first. Returns the DVC status line."""
    path.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_staging(path.parent)
    dvc_files = _dvc_files(path)
    previous = _keep_previous(path)
    try:
        write_table(path, table, grid, carbon_kind=carbon_kind)
        status = dvc_add(project, path) if track else "not tracked (--no-dvc)"
    except DvcAddError as error:
        undone = _roll_back(path, previous, dvc_files)
        raise DvcAddError(f"{error}. The import was undone ({undone}); fix DVC and import "
                          "again, or import with --no-dvc") from None
    except BaseException:
        _roll_back(path, previous, dvc_files)
        raise
    finally:
        if previous is not None:
            remove_path(previous)
    return status


def _check_carbon_kind(carbon_kind: str | None, options: dict) -> None:
    if carbon_kind is not None and carbon_kind not in CARBON_KINDS:
        raise ValueError(f"carbon kind {carbon_kind!r}: use one of {list(CARBON_KINDS)}")
    if carbon_kind == "total" and str(options.get("carbon_units", "")).startswith("organic_"):
        raise ValueError(f"--carbon-kind total with --carbon-units {options['carbon_units']}: "
                         "organic matter converts to organic carbon; declare --carbon-kind "
                         "organic, or give the total-carbon values in percent or g/kg")


def _source_tables(source: Path, ossl_tables: dict | None) -> dict[str, Path]:
    """The extra tables given (``soillab``, ``soilsite``, ``labels``); every file must exist."""
    tables = {key: Path(value) for key, value in (ossl_tables or {}).items() if value}
    for path in (source, *tables.values()):
        if not path.exists():
            raise FileNotFoundError(f"{path}: no such file")
    return tables


def read_source(source: Path, tables: dict[str, Path], grid: dict, name: str, options: dict):
    """``(table, report)`` of a source: ``.asd`` files (a file or a directory;
    ``import_asd``), an OSSL vis-NIR table joined with ``soillab`` / ``soilsite``
    (``import_ossl``), or a wide table (``import_wide``)."""
    tables = dict(tables)
    labels = tables.pop("labels", None)
    if source.is_dir() or source.suffix.lower() == ".asd":
        return import_asd(source, grid=grid, library=name, labels=labels, **options)
    if labels is not None:
        raise ValueError("--labels is for .asd spectra; a table's carbon is its --carbon-column")
    if tables:
        return import_ossl(source, tables.get("soillab"), tables.get("soilsite"), grid=grid,
                           library=name, **options)
    return import_wide(source, grid=grid, library=name, **options)


def _met_plan(project: Path, stored_plan: Path, name: str, source: Path, kept: pd.DataFrame,
              table: pd.DataFrame, carbon_column: str | None) -> tuple[pd.DataFrame, str]:
    """A site's stored lab plan and its note, when the import meets it (every planned sample
    has a usable lab value); else ValueError naming the samples and the fixes."""
    plan = read_plan(stored_plan)
    problem = unmet_plan(plan, kept.loc[kept["soc"].notna(), "sample_id"], table["sample_id"])
    where = stored_plan.relative_to(project)
    if problem:
        column = carbon_column or "the carbon column"
        raise ValueError(
            f"site {name}: {source} does not meet its lab plan ({where}): {problem}. Add those "
            f"samples' lab values to {source} (column {column!r}; a value that fails validation "
            "counts as missing), or make a new plan (`localsoc plan FILE --site "
            f"{name} --replace`), or import without the plan (`--no-plan`, which removes "
            "it); nothing was stored")
    note = (f"lab plan {where}: {int((plan['role'] == 'calibration').sum())} calibration and "
            f"{int((plan['role'] == 'validation').sum())} validation samples, all with lab "
            "values; the study calibrates on the planned samples")
    return plan, note


def import_table(
    project: Path,
    source: str | Path,
    *,
    name: str,
    kind: str,
    grid: dict,
    validate_params: dict,
    split_params: dict | None = None,
    track: bool = True,
    ossl_tables: dict | None = None,
    carbon_kind: str | None = None,
    use_plan: bool = True,
    **options,
) -> ImportOutcome:
    """Import a library or site file to the canonical table, check it, and store it.

    ``ossl_tables`` (``{"soillab": path, "soilsite": path}``, either may be None): OSSL tables
    joined to ``source``, its vis-NIR table, on the layer id (``import_ossl``). A ``source``
    that is an ``.asd`` file or a directory is read as ASD FieldSpec spectra (``import_asd``),
    with the carbon of ``ossl_tables["labels"]`` when given (:func:`read_source`).

    ``carbon_kind`` (``organic`` or ``total``; None: not declared) is recorded in the stored
    table's metadata. Carbon given as organic matter is organic carbon by definition, so
    ``total`` with organic-matter units is refused.

    A site with a stored lab plan (``localsoc plan``) must give a usable lab value (present and
    passing validation) for every planned sample, else nothing is stored and a ValueError names
    the samples and the fixes; ``use_plan=False`` imports without the plan and removes it.
    Storing is all or nothing (:func:`store_table`)."""
    name = check_name(name, f"{kind} name")
    _check_carbon_kind(carbon_kind, options)
    source = Path(source)
    tables = _source_tables(source, ossl_tables)
    if kind not in ("site", "library"):
        raise ValueError(f"kind must be 'library' or 'site'; got {kind!r}")
    if kind == "site":
        options["site"] = name
    table, report = read_source(source, tables, grid, name, options)
    if kind == "site":
        table["library"] = pd.array([None] * len(table), dtype="string")
    kept, quarantine, validation = validate_table(table, validate_params, grid, role=kind,
                                                  name=f"{kind} {name}")
    plan, plan_note = None, None
    stored_plan = plan_path(project, name) if kind == "site" else None
    if stored_plan is not None and stored_plan.exists() and use_plan:
        plan, plan_note = _met_plan(project, stored_plan, name, source, kept, table,
                                    options.get("carbon_column"))
    path = imported_path(project, kind, name)
    status = store_table(project, path, table, grid, carbon_kind, track)
    if stored_plan is not None and stored_plan.exists() and not use_plan:
        stored_plan.unlink()
        plan_note = (f"lab plan {stored_plan.relative_to(project)} removed (--no-plan): the "
                     "study picks the calibration samples by Kennard-Stone on labelled rows")
    return ImportOutcome(name, kind, path, table, report.to_dict(), quarantine, validation,
                         status, plan, plan_note)


def imported_path(project: Path, kind: str, name: str) -> Path:
    """Where an imported library or site table is stored."""
    folder = project / IMPORTS / ("libraries" if kind == "library" else "sites")
    return folder / f"{check_name(name)}.parquet"


def imported_grid(project: Path, kind: str, name: str) -> dict:
    path = imported_path(project, kind, name)
    if not path.exists():
        have = sorted(p.stem for p in path.parent.glob("*.parquet"))
        command = "localsoc import FILE --library" if kind == "library" else "localsoc site FILE --site"
        raise ValueError(f"no imported {kind} {name!r} (imported: {have or 'none'}); add it "
                         f"with `{command} {name}`")
    return read_grid(path)


def study_runtime_params(project: Path, site: str, libraries: list[str] | None,
                         n: int | None, no_test: bool, *, k: int | None = None,
                         scopes: list[str] | None = None,
                         n_validation: int | None = None) -> dict:
    """Kedro runtime parameters of a study of one imported site.

    ``n`` (``split.n_calibration``), ``k`` (``localise.k``), ``scopes`` (``study.scopes``) and
    ``n_validation`` (``split.n_validation``: random validation samples of a site without a lab
    plan) override the environment's parameters when given (None: the environment's value).
    """
    folder = project / IMPORTS / "libraries"
    libraries = list(libraries or sorted(p.stem for p in folder.glob("*.parquet")))
    if not libraries:
        raise ValueError("no library imported; add one with `localsoc import FILE --library NAME`")
    grids = {("site", site): imported_grid(project, "site", site)}
    for library in libraries:
        grids[("library", library)] = imported_grid(project, "library", library)
    distinct = {json.dumps(g, sort_keys=True) for g in grids.values()}
    if len(distinct) != 1:
        listed = "; ".join(f"{key[0]} {key[1]}: {g}" for key, g in grids.items())
        raise ValueError(f"the site and libraries were imported on different grids ({listed}); "
                         "import them again with the same --grid-start/--grid-stop/--grid-step")
    params = {
        "grid": json.loads(distinct.pop()),
        "ingest": {"source": "files", "libraries": libraries, "sites": [site]},
        "split": {"no_test": bool(no_test)},
    }
    stored_plan = plan_path(project, site)
    if stored_plan.exists() and not no_test:
        planned = int((read_plan(stored_plan)["role"] == "calibration").sum())
        if n is not None and int(n) != planned:
            raise ValueError(
                f"site {site} has a lab plan with {planned} calibration samples "
                f"({stored_plan.relative_to(project)}); --n {n} disagrees. Leave --n out (the "
                f"plan's n is used), or make a new plan with `localsoc plan FILE --site {site} "
                f"--n {n} --replace` before the lab")
        n = planned
    if n is not None:
        params["split"]["n_calibration"] = int(n)
    if n_validation is not None:
        if stored_plan.exists() and not no_test:
            raise ValueError(
                f"site {site} has a lab plan ({stored_plan.relative_to(project)}): its own "
                "random validation samples are the validation set; leave --validation out, or "
                f"make a new plan with `localsoc plan FILE --site {site} --validation "
                f"{n_validation} --replace` before the lab")
        params["split"]["n_validation"] = int(n_validation)
    if k is not None:
        params["localise"] = {"k": int(k)}
    if scopes is not None:
        params["study"] = {"scopes": list(scopes)}
    return params


@dataclass
class PlanOutcome:
    site: str
    path: Path
    plan: pd.DataFrame
    rows: int  # spectra in the file
    quarantine: pd.DataFrame  # rows validation would quarantine (never planned)
    ids_generated: bool  # sample ids made from row numbers (no id column)
    copy: Path | None


def make_plan(project: Path, source: str | Path, *, site: str, n: int, n_validation: int,
              params: dict, grid: dict, replace: bool = False, out: Path | None = None,
              **options) -> PlanOutcome:
    """The lab plan of a site file of spectra (``localsoc.study.plan``), stored at
    :func:`plan_path` (and copied to ``out`` when given).

    The file is imported on ``grid`` as ``localsoc site`` would (lab values are not read) and
    validated; rows validation would quarantine are never planned. Kennard-Stone runs with the
    environment's ``preprocess.steps`` and ``split`` settings; the validation draw is seeded by
    ``study.seed`` and the site name. An existing plan is kept unless ``replace``.
    """
    site = check_name(site, "site name")
    source = Path(source)
    if not source.exists():
        raise FileNotFoundError(f"{source}: no such file")
    target = plan_path(project, site)
    if target.exists() and not replace:
        raise ValueError(f"site {site} already has a lab plan ({target.relative_to(project)}); "
                         "pass --replace to make a new one (only before the samples go to the "
                         "lab: the study uses the stored plan)")
    options = {**options, "carbon_column": None}
    table, report = import_wide(source, grid=grid, library=site, site=site, **options)
    kept, quarantine, _ = validate_table(table, params["validate"], grid, role="site",
                                         name=f"site {site}")
    steps = _library_fitted_steps(project, params["preprocess"]["steps"], grid)
    plan = plan_lab_samples(kept, steps, params["split"], n,
                            n_validation, derived_seed(params["study"]["seed"], site, "plan"))
    write_plan(target, plan)
    copy = None
    if out is not None:
        copy = Path(out)
        write_plan(copy, plan)
    return PlanOutcome(site, target, plan, len(table), quarantine,
                       report.to_dict().get("id_column") is None, copy)


def _library_fitted_steps(project: Path, steps, grid: dict):
    """The preprocessing chain as the study applies it: a chain with a stateful step (MSC's
    reference) is fitted by the preprocess stage's own rule (``fit_preprocessing``) on the
    imported libraries on ``grid`` (their rows with every band finite; the stage fits the
    validated rows), never on the site's own scans."""
    import numpy as np

    from localsoc.pipelines.preprocess.nodes import fit_preprocessing
    from localsoc.spectra.steps import STEPS, parse_steps

    chain = parse_steps(steps)
    if all(STEPS[step["name"]].fit is None for step in chain):
        return chain  # nothing to fit: no need to read the libraries
    folder = project / IMPORTS / "libraries"
    wanted = json.dumps(grid, sort_keys=True)
    tables = [read_table(path) for path in sorted(folder.glob("*.parquet"))
              if json.dumps(read_grid(path), sort_keys=True) == wanted]
    if not tables:
        raise ValueError("the preprocessing chain has a step fitted on the library (e.g. msc), "
                         f"and no imported library is on the grid {grid}: import the library "
                         "first (`localsoc import FILE --library NAME` with the same --grid-* options)")
    library = pd.concat(tables, ignore_index=True)
    library = library.loc[np.isfinite(spectra_of(library)).all(axis=1)]
    return fit_preprocessing(library, {"steps": chain})["steps"]


def bundle_predictor(project: Path):
    """The served bundle (tag from data/06_models/bento_tag.txt, store under $BENTOML_HOME),
    verified and loaded as the service does (``read_stored_bundle``)."""
    from localsoc.datasets.bento_bundle import load_stored_bundle
    from localsoc.serving.predictor import BundlePredictor

    tag_file = project / "data/06_models/bento_tag.txt"
    if not tag_file.exists():
        raise ValueError("no packaged model yet: run `localsoc study --site NAME` first")
    bundle = load_stored_bundle(tag_file.read_text().strip())
    return BundlePredictor(bundle, bundle.manifest["tag"])


def predict_table(predictor, site: str, table: pd.DataFrame) -> pd.DataFrame:
    """Predictions, intervals and domain flags for a canonical table's spectra."""
    served = predictor.site(site)
    limit = int(predictor.limits["max_spectra_per_request"])
    wavelengths = wavelengths_of(table).tolist()
    values = spectra_of(table)
    rows = []
    for start in range(0, len(values), limit):
        answer = predictor.answer(site, wavelengths, reflectance=values[start:start + limit]
                                  .tolist())
        for prediction in answer.predictions:
            rows.append({
                "soc_percent": prediction.soc_percent,
                "lower": prediction.interval.lower,
                "upper": prediction.interval.upper,
                "level": prediction.interval.level,
                "in_domain": prediction.in_domain,
                "t2": prediction.t2,
                "q": prediction.q,
                "flags": ";".join(prediction.flags),
            })
    out = pd.DataFrame(rows)
    out.insert(0, "sample_id", table["sample_id"].astype(str).to_numpy())
    identity = served.identity
    out["site"] = site
    out["method"] = getattr(identity, "method", None)
    out["model_version"] = getattr(identity, "version", None)
    return out


def unlabelled_rows(project: Path, site: str) -> pd.DataFrame:
    table = read_table(project / IMPORTS / "sites" / f"{check_name(site)}.parquet")
    return table.loc[table["soc"].isna()].reset_index(drop=True)

