"""DVC as the path of record: ``dvc.yaml`` generated from the Kedro pipelines, ``params.yaml``
from the Kedro configuration.

- ``params.yaml`` (DVC's default parameters file) holds the *resolved* parameters of one run:
  ``conf/base`` merged with the chosen environment and the run's own choices (for a study: the
  site, libraries, n), under their Kedro keys, plus ``run.env``. `localsoc run` and `localsoc
  study` write it before `dvc repro`; every stage reads its parameters back from it
  (``localsoc stage NAME``), so ``dvc exp run -S train.site_budget.trials=3`` changes what the
  stage computes, and ``dvc.lock`` records the values each stage ran with.
- ``dvc.yaml`` is written by :func:`dvc_yaml` (``localsoc dvc-yaml``) from the pipeline registry:
  one stage per pipeline of ``STAGES``; ``outs`` are the catalog files the pipeline writes;
  ``deps`` its catalog inputs plus the source files its nodes' modules import (the import
  closure inside the package, function-level imports included, the Cython ``.pyx`` of native
  modules and the modules of the catalog's dataset classes); ``params`` the parameter keys its
  nodes read. A test regenerates it and fails when the committed file differs.
"""

from __future__ import annotations

import ast
import copy
import re
from collections.abc import Iterable
from pathlib import Path

import yaml

PACKAGE = "localsoc"
PARAMS_FILE = "params.yaml"
DVC_FILE = "dvc.yaml"
RUN_KEY = "run"  # params.yaml's own section: the Kedro environment and the run's overrides
_DOTTED = re.compile(rf"{PACKAGE}(\.[A-Za-z_][A-Za-z0-9_]*)+")

# Catalog inputs that are not dependencies (no stage produces them): the stage times a hook
# writes as stages finish.
INFORMATIONAL_INPUTS = frozenset({"stage_seconds"})
# Every output goes to DVC's cache (data/ is not in git): `dvc exp show`, `dvc plots diff` and
# `dvc checkout` of an experiment or an older commit read metrics, plots and reports from it.
METRICS = frozenset({"study_metrics_summary"})

# DVC plots (top-level `plots:` of dvc.yaml). Data series name the file and its columns; image
# plots name a directory of PNGs. Each refers to a catalog entry. The templates are Vega-Lite
# files of .dvc/plots/ (DVC's templates folder; its README.md says what each draws), and the
# page `dvc plots show` fills is .dvc/plots/offline.html (.dvc/config: plots.html_template),
# which holds Vega, Vega-Lite and vega-embed, so the page needs no network.
PLOTS_DIR = ".dvc/plots"
PLOTS = (
    {"id": "dRMSE against Local per method and site (%)", "dataset": "study_metrics",
     "x": "drmse", "y": "method", "template": "drmse_by_site",
     "x_label": "dRMSE against the Local CNN, % of its test RMSE (> 0: better than Local)",
     "y_label": "method"},
    {"id": "Served model per site: estimated vs observed SOC (test set)",
     "dataset": "served_test_predictions", "x": "observed", "y": "estimated",
     "template": "observed_estimated",
     "x_label": "observed SOC, %", "y_label": "estimated SOC, % (bar: its interval)"},
    {"id": "RS-LOCAL pool size per iteration", "dataset": "rslocal_history",
     "x": "iteration", "y": "pool_size", "template": "curves_by_site_scope",
     "x_label": "iteration", "y_label": "library samples kept"},
    {"id": "RS-LOCAL best subset RMSE per iteration", "dataset": "rslocal_history",
     "x": "iteration", "y": "best_subset_score", "template": "curves_by_site_scope",
     "x_label": "iteration", "y_label": "best subset RMSE on the calibration samples"},
    {"id": "CNN search: CV RMSE per trial (sites)", "dataset": "site_search_trials",
     "y": "cv_rmse", "template": "trials_by_model",
     "x_label": "trial (in the order run)", "y_label": "cross-validated RMSE"},
    {"id": "CNN search: CV RMSE per trial (library)", "dataset": "library_search_trials",
     "y": "cv_rmse", "template": "trials_by_model",
     "x_label": "trial (in the order run)", "y_label": "cross-validated RMSE"},
    {"id": "study figures", "dataset": "study_figures"},
    {"id": "RS-LOCAL figures", "dataset": "localise_figures"},
)


# ---------------------------------------------------------------------------------------------
# params.yaml


