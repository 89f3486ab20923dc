"""Runs that pause for a person, on SQLite and PostgreSQL: ``paused`` in the store, the
question in the trace, ``POST /api/runs/{id}/resume`` with an answer checked against the
schema the run asked with; timeouts and cancellation."""

from __future__ import annotations

from typing import Any

import httpx
from server_kit import LiveServer, create_workflow, echo, flow, start_run, wait_for_status

from backpackflow_server.durable import ANSWERED_REASON


def ask(node_id: str, **params: Any) -> dict[str, Any]:
    return {"type": "ask", "id": node_id, "params": params}


def _trace(client: httpx.Client, run_id: str) -> list[dict[str, Any]]:
    return list(client.get(f"/api/runs/{run_id}/trace", params={"limit": 1000}).json()["items"])


def test_a_paused_run_resumes_with_an_answer_valid_against_its_schema(
    client: httpx.Client,
) -> None:
    graph = flow(ask("q", prompt="How many?"), echo("after"), outputs=["answer_q"])
    run = start_run(client, create_workflow(client, graph, "pause"))
    paused = wait_for_status(client, run["id"], "paused")
    assert paused["finished_at"] is None
    assert [(s["node_id"], s["status"]) for s in paused["steps"]] == [("q", "paused")]
    (question,) = [e for e in _trace(client, run["id"]) if e["type"] == "custom"]
    assert question["node_id"] == "q"
    assert question["payload"]["name"] == "interrupt"
    assert question["payload"]["prompt"] == "How many?"
    assert question["payload"]["schema"] == {"type": "integer", "minimum": 1}

    for answer, where in (("three", ["body", "answer"]), (0, ["body", "answer"])):
        refused = client.post(f"/api/runs/{run['id']}/resume", json={"answer": answer})
        assert refused.status_code == 422, refused.text
        (problem,) = refused.json()["detail"]
        assert problem["loc"] == where and problem["type"] == "run_answer"
    missing = client.post(f"/api/runs/{run['id']}/resume", json={})
    assert missing.status_code == 422
    assert "required" in missing.json()["detail"][0]["msg"]
    assert client.get(f"/api/runs/{run['id']}").json()["status"] == "paused"

    accepted = client.post(f"/api/runs/{run['id']}/resume", json={"answer": 3})
    assert accepted.status_code == 202, accepted.text
    done = wait_for_status(client, run["id"], "succeeded")
    assert done["outputs"] == {"answer_q": 3}
    steps = [(s["step"], s["node_id"], s["status"], s["error"]) for s in done["steps"]]
    assert steps == [
        (1, "q", "paused", ANSWERED_REASON),
        (2, "q", "succeeded", None),
        (3, "after", "succeeded", None),
    ]
    events = _trace(client, run["id"])
    assert [e["seq"] for e in events] == list(range(1, len(events) + 1))
    assert (done["event_count"], done["last_seq"]) == (len(events), len(events))

    again = client.post(f"/api/runs/{run['id']}/resume", json={"answer": 3})
    assert again.status_code == 409
    assert "not paused" in again.json()["detail"]


def test_resume_needs_a_runner_and_a_run(service: LiveServer, client: httpx.Client) -> None:
    assert client.post("/api/runs/0123456789abcdef/resume", json={"answer": 1}).status_code == 404
    run = start_run(client, create_workflow(client, flow(ask("q")), "pause-auth"))
    wait_for_status(client, run["id"], "paused")
    with service.client(token=service.token("viewer")) as viewer:
        denied = viewer.post(f"/api/runs/{run['id']}/resume", json={"answer": 1})
        assert denied.status_code == 403
    with service.client(token=service.token("runner")) as runner:
        assert runner.post(f"/api/runs/{run['id']}/resume", json={"answer": 1}).status_code == 202
    wait_for_status(client, run["id"], "succeeded")


def test_a_question_past_its_deadline_takes_the_timeout_edge(client: httpx.Client) -> None:
    graph = {
        "version": "2.0.0",
        "nodes": [ask("q", timeout=0.001), echo("after"), echo("late")],
        "edges": [
            {"from": "q", "to": "after"},
            {"from": "q", "to": "late", "condition": "timeout"},
        ],
    }
    run = start_run(client, create_workflow(client, graph, "pause-timeout"))
    wait_for_status(client, run["id"], "paused")
    accepted = client.post(f"/api/runs/{run['id']}/resume", json={})
    assert accepted.status_code == 202, accepted.text
    done = wait_for_status(client, run["id"], "succeeded")
    assert [s["node_id"] for s in done["steps"] if s["status"] == "succeeded"] == ["q", "late"]


def test_a_paused_run_can_be_canceled(client: httpx.Client) -> None:
    run = start_run(client, create_workflow(client, flow(ask("q", timeout=3600)), "pause-cancel"))
    wait_for_status(client, run["id"], "paused")
    early = client.post(f"/api/runs/{run['id']}/resume", json={})
    assert early.status_code == 422  # before the deadline an answer is needed
    canceled = client.post(f"/api/runs/{run['id']}/cancel")
    assert canceled.status_code == 202 and canceled.json()["status"] == "paused"
    ended = wait_for_status(client, run["id"], "canceled")
    assert ended["error_summary"] == "canceled through the API while paused"
    assert client.post(f"/api/runs/{run['id']}/resume", json={"answer": 1}).status_code == 409
