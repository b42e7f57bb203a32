"""The code stays small enough to read in one sitting (docs: STYLE.md, section 10).

- No function in ``src/localsoc`` is longer than :data:`MAX_FUNCTION_LINES` lines (the
  simulator's literal data tables aside, by name).
- No Kedro node takes more than :data:`MAX_NODE_INPUTS` inputs.
- ``conf/`` is the one source of defaults: no node module reads a parameter with a default in
  code (``params.get("key", default)`` or ``params.get("key") or default``).

Each test prints what it measured, longest first, so a failure names what to split.
"""

from __future__ import annotations

import ast
import inspect
import sys
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src" / "localsoc"
MAX_FUNCTION_LINES = 80
MAX_NODE_INPUTS = 7
#: The simulator's literal data tables, by name, where one is longer than the limit (none now).
DATA_TABLES: dict[str, set[str]] = {"data/simulate.py": set()}
#: Argument names that hold parameters wherever they appear in a node module.
PARAMETER_NAMES = {"params", "parameters"}


def function_lengths(root: Path = SRC) -> list[tuple[int, str, str]]:
    """(lines, file relative to ``root``, qualified name) of every function, longest first."""
    found = []
    for path in sorted(root.rglob("*.py")):
        tree = ast.parse(path.read_text(), filename=str(path))
        for node in ast.walk(tree):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                found.append((node.end_lineno - node.lineno + 1,
                              path.relative_to(root).as_posix(), node.name))
    return sorted(found, reverse=True)


def test_no_function_is_longer_than_the_limit():
    lengths = function_lengths()
    print("\nlongest functions in src/localsoc:")
    for lines, path, name in lengths[:20]:
        print(f"  {lines:4d}  {path}:{name}")
    too_long = [(lines, path, name) for lines, path, name in lengths
                if lines > MAX_FUNCTION_LINES and name not in DATA_TABLES.get(path, set())]
    assert not too_long, (
        f"functions over {MAX_FUNCTION_LINES} lines (split them into small pure functions and a "
        "registry of variants, as spectra/steps.py does): "
        + ", ".join(f"{path}:{name} ({lines})" for lines, path, name in too_long))


def test_the_length_count_sees_a_long_function(tmp_path):
    body = "\n".join(f"    x{i} = {i}" for i in range(MAX_FUNCTION_LINES))
    (tmp_path / "long.py").write_text(f"def long():\n{body}\n")
    (tmp_path / "short.py").write_text("def short():\n    return 1\n")
    assert function_lengths(tmp_path) == [(MAX_FUNCTION_LINES + 1, "long.py", "long"),
                                          (2, "short.py", "short")]


def registered_nodes() -> dict[str, object]:
    """Every node of the registered pipelines, by node name."""
    from localsoc.pipeline_registry import register_pipelines

    return {node.name: node for pipeline in register_pipelines().values()
            for node in pipeline.nodes}


def test_no_node_takes_more_inputs_than_the_limit():
    nodes = sorted(registered_nodes().values(), key=lambda n: -len(n.inputs))
    print("\nnode inputs:")
    for node in nodes:
        print(f"  {len(node.inputs):2d}  {node.name} ({node.func.__module__}.{node.func.__name__})")
    too_many = [f"{node.name} ({len(node.inputs)})" for node in nodes
                if len(node.inputs) > MAX_NODE_INPUTS]
    assert not too_many, (f"nodes with more than {MAX_NODE_INPUTS} inputs (group them: a node "
                          f"of settings, of one site's data, or several nodes): {too_many}")


def parameter_arguments(node) -> set[str]:
    """The names of the node function's arguments bound to ``params:...`` or ``parameters``."""
    raw = getattr(node, "_inputs", None)
    if isinstance(raw, dict):
        bound = dict(raw)
    else:
        names = list(inspect.signature(node.func).parameters)
        bound = dict(zip(names, node.inputs, strict=False))
    return {argument for argument, dataset in bound.items()
            if dataset == "parameters" or dataset.startswith("params:")}


def _is_get(call: ast.AST) -> bool:
    return (isinstance(call, ast.Call) and isinstance(call.func, ast.Attribute)
            and call.func.attr == "get")


def _reads(expression: ast.AST, names: set[str]) -> bool:
    return any(isinstance(n, ast.Name) and n.id in names for n in ast.walk(expression))


def defaults_in_code(source: str, names: set[str]) -> list[tuple[int, str]]:
    """(line, code) of each ``X.get(key, default)`` and ``X.get(key) or default`` whose
    receiver ``X`` reads one of ``names`` (``params``, ``params["domain"]``, ``(study or
    {})``)."""
    tree = ast.parse(source)
    found = []
    for node in ast.walk(tree):
        if _is_get(node) and len(node.args) + len(node.keywords) >= 2:
            hit = node
        elif (isinstance(node, ast.BoolOp) and isinstance(node.op, ast.Or)
              and _is_get(node.values[0])):
            hit = node.values[0]
        else:
            continue
        if _reads(hit.func.value, names):
            found.append((node.lineno, ast.unparse(node)))
    return sorted(set(found))


def test_the_default_check_sees_a_default_in_code():
    source = ("def node(params, study, table):\n"
              "    a = params.get('interval', 'cv_plus')\n"
              "    b = params['domain'].get('quantile', 0.99)\n"
              "    c = (study or {}).get('seed', 0)\n"
              "    d = params.get('space') or None\n"
              "    e = params['interval']\n"
              "    f = table.get('column', 0)\n")
    found = defaults_in_code(source, {"params", "study"})
    assert [line for line, _ in found] == [2, 3, 4, 5]


def test_no_node_reads_a_parameter_with_a_default_in_code():
    by_module: dict[str, set[str]] = {}
    for node in registered_nodes().values():
        module = node.func.__module__
        if module.startswith("localsoc.pipelines."):
            by_module.setdefault(module, set(PARAMETER_NAMES)).update(parameter_arguments(node))
    assert by_module, "no node modules found"
    problems = []
    for module, names in sorted(by_module.items()):
        path = Path(sys.modules[module].__file__)
        for line, code in defaults_in_code(path.read_text(), names):
            problems.append(f"{path.relative_to(SRC).as_posix()}:{line}: {code}")
    print("\nparameter arguments per node module:")
    for module, names in sorted(by_module.items()):
        print(f"  {module}: {sorted(names)}")
    assert not problems, ("parameters read with a default in code (conf/ is the one source of "
                          "defaults: read params[key] and add the key to conf/base): "
                          + "; ".join(problems))
