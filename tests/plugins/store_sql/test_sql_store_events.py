"""Trace events: storage as given, step and total derivation, exact money, idempotence, pages."""

from __future__ import annotations

import enum
import logging
import random
import threading
from decimal import Decimal
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from backpackflow_store_sql import EventConflict, InvalidData, InvalidEvent, SqlRunStore


def _llm_response(cost: str, tokens_in: int = 100, tokens_out: int = 20) -> dict[str, Any]:
    return {
        "provider": "openai",
        "model": "gpt-4o-mini",
        "text": "…",
        "usage": {
            "input_tokens": tokens_in,
            "output_tokens": tokens_out,
            "cached_input_tokens": 0,
            "reasoning_tokens": 0,
        },
        "latency_ms": 321.5,
        "cost": cost,
        "cost_known": True,
        "finish_reason": "stop",
    }


def _full_run(t: Any) -> list[dict[str, Any]]:
    """A run of three nodes: one retried LLM node, one cache hit, one failing node."""
    return [
        t.event("run_start", {"flow_name": "research", "inputs": {"q": 1}, "limits": {}}),
        t.event("node_start", {"node_name": "Plan", "node_type": "LLMNode", "params": {}}, step=1),
        t.event("prep_complete", {"prep_result": {"q": 1}, "reads": ["q"]}, step=1),
        t.event("llm_request", {"provider": "openai", "model": "m", "messages": []}, step=1),
        t.event("retry", {"error": "429", "attempt": 1, "delay_s": 0.5}, step=1),
        t.event("llm_response", _llm_response("0.000123", 100, 20), step=1),
        t.event("llm_response", _llm_response("0.000123", 50, 5), step=1),
        t.event("exec_complete", {"exec_result": "plan", "attempts": 2, "duration_ms": 9}, step=1),
        t.event("node_end", {"action": "search", "writes": ["plan"], "duration_ms": 12.5}, step=1),
        t.event("node_start", {"node_name": "Search", "node_type": "LLMNode"}, step=2),
        t.event("cache_hit", {"cache_key": "k", "cost_saved": "0.01", "usage": {}}, step=2),
        t.event("exec_complete", {"exec_result": "x", "attempts": 1, "duration_ms": 1}, step=2),
        t.event("node_end", {"action": "default", "writes": [], "duration_ms": 2.0}, step=2),
        t.event("node_start", {"node_name": "Write", "node_type": "FunctionNode"}, step=3),
        t.event(
            "error",
            {"phase": "exec", "error": "boom", "error_type": "ValueError", "stack": "…"},
            step=3,
        ),
        t.event("llm_response", _llm_response("0.000001", 1, 1)),  # a run-level call
        t.event("run_end", {"status": "failed", "duration_ms": 1234.5, "node_count": 3}),
    ]


def _steps(store: SqlRunStore, run_id: str) -> list[dict[str, Any]]:
    return [
        {k: v for k, v in s.items() if k not in ("id", "run_id")}
        for s in store.get_run(run_id)["steps"]
    ]


def test_events_are_stored_as_given_and_derive_steps_and_totals(
    store: SqlRunStore, run: dict[str, Any], trace: Any
) -> None:
    events = _full_run(trace(run["id"]))
    store.mark_running(run["id"])
    store.append_events(run["id"], events)

    assert store.get_trace(run["id"], limit=1000) == events
    stored = store.get_run(run["id"])
    assert stored["status"] == "running"  # run_end does not finish the run by itself
    assert (stored["total_tokens_input"], stored["total_tokens_output"]) == (151, 26)
    assert stored["total_cost"] == "0.000247"
    assert stored["total_latency_ms"] == 1234.5
    assert (stored["event_count"], stored["last_seq"]) == (len(events), len(events))
    plan, search, write = stored["steps"]
    assert plan["started_at"] < plan["finished_at"]
    assert {k: plan[k] for k in plan if k not in ("id", "run_id", "started_at", "finished_at")} == {
        "step": 1,
        "node_id": "node1",
        "node_name": "Node1",
        "node_type": "LLMNode",
        "namespace": "flow.node1",
        "status": "succeeded",
        "latency_ms": 12.5,
        "tokens_input": 150,
        "tokens_output": 25,
        "cost": "0.000246",
        "attempts": 2,
        "retries": 1,
        "cache_hit": False,
        "action": "search",
        "error": None,
        "parent_step": None,
    }
    assert (search["status"], search["cache_hit"], search["cost"], search["attempts"]) == (
        "succeeded",
        True,
        "0",
        1,
    )
    assert (write["status"], write["error"], write["node_type"]) == (
        "failed",
        "ValueError: boom",
        "FunctionNode",
    )
    assert write["finished_at"] is not None and write["action"] is None
    # finish_run keeps the runner's own duration from run_end
    assert store.finish_run(run["id"], "failed")["total_latency_ms"] == 1234.5


