"""A batch of trace events costs a fixed number of SQL statements, whatever its size: one
INSERT for all its events, one read and one write per kind of derived row. Counted with
SQLAlchemy's cursor events, on both databases; the events still land once, in seq order."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from sqlalchemy import event

from backpackflow_store_sql import SqlRunStore


@contextmanager
def statements(store: SqlRunStore) -> Iterator[list[str]]:
    """The SQL statements sent while the block runs (an executemany counts once)."""
    sent: list[str] = []

    def record(_conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        sent.append(" ".join(statement.split()[:3]))

    event.listen(store.engine, "before_cursor_execute", record)
    try:
        yield sent
    finally:
        event.remove(store.engine, "before_cursor_execute", record)


def _llm(tokens: int) -> dict[str, Any]:
    return {
        "provider": "offline",
        "usage": {"input_tokens": tokens, "output_tokens": 1},
        "cost": "0.001",
    }


def _step(t: Any, step: int, logs: int) -> list[dict[str, Any]]:
    return [
        t.event("node_start", {"node_type": "llm"}, step=step),
        *(t.event("log", {"message": f"line {i}"}, step=step) for i in range(logs)),
        t.event("llm_response", _llm(10), step=step),
        t.event("node_end", {"action": "default", "duration_ms": 1.0}, step=step),
    ]


def test_a_batch_costs_the_same_statements_at_any_size(
    store: SqlRunStore, run: dict[str, Any], trace: Callable[[str], Any]
) -> None:
    t = trace(run["id"])
    store.append_events(run["id"], [t.event("run_start", {})])
    counts = []
    for step, logs in ((1, 2), (2, 200)):
        batch = _step(t, step, logs)
        with statements(store) as sent:
            store.append_events(run["id"], batch)
        inserts = [s for s in sent if s.startswith("INSERT INTO trace_events")]
        assert len(inserts) == 1, sent  # one statement for every event of the batch
        counts.append(len(sent))
    assert counts[0] == counts[1]
    # begin, the run (locked), the events, steps and provider costs read, a new step,
    # the provider's cost updated, the run's totals: nothing per event
    assert counts[0] <= 8
    stored = store.get_trace(run["id"], limit=1000)
    assert [e["seq"] for e in stored] == list(range(1, t.seq + 1))
    got = store.get_run(run["id"])
    assert got["event_count"] == got["last_seq"] == t.seq
    assert [s["status"] for s in got["steps"]] == ["succeeded", "succeeded"]
    assert got["total_tokens_input"] == 20 and got["total_cost"] == "0.002"


def test_a_retried_batch_is_stored_once_and_reads_who_owns_its_ids(
    store: SqlRunStore, run: dict[str, Any], trace: Callable[[str], Any]
) -> None:
    t = trace(run["id"])
    first = _step(t, 1, 3)
    store.append_events(run["id"], first)
    second = _step(t, 2, 3)
    with statements(store) as sent:
        store.append_events(run["id"], [*first[2:], *second])  # a retry overlapping the last
    # the overlap is found by the INSERT itself, then its owner is checked (one SELECT)
    assert sum(s.startswith("INSERT INTO trace_events") for s in sent) == 1
    stored = store.get_trace(run["id"], limit=100)
    assert [e["seq"] for e in stored] == list(range(1, t.seq + 1))
    assert [e["id"] for e in stored] == [e["id"] for e in (*first, *second)]
    got = store.get_run(run["id"])
    assert got["event_count"] == t.seq and got["total_tokens_input"] == 20


def test_a_batch_with_an_existing_step_updates_it_in_one_statement(
    store: SqlRunStore, run: dict[str, Any], trace: Callable[[str], Any]
) -> None:
    t = trace(run["id"])
    store.append_events(
        run["id"], [t.event("node_start", {}, step=1), t.event("node_start", {}, step=2)]
    )
    closing = [
        t.event("node_end", {"action": "a"}, step=1),
        t.event("node_end", {"action": "b"}, step=2),
    ]
    with statements(store) as sent:
        store.append_events(run["id"], closing)
    assert sum(s.startswith("UPDATE run_steps") for s in sent) == 1, sent
    assert [(s["status"], s["action"]) for s in store.get_run(run["id"])["steps"]] == [
        ("succeeded", "a"),
        ("succeeded", "b"),
    ]


def test_a_batch_of_many_runs_costs_the_statements_of_one(
    store: SqlRunStore, trace: Callable[[str], Any]
) -> None:
    workflow = store.create_workflow("many", {"nodes": [], "edges": []})
    counts = {}
    for count in (1, 12):
        runs = [store.create_run(workflow["id"], {})["id"] for _ in range(count)]
        builders = {run_id: trace(run_id) for run_id in runs}
        for run_id, t in builders.items():  # each run has a step stored already
            store.append_events(run_id, _step(t, 1, 1))
        batches = {run_id: _step(t, 2, 2) for run_id, t in builders.items()}
        with statements(store) as sent:
            store.append_many(batches)
        counts[count] = len(sent)
        for run_id, t in builders.items():
            got = store.get_run(run_id)
            assert got["event_count"] == got["last_seq"] == t.seq
            assert [s["status"] for s in got["steps"]] == ["succeeded", "succeeded"]
            assert got["total_tokens_input"] == 20 and got["total_cost"] == "0.002"
            stored = store.get_trace(run_id, limit=100)
            assert [e["seq"] for e in stored] == list(range(1, t.seq + 1))
    assert counts[12] == counts[1], counts  # one transaction, one statement per kind of row
