"""The REST API over a real socket, on SQLite and PostgreSQL: workflows, runs, traces, cancel,
bounded concurrency, validation errors with JSON paths, 404s, health and version."""

from __future__ import annotations

import re
from typing import Any

import httpx
import pytest
from server_kit import (
    GATES,
    LiveServer,
    create_workflow,
    echo,
    flow,
    gate,
    start_run,
    unique,
    wait_for_status,
)

# ------------------------------------------------------------------------------ workflows


def test_workflow_crud(client: httpx.Client) -> None:
    graph = flow(echo("a"), echo("b"))
    created = client.post(
        "/api/workflows", json={"name": "crud", "description": "d", "graph_json": graph}
    )
    assert created.status_code == 201
    workflow = created.json()
    assert (workflow["name"], workflow["description"], workflow["version"]) == ("crud", "d", 1)
    assert workflow["graph_json"] == graph and workflow["warnings"] == []
    assert created.headers["location"] == f"/api/workflows/{workflow['id']}"
    assert created.headers["etag"] == '"1"'

    fetched = client.get(f"/api/workflows/{workflow['id']}")
    assert fetched.status_code == 200 and fetched.headers["etag"] == '"1"'
    assert {k: v for k, v in workflow.items() if k != "warnings"} == fetched.json()
    assert workflow["id"] in [w["id"] for w in client.get("/api/workflows").json()]

    renamed = client.put(f"/api/workflows/{workflow['id']}", json={"name": "renamed"})
    assert renamed.status_code == 200
    assert (renamed.json()["name"], renamed.json()["version"]) == ("renamed", 2)
    assert renamed.json()["graph_json"] == graph and renamed.headers["etag"] == '"2"'
    new_graph = flow(echo("only"))
    regraphed = client.put(
        f"/api/workflows/{workflow['id']}",
        json={"graph_json": new_graph},
        headers={"If-Match": '"2"'},
    )
    assert regraphed.status_code == 200 and regraphed.json()["graph_json"] == new_graph
    stale = client.put(
        f"/api/workflows/{workflow['id']}", json={"name": "late"}, headers={"If-Match": '"2"'}
    )
    assert stale.status_code == 412 and "version 3, not 2" in stale.json()["detail"]

    assert client.delete(f"/api/workflows/{workflow['id']}").status_code == 204
    assert client.get(f"/api/workflows/{workflow['id']}").status_code == 404
    assert client.delete(f"/api/workflows/{workflow['id']}").status_code == 404


def test_workflow_validation_errors_have_json_paths(client: httpx.Client) -> None:
    graph = {
        "version": "2.0.0",
        "nodes": [echo("a"), {"type": "echo", "id": "b", "params": {"log_lines": "many"}}],
    }
    response = client.post("/api/workflows", json={"name": "bad", "graph_json": graph})
    assert response.status_code == 422
    [problem] = response.json()["detail"]
    assert problem["path"] == "$.nodes[1].params.log_lines"
    assert problem["loc"] == ["body", "graph_json", "nodes", 1, "params", "log_lines"]
    assert "'many' is not of type 'integer'" in problem["msg"]

    graph_problems = {
        "version": "2.0.0",
        "nodes": [echo("a"), echo("a")],
        "edges": [{"from": "a", "to": "ghost"}],
    }
    response = client.post("/api/workflows", json={"name": "bad", "graph_json": graph_problems})
    assert response.status_code == 422
    paths = sorted(p["path"] for p in response.json()["detail"])
    assert paths == ["$.edges[0].to", "$.nodes[1].id"]

    unknown_type = {"version": "2.0.0", "nodes": [{"type": "teleport", "id": "x"}]}
    response = client.post("/api/workflows", json={"name": "bad", "graph_json": unknown_type})
    assert response.status_code == 422
    assert response.json()["detail"][0]["path"] == "$.nodes[0].type"

    body_problems = client.post("/api/workflows", json={"name": " ", "graph_json": [], "x": 1})
    assert body_problems.status_code == 422
    by_path = {p["path"]: p for p in body_problems.json()["detail"]}
    assert set(by_path) == {"$.name", "$.graph_json", "$.x"}
    assert by_path["$.graph_json"]["loc"] == ["body", "graph_json"]

    workflow_id = create_workflow(client, flow(echo("a")))
    response = client.put(
        f"/api/workflows/{workflow_id}",
        json={"graph_json": {"version": "2.0.0", "nodes": [], "edges": []}},
    )
    assert response.status_code == 422
    assert response.json()["detail"][0]["path"] == "$.nodes"
    assert client.get(f"/api/workflows/{workflow_id}").json()["version"] == 1