def test_costs_sum_exactly_across_batches(
    store: SqlRunStore, run: dict[str, Any], trace: Any
) -> None:
    t = trace(run["id"])
    events = [t.event("node_start", {"node_type": "LLMNode"}, step=1)]
    events += [t.event("llm_response", _llm_response("0.000123", 1, 1), step=1) for _ in range(999)]
    events += [
        t.event("llm_response", _llm_response("12345678901234.123456789012", 0, 0), step=1),
        t.event("llm_response", _llm_response("0.000000000001", 0, 0), step=1),
    ]
    for start in range(0, len(events), 97):
        store.append_events(run["id"], events[start : start + 97])
    expected = Decimal("0.000123") * 999 + Decimal("12345678901234.123456789013")
    stored = store.get_run(run["id"])
    assert Decimal(stored["total_cost"]) == expected
    assert stored["total_cost"] == "12345678901234.246333789013"
    assert Decimal(stored["steps"][0]["cost"]) == expected
    assert stored["total_tokens_input"] == 999
    assert float(sum([0.000123] * 999)) != float(Decimal("0.000123") * 999)  # why it matters


@settings(
    max_examples=25,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    costs=st.lists(
        st.decimals(
            min_value=Decimal(0),
            max_value=Decimal(10**9),
            places=12,
            allow_nan=False,
            allow_infinity=False,
        ),
        min_size=1,
        max_size=8,
    )
)
def test_money_round_trips_exactly(
    store: SqlRunStore, run: dict[str, Any], trace: Any, costs: list[Decimal]
) -> None:
    fresh = store.create_run(run["workflow_id"], {})
    t = trace(fresh["id"])
    store.append_events(
        fresh["id"], [t.event("llm_response", _llm_response(str(c), 0, 0), step=1) for c in costs]
    )
    stored = store.get_run(fresh["id"])
    assert Decimal(stored["total_cost"]) == sum(costs, Decimal(0))
    assert Decimal(stored["steps"][0]["cost"]) == sum(costs, Decimal(0))


