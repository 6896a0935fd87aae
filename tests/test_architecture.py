"""The shape of the code (docs/architecture.md): every module of app/ has a layer in the import-linter
contract (pyproject.toml; ``make test`` runs ``lint-imports`` on it), no import circles, function-local
imports only for a stated start-up cost, no module over 600 lines, and docs/architecture.md lists
every module that exists."""

from __future__ import annotations

import ast
import re
import tomllib
from pathlib import Path

import grimp

ROOT = Path(__file__).resolve().parent.parent
APP = ROOT / "app"
MAX_LINES = 600
#: Function-local imports of app modules allowed at all (each must say why on its line).
MAX_LOCAL_IMPORTS = 5


def _modules() -> dict[str, Path]:
    modules = {}
    for path in sorted(APP.rglob("*.py")):
        name = ".".join(path.relative_to(ROOT).with_suffix("").parts)
        modules[name.removesuffix(".__init__")] = path
    return modules


def _layers() -> list[list[str]]:
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["importlinter"]
    [contract] = [c for c in config["contracts"] if c["type"] == "layers"]
    assert not contract.get("ignore_imports"), "violations are fixed, never excused"
    return [[m.strip() for m in re.split(r"[:|]", layer)] for layer in contract["layers"]]


def _covered(module: str, declared: set[str]) -> list[str]:
    return [d for d in declared if module == d or module.startswith(d + ".")]


def test_every_module_has_exactly_one_layer():
    declared = [m for layer in _layers() for m in layer]
    assert len(declared) == len(set(declared))
    packages = {name for name, path in _modules().items() if path.name == "__init__.py"}
    for module in set(_modules()) - packages:
        assert len(_covered(module, set(declared))) == 1, f"{module}: add it to one layer in pyproject.toml"
    for module in declared:
        assert module in _modules(), f"{module} is in the contract but does not exist"


def test_no_import_circles():
    """Function-local imports included (grimp reads every import statement)."""
    graph = grimp.build_graph("app", cache_dir=None)
    modules = sorted(graph.modules)
    index, low, stack, on_stack, circles = {}, {}, [], set(), []

    def visit(module):  # Tarjan's strongly connected components
        index[module] = low[module] = len(index)
        stack.append(module)
        on_stack.add(module)
        for imported in graph.find_modules_directly_imported_by(module):
            if imported == "app":
                continue
            if imported not in index:
                visit(imported)
                low[module] = min(low[module], low[imported])
            elif imported in on_stack:
                low[module] = min(low[module], index[imported])
        if low[module] == index[module]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == module:
                    break
            if len(component) > 1:
                circles.append(sorted(component))

    for module in modules:
        if module not in index:
            visit(module)
    assert circles == []


def _local_imports():
    for name, path in _modules().items():
        source = path.read_text()
        lines = source.splitlines()
        for function in ast.walk(ast.parse(source)):
            if not isinstance(function, (ast.FunctionDef, ast.AsyncFunctionDef)):
                continue
            for node in ast.walk(function):
                if isinstance(node, (ast.Import, ast.ImportFrom)):
                    yield name, node.lineno, lines[node.lineno - 1]


def test_function_local_imports_are_few_and_say_why():
    """A function-local import is for a measured start-up cost (a web worker must not load what only
    the command line or an outbound call needs), never to hide a circle."""
    found = sorted(set(_local_imports()))
    assert len(found) <= MAX_LOCAL_IMPORTS, found
    for name, line, text in found:
        assert "#" in text, f"{name}:{line} imports inside a function without saying why"


def test_no_module_over_600_lines():
    for name, path in _modules().items():
        assert len(path.read_text().splitlines()) <= MAX_LINES, f"{name}: split it by concept"


def test_architecture_doc_lists_every_module():
    doc = (ROOT / "docs" / "architecture.md").read_text()
    listed = set(re.findall(r"`(app/[\w/]+\.py)`", doc))
    existing = {str(path.relative_to(ROOT)) for path in _modules().values()}
    assert existing - listed == set(), "docs/architecture.md misses these modules"
    assert listed - existing == set(), "docs/architecture.md lists modules that do not exist"
