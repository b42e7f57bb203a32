"""Bring your own library and site: the functions behind `localsoc import/site/study/predict`.

They call the same importers, validation, pipelines and serving code as everything else; the
command line only parses arguments and prints.
"""

from __future__ import annotations

import json
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from localsoc.data.importers import import_asd, import_ossl, import_wide
from localsoc.data.schema import Grid, spectra_of, wavelengths_of
from localsoc.datasets.imported_tables import check_name, read_grid, read_table, write_table
from localsoc.pipelines.validate.nodes import validate_table

IMPORTS = Path("data/01_raw/imports")


def project_parameters(project: Path, env: str = "base") -> dict:
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


def _dvc_add(project: Path, path: Path) -> str:
    if not (project / ".dvc").is_dir():
        return "not a DVC repository: the file is not versioned (run `dvc init` to version it)"
    done = subprocess.run(["dvc", "add", str(path.relative_to(project))], cwd=project,
                          capture_output=True, text=True)
    if done.returncode != 0:
        return f"`dvc add` failed: {done.stderr.strip()[-300:]}"
    return f"tracked by DVC ({path.relative_to(project)}.dvc); `dvc push` sends it to the remote"


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
    **options,
) -> ImportOutcome:
    """Import a library or site file to the canonical table, check it, and store it.

    ``ossl_tables`` (``{"soillab": path, "soilsite": path}``, either may be None): OSSL tables
    joined to ``source``, its vis-NIR table, on the layer id (``import_ossl``). A ``source``
    that is an ``.asd`` file or a directory is read as ASD FieldSpec spectra (``import_asd``),
    with the carbon of ``ossl_tables["labels"]`` when given."""
    name = check_name(name, f"{kind} name")
    source = Path(source)
    tables = {key: Path(value) for key, value in (ossl_tables or {}).items() if value}
    for path in (source, *tables.values()):
        if not path.exists():
            raise FileNotFoundError(f"{path}: no such file")
    if kind not in ("site", "library"):
        raise ValueError(f"kind must be 'library' or 'site'; got {kind!r}")
    if kind == "site":
        options["site"] = name
    labels = tables.pop("labels", None)
    if source.is_dir() or source.suffix.lower() == ".asd":
        table, report = import_asd(source, grid=grid, library=name, labels=labels, **options)
    elif labels is not None:
        raise ValueError("--labels is for .asd spectra; a table's carbon is its --carbon-column")
    elif tables:
        table, report = import_ossl(source, tables.get("soillab"), tables.get("soilsite"),
                                    grid=grid, library=name, **options)
    else:
        table, report = import_wide(source, grid=grid, library=name, **options)
    if kind == "site":
        table["library"] = pd.array([None] * len(table), dtype="string")
    _, quarantine, validation = validate_table(table, validate_params, grid, role=kind,
                                               name=f"{kind} {name}")
    folder = project / IMPORTS / ("libraries" if kind == "library" else "sites")
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{name}.parquet"
    write_table(path, table, grid)  # atomic, the grid inside: a killed import keeps the old one
    status = _dvc_add(project, path) if track else "not tracked (--no-dvc)"
    return ImportOutcome(name, kind, path, table, report.to_dict(), quarantine, validation,
                         status)


def imported_grid(project: Path, kind: str, name: str) -> dict:
    folder = project / IMPORTS / ("libraries" if kind == "library" else "sites")
    path = folder / f"{check_name(name)}.parquet"
    if not path.exists():
        have = sorted(p.stem for p in folder.glob("*.parquet"))
        command = "localsoc import FILE --as" if kind == "library" else "localsoc site FILE --name"
        raise ValueError(f"no imported {kind} {name!r} (imported: {have or 'none'}); add it "
                         f"with `{command} {name}`")
    return read_grid(path)


def study_runtime_params(project: Path, site: str, libraries: list[str] | None, n: int,
                         no_test: bool) -> dict:
    """Kedro runtime parameters of a study of one imported site."""
    folder = project / IMPORTS / "libraries"
    libraries = list(libraries or sorted(p.stem for p in folder.glob("*.parquet")))
    if not libraries:
        raise ValueError("no library imported; add one with `localsoc import FILE --as NAME`")
    grids = {("site", site): imported_grid(project, "site", site)}
    for library in libraries:
        grids[("library", library)] = imported_grid(project, "library", library)
    distinct = {json.dumps(g, sort_keys=True) for g in grids.values()}
    if len(distinct) != 1:
        listed = "; ".join(f"{k[0]} {k[1]}: {g}" for k, g in grids.items())
        raise ValueError(f"the site and libraries were imported on different grids ({listed}); "
                         "import them again with the same --grid-start/--grid-stop/--grid-step")
    return {
        "grid": json.loads(distinct.pop()),
        "ingest": {"source": "files", "libraries": libraries, "sites": [site]},
        "split": {"n_calibration": int(n), "no_test": bool(no_test)},
    }


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


def field_table(predictor, site: str, table: pd.DataFrame, predictions: pd.DataFrame,
                target: str = "field") -> pd.DataFrame:
    """The field summary (``localsoc.field.site_field_summary``) of ``predict_table``'s
    predictions of ``table``: the whole field, then each stratum when ``table`` has a
    ``stratum`` column, with the SOC stock when it has ``bulk_density_g_cm3`` and ``depth_cm``.
    One row per group (``localsoc.field.FieldSummary.row``)."""
    from localsoc.field import optional_columns, site_field_summary, summary_table

    served = predictor.site(site)
    summaries = site_field_summary(served.entry, predictions["soc_percent"].to_numpy(),
                                   **optional_columns(table.reset_index(drop=True)),
                                   target=target)
    out = summary_table(summaries)
    out.insert(0, "site", site)
    out["target"] = target
    return out


def unlabelled_rows(project: Path, site: str) -> pd.DataFrame:
    table = read_table(project / IMPORTS / "sites" / f"{check_name(site)}.parquet")
    return table.loc[table["soc"].isna()].reset_index(drop=True)