@settings(
    max_examples=20,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(seed=st.integers(0, 2**32 - 1))
def test_derivation_does_not_depend_on_batching_or_arrival_order(
    store: SqlRunStore, run: dict[str, Any], trace: Any, seed: int
) -> None:
    reference = store.create_run(run["workflow_id"], {})
    events = _full_run(trace(reference["id"]))
    store.append_events(reference["id"], events)

    shuffled = store.create_run(run["workflow_id"], {})
    again = _full_run(trace(shuffled["id"]))  # the same events, with their own ids
    rng = random.Random(seed)
    rng.shuffle(again)
    while again:
        size = rng.randint(1, 5)
        store.append_events(shuffled["id"], again[:size])
        again = again[size:]

    assert _steps(store, shuffled["id"]) == _steps(store, reference["id"])
    totals = ("total_tokens_input", "total_tokens_output", "total_cost", "total_latency_ms")
    totals += ("event_count", "last_seq")
    a, b = store.get_run(reference["id"]), store.get_run(shuffled["id"])
    assert [a[k] for k in totals] == [b[k] for k in totals]


def test_reappending_is_idempotent(store: SqlRunStore, run: dict[str, Any], trace: Any) -> None:
    events = _full_run(trace(run["id"]))
    store.append_events(run["id"], events[:10])
    before = store.get_run(run["id"])
    store.append_events(run["id"], events[:10])  # a retried batch
    store.append_events(run["id"], events[:10] + events[:10])  # and repeats inside one batch
    assert store.get_run(run["id"]) == before
    store.append_events(run["id"], events[5:])  # overlaps: only the new ones count
    after = store.get_run(run["id"])
    assert after["event_count"] == store.count_events(run["id"]) == len(events)
    assert after["total_cost"] == "0.000247"
    assert len(store.get_trace(run["id"], limit=1000)) == len(events)


def test_conflicting_events_are_refused_and_nothing_of_the_batch_is_stored(
    store: SqlRunStore, run: dict[str, Any], trace: Any
) -> None:
    t = trace(run["id"])
    first = t.event("log", {"msg": "a"})
    store.append_events(run["id"], [first])
    clash = {**t.event("log", {"msg": "b"}), "seq": first["seq"]}
    fine = t.event("log", {"msg": "c"})
    with pytest.raises(EventConflict, match=rf"seq 1 of run .* belongs to event '{first['id']}'"):
        store.append_events(run["id"], [fine, clash])
    twins = [t.event("log"), t.event("log")]
    twins[1]["seq"] = twins[0]["seq"]
    with pytest.raises(EventConflict, match="both have seq"):
        store.append_events(run["id"], twins)
    other = store.create_run(run["workflow_id"], {})
    with pytest.raises(EventConflict, match=f"already stored for run '{run['id']}'"):
        store.append_events(other["id"], [{**first, "run_id": None}])
    assert store.get_trace(run["id"]) == [first]
    assert store.count_events(run["id"]) == 1


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"id": ""}, "needs an id"),
        ({"seq": 0}, "seq must be an integer >= 1"),
        ({"seq": True}, "seq must be an integer >= 1"),
        ({"seq": None}, "seq must be an integer >= 1"),
        ({"timestamp": "now"}, "timestamp must be finite epoch seconds"),
        ({"type": ""}, "type must be a non-empty string"),
        ({"run_id": "another"}, "belongs to run 'another'"),
        ({"step": "1"}, "step must be an integer or null"),
        ({"step": 2, "node_id": None}, "an event of step 2 needs a node_id"),
        ({"node_name": 5}, "node_name must be a string"),
        ({"payload": {"x": float("inf")}}, "payload is not JSON data"),
        ({"payload": {"when": Decimal("1.5")}}, "payload is not JSON data"),
    ],
)
def test_malformed_events_are_refused_by_name(
    store: SqlRunStore, run: dict[str, Any], trace: Any, change: dict[str, Any], message: str
) -> None:
    t = trace(run["id"])
    good, bad = t.event("log"), {**t.event("log"), **change}
    with pytest.raises(InvalidEvent, match=message) as caught:
        store.append_events(run["id"], [good, bad])
    if bad["id"]:
        assert repr(bad["id"]) in str(caught.value)
    assert store.count_events(run["id"]) == 0
    with pytest.raises(InvalidEvent, match="not a JSON object"):
        store.append_events(run["id"], ["nope"])  # type: ignore[list-item]


def test_unusable_usage_is_stored_but_not_counted(
    store: SqlRunStore, run: dict[str, Any], trace: Any, caplog: pytest.LogCaptureFixture
) -> None:
    t = trace(run["id"])
    odd = _llm_response("not money", 7, 3)
    odd["usage"]["input_tokens"] = "many"
    with caplog.at_level(logging.WARNING, logger="backpackflow_store_sql"):
        store.append_events(run["id"], [t.event("llm_response", odd, step=1)])
    stored = store.get_run(run["id"])
    assert (stored["total_tokens_input"], stored["total_tokens_output"]) == (0, 3)
    assert stored["total_cost"] == "0"
    assert store.get_trace(run["id"])[0]["payload"] == odd
    assert "unusable usage.input_tokens 'many'" in caplog.text
    assert "unusable cost 'not money'" in caplog.text


def test_payloads_round_trip(store: SqlRunStore, run: dict[str, Any], trace: Any) -> None:
    t = trace(run["id"])
    payloads: list[Any] = [
        {
            "text": "naïve ✓ 日本 \U0001f600",
            "big": 2**62,
            "neg": -1.5e-300,
            "deep": [[[{"a": []}]]],
        },
        {"empty": {}, "none": None, "bools": [True, False], "quote": 'he said "hi"\n\\'},
        ["a list", 1],
        "just text",
        None,
    ]
    events = [{**t.event("custom"), "payload": p} for p in payloads]
    store.append_events(run["id"], events)
    assert [e["payload"] for e in store.get_trace(run["id"])] == payloads


