"""Budgets on the live service (SQLite and the real PostgreSQL): a hard monthly budget refuses
the third run, a soft one alerts once (an event and one webhook POST), a per-run hard budget
stops a running run with a guardrail event, the spend the API shows is the stored totals, and
only admins change budgets."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import httpx
from server_kit import (
    TEST_SETTINGS,
    LiveServer,
    create_workflow,
    flow,
    make_registry,
    start_run,
    unique,
    wait_for_status,
)

import backpackflow_sinks.webhook
from backpackflow_server import Settings
from loopback import RecordingServer

FINAL = ("succeeded", "failed", "canceled")


def stub(node_id: str, cost: str) -> dict[str, Any]:
    return {"type": "llm_stub", "id": node_id, "params": {"cost": cost}}


def budget(client: httpx.Client, **fields: Any) -> dict[str, Any]:
    response = client.post("/api/budgets", json={"name": unique("budget"), **fields})
    assert response.status_code == 201, response.text
    assert response.headers["location"] == f"/api/budgets/{response.json()['id']}"
    return dict(response.json())


def run_to_end(client: httpx.Client, workflow_id: str) -> dict[str, Any]:
    run = start_run(client, workflow_id)
    return wait_for_status(client, run["id"], *FINAL)


def trace(client: httpx.Client, run_id: str) -> list[dict[str, Any]]:
    return list(client.get(f"/api/runs/{run_id}/trace", params={"limit": 1000}).json()["items"])


def test_a_hard_monthly_budget_refuses_the_third_run(client):
    workflow = create_workflow(client, flow(stub("ask", "0.5")), unique("monthly"))
    limit = budget(client, amount="1.0", period="month", kind="hard", workflow_id=workflow)
    try:
        runs = [run_to_end(client, workflow) for _ in range(2)]
        assert [r["status"] for r in runs] == ["succeeded", "succeeded"]

        refused = client.post(f"/api/workflows/{workflow}/runs", json={})
        assert refused.status_code == 429, refused.text
        detail = refused.json()["detail"]
        assert f"hard budget {limit['name']!r}" in detail
        assert "is used up: 1.0 of 1.0 USD spent in" in detail
        assert int(refused.headers["retry-after"]) > 0
        listed = client.get("/api/runs", params={"workflow_id": workflow}).json()
        assert len(listed) == 2  # the refused run was never created

        status = client.get(f"/api/budgets/{limit['id']}").json()
        stored = sum((Decimal(r["total_cost"]) for r in runs), Decimal(0))
        assert Decimal(status["spend"]["spent"]) == stored == Decimal("1.0")
        assert status["spend"]["remaining"] == "0.0" and status["spend"]["reached"] is True
        assert status["spend"]["period_key"] == runs[0]["created_at"][:7]

        scraped = client.get("/metrics").text
        labels = f'budget="{limit["name"]}",kind="hard",period="month"'
        assert f"backpackflow_budget_spend_usd{{{labels}}} 1.0" in scraped
        assert f"backpackflow_budget_amount_usd{{{labels}}} 1.0" in scraped
        assert 'backpackflow_budget_actions_total{action="refused"}' in scraped

        # raising the budget lets runs start again
        raised = client.patch(f"/api/budgets/{limit['id']}", json={"amount": "1.5"})
        assert raised.status_code == 200 and raised.json()["amount"] == "1.5"
        assert run_to_end(client, workflow)["status"] == "succeeded"
    finally:
        assert client.delete(f"/api/budgets/{limit['id']}").status_code == 204


def test_a_per_run_hard_budget_stops_a_running_run_with_a_guardrail(client):
    graph = flow(stub("first", "0.6"), stub("second", "0.6"), {"type": "echo", "id": "after"})
    workflow = create_workflow(client, graph, unique("per-run"))
    limit = budget(client, amount="1.0", period="run", kind="hard", workflow_id=workflow)
    try:
        run = run_to_end(client, workflow)
        assert run["status"] == "canceled"
        assert f"stopped by hard budget {limit['name']!r}" in run["error_summary"]
        assert "1.2 USD spent in this run, over its 1.0" in run["error_summary"]
        events = trace(client, run["id"])
        (guardrail,) = [e for e in events if e["type"] == "guardrail"]
        assert guardrail["node_id"] == "second"
        payload = guardrail["payload"]
        assert payload["limit"] == "budget" and payload["budget"] == limit["name"]
        assert (payload["value"], payload["maximum"]) == ("1.2", "1.0")
        assert payload["budget_id"] == limit["id"] and payload["period"] == "run"
        assert not [e for e in events if e["node_id"] == "after"]  # never started
        assert Decimal(run["total_cost"]) == Decimal("1.2")  # what it spent is stored

        # a run within the budget is untouched
        cheap = create_workflow(client, flow(stub("one", "0.6")), unique("cheap"))
        other = budget(client, amount="1.0", period="run", kind="hard", workflow_id=cheap)
        assert run_to_end(client, cheap)["status"] == "succeeded"
        client.delete(f"/api/budgets/{other['id']}")
    finally:
        client.delete(f"/api/budgets/{limit['id']}")


def test_provider_budgets_count_that_provider_only_and_match_stored_totals(client):
    workflow = create_workflow(client, flow(stub("a", "0.25"), stub("b", "0.125")), unique("p"))
    other = create_workflow(client, flow(stub("c", "0.5")), unique("other"))
    mine = budget(
        client, amount="100", period="day", kind="soft", workflow_id=workflow, provider="stub"
    )
    nobody = budget(
        client, amount="100", period="day", kind="soft", workflow_id=workflow, provider="openai"
    )
    try:
        runs = [run_to_end(client, workflow) for _ in range(2)]
        run_to_end(client, other)  # another workflow: not counted
        status = client.get(f"/api/budgets/{mine['id']}").json()
        stored = sum((Decimal(r["total_cost"]) for r in runs), Decimal(0))
        assert Decimal(status["spend"]["spent"]) == stored == Decimal("0.75")
        assert Decimal(status["spend"]["remaining"]) == Decimal("99.25")
        assert client.get(f"/api/budgets/{nobody['id']}").json()["spend"]["spent"] == "0"
        listed = {b["id"]: b for b in client.get("/api/budgets").json()}
        assert listed[mine["id"]]["spend"] == status["spend"]
    finally:
        client.delete(f"/api/budgets/{mine['id']}")
        client.delete(f"/api/budgets/{nobody['id']}")


def test_a_soft_budget_alerts_once_by_event_and_webhook(database_url):
    with_webhook = make_registry(backpackflow_sinks.webhook)  # it posts budget alerts
    with RecordingServer() as hook:
        settings = Settings(
            **TEST_SETTINGS, database_url=database_url, budget_webhook_url=f"{hook.url}/alerts"
        )
        server = LiveServer(settings, with_webhook).start()
        with server.client() as client:
            workflow = create_workflow(client, flow(stub("ask", "0.5")), "soft")
            soft = budget(client, amount="0.7", period="month", kind="soft", workflow_id=workflow)
            runs = [run_to_end(client, workflow) for _ in range(3)]
            assert [r["status"] for r in runs] == ["succeeded"] * 3  # soft: nothing stops
            alerts = [
                (index, e["payload"])
                for index, run in enumerate(runs)
                for e in trace(client, run["id"])
                if e["type"] == "custom" and e["payload"].get("name") == "budget_alert"
            ]
            assert [index for index, _ in alerts] == [1]  # the run that reached it, once
            payload = alerts[0][1]
            assert payload["budget"] == soft["name"] and payload["kind"] == "soft"
            assert (payload["spend"], payload["amount"]) == ("1.0", "0.7")
            status = client.get(f"/api/budgets/{soft['id']}").json()
            assert status["spend"]["alerted"] is True and status["spend"]["spent"] == "1.5"
        server.stop()  # sends what the alert sink holds
        posted = [r for r in hook.requests if r[0] == "/alerts"]
        events = [
            e for _, _, body in posted for e in httpx.Response(200, content=body).json()["events"]
        ]
        assert len(events) == 1
        assert events[0]["type"] == "custom"
        assert events[0]["payload"]["budget_id"] == soft["id"]
        assert events[0]["run_id"] == runs[1]["id"]


def test_only_admins_change_budgets_and_bad_input_is_named(service, client):
    with service.client(token=service.token("viewer")) as viewer:
        assert viewer.get("/api/budgets").status_code == 200
        denied = viewer.post(
            "/api/budgets", json={"name": "x", "amount": "1", "period": "day", "kind": "soft"}
        )
        assert denied.status_code == 403 and "admin role" in denied.json()["detail"]
    with service.client(token=service.token("runner")) as runner:
        assert runner.delete("/api/budgets/anything").status_code == 403
    bad = client.post(
        "/api/budgets", json={"name": "x", "amount": "-1", "period": "week", "kind": "soft"}
    )
    assert bad.status_code == 422
    where = {tuple(p["loc"]) for p in bad.json()["detail"]}
    assert ("body", "amount") in where and ("body", "period") in where
    missing = client.post(
        "/api/budgets",
        json={"name": "x", "amount": "1", "period": "day", "kind": "soft", "workflow_id": "nope"},
    )
    assert missing.status_code == 404 and "workflow 'nope' not found" in missing.json()["detail"]
    assert client.get("/api/budgets/nope").status_code == 404
    taken = budget(client, amount="1", period="day", kind="soft")
    again = client.post(
        "/api/budgets", json={"name": taken["name"], "amount": "2", "period": "day", "kind": "soft"}
    )
    assert again.status_code == 409 and "exists; pick another name" in again.json()["detail"]
    client.delete(f"/api/budgets/{taken['id']}")