def resolved_parameters(project: Path, env: str, runtime: dict | None = None) -> dict:
    """Kedro's parameters of ``env`` (``conf/base`` + ``conf/<env>``) with ``runtime`` merged in
    the way Kedro merges runtime parameters (nested dictionaries key by key)."""
    from kedro.config import OmegaConfigLoader

    loader = OmegaConfigLoader(conf_source=str(project / "conf"), base_env="base",
                               default_run_env=env, merge_strategy={"parameters": "soft"},
                               runtime_params=copy.deepcopy(runtime or {}))
    return _plain(loader["parameters"])


def _plain(value):
    """Plain Python containers (OmegaConf/YAML-safe): tuples become lists."""
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    return value


def params_document(project: Path, env: str, runtime: dict | None = None) -> dict:
    parameters = resolved_parameters(project, env, runtime)
    if RUN_KEY in parameters:
        raise ValueError(f"a Kedro parameter is named {RUN_KEY!r}: params.yaml keeps that key "
                         "for the run's environment; rename the parameter")
    return {RUN_KEY: {"env": env, "overrides": _plain(runtime or {})},
            **dict(sorted(parameters.items()))}


def write_params(project: Path, env: str, runtime: dict | None = None) -> Path:
    """Write ``params.yaml`` for a run (only when its content changes, atomically)."""
    from localsoc.datasets.atomic import write_text

    path = project / PARAMS_FILE
    text = ("# Written by `localsoc run` / `localsoc study` from conf/ (do not edit: edit conf/ "
            "or use `dvc exp run -S key=value`).\n# The parameters every DVC stage ran with; "
            "see src/localsoc/dvc_stages.py.\n"
            + yaml.safe_dump(params_document(project, env, runtime), sort_keys=False))
    if not path.exists() or path.read_text() != text:
        write_text(path, text)
    return path


def read_params(project: Path) -> tuple[str, dict]:
    """(Kedro environment, parameters) of ``params.yaml``: what a DVC stage runs with."""
    path = project / PARAMS_FILE
    if not path.exists():
        raise FileNotFoundError(f"{path}: no params.yaml; `localsoc run` writes it (or run "
                                "the stage through `localsoc run --pipeline NAME`)")
    document = yaml.safe_load(path.read_text()) or {}
    run = document.pop(RUN_KEY, None)
    if not isinstance(run, dict) or not run.get("env"):
        raise ValueError(f"{path}: no '{RUN_KEY}.env' (the Kedro environment); write the file "
                         "again with `localsoc run --env ENV`")
    return str(run["env"]), document


def recorded_overrides(project: Path, env: str) -> dict | None:
    """The run's own choices recorded in ``params.yaml`` (``run.overrides``: a study's site,
    libraries, n, grid) when it was written for ``env``; None otherwise."""
    path = project / PARAMS_FILE
    if not path.exists():
        return None
    run = (yaml.safe_load(path.read_text()) or {}).get(RUN_KEY) or {}
    if run.get("env") != env:
        return None
    return run.get("overrides") or None


# ---------------------------------------------------------------------------------------------
# dvc.yaml


def _module_file(module: str, src: Path) -> Path | None:
    base = src.joinpath(*module.split("."))
    for candidate in (base.with_suffix(".py"), base / "__init__.py"):
        if candidate.is_file():
            return candidate
    return None


def _imported_modules(path: Path, module: str) -> set[str]:
    """Every ``localsoc`` module a file imports, anywhere in it (function-level included,
    ``importlib.import_module`` of a literal name, and string constants that name a package
    module, as the method registry's families do); names that are not modules are dropped by
    the caller."""
    tree = ast.parse(path.read_text(), filename=str(path))
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                parts = package.split(".")
                base = ".".join(parts[: len(parts) - node.level + 1])
                target = f"{base}.{node.module}" if node.module else base
            else:
                target = node.module or ""
            found.add(target)
            found.update(f"{target}.{alias.name}" for alias in node.names)  # submodules
        elif (isinstance(node, ast.Call) and getattr(node.func, "attr", getattr(node.func, "id",
              None)) == "import_module" and node.args and isinstance(node.args[0], ast.Constant)
              and isinstance(node.args[0].value, str)):
            found.add(node.args[0].value)  # importlib.import_module("localsoc._native.x")
        elif (isinstance(node, ast.Constant) and isinstance(node.value, str)
              and _DOTTED.fullmatch(node.value)):
            found.add(node.value)  # a registry's module name ("localsoc.families.cnn")
    return {m for m in found if m == PACKAGE or m.startswith(PACKAGE + ".")}


