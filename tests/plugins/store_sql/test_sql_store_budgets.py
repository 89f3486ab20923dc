"""Budgets in the store: rows, the alert claim, each run's cost per provider, and exact period
spend (SQLite and PostgreSQL); the 0003 migration fills run_costs for runs stored before it."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from sqlalchemy import text

from backpackflow_store_sql import InvalidData, NotFound, SqlRunStore

D = Decimal


def llm(trace, provider: str, cost: str, tokens_in: int = 10, tokens_out: int = 2) -> dict:
    return trace.event(
        "llm_response",
        {
            "provider": provider,
            "model": "m",
            "usage": {"input_tokens": tokens_in, "output_tokens": tokens_out},
            "cost": cost,
        },
        step=1,
    )


def test_budget_rows_are_checked_changed_and_deleted(store: SqlRunStore) -> None:
    workflow = store.create_workflow("w", {"nodes": []})
    budget = store.create_budget(
        "team", amount="25.50", period="month", kind="hard", workflow_id=workflow["id"]
    )
    assert budget["amount"] == "25.50" and budget["provider"] is None
    assert store.get_budget(budget["id"]) == budget
    assert store.list_budgets() == [budget]
    with pytest.raises(InvalidData, match="a budget named 'team' exists"):
        store.create_budget("team", amount="1", period="day", kind="soft")
    with pytest.raises(InvalidData, match="period 'week' is not one of run, day, month"):
        store.create_budget("x", amount="1", period="week", kind="soft")
    with pytest.raises(InvalidData, match="kind 'loud'"):
        store.create_budget("x", amount="1", period="day", kind="loud")
    with pytest.raises(InvalidData, match=r"not 0\.5"):
        store.create_budget("x", amount=0.5, period="day", kind="soft")  # type: ignore[arg-type]
    with pytest.raises(InvalidData, match="'-1' must be a finite decimal >= 0"):
        store.create_budget("x", amount="-1", period="day", kind="soft")
    with pytest.raises(NotFound, match="workflow 'nope' not found"):
        store.create_budget("x", amount="1", period="day", kind="soft", workflow_id="nope")

    assert store.claim_budget_alert(budget["id"], "2026-12") is True
    assert store.claim_budget_alert(budget["id"], "2026-12") is False  # once per period
    assert store.claim_budget_alert(budget["id"], "2027-01") is True
    changed = store.update_budget(budget["id"], amount="30", provider="openai")
    assert changed["amount"] == "30" and changed["provider"] == "openai"
    assert changed["alerted_period"] is None  # a new limit may alert again
    with pytest.raises(InvalidData, match="unknown budget fields"):
        store.update_budget(budget["id"], colour="red")
    store.delete_budget(budget["id"])
    with pytest.raises(NotFound, match="budget"):
        store.get_budget(budget["id"])


def test_spend_is_the_exact_sum_of_stored_totals_per_scope(store: SqlRunStore, trace) -> None:
    a = store.create_workflow("a", {"nodes": []})
    b = store.create_workflow("b", {"nodes": []})
    runs = []
    for workflow, costs in (
        (a, [("openai", "0.1"), ("anthropic", "0.2")]),
        (b, [("openai", "0.3")]),
    ):
        run = store.create_run(workflow["id"], {}, triggered_by="test")
        builder = trace(run["id"])
        store.append_events(run["id"], [llm(builder, p, c) for p, c in costs])
        runs.append(run)
    now = datetime.now(UTC)
    window = {"start": now - timedelta(hours=1), "end": now + timedelta(hours=1)}
    assert store.budget_spend(**window) == D("0.6")
    assert type(store.budget_spend(**window)) is Decimal
    assert store.budget_spend(**window, workflow_id=a["id"]) == D("0.3")
    assert store.budget_spend(**window, provider="openai") == D("0.4")
    assert store.budget_spend(**window, provider="openai", workflow_id=b["id"]) == D("0.3")
    assert store.budget_spend(**window, exclude=[runs[1]["id"]]) == D("0.3")
    later = {"start": now + timedelta(hours=1), "end": now + timedelta(hours=2)}
    assert store.budget_spend(**later) == 0
    assert store.run_costs(runs[0]["id"]) == {"openai": D("0.1"), "anthropic": D("0.2")}
    assert store.get_run(runs[0]["id"])["total_cost"] == "0.3"


def test_the_migration_fills_run_costs_of_runs_stored_before_it(db_url: str, trace) -> None:
    with SqlRunStore(db_url) as store:
        store.upgrade("0002")
        workflow = store.create_workflow("old", {"nodes": []})
        run = {"id": "run-stored-at-0002"}
        builder = trace(run["id"])
        # stored by a version without run_costs: insert the run (with the columns of 0002,
        # not today's model) and its events as it did
        with store.engine.begin() as connection:
            connection.execute(
                text(
                    "INSERT INTO workflow_runs (id, workflow_id, workflow_name, workflow_version,"
                    " triggered_by, status, input_vars, created_at, total_tokens_input,"
                    " total_tokens_output, total_cost, event_count, last_seq) VALUES (:id, :wf,"
                    " 'old', 1, 'test', 'queued', '{}', '2026-12-01 00:00:00', 0, 0, 0, 0, 0)"
                ),
                {"id": run["id"], "wf": workflow["id"]},
            )
            for event in (llm(builder, "openai", "0.25"), llm(builder, "openai", "0.125")):
                connection.exec_driver_sql(
                    "INSERT INTO trace_events (id, run_id, seq, step, ts, type, node_id,"
                    " node_name, namespace, payload) VALUES (?, ?, ?, 1, 0, 'llm_response',"
                    " 'n', 'N', NULL, ?)"
                    if store.dialect == "sqlite"
                    else "INSERT INTO trace_events (id, run_id, seq, step, ts, type, node_id,"
                    " node_name, namespace, payload) VALUES (%s, %s, %s, 1, 0, 'llm_response',"
                    " 'n', 'N', NULL, %s)",
                    (event["id"], run["id"], event["seq"], _json(event["payload"])),
                )
        store.upgrade()
        assert store.run_costs(run["id"]) == {"openai": D("0.375")}


def _json(value: object) -> str:
    import json

    return json.dumps(value)
