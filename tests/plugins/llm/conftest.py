"""Fixtures of the LLM layer tests: scripted HTTP servers on 127.0.0.1 (``llm_wire``)."""

from __future__ import annotations

import pytest
from llm_wire import wire_server

from loopback import drop_api_keys

__all__ = ["wire_server"]  # a fixture: imported to register it


@pytest.fixture(autouse=True)
def _no_real_keys(monkeypatch: pytest.MonkeyPatch) -> None:
    """Tests never pick up a developer's real API keys from the environment."""
    drop_api_keys(monkeypatch)