def import_closure(modules: Iterable[str], src: Path, native: Path) -> set[Path]:
    """Source files of ``modules`` and of every package module they import, transitively, with
    their parent packages' ``__init__.py`` and the ``.pyx`` of native (Cython) modules."""
    todo, seen, files = list(modules), set(), set()
    while todo:
        module = todo.pop()
        if module in seen:
            continue
        seen.add(module)
        parts = module.split(".")
        todo.extend(".".join(parts[:i]) for i in range(1, len(parts)))  # parent packages
        if module.startswith(f"{PACKAGE}._native."):
            pyx = native / f"{parts[-1]}.pyx"
            if pyx.is_file():
                files.add(pyx)
            continue
        path = _module_file(module, src)
        if path is None:
            continue  # a name imported from a module, not a submodule
        files.add(path)
        todo.extend(_imported_modules(path, module))
    return files


def _catalog(project: Path) -> dict[str, dict]:
    entries = yaml.safe_load((project / "conf/base/catalog.yml").read_text())
    return {name: entry for name, entry in entries.items() if not name.startswith("_")}


def _path(entry: dict) -> str | None:
    """Where a catalog entry writes: ``filepath``, ``directory`` or (a PartitionedDataset)
    ``path``."""
    return entry.get("filepath") or entry.get("directory") or entry.get("path")


def stage_spec(name: str, pipeline, catalog: dict[str, dict], project: Path, src: Path,
               native: Path) -> dict:
    """One DVC stage of a Kedro pipeline (see the module docstring for the rules)."""
    outputs = [d for d in sorted(pipeline.all_outputs()) if d in catalog and _path(catalog[d])]
    out_paths = {_path(catalog[d]) for d in outputs}
    inputs = [d for d in sorted(pipeline.inputs()) if d in catalog and _path(catalog[d])
              and d not in INFORMATIONAL_INPUTS]
    reread = {_path(catalog[d]) for d in inputs} & out_paths  # outputs read back for reuse
    data_deps = sorted({_path(catalog[d]) for d in inputs} - reread)

    modules = {node.func.__module__ for node in pipeline.nodes}
    modules |= {m.rpartition(".")[0] + ".pipeline" for m in modules if m.endswith(".nodes")}
    modules |= {catalog[d]["type"].rpartition(".")[0] for d in (*inputs, *outputs)
                if catalog[d].get("type", "").startswith(PACKAGE + ".")}
    code = sorted(str(p.relative_to(project)) for p in import_closure(modules, src, native))

    params = sorted({i.split(":", 1)[1] for i in pipeline.inputs() if i.startswith("params:")})
    if "parameters" in pipeline.inputs():
        params = ["*"]
    stage: dict = {"cmd": f"localsoc stage {name}", "deps": data_deps + code,
                   "params": [f"{RUN_KEY}.env", *params]}
    outs, metrics = [], []
    for dataset in outputs:
        path = _path(catalog[dataset])
        options = {}
        if path in reread:
            options["persist"] = True  # the stage reads its previous output: DVC must keep it
        (metrics if dataset in METRICS else outs).append({path: options} if options else path)
    stage["outs"] = outs
    if metrics:
        stage["metrics"] = metrics
    return stage


def plots_spec(catalog: dict[str, dict]) -> list[dict]:
    plots = []
    for plot in PLOTS:
        path = _path(catalog[plot["dataset"]])
        if "y" not in plot:
            plots.append({path: None})  # a directory of images
            continue
        spec = {"template": plot["template"], **({"x": plot["x"]} if "x" in plot else {}),
                "y": {path: plot["y"]}, "x_label": plot["x_label"], "y_label": plot["y_label"],
                "title": plot["id"]}
        plots.append({plot["id"]: spec})
    return plots


HEADER = """\
# Generated by `localsoc dvc-yaml` from the Kedro pipelines (src/localsoc/dvc_stages.py):
# do not edit; tests/test_dvc.py fails when this file differs from what the command writes.
# Each stage runs one Kedro pipeline with the parameters in params.yaml (written by
# `localsoc run` / `localsoc study` from conf/; `dvc exp run -S key=value` changes them).
"""


def dvc_yaml(project: Path, src: Path | None = None, native: Path | None = None) -> str:
    """The text of ``dvc.yaml`` for ``project`` (``src``/``native``: where the package source
    and Cython sources are read from; default the project's own)."""
    from localsoc.pipeline_registry import STAGES, register_pipelines

    src = src or project / "src"
    native = native or project / "native"
    pipelines = register_pipelines()
    catalog = _catalog(project)
    stages = {name: stage_spec(name, pipelines[name], catalog, project, src, native)
              for name in STAGES}
    document = {"stages": stages, "plots": plots_spec(catalog)}
    return HEADER + yaml.safe_dump(document, sort_keys=False, width=100)
