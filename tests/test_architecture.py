"""The structure docs/architecture.md promises, read from the code (issue 10's rules).

Imports are read with `ast`, including those inside functions, so a lazy import cannot hide a cycle.
"""

from __future__ import annotations

import ast
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
MAX_TOP_LEVEL_MODULES = 12
MAX_FILE_LINES = 400
MAX_FUNCTION_LINES = 60


def project_modules() -> dict[str, Path]:
    """Dotted name → file, as installed: `exporters/` is `netspec.exporters`."""
    modules = {}
    for base, prefix in ((ROOT / "netspec", "netspec"), (ROOT / "exporters", "netspec.exporters")):
        for path in sorted(base.rglob("*.py")):
            parts = list(path.relative_to(base).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts.pop()
            modules[".".join([prefix, *parts])] = path
    return modules


MODULES = project_modules()


def is_package(name: str) -> bool:
    return MODULES[name].name == "__init__.py"


def imported(name: str, path: Path) -> set[str]:
    """Project modules `name` imports anywhere in its file (a `from pkg import sub` names the submodule)."""
    package = name if is_package(name) else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
                base = f"{anchor}.{base}" if base else anchor
            found.add(base)
            found.update(f"{base}.{alias.name}" for alias in node.names)
    return {target for target in found if target in MODULES and target != name}


def own_package_edge(source: str, target: str) -> bool:
    """A package's `__init__` and its own submodules may import each other (the rule's exception)."""
    return (is_package(target) and source.startswith(target + ".")) or \
        (is_package(source) and target.startswith(source + "."))


GRAPH = {name: {t for t in imported(name, path) if not own_package_edge(name, t)} for name, path in MODULES.items()}


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index, low, stack, on_stack, found = {}, {}, [], set(), []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for target in sorted(graph[node]):
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in on_stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def test_no_import_cycle_between_project_modules():
    assert cycles(GRAPH) == []


def test_the_checker_finds_a_cycle_when_there_is_one():
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert cycles(graph) == [["a", "b", "c"]]


def test_no_library_module_imports_the_cli():
    library = {name for name in MODULES if not (name == "netspec.cli" or name.startswith("netspec.cli."))}
    assert sorted(name for name in library if any(t == "netspec.cli" or t.startswith("netspec.cli.")
                                                   for t in GRAPH[name])) == []


def test_netspec_top_level_holds_at_most_twelve_modules():
    top = sorted(p.name for p in (ROOT / "netspec").glob("*.py"))
    assert len(top) <= MAX_TOP_LEVEL_MODULES, top


@pytest.mark.parametrize("name", sorted(MODULES))
def test_library_files_and_functions_stay_small(name):
    path = MODULES[name]
    lines = path.read_text().splitlines()
    assert len(lines) <= MAX_FILE_LINES, f"{path.relative_to(ROOT)}: {len(lines)} lines"
    long = [f"{node.name} ({node.end_lineno - node.lineno + 1} lines)"
            for node in ast.walk(ast.parse("\n".join(lines)))
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef))
            and node.end_lineno - node.lineno + 1 > MAX_FUNCTION_LINES]
    assert long == [], f"{path.relative_to(ROOT)}: {long}"


def test_the_distribution_claims_only_the_netspec_name():
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())
    setuptools = config["tool"]["setuptools"]
    packages = set(setuptools["packages"])
    assert all(name == "netspec" or name.startswith("netspec.") for name in packages)
    assert "py-modules" not in setuptools
    folders = {name for name in MODULES if is_package(name)}
    assert packages == folders  # every package folder is installed, and nothing else
    assert config["project"]["scripts"] == {"netspec": "netspec.cli:main"}


def _metadata_reads(tree: ast.AST, keys: set[str]) -> list[int]:
    """Lines that read a card key out of a metadata mapping: meta["labels"], metadata.get("mean")."""
    def named_meta(node) -> bool:
        return isinstance(node, ast.Name) and "meta" in node.id.lower() or \
            isinstance(node, ast.Attribute) and "meta" in node.attr.lower()

    lines = []
    for node in ast.walk(tree):
        key = None
        if isinstance(node, ast.Subscript) and named_meta(node.value) and isinstance(node.slice, ast.Constant):
            key = node.slice.value
        elif isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "get" \
                and named_meta(node.func.value) and node.args and isinstance(node.args[0], ast.Constant):
            key = node.args[0].value
        if key in keys:
            lines.append(node.lineno)
    return lines


def test_the_model_card_keys_are_spelled_in_one_library_file():
    from netspec import modelcard

    card_file = MODULES["netspec.modelcard"]
    checkpoint_keys = set(modelcard.CHECKPOINT_KEYS.values())
    exported = {modelcard.EXPORT_PREFIX + key for key in modelcard.EXPORT_KEYS.values()}
    assert {"labels", "mean", "std"} <= checkpoint_keys and "netspec.labels" in exported
    elsewhere = []
    for name, path in MODULES.items():
        if path == card_file:
            continue
        tree = ast.parse(path.read_text())
        literals = [n.lineno for n in ast.walk(tree) if isinstance(n, ast.Constant) and n.value in exported]
        elsewhere += [f"{path.relative_to(ROOT)}:{line}" for line in literals + _metadata_reads(tree, checkpoint_keys)]
    assert elsewhere == []
