"""Fixtures of the LLM layer tests: scripted HTTP servers on 127.0.0.1."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest
from llm_wire import Reply, WireServer


@pytest.fixture
def wire_server() -> Iterator[Callable[..., WireServer]]:
    """``wire_server(Reply(...), ...)`` starts a server playing that script; all are stopped
    (hanging handlers released) when the test ends."""
    servers: list[WireServer] = []

    def start(*script: Reply) -> WireServer:
        server = WireServer(*script).start()
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.stop()


@pytest.fixture(autouse=True)
def _no_real_keys(monkeypatch: pytest.MonkeyPatch) -> None:
    """Tests never pick up a developer's real API keys from the environment."""
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    monkeypatch.delenv("ANTHROPIC_API_KEY", raising=False)
