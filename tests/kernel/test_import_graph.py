"""The kernel's imports form a DAG, counting every import a module makes when it runs (function-
level ones included; only ``if TYPE_CHECKING:`` blocks, type-only back references, are left out),
and a ``_private`` module or name is imported only inside its own subpackage.

import-linter's layers contract (pyproject.toml) orders the subpackages; this test also catches
cycles between the modules of one subpackage, which a layers contract cannot see."""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
KERNEL = ROOT / "kernel" / "backpackflow"


def module_name(path: Path) -> str:
    parts = path.relative_to(KERNEL.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {module_name(p): p for p in KERNEL.rglob("*.py")}


def is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def runtime_imports(tree: ast.AST) -> Iterator[ast.Import | ast.ImportFrom]:
    """Every import statement that runs (at import time or when a function is called)."""
    for node in ast.iter_child_nodes(tree):
        if isinstance(node, ast.If) and is_type_checking(node.test):
            yield from (n for child in node.orelse for n in runtime_imports_of(child))
            continue
        yield from runtime_imports_of(node)


def runtime_imports_of(node: ast.AST) -> Iterator[ast.Import | ast.ImportFrom]:
    if isinstance(node, (ast.Import, ast.ImportFrom)):
        yield node
    else:
        yield from runtime_imports(node)


def resolve(module: str, node: ast.ImportFrom) -> str:
    if not node.level:
        return node.module or ""
    base = module.split(".")
    is_package = MODULES[module].name == "__init__.py"
    base = base[: len(base) - node.level + (1 if is_package else 0)]
    return ".".join([*base, *([node.module] if node.module else [])])


def imported(module: str) -> Iterator[tuple[str, str | None, int]]:
    """(imported module, imported name or None, line) for each kernel import of ``module``."""
    tree = ast.parse(MODULES[module].read_text(encoding="utf-8"))
    for node in runtime_imports(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name in MODULES:
                    yield alias.name, None, node.lineno
            continue
        target = resolve(module, node)
        for alias in node.names:
            submodule = f"{target}.{alias.name}"
            if submodule in MODULES:
                yield submodule, None, node.lineno
            elif target in MODULES:
                yield target, alias.name, node.lineno


def graph() -> dict[str, set[str]]:
    return {m: {target for target, _, _ in imported(m)} for m in MODULES}


def cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (or a self-import)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in edges.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1 or v in edges.get(v, ()):
                found.append(sorted(component))

    for v in sorted(edges):
        if v not in index:
            visit(v)
    return found


def test_the_kernel_imports_form_no_cycle_even_counting_function_level_imports():
    assert cycles(graph()) == []


def test_the_cycle_finder_finds_a_function_level_cycle():
    """The check above can fail: a function-level import back is a cycle."""
    edges = graph()
    edges["backpackflow.errors"].add("backpackflow.runner.base")  # as an import in a function
    assert any("backpackflow.errors" in c for c in cycles(edges))
    source = "def f():\n    from backpackflow.runner.base import BaseNode\n"
    assert [n.module for n in runtime_imports(ast.parse(source))] == ["backpackflow.runner.base"]
    typed = "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from backpackflow import x\n"
    assert [n.module for n in runtime_imports(ast.parse(typed))] == ["typing"]


def subpackage(module: str) -> str:
    """The folder a module belongs to: ``backpackflow.runner`` for ``backpackflow.runner.base``;
    the leaves (``backpackflow.errors`` ...) and the package itself belong to ``backpackflow``."""
    parts = module.split(".")
    if MODULES.get(module, Path()).name == "__init__.py":
        return module
    return ".".join(parts[:-1])


def private_imports_across_folders(modules: dict[str, Path]) -> list[str]:
    found = []
    for module in modules:
        for target, name, line in imported(module):
            private = any(p.startswith("_") for p in target.split(".")[1:]) or (
                name is not None and name.startswith("_") and not name.startswith("__")
            )
            if private and subpackage(target) != subpackage(module):
                what = f"{target}.{name}" if name else target
                found.append(f"{module}:{line} imports {what}")
    return found


def test_a_private_name_is_imported_only_inside_its_own_subpackage():
    assert private_imports_across_folders(MODULES) == []


def test_the_private_name_check_can_fail():
    assert subpackage("backpackflow.backpack._codec") == "backpackflow.backpack"
    assert subpackage("backpackflow.backpack") == "backpackflow.backpack"
    # runner.lifecycle importing runner.context._current_node: same folder, allowed
    lifecycle = {"backpackflow.runner.lifecycle": MODULES["backpackflow.runner.lifecycle"]}
    assert private_imports_across_folders(lifecycle) == []
    # a module of another folder importing it would be reported
    tree = ast.parse("from backpackflow.runner.context import _current_node\n")
    node = next(runtime_imports(tree))
    assert isinstance(node, ast.ImportFrom)
    assert node.names[0].name.startswith("_")
    assert subpackage("backpackflow.runner.context") != subpackage("backpackflow.events.bus")
