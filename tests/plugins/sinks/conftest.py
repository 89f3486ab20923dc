"""Fixtures of the sink and inspect tests: a registry with the sink plugins, scripted webhook
servers on 127.0.0.1, and an environment without proxies or plugin autoloading surprises."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest
from sinks_support import HookServer, Reply

from backpackflow.plugins import Registry, build_registry
from backpackflow_sinks import console, inspect, jsonl, webhook


@pytest.fixture
def registry() -> Registry:
    """A fresh registry holding exactly this package's plugins."""
    return build_registry(plugins=[console, jsonl, webhook, inspect], autoload=False)


@pytest.fixture
def hook_server() -> Iterator[Callable[..., HookServer]]:
    """``hook_server(Reply(...), ...)`` starts a server playing that script; every server is
    stopped (hanging handlers released) when the test ends."""
    servers: list[HookServer] = []

    def start(*script: Reply) -> HookServer:
        server = HookServer(*script).start()
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.stop()


@pytest.fixture(autouse=True)
def _loopback_only(monkeypatch: pytest.MonkeyPatch) -> None:
    """No proxy from the developer's environment may route test requests off the machine."""
    for name in (
        "HTTP_PROXY",
        "HTTPS_PROXY",
        "ALL_PROXY",
        "http_proxy",
        "https_proxy",
        "all_proxy",
    ):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
