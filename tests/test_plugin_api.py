"""The declared plugin API: plugins, contrib packages and examples import only ``backpackflow``
and the public ``__init__`` of a few subpackages (plugins/README.md, docs/write-a-node-package.md),
and only names those export. Anything else is the kernel's to move."""

from __future__ import annotations

import ast
import importlib
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

#: What a plugin may import from the kernel (the package and these modules, nothing below them).
PLUGIN_API = (
    "backpackflow",
    "backpackflow.config",
    "backpackflow.events",
    "backpackflow.ids",
    "backpackflow.jsondata",
    "backpackflow.loader",
    "backpackflow.plugins",
    "backpackflow.policy",
    "backpackflow.runner",
)

SOURCES = sorted(
    path
    for folder in ("plugins", "contrib", "examples")
    for path in (ROOT / folder).rglob("*.py")
    if not {".venv", "build", "__pycache__"} & set(path.parts)
)


def kernel_imports(tree: ast.AST) -> Iterator[tuple[int, str, str | None]]:
    """(line, module, name or None) of every kernel import, function-level ones included."""
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.split(".")[0] == "backpackflow":
                    yield node.lineno, alias.name, None
        elif (
            isinstance(node, ast.ImportFrom)
            and node.module
            and not node.level
            and node.module.split(".")[0] == "backpackflow"
        ):
            for alias in node.names:
                yield node.lineno, node.module, alias.name


def violations(source: str) -> list[str]:
    found = []
    for line, module, name in sorted(kernel_imports(ast.parse(source)), key=lambda i: i[0]):
        if module not in PLUGIN_API:
            found.append(f"line {line}: {module} is not part of the plugin API")
            continue
        if name is None:
            continue
        public = getattr(importlib.import_module(module), "__all__", None)
        private = name.startswith("_") and not name.startswith("__")
        if private or (public is not None and name not in public):
            found.append(f"line {line}: {module}.{name} is not exported by {module}")
    return found


def test_the_plugin_api_is_what_the_docs_declare():
    for doc in ("plugins/README.md", "docs/write-a-node-package.md"):
        text = (ROOT / doc).read_text(encoding="utf-8")
        assert all(f"`{module}`" in text for module in PLUGIN_API), doc


@pytest.mark.parametrize("path", SOURCES, ids=lambda p: str(p.relative_to(ROOT)))
def test_plugins_import_only_the_declared_plugin_api(path):
    assert violations(path.read_text(encoding="utf-8")) == []


def test_the_check_finds_a_submodule_a_private_name_and_an_unexported_name():
    source = (
        "from backpackflow.runner.base import BaseNode\n"
        "def f():\n"
        "    from backpackflow.runner import _current_run\n"
        "from backpackflow.events import summary\n"
        "import backpackflow.backpack\n"
        "from backpackflow import Backpack\n"
    )
    assert violations(source) == [
        "line 1: backpackflow.runner.base is not part of the plugin API",
        "line 3: backpackflow.runner._current_run is not exported by backpackflow.runner",
        "line 4: backpackflow.events.summary is not exported by backpackflow.events",
        "line 5: backpackflow.backpack is not part of the plugin API",
    ]
