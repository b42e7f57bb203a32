"""Import rules of the ``localsoc`` package (STYLE.md section 9), checked on the source with
``ast``, nothing imported:

* no import cycle between ``localsoc`` modules. Every import counts, also one inside a function
  (a lazy import hides a cycle, it does not remove it); each edge of a cycle is reported with
  its file, line and where it stands (module level, in a function, under ``TYPE_CHECKING``);
* no use of another module's private name: ``from localsoc.a import _name``, ``localsoc.a._name``
  or ``m._name`` where ``m`` is a ``localsoc`` module. A private module (``localsoc.pkg._mod``)
  may be imported by the modules of its own package only. Dunder names are public; the
  compiled kernels of ``localsoc._native`` are imported by name on purpose and are exempt.

Imports are read from ``import`` and ``from ... import`` statements (absolute and relative)
and from ``importlib.import_module("localsoc....")`` calls with a literal name.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src"
PACKAGE = "localsoc"
EXEMPT = f"{PACKAGE}._native"  # compiled-kernel package: its extension modules are loaded by name

@dataclass(frozen=True)
class Use:
    """One module's use of another: an import, or a private attribute reached through one."""

    importer: str
    target: str  # the module imported (or whose attribute is used)
    name: str | None  # the attribute taken from ``target``; None: the module itself
    path: str
    line: int
    where: str  # "module level", "in a function", "under TYPE_CHECKING"

    def at(self) -> str:
        return f"{self.path}:{self.line} ({self.where})"


def module_files() -> dict[str, Path]:
    """Every module of the package by dotted name (a package by its ``__init__.py``)."""
    modules = {}
    for path in sorted((SRC / PACKAGE).rglob("*.py")):
        parts = list(path.relative_to(SRC).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        modules[".".join(parts)] = path
    return modules


def is_private(name: str) -> bool:
    return name.startswith("_") and not (name.startswith("__") and name.endswith("__"))


def _known(name: str, modules: dict[str, Path]) -> str:
    """``name`` or its longest prefix that is a module of the package."""
    parts = name.split(".")
    while parts and ".".join(parts) not in modules:
        parts.pop()
    return ".".join(parts) or name


def _nodes_with_place(tree: ast.Module) -> Iterator[tuple[ast.AST, str]]:
    """Every node with where it stands: module level, in a function, under TYPE_CHECKING."""

    def walk(node: ast.AST, where: str) -> Iterator[tuple[ast.AST, str]]:
        for child in ast.iter_child_nodes(node):
            here = where
            if isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef | ast.Lambda):
                here = "in a function"
            elif (
                isinstance(child, ast.If)
                and where == "module level"
                and "TYPE_CHECKING" in ast.unparse(child.test)
            ):
                yield child, where
                for grandchild in child.body:
                    yield grandchild, "under TYPE_CHECKING"
                    yield from walk(grandchild, "under TYPE_CHECKING")
                for grandchild in child.orelse:
                    yield grandchild, where
                    yield from walk(grandchild, where)
                continue
            yield child, here
            yield from walk(child, here)

    yield from walk(tree, "module level")


def _dotted(node: ast.AST) -> list[str] | None:
    """``a.b.c`` as ``["a", "b", "c"]``; None when the chain does not start at a name."""
    parts = []
    while isinstance(node, ast.Attribute):
        parts.append(node.attr)
        node = node.value
    if not isinstance(node, ast.Name):
        return None
    return [node.id, *reversed(parts)]


