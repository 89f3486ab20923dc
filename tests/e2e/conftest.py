"""Fixtures of the end-to-end tests: the node tests' helpers (``nodes_support``) and fixtures
(LLM servers on 127.0.0.1, an isolated environment, a scratch working directory)."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "plugins" / "nodes"))

from nodes_support import _isolated_environment, install_plugins, wire_server

__all__ = ["_isolated_environment", "install_plugins", "wire_server"]
