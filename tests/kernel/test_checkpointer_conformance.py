"""The checkpointer conformance suite (tests/checkpointer_conformance.py) against the kernel's
in-memory and file checkpointers."""

from __future__ import annotations

import pytest

from backpackflow import FileCheckpointer, MemoryCheckpointer
from checkpointer_conformance import *  # noqa: F403 - the suite's tests run here
from checkpointer_conformance import __all__ as _suite  # noqa: F401


@pytest.fixture(params=["memory", "file"])
def checkpointer(request, tmp_path):
    if request.param == "memory":
        yield MemoryCheckpointer()
        return
    checkpointer = FileCheckpointer(tmp_path / "checkpoints")
    yield checkpointer
    checkpointer.close()