def test_workflow_warnings_are_returned(client: httpx.Client) -> None:
    graph = {"version": "2.0.0", "nodes": [echo("a"), echo("island")], "edges": []}
    response = client.post("/api/workflows", json={"name": "warned", "graph_json": graph})
    assert response.status_code == 201
    [warning] = response.json()["warnings"]
    assert warning.startswith("$.nodes[1]: node 'island' is unreachable")


def test_unknown_and_malformed_ids(client: httpx.Client) -> None:
    for path in (
        "/api/workflows/nope",
        "/api/runs/nope",
        "/api/runs/nope/trace",
        "/api/runs/nope/stream",
    ):
        response = client.get(path)
        assert response.status_code == 404, path
        assert "'nope' not found" in response.json()["detail"]
    assert client.post("/api/runs/nope/cancel").status_code == 404
    assert client.post("/api/workflows/nope/runs", json={}).status_code == 404
    malformed = client.get("/api/runs/bad id!")
    assert malformed.status_code == 422
    assert malformed.json()["detail"][0]["path"] == "path.run_id"


# ------------------------------------------------------------------------------ runs


def test_run_succeeds_with_steps_totals_and_trace(client: httpx.Client) -> None:
    graph = flow(
        echo("first", log_lines=2),
        {"type": "llm_stub", "id": "ask", "params": {"cost": "0.0005"}},
        echo("last"),
    )
    workflow_id = create_workflow(client, graph, name="happy")
    response = client.post(
        f"/api/workflows/{workflow_id}/runs",
        json={"input_vars": {"topic": "decimals"}, "triggered_by": "pytest"},
    )
    assert response.status_code == 202
    run = response.json()
    assert run["status"] in ("queued", "running", "succeeded")
    assert response.headers["location"] == f"/api/runs/{run['id']}"
    assert (run["input_vars"], run["triggered_by"]) == ({"topic": "decimals"}, "pytest")

    done = wait_for_status(client, run["id"], "succeeded")
    assert done["error_summary"] is None and done["finished_at"] is not None
    assert [(s["node_id"], s["status"]) for s in done["steps"]] == [
        ("first", "succeeded"),
        ("ask", "succeeded"),
        ("last", "succeeded"),
    ]
    assert (done["total_tokens_input"], done["total_tokens_output"]) == (12, 5)
    assert done["total_cost"] == "0.0005" and done["steps"][1]["cost"] == "0.0005"
    assert done["event_count"] == done["last_seq"] > 10

    trace = client.get(f"/api/runs/{run['id']}/trace", params={"limit": 1000}).json()
    seqs = [e["seq"] for e in trace["items"]]
    assert seqs == list(range(1, done["event_count"] + 1))
    assert trace["items"][0]["type"] == "run_start" and trace["items"][-1]["type"] == "run_end"
    assert trace["items"][-1]["payload"]["status"] == "succeeded"
    assert not trace["has_more"] and trace["next_after"] == done["last_seq"]
    logs = [e["payload"]["message"] for e in trace["items"] if e["type"] == "log"]
    assert logs == ["first line 0", "first line 1"]

    listed = client.get("/api/runs", params={"workflow_id": workflow_id}).json()
    assert [r["id"] for r in listed] == [run["id"]]
    assert "steps" not in listed[0]
    assert client.get("/api/runs", params={"status": "succeeded", "limit": 500}).status_code == 200


