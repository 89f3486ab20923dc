"""Fixtures of the OpenTelemetry tests: an OTLP receiver on 127.0.0.1, the node tests' helpers
(scripted LLM and page servers, an isolated environment), and export pipelines shut down after
each test (they are shared per destination for the life of the process otherwise)."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "nodes"))

from nodes_support import _isolated_environment, install_plugins, wire_server
from otel_support import OtlpReceiver

from backpackflow_otel import pipeline

__all__ = ["_isolated_environment", "install_plugins", "wire_server"]


@pytest.fixture
def receiver() -> Iterator[OtlpReceiver]:
    with OtlpReceiver() as server:
        yield server


@pytest.fixture(autouse=True)
def _fresh_pipelines() -> Iterator[None]:
    yield
    pipeline.shutdown_all()
