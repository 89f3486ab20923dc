"""The triage flow as a config-only user runs it: its declared input ``ticket`` given on the
command line (``--input``) and in the service's ``input_vars`` reaches the nodes through the
Backpack; its declared outputs come back in ``run --json`` and in the run's result."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import pytest
from backpackflow import Backpack
from backpackflow.loader import FlowLoader

from helpers import FLOWS, cli

TRIAGE = FLOWS / "triage.json"
BILLING = "Hi, I was charged twice for my invoice, please refund the payment."


def test_triage_runs_from_the_command_line_with_its_input() -> None:
    result = cli("run", str(TRIAGE), "--input", f"ticket={BILLING}", "--sink", "none", "--json")
    assert result.returncode == 0, result.stderr
    summary = json.loads(result.stdout)
    assert summary["status"] == "succeeded"
    assert summary["outputs"]["ticket.route"]["branch"] == "billing"
    assert summary["outputs"]["ticket.stats"]["words"] == 12
    assert [s["node_id"] for s in summary["steps"]] == ["stats", "route", "billing_tags"]


def test_a_missing_or_ill_typed_input_is_an_error_naming_it() -> None:
    missing = cli("run", str(TRIAGE), "--sink", "none")
    assert missing.returncode == 1
    assert "inputs.ticket: required input missing (The text of the support ticket.)" in (
        missing.stderr
    )
    typed = cli("run", str(TRIAGE), "--input-json", "ticket=42", "--sink", "none")
    assert typed.returncode == 1
    assert "inputs.ticket: 42 is not of type 'string'" in typed.stderr
    assert "Traceback" not in typed.stderr


def test_the_input_is_an_ordinary_commit(loader: FlowLoader) -> None:
    flow = loader.load_flow(TRIAGE)
    result = flow.execute_sync(Backpack(), inputs={"ticket": BILLING})
    first = result.backpack.get_history()[0]
    assert (first.key, first.node_name, first.op) == ("ticket", "inputs", "pack")
    packs = [e for e in result.events.get_events(run_id=result.run_id) if e.type == "backpack_pack"]
    assert packs[0].payload.key == "ticket" and packs[0].node_id is None
    assert result.outputs["ticket.route"]["branch"] == "billing"


def test_triage_runs_through_the_service_with_input_vars(tmp_path: Path) -> None:
    pytest.importorskip("backpackflow_server")
    from backpackflow.plugins import build_registry
    from backpackflow_server import Settings, create_app
    from backpackflow_server.credentials import hash_token, new_token
    from starlette.testclient import TestClient

    settings = Settings(database_url=f"sqlite:///{tmp_path / 'service.db'}", seed=False)
    app = create_app(settings, build_registry())
    graph = json.loads(TRIAGE.read_text(encoding="utf-8"))
    with TestClient(app, base_url="http://127.0.0.1") as client:
        token = new_token()
        app.state.service.store.create_token("triage-test", "admin", hash_token(token), hint="t")
        client.headers["Authorization"] = f"Bearer {token}"
        created = client.post("/api/workflows", json={"name": "triage", "graph_json": graph})
        assert created.status_code == 201, created.text
        runs = f"/api/workflows/{created.json()['id']}/runs"
        refused = client.post(runs, json={"input_vars": {"ticket": 42}})
        assert refused.status_code == 422, refused.text
        [problem] = refused.json()["detail"]
        assert problem["path"] == "$.input_vars.ticket"
        assert problem["msg"] == "42 is not of type 'string'"
        started = client.post(runs, json={"input_vars": {"ticket": BILLING}})
        assert started.status_code == 202, started.text
        run = _wait(client, started.json()["id"])
        assert run["status"] == "succeeded", run
        assert [s["node_id"] for s in run["steps"]] == ["stats", "route", "billing_tags"]
        assert run["outputs"]["ticket.route"]["branch"] == "billing"


def _wait(client: Any, run_id: str) -> dict[str, Any]:
    deadline = time.monotonic() + 30
    while True:
        run: dict[str, Any] = client.get(f"/api/runs/{run_id}").json()
        if run["status"] in ("succeeded", "failed", "canceled"):
            return run
        assert time.monotonic() < deadline, run
        time.sleep(0.02)
