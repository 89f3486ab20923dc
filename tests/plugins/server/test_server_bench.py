"""The load benchmark's client, briefly, against a live service on SQLite and PostgreSQL: its
counting (emitted = stored = delivered to every subscriber) stays honest and working."""

from __future__ import annotations

import asyncio
import importlib.util
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

from server_kit import TEST_SETTINGS, LiveServer

import backpackflow_conditions.plugin
import backpackflow_store_sql.plugin
from backpackflow.plugins import build_registry
from backpackflow_server import Settings

BENCH = Path(__file__).resolve().parents[3] / "bench" / "service_load.py"


def load_bench() -> ModuleType:
    spec = importlib.util.spec_from_file_location("service_load_bench", BENCH)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def test_benchmark_counts_every_event(database_url: str) -> None:
    bench = load_bench()
    registry = build_registry(
        plugins=[bench.BenchNodes(), backpackflow_store_sql.plugin, backpackflow_conditions.plugin],
        autoload=False,
    )
    settings: dict[str, Any] = {**TEST_SETTINGS, "max_concurrent_runs": 8}
    with LiveServer(Settings(database_url=database_url, **settings), registry) as server:
        token = server.admin_token
        result = asyncio.run(bench.load(server.url, bench.default_flow(1.0), 8, 2, token))
    assert result["problems"] == []
    assert result["statuses"] == {"succeeded": 8}
    assert result["events_emitted"] == result["events_stored"] > 8 * 20
    assert result["events_delivered"] == [result["events_emitted"]] * 2
    assert result["live_events_timed"] + result["backfilled_events"] == 2 * result["events_emitted"]
