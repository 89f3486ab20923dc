"""Fixtures of the node tests (defined in ``nodes_support``, shared with ``tests/e2e``):
scripted LLM servers on 127.0.0.1, no API keys or proxies from the developer's environment, a
scratch working directory, and a way to install an extra plugin process-wide."""

from __future__ import annotations

from nodes_support import _isolated_environment, install_plugins, wire_server

__all__ = ["_isolated_environment", "install_plugins", "wire_server"]
