"""The demo workflows of a new database are the examples the plugins register (the wheel ships
the first-party ones: tests/e2e/test_e2e_wheel.py), each run in its own folder; ``seed_dir``
replaces them; and ``db current --json``."""

from __future__ import annotations

import contextlib
import io
import json
from pathlib import Path
from typing import Any

import pytest
from server_kit import (
    TEST_SETTINGS,
    LiveServer,
    ServerTestNodes,
    cli_main,
    flow,
    start_run,
    wait_for_status,
)

import backpackflow_conditions.plugin
import backpackflow_store_sql.plugin
from backpackflow import hookimpl
from backpackflow.plugins import build_registry
from backpackflow_server import Settings
from backpackflow_store_sql import mask_url


class ShipsExamples:
    """A plugin shipping two examples: one reading its own folder, one invalid."""

    __name__ = "shipped_examples"

    def __init__(self, root: Path) -> None:
        self.where = root / "where"
        self.where.mkdir(parents=True)
        document = flow({"type": "folder", "id": "where"}, description="reads its folder")
        (self.where / "flow.json").write_text(json.dumps(document))
        self.broken = root / "broken"
        self.broken.mkdir()
        (self.broken / "flow.json").write_text(json.dumps({"version": "2.0.0", "nodes": []}))

    @hookimpl
    def backpackflow_register_examples(self, register: Any) -> None:
        register("where-am-i", self.where)
        register("broken", self.broken, description="fails validation")


def test_a_new_database_is_seeded_with_the_registered_examples(
    database_url: str, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    shipped = ShipsExamples(tmp_path / "package")
    registry = build_registry(
        plugins=[
            ServerTestNodes(),
            backpackflow_store_sql.plugin,
            backpackflow_conditions.plugin,
            shipped,
        ],
        autoload=False,
    )
    settings = Settings(
        **{**TEST_SETTINGS, "seed": True}, database_url=database_url, files_dir=tmp_path / "files"
    )
    with LiveServer(settings, registry) as server, server.client() as client:
        workflows = client.get("/api/workflows").json()
        assert [(w["name"], w["description"]) for w in workflows] == [
            ("where-am-i", "reads its folder")
        ]
        run = start_run(client, workflows[0]["id"])
        wait_for_status(client, run["id"], "succeeded")
        items = client.get(f"/api/runs/{run['id']}/trace", params={"limit": 100}).json()["items"]
        result = next(e for e in items if e["type"] == "exec_complete")["payload"]["exec_result"]
        assert result == str(shipped.where)  # a demo runs in its example's folder
    assert "not seeding" in caplog.text and str(shipped.broken / "flow.json") in caplog.text

    # seed_dir replaces the examples; a directory that does not exist seeds nothing, says so
    other = Settings(
        **{**TEST_SETTINGS, "seed": True},
        seed_dir=tmp_path / "missing",
        database_url=f"sqlite:///{tmp_path / 'b.db'}",
    )
    with LiveServer(other, registry) as server, server.client() as client:
        assert client.get("/api/workflows").json() == []
    assert f"seed directory {tmp_path / 'missing'} does not exist" in caplog.text


def test_db_current_json(database_url: str) -> None:
    def run(*argv: str) -> tuple[int, Any]:
        out = io.StringIO()
        with contextlib.redirect_stdout(out):
            status = cli_main(list(argv))
        return status, json.loads(out.getvalue())

    status, report = run("db", "current", "--database", database_url, "--json")
    assert status == 0
    head = report["head"]
    assert (report["revision"], report["up_to_date"]) == (None, False) and head
    assert cli_main(["db", "upgrade", "--database", database_url]) == 0
    status, report = run("db", "current", "--json", "--database", database_url)
    assert (report["revision"], report["head"], report["up_to_date"]) == (head, head, True)
    assert report["database"] == mask_url(database_url)  # a password would be masked


def test_the_agent_example_runs_through_the_service_as_it_runs_offline(
    database_url: str, tmp_path: Path
) -> None:
    from backpackflow import Backpack
    from backpackflow.events import EventStreamer
    from backpackflow.loader import FlowLoader, prepare_inputs
    from backpackflow_examples.plugin import HERE

    registry = build_registry()
    offline = FlowLoader(registry).load_flow(HERE / "agent" / "flow.json")
    events = EventStreamer()
    result = offline.execute_sync(Backpack(), inputs=prepare_inputs(offline, {}), events=events)
    assert result.ok
    local = events.to_json(run_id=result.run_id)
    settings = Settings(
        **{**TEST_SETTINGS, "seed": True}, database_url=database_url, files_dir=tmp_path / "files"
    )
    with LiveServer(settings, registry) as server, server.client() as client:
        (workflow,) = [w for w in client.get("/api/workflows").json() if w["name"] == "agent"]
        run = start_run(client, workflow["id"])
        wait_for_status(client, run["id"], "succeeded")
        items = client.get(f"/api/runs/{run['id']}/trace", params={"limit": 500}).json()["items"]
        steps = client.get(f"/api/runs/{run['id']}").json()["steps"]

    # each tool call is a step nested in the agent's, as in the offline run's events
    (agent,) = [s for s in steps if s["parent_step"] is None]
    tools = [s for s in steps if s["parent_step"] is not None]
    assert agent["node_type"] == "agent" and agent["status"] == "succeeded"
    assert [(s["node_type"], s["node_name"], s["parent_step"], s["status"]) for s in tools] == [
        ("tool", "read_file", agent["step"], "succeeded"),
        ("tool", "csv_summary", agent["step"], "succeeded"),
    ]
    assert all(s["node_id"] == "analyst" and s["latency_ms"] is not None for s in tools)
    assert all(s["tokens_input"] == 0 and s["cost"] == "0" for s in tools)

    def nesting(events: list[dict[str, Any]]) -> list[tuple[str, Any, Any]]:
        return [(e["type"], e["step"], e.get("parent_step")) for e in events if "tool" in e["type"]]

    assert nesting(items) == nesting(local)
    assert {e["parent_step"] for e in items if e["type"] == "tool_response"} == {agent["step"]}

    def loop(events: list[dict[str, Any]]) -> list[tuple[str, Any]]:
        """The turns: each model call's exact cost (a call the service's response cache
        answered costs nothing and names the cost it saved), then its tool calls."""
        turns = []
        for e in events:
            payload = e["payload"]
            if e["type"] == "llm_response":
                turns.append(("model", payload["cost"]))
            elif e["type"] == "cache_hit":
                turns.append(("model", payload["cost_saved"]))
            elif e["type"] in ("tool_call", "tool_response"):
                turns.append((e["type"], payload["call_id"]))
        return turns

    # the same turns, calls and exact costs as the offline run
    assert loop(items) == loop(local)
    assert [t for t, _ in loop(items)].count("model") == 3
