"""Workflows and provider bindings: CRUD, versions, delete behaviour, errors naming the id."""

from __future__ import annotations

import json
from datetime import datetime

import pytest

from backpackflow_store_sql import (
    InvalidData,
    NotFound,
    SqlRunStore,
    StoreError,
    VersionConflict,
)

GRAPH = {
    "name": "research",
    "nodes": [{"id": "plan", "type": "llm", "params": {"temperature": 0.2}}],
    "edges": [{"from": "plan", "to": "summarize", "action": "default"}],
    "meta": {"unicode": "naïve ✓ 日本", "nested": [1, 2.5, None, True, {"k": []}]},
}


def test_create_get_list(store: SqlRunStore) -> None:
    created = store.create_workflow("research", GRAPH, description="finds things")
    assert created["version"] == 1
    assert created["graph_json"] == GRAPH
    assert created["created_at"] == created["updated_at"]
    assert datetime.fromisoformat(created["created_at"]).utcoffset().total_seconds() == 0
    json.dumps(created)  # JSON-ready as returned
    assert store.get_workflow(created["id"]) == created
    second = store.create_workflow("other", {})
    assert [w["id"] for w in store.list_workflows()] == [second["id"], created["id"]]


def test_update_bumps_version_and_keeps_unnamed_fields(store: SqlRunStore) -> None:
    workflow = store.create_workflow("research", GRAPH, description="v1")
    updated = store.update_workflow(workflow["id"], graph_json={"nodes": ["x"]})
    assert updated["version"] == 2
    assert updated["graph_json"] == {"nodes": ["x"]}
    assert updated["name"] == "research" and updated["description"] == "v1"
    assert updated["updated_at"] >= workflow["updated_at"]
    renamed = store.update_workflow(workflow["id"], name="renamed", description="")
    assert (renamed["name"], renamed["description"], renamed["version"]) == ("renamed", "", 3)
    assert store.update_workflow(workflow["id"]) == renamed  # nothing to change: no new version
    assert store.get_workflow(workflow["id"]) == renamed


def test_update_with_expected_version(store: SqlRunStore) -> None:
    workflow = store.create_workflow("research", GRAPH)
    store.update_workflow(workflow["id"], name="a", expected_version=1)
    with pytest.raises(VersionConflict, match=r"at version 2, not 1"):
        store.update_workflow(workflow["id"], name="b", expected_version=1)
    assert store.get_workflow(workflow["id"])["name"] == "a"


def test_unknown_workflow_ids_are_named(store: SqlRunStore) -> None:
    for call in (
        lambda: store.get_workflow("nope"),
        lambda: store.update_workflow("nope", name="x"),
        lambda: store.delete_workflow("nope"),
        lambda: store.create_run("nope", {}),
        lambda: store.set_provider_binding("nope", provider="p", model="m"),
        lambda: store.list_provider_bindings("nope"),
    ):
        with pytest.raises(NotFound, match="workflow 'nope' not found") as caught:
            call()
        assert isinstance(caught.value, KeyError) and isinstance(caught.value, StoreError)
        assert caught.value.id == "nope"


@pytest.mark.parametrize(
    ("name", "graph", "message"),
    [
        ("", {}, "non-empty name"),
        ("ok", [], "graph_json must be a JSON object"),
        ("ok", {"x": float("nan")}, "graph_json is not JSON data"),
        ("ok", {"x": object()}, "graph_json is not JSON data"),
    ],
)
def test_invalid_workflows_are_refused(store: SqlRunStore, name, graph, message) -> None:
    with pytest.raises(InvalidData, match=message):
        store.create_workflow(name, graph)
    assert store.list_workflows() == []


def test_deleting_a_workflow_keeps_its_runs_and_drops_its_bindings(store: SqlRunStore) -> None:
    workflow = store.create_workflow("research", GRAPH)
    run = store.create_run(workflow["id"], {"q": 1})
    store.set_provider_binding(workflow["id"], provider="openai", model="gpt-4o-mini")
    store.delete_workflow(workflow["id"])
    with pytest.raises(NotFound):
        store.get_workflow(workflow["id"])
    kept = store.get_run(run["id"])
    assert kept["workflow_id"] is None
    assert (kept["workflow_name"], kept["workflow_version"]) == ("research", 1)
    assert store.list_runs() == [{**run, "workflow_id": None}]


def test_provider_bindings(store: SqlRunStore) -> None:
    workflow = store.create_workflow("research", GRAPH)
    default = store.set_provider_binding(workflow["id"], provider="openai", model="gpt-4o-mini")
    node = store.set_provider_binding(
        workflow["id"], node_id="plan", provider="anthropic", model="claude", temperature=0.3
    )
    assert default["node_id"] is None and default["temperature"] is None
    assert store.list_provider_bindings(workflow["id"]) == [default, node]
    replaced = store.set_provider_binding(workflow["id"], provider="local", model="llama")
    assert store.list_provider_bindings(workflow["id"]) == [replaced, node]
    store.delete_provider_binding(node["id"])
    assert store.list_provider_bindings(workflow["id"]) == [replaced]
    with pytest.raises(NotFound, match=f"provider binding '{node['id']}' not found"):
        store.delete_provider_binding(node["id"])
    with pytest.raises(InvalidData, match="non-empty model"):
        store.set_provider_binding(workflow["id"], provider="p", model="")