def test_text_neither_database_holds_is_replaced_alike(
    store: SqlRunStore, run: dict[str, Any], trace: Any
) -> None:
    """U+0000 and lone surrogates in what a run produced become U+FFFD on both backends
    (PostgreSQL cannot hold them; SQLite must not answer differently), keys and envelope
    texts included; the batch is stored, never lost."""
    t = trace(run["id"])
    event = t.event("log", {"text": "a\x00b", "k\x00": ["\x00", "\ud800x"], "ok": "é😀"})
    event["node_name"] = "n\x00ame\udfff"
    store.append_events(run["id"], [event])
    stored = store.get_trace(run["id"])[0]
    assert stored["payload"] == {
        "text": "a\ufffdb",
        "k\ufffd": ["\ufffd", "\ufffdx"],
        "ok": "é😀",  # a real astral character is not a lone surrogate
    }
    assert stored["node_name"] == "n\ufffdame\ufffd"
    store.finish_run(run["id"], "failed", "bad \x00 text \udc80")
    assert store.get_run(run["id"])["error_summary"] == "bad \ufffd text \ufffd"


def test_trace_pages(store: SqlRunStore, run: dict[str, Any], trace: Any) -> None:
    t = trace(run["id"])
    events = [t.event("log", {"i": i}) for i in range(25)]
    store.append_events(run["id"], list(reversed(events)))
    assert store.count_events(run["id"]) == 25
    pages, after = [], 0
    while page := store.get_trace(run["id"], after_seq=after, limit=10):
        pages.append(page)
        after = page[-1]["seq"]
    assert [len(p) for p in pages] == [10, 10, 5]
    assert [e for p in pages for e in p] == events
    assert store.get_trace(run["id"], after_seq=23) == events[23:]
    assert store.get_trace(run["id"], after_seq=25) == []
    assert store.get_trace(run["id"]) == events  # default limit 100
    with pytest.raises(InvalidData, match="after_seq must be an integer >= 0"):
        store.get_trace(run["id"], after_seq=-1)
    with pytest.raises(InvalidData, match="limit must be an integer >= 1"):
        store.get_trace(run["id"], limit=0)


def test_empty_batch_and_events_after_finish(
    store: SqlRunStore, run: dict[str, Any], trace: Any
) -> None:
    store.append_events(run["id"], [])
    store.mark_running(run["id"])
    store.finish_run(run["id"], "succeeded")
    t = trace(run["id"])
    store.append_events(run["id"], [t.event("run_end", {"status": "succeeded", "duration_ms": 7})])
    assert store.get_run(run["id"])["total_latency_ms"] == 7  # the late runner measure wins
    assert store.count_events(run["id"]) == 1


