"""The flow editor's API (issue 18): the installed node types with their params JSON Schema and
data contract, the demo templates, and validation of a flow document that stores nothing."""

from __future__ import annotations

from pathlib import Path

import httpx
from jsonschema import Draft202012Validator
from server_kit import TEST_SETTINGS, LiveServer, echo, flow

from backpackflow.config import KeepUnset
from backpackflow.loader import FlowLoader
from backpackflow.plugins import get_registry
from backpackflow_server import Settings


def test_node_types_carry_params_schemas_and_contracts(
    client: httpx.Client, service: LiveServer
) -> None:
    """A plugin's node types appear as registered, with nothing declared for the UI."""
    answer = client.get("/api/node-types")
    assert answer.status_code == 200
    types = {item["name"]: item for item in answer.json()}
    assert {"echo", "gate", "fail", "llm_stub"} <= set(types)
    echo_type = types["echo"]
    assert echo_type["plugin"] == "server_test_nodes"
    schema = Draft202012Validator(echo_type["params_schema"])
    assert schema.is_valid({"message": "hi", "log_lines": 2})
    assert not schema.is_valid({"message": 3})
    viewer = service.token("viewer")
    with service.client(token=viewer) as read_only:
        assert read_only.get("/api/node-types").json() == answer.json()
    with service.client(token=None) as anonymous:
        assert anonymous.get("/api/node-types").status_code == 401


def test_validate_names_each_problem_by_its_path_and_stores_nothing(
    client: httpx.Client,
) -> None:
    before = client.get("/api/workflows").json()
    good = client.post("/api/flows/validate", json={"graph_json": flow(echo("a"), echo("b"))})
    assert good.status_code == 200
    assert good.json() == {"warnings": []}

    broken = flow(echo("a"), echo("b"))
    broken["nodes"][1]["params"]["log_lines"] = "many"
    answer = client.post("/api/flows/validate", json={"graph_json": broken})
    assert answer.status_code == 422
    problems = answer.json()["detail"]
    assert [p["path"] for p in problems] == ["$.nodes[1].params.log_lines"], problems
    assert problems[0]["loc"] == ["body", "graph_json", "nodes", 1, "params", "log_lines"]
    dangling = flow(echo("a"))
    dangling["edges"] = [{"from": "a", "to": "nowhere"}]
    problems = client.post("/api/flows/validate", json={"graph_json": dangling}).json()["detail"]
    assert problems and all(p["path"].startswith("$.edges[0]") for p in problems), problems
    assert client.get("/api/workflows").json() == before  # nothing stored

    not_a_flow = client.post("/api/flows/validate", json={"graph": {}})
    assert not_a_flow.status_code == 422


def test_templates_are_the_installed_examples(tmp_path: Path) -> None:
    registry = get_registry()
    settings = Settings(database_url=f"sqlite:///{tmp_path / 'service.db'}", **TEST_SETTINGS)
    with LiveServer(settings, registry) as server, server.client() as client:
        templates = client.get("/api/templates").json()
    names = [template["name"] for template in templates]
    assert names and len(names) == len(set(names))
    loader = FlowLoader(registry)
    for template in templates:
        assert not loader.validate(template["graph_json"], environ=KeepUnset()).errors, template[
            "name"
        ]


def test_a_workflow_keeps_the_versions_its_runs_ran(client: httpx.Client) -> None:
    """The run view draws the graph a run ran: each version an update replaced is kept."""
    first = flow(echo("a"), echo("b"))
    created = client.post("/api/workflows", json={"name": "versions", "graph_json": first})
    assert created.status_code == 201, created.text
    workflow_id = created.json()["id"]
    second = flow(echo("a"), echo("b"), echo("c"))
    saved = client.put(f"/api/workflows/{workflow_id}", json={"graph_json": second})
    assert saved.status_code == 200 and saved.json()["version"] == 2

    old = client.get(f"/api/workflows/{workflow_id}/versions/1")
    assert old.status_code == 200
    assert old.json()["version"] == 1
    assert [n["id"] for n in old.json()["graph_json"]["nodes"]] == ["a", "b"]
    current = client.get(f"/api/workflows/{workflow_id}/versions/2").json()
    assert [n["id"] for n in current["graph_json"]["nodes"]] == ["a", "b", "c"]
    missing = client.get(f"/api/workflows/{workflow_id}/versions/3")
    assert missing.status_code == 404 and "version" in missing.json()["detail"]
    assert client.get(f"/api/workflows/{workflow_id}/versions/0").status_code == 422
    assert client.delete(f"/api/workflows/{workflow_id}").status_code == 204
    assert client.get(f"/api/workflows/{workflow_id}/versions/1").status_code == 404