def test_trace_pagination(client: httpx.Client) -> None:
    workflow_id = create_workflow(client, flow(echo("talk", log_lines=25)))
    run = start_run(client, workflow_id)
    done = wait_for_status(client, run["id"], "succeeded")
    seen: list[int] = []
    after = 0
    pages = 0
    while True:
        page = client.get(f"/api/runs/{run['id']}/trace", params={"after": after, "limit": 7})
        assert page.status_code == 200
        body = page.json()
        seen += [e["seq"] for e in body["items"]]
        after = body["next_after"]
        pages += 1
        if not body["has_more"]:
            break
    assert seen == list(range(1, done["last_seq"] + 1))
    assert pages == -(-done["last_seq"] // 7) + (done["last_seq"] % 7 == 0)
    beyond = client.get(f"/api/runs/{run['id']}/trace", params={"after": 10_000}).json()
    assert beyond["items"] == [] and beyond["next_after"] == 10_000
    # of some types only (the run view reads a finished run's fallbacks and cache hits so)
    ends = client.get(
        f"/api/runs/{run['id']}/trace", params=[("type", "node_start"), ("type", "run_end")]
    ).json()["items"]
    assert [e["type"] for e in ends] == ["node_start", "run_end"]
    assert ends[-1]["seq"] == done["last_seq"]
    for params in ({"limit": 0}, {"limit": 1001}, {"after": -1}, {"type": "nonsense"}):
        response = client.get(f"/api/runs/{run['id']}/trace", params=params)
        assert response.status_code == 422
        assert response.json()["detail"][0]["path"].startswith(f"query.{next(iter(params))}")


def test_failed_run_keeps_its_events(client: httpx.Client) -> None:
    graph = flow(echo("before", log_lines=3), {"type": "fail", "id": "boom", "params": {}})
    run = start_run(client, create_workflow(client, graph))
    failed = wait_for_status(client, run["id"], "failed")
    assert re.fullmatch(r"RuntimeError: boom \(error id [0-9a-f]{16}\)", failed["error_summary"])
    assert [(s["node_id"], s["status"]) for s in failed["steps"]] == [
        ("before", "succeeded"),
        ("boom", "failed"),
    ]
    assert failed["steps"][1]["error"] == "RuntimeError: boom"
    items = client.get(f"/api/runs/{run['id']}/trace", params={"limit": 1000}).json()["items"]
    assert [e["seq"] for e in items] == list(range(1, failed["event_count"] + 1))
    assert {"error", "run_end"} <= {e["type"] for e in items}
    assert items[-1]["payload"]["status"] == "failed"


def test_run_inputs_are_checked_against_the_declared_inputs(client: httpx.Client) -> None:
    graph = flow(
        echo("a"),
        inputs={
            "topic": {"required": True, "description": "what to research"},
            "depth": {"default": 2},
        },
    )
    workflow_id = create_workflow(client, graph)
    missing = client.post(f"/api/workflows/{workflow_id}/runs", json={"input_vars": {"x": 1}})
    assert missing.status_code == 422
    problems = {p["path"]: p for p in missing.json()["detail"]}
    assert set(problems) == {"$.input_vars.x", "$.input_vars.topic"}
    assert problems["$.input_vars.topic"]["loc"] == ["body", "input_vars", "topic"]
    assert "required input missing (what to research)" in problems["$.input_vars.topic"]["msg"]
    assert "unknown input" in problems["$.input_vars.x"]["msg"]
    run = start_run(client, workflow_id, topic="sql")
    assert run["input_vars"] == {"topic": "sql", "depth": 2}
    run_start = client.get(f"/api/runs/{run['id']}/trace", params={"limit": 1})
    wait_for_status(client, run["id"], "succeeded")
    assert run_start.status_code == 200
    first = client.get(f"/api/runs/{run['id']}/trace", params={"limit": 1}).json()["items"][0]
    assert first["payload"]["inputs"] == {"topic": "sql", "depth": 2}

    not_an_object = client.post(f"/api/workflows/{workflow_id}/runs", json={"input_vars": [1]})
    assert not_an_object.status_code == 422
    assert not_an_object.json()["detail"][0]["path"] == "$.input_vars"


def test_a_flow_that_cannot_be_built_is_refused(client: httpx.Client) -> None:
    graph = flow(echo("a"), dependencies={"missing": {"type": "no-such-factory"}})
    response = client.post("/api/workflows", json={"name": "x", "graph_json": graph})
    assert response.status_code == 422
    [problem] = response.json()["detail"]
    assert problem["path"] == "$.dependencies.missing.type"
    assert "unknown dependency factory 'no-such-factory'" in problem["msg"]


def test_a_workflow_needing_an_unset_variable_is_saved_but_cannot_run(
    client: httpx.Client, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("BPF_SERVER_TEST_SECRET", raising=False)
    graph = flow(echo("a", message="${BPF_SERVER_TEST_SECRET}"))
    workflow_id = create_workflow(client, graph)
    refused = client.post(f"/api/workflows/{workflow_id}/runs", json={})
    assert refused.status_code == 422
    [problem] = refused.json()["detail"]
    assert problem["loc"] == ["workflow", "graph_json", "nodes", 0, "params", "message"]
    assert "BPF_SERVER_TEST_SECRET is not set" in problem["msg"]
    monkeypatch.setenv("BPF_SERVER_TEST_SECRET", "s3cret")
    run = start_run(client, workflow_id)
    wait_for_status(client, run["id"], "succeeded")


# ------------------------------------------------------------------------------ cancel


def test_cancel_a_running_run(client: httpx.Client) -> None:
    name = unique("cancel-running")
    workflow_id = create_workflow(client, flow(echo("a"), gate("wait", name), echo("never")))
    run = start_run(client, workflow_id)
    GATES.wait_until_waiting(name)
    response = client.post(f"/api/runs/{run['id']}/cancel")
    assert response.status_code == 202
    assert response.json()["status"] == "running"
    canceled = wait_for_status(client, run["id"], "canceled")
    assert canceled["error_summary"] == "canceled through the API"
    assert "never" not in [s["node_id"] for s in canceled["steps"]]
    items = client.get(f"/api/runs/{run['id']}/trace", params={"limit": 1000}).json()["items"]
    assert [e["seq"] for e in items] == list(range(1, canceled["event_count"] + 1))
    assert items[-1]["type"] == "run_end" and items[-1]["payload"]["status"] == "canceled"
    again = client.post(f"/api/runs/{run['id']}/cancel")
    assert again.status_code == 409 and "already finished (canceled)" in again.json()["detail"]


def test_bounded_concurrency_and_cancel_a_queued_run(serve: Any, database_url: str) -> None:
    server: LiveServer = serve(database_url=database_url, max_concurrent_runs=2)
    with server.client() as client:
        names = [unique("slot") for _ in range(4)]
        workflow_ids = [create_workflow(client, flow(gate("g", n))) for n in names]
        runs = [start_run(client, w) for w in workflow_ids]
        for name in names[:2]:
            GATES.wait_until_waiting(name)
        for run in runs[:2]:
            wait_for_status(client, run["id"], "running")
        for run in runs[2:]:
            assert client.get(f"/api/runs/{run['id']}").json()["status"] == "queued"
        health = client.get("/health").json()
        assert (health["active_runs"], health["queued_runs"]) == (2, 2)

        canceled = client.post(f"/api/runs/{runs[3]['id']}/cancel")
        assert canceled.status_code == 202 and canceled.json()["status"] == "queued"
        done = wait_for_status(client, runs[3]["id"], "canceled")
        assert done["started_at"] is None and done["event_count"] == 0

        GATES.open(names[0])
        wait_for_status(client, runs[0]["id"], "succeeded")
        GATES.wait_until_waiting(names[2])  # the third run got the freed slot
        assert client.get(f"/api/runs/{runs[2]['id']}").json()["status"] == "running"
        assert client.get(f"/api/runs/{runs[1]['id']}").json()["status"] == "running"
        GATES.open(names[1])
        GATES.open(names[2])
        for run in runs[1:3]:
            wait_for_status(client, run["id"], "succeeded")


def test_queue_limit_answers_503(serve: Any, database_url: str) -> None:
    server: LiveServer = serve(database_url=database_url, max_concurrent_runs=1, max_queued_runs=1)
    with server.client() as client:
        name = unique("full")
        workflow_id = create_workflow(client, flow(gate("g", name)))
        first = start_run(client, workflow_id)
        GATES.wait_until_waiting(name)
        second = start_run(client, workflow_id)
        refused = client.post(f"/api/workflows/{workflow_id}/runs", json={})
        assert refused.status_code == 503 and refused.headers["retry-after"] == "5"
        assert "already waiting" in refused.json()["detail"]
        GATES.open(name)
        for run in (first, second):
            wait_for_status(client, run["id"], "succeeded")


# ------------------------------------------------------------------------------ service


def test_health_version_schema_docs_and_page(client: httpx.Client, service: LiveServer) -> None:
    health = client.get("/health")
    assert health.status_code == 200
    body = health.json()
    assert body["status"] == "ok" and body["database"] == "ok"
    assert body["dialect"] in ("sqlite", "postgresql")
    version = client.get("/version").json()
    assert version["name"] == "backpackflow" and version["version"]
    assert version["schema_revision"] == "0011"
    assert version["git_sha"] is None or len(version["git_sha"]) >= 7

    schema = client.get("/api/schema/flow").json()
    assert "echo" in schema["$defs"]["node"]["properties"]["type"]["enum"]
    openapi = client.get("/openapi.json").json()
    paths = set(openapi["paths"])
    assert {
        "/api/workflows",
        "/api/workflows/{workflow_id}",
        "/api/workflows/{workflow_id}/runs",
        "/api/runs/{run_id}",
        "/api/runs/{run_id}/trace",
        "/api/runs/{run_id}/stream",
        "/api/runs/{run_id}/cancel",
        "/health",
        "/version",
    } <= paths
    stream = openapi["paths"]["/api/runs/{run_id}/stream"]["get"]
    assert "text/event-stream" in stream["responses"]["200"]["content"]
    assert client.get("/docs").status_code == 200
    page = client.get("/")
    assert page.status_code == 200 and '<div id="root">' in page.text


def test_the_web_ui_pages_fall_back_to_the_app_and_its_assets_are_served(
    client: httpx.Client,
) -> None:
    """Every page address of the app answers with its index.html (a reload or a shared link
    opens the right view), with a CSP that allows only this origin; an unknown API address
    stays a JSON 404; asset names cannot leave the assets folder."""
    home = client.get("/")
    for path in ("/workflows/abc", "/runs/abc", "/runs/diff", "/workflows/a/b"):
        page = client.get(path)
        assert page.status_code == 200 and page.text == home.text, path
        assert page.headers["content-type"].startswith("text/html")
        csp = page.headers["content-security-policy"]
        assert "script-src 'self';" in csp and "frame-ancestors 'none'" in csp
        assert page.headers["x-frame-options"] == "DENY"
    assert "http" not in home.text.lower().replace("http-equiv", "")  # no CDN, no outside asset
    scripts = re.findall(r'src="(/assets/[^"]+\.js)"', home.text)
    styles = re.findall(r'href="(/assets/[^"]+\.css)"', home.text)
    assert scripts and styles
    script = client.get(scripts[0])
    assert script.status_code == 200 and script.headers["content-type"].startswith(
        "text/javascript"
    )
    assert "immutable" in script.headers["cache-control"]
    assert client.get(styles[0]).headers["content-type"].startswith("text/css")
    for missing in ("/api/nope", "/assets/nope.js", "/assets/..%2Fapp.py", "/assets/.x.js"):
        gone = client.get(missing)
        assert gone.status_code == 404 and gone.json() == {"detail": "Not Found"}, missing
    assert client.post("/api/nope").status_code == 404


def test_unavailable_database_is_reported(serve: Any, tmp_path: Any) -> None:
    server: LiveServer = serve(database_url=f"sqlite:///{tmp_path / 'gone.db'}")
    with server.client() as client:
        assert client.get("/health").json()["status"] == "ok"
        store = server.app.state.service.store
        store.engine.dispose()
        (tmp_path / "gone.db").unlink()
        (tmp_path / "gone.db").mkdir()  # now a directory: SQLite cannot open it
        health = client.get("/health")
        assert health.status_code == 503
        assert health.json()["status"] == "unavailable"
        (tmp_path / "gone.db").rmdir()


@pytest.mark.parametrize("body", [None, {}])
def test_run_body_is_optional(client: httpx.Client, body: dict[str, Any] | None) -> None:
    workflow_id = create_workflow(client, flow(echo("a")))
    response = client.post(f"/api/workflows/{workflow_id}/runs", json=body)
    assert response.status_code == 202, response.text
    assert response.json()["triggered_by"] == "api"
    wait_for_status(client, response.json()["id"], "succeeded")
