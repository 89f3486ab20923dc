"""Fixtures shared by the kernel tests: fake installed distributions for the plugin host."""

from __future__ import annotations

import importlib
import sys
import textwrap

import importlib_metadata
import pytest

import backpackflow.plugins.manager as plugins_module
from backpackflow.plugins import (
    DISABLE_AUTOLOAD_ENV,
    DISABLE_PLUGINS_ENV,
    ENTRY_POINT_GROUP,
    reset_registry,
)


@pytest.fixture
def clean_plugin_environment(monkeypatch):
    """No plugin switches from the developer's environment, and a fresh registry before and
    after the test."""
    monkeypatch.delenv(DISABLE_AUTOLOAD_ENV, raising=False)
    monkeypatch.delenv(DISABLE_PLUGINS_ENV, raising=False)
    monkeypatch.delenv("BACKPACKFLOW_DEBUG", raising=False)
    reset_registry()
    yield
    reset_registry()


@pytest.fixture
def site(tmp_path, monkeypatch):
    """A directory of fake installed distributions; ``backpackflow.plugins`` sees only the
    entry points of those (not whatever the test environment has installed)."""
    root = tmp_path / "site"
    root.mkdir()
    monkeypatch.syspath_prepend(str(root))
    loaded_before = set(sys.modules)

    def entry_points(*, group):
        found = []
        for dist in importlib_metadata.distributions(path=[str(root)]):
            found.extend(dist.entry_points.select(group=group))
        return found

    monkeypatch.setattr(plugins_module, "entry_points", entry_points)
    yield FakeSite(root)
    # the next test may write a module of the same name with other source: forget these
    for name in set(sys.modules) - loaded_before:
        if (getattr(sys.modules[name], "__file__", None) or "").startswith(str(root)):
            del sys.modules[name]


class FakeSite:
    """Writes plugin modules and the ``.dist-info`` of distributions that declare them."""

    def __init__(self, root):
        self.root = root

    def module(self, name, source):
        (self.root / f"{name}.py").write_text(textwrap.dedent(source))
        importlib.invalidate_caches()

    def dist(self, name, version, entry_points):
        info = self.root / f"{name.replace('-', '_')}-{version}.dist-info"
        info.mkdir()
        (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n")
        lines = [f"{n} = {v}" for n, v in entry_points.items()]
        (info / "entry_points.txt").write_text(f"[{ENTRY_POINT_GROUP}]\n" + "\n".join(lines))
        importlib.invalidate_caches()

    def add(self, name, version, modules, entry_points):
        """A distribution with its modules: ``modules`` maps module name to source."""
        for module, source in modules.items():
            self.module(module, source)
        self.dist(name, version, entry_points)
