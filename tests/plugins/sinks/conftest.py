"""Fixtures of the sink and inspect tests: a registry with the sink plugins, scripted webhook
servers on 127.0.0.1, and an environment without proxies or plugin autoloading surprises."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest
from sinks_support import HookServer

from backpackflow.plugins import Registry, build_registry
from backpackflow_sinks import console, inspect, jsonl, webhook
from loopback import keep_requests_local, serving


@pytest.fixture
def registry() -> Registry:
    """A fresh registry holding exactly this package's plugins."""
    return build_registry(plugins=[console, jsonl, webhook, inspect], autoload=False)


@pytest.fixture
def hook_server() -> Iterator[Callable[..., HookServer]]:
    """``hook_server(Reply(...), ...)`` starts a server playing that script; every server is
    stopped (hanging handlers released) when the test ends."""
    yield from serving(HookServer)


@pytest.fixture(autouse=True)
def _loopback_only(monkeypatch: pytest.MonkeyPatch) -> None:
    """No proxy from the developer's environment may route test requests off the machine."""
    keep_requests_local(monkeypatch)
