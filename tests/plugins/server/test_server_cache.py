"""The service shares one LLM response cache between runs: a repeated run costs nothing."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path

from server_kit import TEST_SETTINGS, LiveServer, create_workflow, start_run, wait_for_status

import backpackflow_conditions.plugin
import backpackflow_llm.plugin
import backpackflow_nodes.plugin
import backpackflow_store_sql.plugin
from backpackflow.plugins import build_registry
from backpackflow_server import Settings

FLOW = {
    "version": "2.0.0",
    "nodes": [
        {
            "type": "llm",
            "id": "summarize",
            "params": {"prompt": "Summarize in 1 sentence: {{ inputs.text }}"},
        }
    ],
}
TEXT = "Batteries got cheaper. Solar plants now pair with storage. Peakers lose revenue."


def _registry():
    return build_registry(
        plugins=[
            backpackflow_nodes.plugin,
            backpackflow_llm.plugin,
            backpackflow_conditions.plugin,
            backpackflow_store_sql.plugin,
        ],
        autoload=False,
    )


def test_a_repeated_run_hits_the_service_cache(tmp_path: Path) -> None:
    settings = Settings(
        database_url=f"sqlite:///{tmp_path / 'service.db'}",
        llm_cache=tmp_path / "llm-cache.sqlite",
        **TEST_SETTINGS,
    )
    server = LiveServer(settings, _registry()).start()
    try:
        with server.client() as client:
            workflow = create_workflow(client, FLOW)
            runs = []
            for _ in range(2):
                run = start_run(client, workflow, text=TEXT)
                runs.append(wait_for_status(client, run["id"], "succeeded"))
        first, second = runs
        assert Decimal(first["total_cost"]) > 0
        assert not first["steps"][0]["cache_hit"]
        assert Decimal(second["total_cost"]) == 0
        assert second["steps"][0]["cache_hit"]
        assert (tmp_path / "llm-cache.sqlite").exists()
    finally:
        server.stop()


def test_the_cache_can_be_turned_off(tmp_path: Path) -> None:
    settings = Settings(
        database_url=f"sqlite:///{tmp_path / 'service.db'}", llm_cache=None, **TEST_SETTINGS
    )
    server = LiveServer(settings, _registry()).start()
    try:
        with server.client() as client:
            workflow = create_workflow(client, FLOW)
            runs = [
                wait_for_status(client, start_run(client, workflow, text=TEXT)["id"], "succeeded")
                for _ in range(2)
            ]
        assert all(not run["steps"][0]["cache_hit"] for run in runs)
        assert Decimal(runs[1]["total_cost"]) == Decimal(runs[0]["total_cost"]) > 0
    finally:
        server.stop()
