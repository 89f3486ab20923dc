"""Fixtures: a registry loaded through the real entry points and a loader on it."""

from __future__ import annotations

import pytest
from backpackflow.loader import FlowLoader
from backpackflow.plugins import (
    DISABLE_AUTOLOAD_ENV,
    DISABLE_PLUGINS_ENV,
    Registry,
    build_registry,
)


@pytest.fixture(autouse=True)
def _plugins_autoload(monkeypatch: pytest.MonkeyPatch) -> None:
    """Discovery is what these tests prove: never let the caller's environment switch it off."""
    monkeypatch.delenv(DISABLE_AUTOLOAD_ENV, raising=False)
    monkeypatch.delenv(DISABLE_PLUGINS_ENV, raising=False)


@pytest.fixture
def registry() -> Registry:
    return build_registry()


@pytest.fixture
def loader(registry: Registry) -> FlowLoader:
    return FlowLoader(registry)