def uses_of(module: str, path: Path, modules: dict[str, Path], source: str | None = None
            ) -> list[Use]:
    """The ``localsoc`` modules and names ``module`` (in ``path``, or ``source`` when given)
    imports or reaches through an import."""
    source = path.read_text() if source is None else source
    tree = ast.parse(source, filename=str(path))
    relative = str(path.relative_to(SRC.parent))
    is_package = path.name == "__init__.py"
    package = module if is_package else module.rpartition(".")[0]
    uses: list[Use] = []
    bound: dict[str, str] = {}  # local name -> the localsoc module it names

    def add(target: str, name: str | None, node: ast.AST, where: str) -> None:
        uses.append(Use(module, target, name, relative, node.lineno, where))

    for node, where in _nodes_with_place(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.split(".")[0] != PACKAGE:
                    continue
                add(_known(alias.name, modules), None, node, where)
                if alias.asname:
                    bound[alias.asname] = alias.name
                else:
                    bound[PACKAGE] = PACKAGE
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                anchor = package.split(".")
                anchor = anchor[: len(anchor) - (node.level - 1)]
                base = ".".join(anchor + ([node.module] if node.module else []))
            else:
                base = node.module or ""
            if base.split(".")[0] != PACKAGE:
                continue
            for alias in node.names:
                submodule = f"{base}.{alias.name}"
                if submodule in modules:
                    add(submodule, None, node, where)
                    bound[alias.asname or alias.name] = submodule
                elif alias.name == "*":
                    add(_known(base, modules), None, node, where)
                else:
                    add(_known(base, modules), alias.name, node, where)
        elif (
            isinstance(node, ast.Call)
            and (_dotted(node.func) or [""])[-1] == "import_module"
            and node.args
            and isinstance(node.args[0], ast.Constant)
            and str(node.args[0].value).split(".")[0] == PACKAGE
        ):
            add(_known(str(node.args[0].value), modules), None, node, where)

    # Private attributes reached through a bound module: ``m._name``, ``localsoc.a._name``.
    for node, where in _nodes_with_place(tree):
        if not isinstance(node, ast.Attribute):
            continue
        chain = _dotted(node)
        if not chain or chain[0] not in bound:
            continue
        target = bound[chain[0]]
        for attr in chain[1:]:
            if f"{target}.{attr}" in modules:
                target = f"{target}.{attr}"
                continue
            if is_private(attr) and node.attr == attr:  # report once, at the outermost node
                add(target, attr, node, where)
            break
    return uses


def all_uses() -> list[Use]:
    modules = module_files()
    return [use for module, path in modules.items() for use in uses_of(module, path, modules)]


# --------------------------------------------------------------------------------------------
# The rules


def private_violations(uses: list[Use]) -> list[str]:
    """One line per use of another module's private name (or of a private module from outside
    its package)."""
    found = set()
    for use in uses:
        if use.target == EXEMPT or use.target.startswith(EXEMPT + "."):
            continue
        parts = use.target.split(".")
        for index, part in enumerate(parts):
            owner = ".".join(parts[:index])
            if is_private(part) and not use.importer.startswith(owner + "."):
                found.add(f"{use.at()}: {use.importer} imports the private module {use.target}")
                break
        if use.name is not None and is_private(use.name) and use.target != use.importer:
            if use.target == PACKAGE and use.name == EXEMPT.rpartition(".")[2]:
                continue
            found.add(f"{use.at()}: {use.importer} uses {use.target}.{use.name}")
    return sorted(found)


def import_cycles(uses: list[Use]) -> list[list[str]]:
    """The strongly connected groups of two or more modules (Tarjan), each sorted."""
    graph: dict[str, set[str]] = {}
    for use in uses:
        if use.target != use.importer:
            graph.setdefault(use.importer, set()).add(use.target)
            graph.setdefault(use.target, set())
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    groups: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for successor in sorted(graph[node]):
            if successor not in index:
                visit(successor)
                low[node] = min(low[node], low[successor])
            elif successor in on_stack:
                low[node] = min(low[node], index[successor])
        if low[node] == index[node]:
            group = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                group.append(member)
                if member == node:
                    break
            if len(group) > 1:
                groups.append(sorted(group))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return sorted(groups)


def describe_cycle(group: list[str], uses: list[Use]) -> str:
    members = set(group)
    edges = sorted(
        f"    {use.importer} -> {use.target}  {use.at()}"
        for use in uses
        if use.importer in members and use.target in members and use.importer != use.target
    )
    return "  cycle " + " / ".join(group) + ":\n" + "\n".join(dict.fromkeys(edges))


def _report(title: str, lines: list[str]) -> str:
    return f"{title} ({len(lines)}):\n" + "\n".join(lines)


@pytest.fixture(scope="module")
def uses() -> list[Use]:
    return all_uses()


# --------------------------------------------------------------------------------------------
# Tests


def test_every_module_is_walked_including_the_native_package():
    modules = module_files()
    assert EXEMPT in modules and modules[EXEMPT].name == "__init__.py"
    assert len(modules) == len(list((SRC / PACKAGE).rglob("*.py")))
    for module, path in modules.items():
        uses_of(module, path, modules)  # parses (the empty _native/__init__.py included)


def test_the_walker_sees_lazy_relative_and_attribute_uses():
    code = (
        "from . import sibling\n"
        "import localsoc.models.search as search_module\n"
        "def f():\n"
        "    from localsoc.models.tuner import _hidden\n"
        "    return search_module._private\n"
    )
    path = SRC / PACKAGE / "models" / "probe.py"
    modules = {**module_files(), "localsoc.models.probe": path, "localsoc.models.sibling": path}
    found = uses_of("localsoc.models.probe", path, modules, source=code)
    seen = {(use.target, use.name, use.where) for use in found}
    assert ("localsoc.models.sibling", None, "module level") in seen
    assert ("localsoc.models.search", None, "module level") in seen
    assert ("localsoc.models.tuner", "_hidden", "in a function") in seen
    assert ("localsoc.models.search", "_private", "in a function") in seen
    assert len(private_violations(found)) == 2


def test_private_modules_are_for_their_package_and_native_kernels_are_exempt():
    code = (
        "import importlib\n"
        "from localsoc import _native\n"
        "from localsoc.selection._reference import kennard_stone_reference\n"
        "kernels = importlib.import_module('localsoc._native.rslocal')\n"
    )
    modules = module_files()
    inside = uses_of("localsoc.selection.probe", SRC / PACKAGE / "selection" / "probe.py",
                     modules, source=code)
    outside = uses_of("localsoc.models.probe", SRC / PACKAGE / "models" / "probe.py", modules,
                      source=code)
    assert private_violations(inside) == []
    assert private_violations(outside) == [
        "src/localsoc/models/probe.py:3 (module level): localsoc.models.probe imports the "
        "private module localsoc.selection._reference"
    ]


def test_a_cycle_is_found_through_a_lazy_import_and_each_edge_is_named():
    uses = [
        Use("localsoc.a", "localsoc.b", None, "src/localsoc/a.py", 3, "module level"),
        Use("localsoc.b", "localsoc.c", "f", "src/localsoc/b.py", 4, "module level"),
        Use("localsoc.c", "localsoc.a", None, "src/localsoc/c.py", 9, "in a function"),
        Use("localsoc.c", "localsoc.d", None, "src/localsoc/c.py", 2, "module level"),
    ]
    assert import_cycles(uses) == [["localsoc.a", "localsoc.b", "localsoc.c"]]
    text = describe_cycle(["localsoc.a", "localsoc.b", "localsoc.c"], uses)
    assert "localsoc.c -> localsoc.a  src/localsoc/c.py:9 (in a function)" in text
    assert "localsoc.d" not in text


def test_no_import_cycles(uses):
    cycles = [describe_cycle(group, uses) for group in import_cycles(uses)]
    assert not cycles, _report("import cycles between localsoc modules", cycles)


def test_no_private_names_of_other_modules(uses):
    private = private_violations(uses)
    assert not private, _report("uses of another module's private names", private)
