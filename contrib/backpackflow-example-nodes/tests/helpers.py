"""Paths and the command line, shared by the test modules."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from backpackflow.plugins import DISABLE_AUTOLOAD_ENV, DISABLE_PLUGINS_ENV

FLOWS = Path(__file__).parent / "flows"


def cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """``backpackflow ARGS`` in a fresh interpreter, so plugins are discovered from scratch as
    they are for a user (``python -m backpackflow`` is the ``backpackflow`` script)."""
    environ = {
        k: v for k, v in os.environ.items() if k not in (DISABLE_AUTOLOAD_ENV, DISABLE_PLUGINS_ENV)
    }
    environ.update(env or {})
    return subprocess.run(
        [sys.executable, "-m", "backpackflow", *args],
        capture_output=True,
        text=True,
        env=environ,
        timeout=60,
        check=False,
    )