def test_concurrent_batches_of_one_run_add_up_exactly(
    store: SqlRunStore, run: dict[str, Any], trace: Any
) -> None:
    """Batches of one run from several threads and two store instances (like two processes)."""
    t = trace(run["id"])
    events = [t.event("llm_response", _llm_response("0.000123", 1, 2), step=1) for _ in range(240)]
    batches = [events[i : i + 8] for i in range(0, len(events), 8)]
    other = SqlRunStore(store.engine.url.render_as_string(hide_password=False))
    errors: list[BaseException] = []

    def work(which: SqlRunStore, mine: list[list[dict[str, Any]]]) -> None:
        try:
            for batch in mine:
                which.append_events(run["id"], batch)
                which.append_events(run["id"], batch[:3])  # retried: must not count again
        except Exception as exc:  # noqa: BLE001 - surfaced by the assertion below
            errors.append(exc)

    threads = [
        threading.Thread(target=work, args=(store if i % 2 else other, batches[i::6]))
        for i in range(6)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    other.close()
    assert errors == []
    stored = store.get_run(run["id"])
    assert stored["total_cost"] == str(Decimal("0.000123") * 240)
    assert (stored["total_tokens_input"], stored["total_tokens_output"]) == (240, 480)
    assert (stored["event_count"], stored["last_seq"]) == (240, 240)
    assert stored["steps"][0]["cost"] == stored["total_cost"]


class _Kind(enum.StrEnum):
    NODE_START = "node_start"
    LOG = "log"


class _Envelope:
    """Stands in for the kernel's BackpackEvent: an object that serializes itself."""

    def __init__(self, document: dict[str, Any]) -> None:
        self.document = document
        self.id, self.seq = document["id"], document["seq"]

    def to_json(self) -> dict[str, Any]:
        return self.document


def test_event_objects_with_to_json_are_accepted(
    store: SqlRunStore, run: dict[str, Any], trace: Any
) -> None:
    t = trace(run["id"])
    events = [t.event("node_start", {"node_type": "X"}, step=1), t.event("log", {"m": 1})]
    envelopes = [_Envelope({**e, "type": _Kind(e["type"])}) for e in events]
    store.append_events(run["id"], envelopes)
    assert store.get_trace(run["id"]) == events
    assert type(store.get_trace(run["id"])[0]["type"]) is str
    assert store.get_run(run["id"])["steps"][0]["node_type"] == "X"


def test_nested_steps_are_stored_under_their_parent(
    store: SqlRunStore, run: dict[str, Any], trace: Any
) -> None:
    """An agent's tool calls: steps with parent_step, opened by tool_request and ended by
    tool_response (failed with the tool's error), whichever batch each event arrives in."""
    t = trace(run["id"])

    def nested(type_: str, payload: dict[str, Any], step: int, tool: str) -> dict[str, Any]:
        event = t.event(type_, payload, step=step, node_id="agent", node_name=tool)
        return {**event, "parent_step": 1}

    events = [
        t.event(
            "node_start", {"node_name": "Agent", "node_type": "agent"}, step=1, node_id="agent"
        ),
        t.event("llm_response", _llm_response("0.000100"), step=1, node_id="agent"),
        nested("tool_request", {"tool": "read_file", "arguments": {"path": "a"}}, 2, "read_file"),
        nested("tool_request", {"tool": "csv_summary", "arguments": {"path": "b"}}, 3, "csv"),
        nested(
            "tool_response",
            {
                "tool": "csv_summary",
                "result": None,
                "duration_ms": 4.5,
                "error": "no such file: 'b'",
            },
            3,
            "csv",
        ),
        nested(
            "tool_response",
            {"tool": "read_file", "result": {"text": "x"}, "duration_ms": 7.25, "error": None},
            2,
            "read_file",
        ),
        t.event(
            "node_end", {"action": None, "writes": [], "duration_ms": 30.0}, step=1, node_id="agent"
        ),
    ]
    store.append_events(run["id"], events[:3])
    store.append_events(run["id"], events[3:])
    assert store.get_trace(run["id"], limit=100) == events  # parent_step kept as given
    agent, read, csv = _steps(store, run["id"])
    assert (agent["parent_step"], agent["status"], agent["cost"]) == (None, "succeeded", "0.000100")
    assert {k: read[k] for k in ("step", "parent_step", "node_id", "node_name", "node_type")} == {
        "step": 2,
        "parent_step": 1,
        "node_id": "agent",
        "node_name": "read_file",
        "node_type": "tool",
    }
    assert (read["status"], read["latency_ms"], read["error"]) == ("succeeded", 7.25, None)
    assert (csv["status"], csv["latency_ms"]) == ("failed", 4.5)
    assert csv["error"] == "no such file: 'b'" and csv["node_name"] == "csv_summary"
    assert (read["cost"], read["tokens_input"]) == ("0", 0)
    assert store.get_run(run["id"])["total_cost"] == "0.000100"


def test_a_parent_step_must_be_an_integer_on_a_step_event(
    store: SqlRunStore, run: dict[str, Any], trace: Any
) -> None:
    t = trace(run["id"])
    bad = {**t.event("tool_request", {}, step=2), "parent_step": "1"}
    with pytest.raises(InvalidEvent, match=r"parent_step must be an integer"):
        store.append_events(run["id"], [bad])
    orphan = {**t.event("log", {}), "parent_step": 1}
    with pytest.raises(InvalidEvent, match=r"on an event of a step"):
        store.append_events(run["id"], [orphan])
