"""The event bus (PRD-002, DESIGN §3.2): the envelope and payloads as frozen typed records,
subscriptions by node id / namespace / wildcard / type, handler isolation, async handlers,
the history ring buffer, queries, stats, JSON export and lazy state snapshots."""

from __future__ import annotations

import asyncio
import gc
import itertools
import json
import logging
import math
import threading
import time
import weakref
from typing import Any

import pytest

from backpackflow import (
    AsyncNode,
    Backpack,
    BackpackEvent,
    EventStreamer,
    Flow,
    InvalidNamespace,
    InvalidSetting,
    Node,
    StreamEventType,
    Subscription,
    current_run,
)
from backpackflow.events import Emitter, bus

T = StreamEventType


# ------------------------------------------------------------------------------- helpers


class Reader(Node):
    """Reads ``question`` in prep, writes ``answer`` in post."""

    def prep(self, backpack):
        return backpack.unpack("question")

    def exec(self, prep_res):
        return f"answer to {prep_res}"

    def post(self, backpack, prep_res, exec_res):
        backpack.pack("answer", exec_res)


class Writer(Node):
    def __init__(self, key, value, **kw):
        super().__init__(**kw)
        self.key, self.value = key, value

    def post(self, backpack, prep_res, exec_res):
        backpack.pack(self.key, self.value)


def emit_at(streamer, node_id=None, namespace=None, type=T.CUSTOM, payload=None):
    return streamer.emit_event(type, payload, node_id=node_id, namespace=namespace)


PLACES = [
    # (node_id, namespace)
    ("n-root", None),
    ("n-sales", "sales"),
    ("n-chat", "sales.chat"),
    ("n-bot", "sales.chat.bot"),
    ("n-support", "support.chat"),
    ("n-plain-chat", "chat"),
    ("n-research", "sales.research"),
]


def delivered_to(pattern):
    streamer = EventStreamer()
    got = []
    streamer.subscribe(pattern, lambda e: got.append(e.node_id))
    for node_id, namespace in PLACES:
        emit_at(streamer, node_id, namespace)
    return got


# ------------------------------------------------------------------------------- the envelope


def test_event_types_are_the_prd_wire_names():
    names = {t.value for t in StreamEventType}
    assert {
        "node_start",
        "prep_complete",
        "exec_complete",
        "node_end",
        "error",
        "backpack_pack",
        "backpack_unpack",
        "stream_chunk",
        "tool_call",
        "custom",
        "run_start",
        "run_end",
        "llm_request",
        "llm_response",
        "tool_request",
        "tool_response",
        "retry",
        "fallback",
        "cache_hit",
        "guardrail",
        "log",
    } <= names
    assert StreamEventType("node_start") is T.NODE_START
    assert T.NODE_END == "node_end"  # a string enum: sinks compare to wire names


def test_envelope_fields_and_derived_id():
    streamer = EventStreamer()
    result = Flow(Reader(id="reader", namespace="qa")).execute_sync(
        Backpack({"question": "why"}), events=streamer, run_id="run-42"
    )
    assert result.ok
    event = streamer.get_events(type=T.NODE_START)[0]
    assert set(BackpackEvent._fields) >= {
        "seq",
        "timestamp",
        "run_id",
        "step",
        "node_id",
        "node_name",
        "namespace",
        "type",
        "payload",
    }
    assert event.id == f"run-42.{event.seq}"
    assert event.run_id == "run-42"
    assert event.node_id == "reader"
    assert event.node_name == "Reader"
    assert event.namespace == "qa"
    assert event.step == 1
    assert event.type is T.NODE_START
    assert abs(event.timestamp - time.time()) < 60
    ids = [e.id for e in streamer.get_events()]
    assert len(ids) == len(set(ids))


def test_events_outside_a_run_have_unique_ids_across_streamers():
    one, two = EventStreamer(), EventStreamer()
    events = [emit_at(one), emit_at(two), emit_at(one)]
    assert all(e.run_id is None for e in events)
    assert len({e.id for e in events}) == 3


def test_events_and_payloads_are_frozen():
    streamer = EventStreamer()
    Flow(Reader()).execute_sync(Backpack({"question": "q"}), events=streamer)
    for event in streamer.get_events():
        with pytest.raises(AttributeError):
            event.node_id = "other"  # type: ignore[misc]
        with pytest.raises(TypeError):
            event[0] = 99  # type: ignore[index]
        if event.payload is not None and hasattr(event.payload, "_fields"):
            field = event.payload._fields[0]
            with pytest.raises(AttributeError):
                setattr(event.payload, field, "changed")


def test_payloads_are_typed_per_event_type():
    streamer = EventStreamer()
    Flow(Reader()).execute_sync(Backpack({"question": "q"}), events=streamer)
    expected = {
        T.RUN_START: {"flow_name", "inputs", "limits"},
        T.NODE_START: {"node_name", "params", "state"},
        T.PREP_COMPLETE: {"prep_result", "reads"},
        T.EXEC_COMPLETE: {"exec_result", "attempts", "duration_ms"},
        T.NODE_END: {"action", "writes", "duration_ms"},
        T.BACKPACK_PACK: {"key", "value_summary", "access_granted", "reason"},
        T.BACKPACK_UNPACK: {"key", "access_granted", "reason"},
        T.RUN_END: {"status", "duration_ms", "node_count", "error"},
    }
    for event in streamer.get_events():
        fields = expected[event.type]
        assert fields <= set(event.to_json()["payload"]), event.type


def test_event_to_json_is_plain_json():
    streamer = EventStreamer()
    Flow(Reader(namespace="qa")).execute_sync(Backpack({"question": "q"}), events=streamer)
    for event in streamer.get_events():
        data = event.to_json()
        assert json.loads(json.dumps(data)) == data
        assert data["id"] == event.id
        assert data["type"] == event.type.value
        assert data["run_id"] == event.run_id
    text = streamer.to_json_str()
    assert [e["seq"] for e in json.loads(text)] == [e.seq for e in streamer.get_events()]


# ------------------------------------------------------------------------------- subscriptions


@pytest.mark.parametrize(
    ("pattern", "expected"),
    [
        ("*", [p[0] for p in PLACES]),
        ("sales.chat", ["n-chat"]),
        ("sales", ["n-sales"]),
        ("sales.*", ["n-chat", "n-research"]),
        ("*.chat", ["n-chat", "n-support"]),
        ("sales.**", ["n-sales", "n-chat", "n-bot", "n-research"]),
        ("**.chat", ["n-chat", "n-support", "n-plain-chat"]),
        ("n-bot", ["n-bot"]),  # a node id, whatever its namespace
        ("n-root", ["n-root"]),  # node ids match events without a namespace too
        ("nobody", []),
    ],
)
def test_subscription_patterns(pattern, expected):
    assert delivered_to(pattern) == expected


def test_malformed_patterns_are_refused_at_subscribe_time():
    streamer = EventStreamer()
    for bad in ("sales..chat", "sa*les", ""):
        with pytest.raises(InvalidNamespace):
            streamer.subscribe(bad, lambda e: None)
    with pytest.raises(TypeError):
        streamer.subscribe("*", "not callable")  # type: ignore[arg-type]
    assert streamer.subscriber_count == 0


def test_subscribe_without_pattern_takes_everything():
    streamer = EventStreamer()
    got = []
    streamer.subscribe(got.append)
    emit_at(streamer, "x", "a.b")
    emit_at(streamer)
    assert len(got) == 2


def test_subscriptions_follow_composed_namespaces_in_a_run():
    streamer = EventStreamer()
    got = {"sales.*": [], "*.chat": [], "sales.**": [], "chat": []}
    for pattern, sink in got.items():
        streamer.subscribe(pattern, lambda e, sink=sink: sink.append((e.node_id, e.namespace)))
    outer = Flow(Writer("j", 2, id="intro"), namespace="sales")
    inner = Flow(Writer("k", 1, id="chat", namespace="chat"), id="team", namespace="research")
    outer.start_node >> inner
    assert outer.execute_sync(Backpack(), events=streamer).ok
    # the nested flow node itself is at "sales.research"; its node at "sales.research.chat"
    assert {e for e in got["sales.*"]} == {("team", "sales.research")}
    assert got["*.chat"] == []  # "sales.research.chat" has three segments
    assert {ns for _, ns in got["sales.**"]} == {"sales", "sales.research", "sales.research.chat"}
    assert {nid for nid, _ in got["chat"]} == {"chat"}  # the node id "chat"


def test_on_filters_by_one_or_several_types_and_pattern():
    streamer = EventStreamer()
    ends, lifecycle, sales_errors = [], [], []
    streamer.on(T.NODE_END, ends.append)
    streamer.on(["node_start", T.NODE_END], lifecycle.append)
    streamer.on("error", sales_errors.append, pattern="sales.*")
    emit_at(streamer, "a", "sales.x", T.NODE_START)
    emit_at(streamer, "a", "sales.x", T.NODE_END)
    emit_at(streamer, "b", "other", T.ERROR)
    emit_at(streamer, "a", "sales.x", T.ERROR)
    emit_at(streamer, "a", "sales.x", T.CUSTOM)
    assert [e.type for e in ends] == [T.NODE_END]
    assert [e.type for e in lifecycle] == [T.NODE_START, T.NODE_END]
    assert [(e.node_id, e.type) for e in sales_errors] == [("a", T.ERROR)]
    with pytest.raises(ValueError, match="unknown event type"):
        streamer.on("node_begin", ends.append)


def test_unsubscribe_handles():
    streamer = EventStreamer()
    a, b, c = [], [], []
    sub_a = streamer.subscribe("*", a.append)
    sub_b = streamer.on(T.CUSTOM, b.append)
    sub_c = streamer.subscribe("x.*", c.append)
    assert isinstance(sub_a, Subscription)
    assert streamer.subscriber_count == 3
    emit_at(streamer, "n", "x.y")
    sub_a.unsubscribe()
    streamer.unsubscribe(sub_b)
    sub_c.cancel()
    sub_c.unsubscribe()  # twice: harmless
    emit_at(streamer, "n", "x.y")
    assert (len(a), len(b), len(c)) == (1, 1, 1)
    assert streamer.subscriber_count == 0


def test_a_handler_may_unsubscribe_itself_while_handling():
    streamer = EventStreamer()
    got, after = [], []

    def once(event):
        got.append(event)
        sub.unsubscribe()

    sub = streamer.subscribe("*", once)
    streamer.subscribe("*", after.append)
    emit_at(streamer)
    emit_at(streamer)
    assert len(got) == 1
    assert len(after) == 2


def test_emission_is_synchronous_and_in_subscription_order():
    order = []
    streamer = EventStreamer()
    streamer.subscribe("*", lambda e: order.append(("first", e.seq)))
    streamer.on(T.CUSTOM, lambda e: order.append(("second", e.seq)))
    event = emit_at(streamer)
    assert order == [("first", event.seq), ("second", event.seq)]  # before emit returned


def _wired_streamer():
    """A streamer with a wildcard, a namespace, a node-id, a typed and a raising subscriber;
    returns it and what each subscriber got (events without their timestamps)."""
    streamer = EventStreamer(history_size=3)
    got = {}
    for name, pattern, types in [
        ("all", "*", None),
        ("sales", "sales.**", None),
        ("node", "n2", None),
        ("ends", "*", [T.NODE_END, T.RUN_END]),
    ]:
        got[name] = []
        streamer.subscribe(
            pattern, lambda e, n=name: got[n].append(e._replace(timestamp=0)), types=types
        )
    streamer.subscribe("support.*", lambda e: 1 / 0)
    return streamer, got


EMISSIONS = [
    (None, "sales", T.RUN_START),
    ("n1", "sales.chat", T.NODE_START),
    ("n2", "support.chat", T.NODE_END),
    ("n2", None, T.CUSTOM),
    (None, None, T.RUN_END),
    ("n3", "sales", "custom"),  # a plain string type, as node code may pass
]


def test_an_emitter_records_and_delivers_exactly_as_emit_does():
    """Emitter.emit inlines EventStreamer.emit: the two must not drift apart."""
    by_emit, got_emit = _wired_streamer()
    by_emitter, got_emitter = _wired_streamer()
    counter = itertools.count(1)
    for seq, (node_id, namespace, type_) in enumerate(EMISSIONS, 1):
        by_emit.emit(
            BackpackEvent(seq, 1.0, "run", 7, node_id, "Name", namespace, type_, {"i": seq})
        )
        Emitter(by_emitter, counter, "run", 7, node_id, "Name", namespace).emit(type_, {"i": seq})
    assert got_emitter == got_emit
    assert got_emit["all"] and got_emit["sales"] and got_emit["node"] and got_emit["ends"]
    assert [e._replace(timestamp=0) for e in by_emitter.get_events()] == [
        e._replace(timestamp=0) for e in by_emit.get_events()
    ]
    assert by_emitter.get_stats() == by_emit.get_stats()
    assert by_emit.get_stats()["handler_errors"] == 1
    assert by_emit.get_stats()["unique_namespaces"] == 2  # sales (the run), sales.chat (n1)
    assert by_emit.get_stats()["runs"] == 1
    assert by_emit.get_stats()["by_type"] == {
        T.RUN_START: 1,
        T.NODE_START: 1,
        T.NODE_END: 1,
        T.CUSTOM: 2,
        T.RUN_END: 1,
    }


def test_an_emitter_bound_to_a_thread_hands_other_threads_events_away():
    streamer = EventStreamer()
    handed = []
    emitter = Emitter(
        streamer,
        itertools.count(1),
        "run",
        1,
        "n1",
        "N1",
        None,
        home=threading.get_ident(),
        away=lambda frame, type_, payload, at: handed.append((frame, type_, payload, at)),
    )
    emitter.emit(T.CUSTOM, "here")
    worker = threading.Thread(target=emitter.emit, args=(T.CUSTOM, "there", 123.5))
    worker.start()
    worker.join()
    assert [e.payload for e in streamer.get_events()] == ["here"]
    assert handed == [(emitter, T.CUSTOM, "there", 123.5)]  # with the time it was emitted at


# ------------------------------------------------------------------------------- isolation


def test_a_raising_handler_is_isolated_counted_and_logged_once(caplog):
    streamer = EventStreamer()
    before, after = [], []
    streamer.subscribe("*", before.append)

    def broken(event):
        raise RuntimeError("sink is down")

    streamer.subscribe("*", broken)
    streamer.subscribe("*", after.append)
    with caplog.at_level(logging.ERROR, logger="backpackflow.events"):
        result = Flow(Reader()).execute_sync(Backpack({"question": "q"}), events=streamer)
    assert result.ok
    assert result.backpack.unpack("answer") == "answer to q"
    total = len(streamer.get_events())
    assert len(before) == len(after) == total > 5
    assert streamer.get_stats()["handler_errors"] == total
    records = [r for r in caplog.records if r.name == "backpackflow.events"]
    assert len(records) == 1
    assert "sink is down" in (records[0].exc_text or str(records[0].exc_info))


def test_each_failing_handler_is_logged_once_on_its_own(caplog):
    streamer = EventStreamer()
    streamer.subscribe("*", lambda e: 1 / 0)
    streamer.on(T.CUSTOM, lambda e: [][1])
    with caplog.at_level(logging.ERROR, logger="backpackflow.events"):
        for _ in range(3):
            emit_at(streamer)
    assert streamer.get_stats()["handler_errors"] == 6
    assert len([r for r in caplog.records if r.name == "backpackflow.events"]) == 2


# ------------------------------------------------------------------------------- async handlers


class Quick(Node):
    def exec(self, prep_res):
        return "done"


def test_slow_async_handler_does_not_slow_a_sync_run_outside_any_loop():
    streamer = EventStreamer()
    handled = []
    released = threading.Event()  # set only once the run has returned

    async def slow(event):
        await asyncio.to_thread(released.wait, 30)
        handled.append(event.type)

    streamer.subscribe("*", slow)
    try:
        result = Flow(Quick()).execute_sync(Backpack(), events=streamer)
        assert result.ok
        assert handled == []  # scheduled, not awaited: the run returned before any ended
        assert streamer.get_stats()["pending_async_handlers"] == 6
        released.set()
        assert streamer.wait_idle(timeout=30)
        assert sorted(handled) == sorted(e.type for e in streamer.get_events())
        assert streamer.get_stats()["pending_async_handlers"] == 0
    finally:
        streamer.close()


def test_slow_async_handler_does_not_slow_an_async_run_in_a_loop():
    handled = []

    class Step(AsyncNode):
        async def exec_async(self, prep_res):
            return 1

    async def main():
        released = asyncio.Event()  # set only once the run has returned

        async def slow(event):  # had the run waited for it, this would time out: no append
            await asyncio.wait_for(released.wait(), 30)
            handled.append(event.type)

        streamer = EventStreamer()
        streamer.subscribe("*", slow)
        result = await Flow(Step()).execute(Backpack(), events=streamer)
        assert result.ok
        assert handled == []  # the run did not wait for its handlers
        released.set()
        await streamer.drain()
        return streamer

    streamer = asyncio.run(main())
    assert len(handled) == len(streamer.get_events()) == 6


def test_async_handlers_of_an_async_flow_run_from_sync_code_are_not_lost():
    """``flow.run()`` drives an async flow on an event loop that ends with the run; the async
    handlers it scheduled still finish (on the background loop) and ``wait_idle`` waits."""
    handled = []
    run_returned = threading.Event()

    class Step(AsyncNode):
        async def exec_async(self, prep_res):
            return 1

    async def held_until_the_run_returns(event):
        # a run that waited for its handlers would wait here until the deadline
        deadline = time.monotonic() + 5
        while not run_returned.is_set() and time.monotonic() < deadline:
            await asyncio.sleep(0.005)
        handled.append((event.type, run_returned.is_set()))

    streamer = EventStreamer()
    streamer.subscribe("*", held_until_the_run_returns)
    try:
        assert Flow(Step()).execute_sync(Backpack(), events=streamer).ok
        assert handled == []  # the run did not wait for its async handlers
        run_returned.set()
        assert streamer.wait_idle(timeout=5)
        assert len(handled) == len(streamer.get_events()) == 6
        assert all(after_return for _, after_return in handled)
    finally:
        streamer.close()


def test_async_handler_failures_are_counted_and_logged_once(caplog):
    async def broken(event):
        await asyncio.sleep(0)
        raise ValueError("async sink failed")

    async def main():
        streamer = EventStreamer()
        streamer.subscribe("*", broken)
        for _ in range(3):
            emit_at(streamer)
        await streamer.drain(timeout=5)
        return streamer

    with caplog.at_level(logging.ERROR, logger="backpackflow.events"):
        streamer = asyncio.run(main())
    assert streamer.get_stats()["handler_errors"] == 3
    assert len([r for r in caplog.records if r.name == "backpackflow.events"]) == 1


def test_async_handler_failures_outside_a_loop_are_counted():
    streamer = EventStreamer()

    async def broken(event):
        raise ValueError("nope")

    streamer.subscribe("*", broken)
    try:
        emit_at(streamer)
        emit_at(streamer)
        assert streamer.wait_idle(timeout=5)
        assert streamer.get_stats()["handler_errors"] == 2
    finally:
        streamer.close()


def test_drain_with_a_timeout_returns_while_handlers_still_run():
    async def main():
        release = asyncio.Event()
        streamer = EventStreamer()

        async def blocked(event):
            await release.wait()

        streamer.subscribe("*", blocked)
        emit_at(streamer)
        started = time.perf_counter()
        await streamer.drain(timeout=0.05)
        waited = time.perf_counter() - started
        still = streamer.get_stats()["pending_async_handlers"]
        release.set()
        await streamer.drain()
        return waited, still, streamer.get_stats()["pending_async_handlers"]

    waited, still, after = asyncio.run(main())
    assert 0.04 <= waited < 1
    assert still == 1
    assert after == 0


# ------------------------------------------------------------------------------- history


def test_history_defaults_to_ten_thousand_and_evicts_the_oldest():
    assert EventStreamer().history_size == 10_000
    streamer = EventStreamer(history_size=5)
    events = [emit_at(streamer, payload=i) for i in range(12)]
    kept = streamer.get_events()
    assert [e.payload for e in kept] == list(range(7, 12))
    assert kept == events[-5:]
    stats = streamer.get_stats()
    assert stats["total_events"] == 12
    assert stats["in_history"] == 5
    assert stats["history_size"] == 5


def _runs_with_large_state(streamer, runs, size=100_000):
    """Runs of a two-node flow, each with a fresh Backpack holding ``size`` characters of
    state; weak references to the Backpacks, to see which ones the history keeps alive."""
    a = Reader(id="a")
    a >> Writer("note", "x" * 1_000, id="b")
    flow = Flow(a)
    kept = []
    for i in range(runs):
        backpack = Backpack({"question": f"q{i}", "context": "c" * size})
        flow.run(backpack, events=streamer)
        kept.append(weakref.ref(backpack))
        del backpack
    gc.collect()
    return [ref for ref in kept if ref() is not None]


def test_history_is_bounded_in_bytes_including_the_backpacks_it_refers_to():
    # 200 runs of ~100 KB of state each: the node_start states refer to every run's Backpack
    unbounded = EventStreamer(history_bytes=None)
    assert len(_runs_with_large_state(unbounded, 200)) == 200  # all kept alive: ~20 MB
    limit = 2 * 1024 * 1024
    streamer = EventStreamer(history_bytes=limit)
    alive = _runs_with_large_state(streamer, 200)
    # the budget holds ~20 runs' state; the runs since the last accounting pass (every 64
    # nodes: 32 runs here) may come on top until the next pass
    assert 5 < len(alive) <= limit // 100_000 + 32 + 1
    stats = streamer.get_stats()
    assert stats["history_bytes"] == limit
    assert stats["in_history"] < stats["total_events"]
    # the newest events are the ones kept, and their state still resolves
    last = streamer.get_events()[-1]
    assert last.type == T.RUN_END or last.type == T.NODE_END
    [start] = streamer.get_events(type=T.NODE_START)[-1:]
    assert start.payload.state.resolve().to_dict()["question"] == "q199"
    assert alive[-1]() is not None and alive[-1]().unpack("question") == "q199"


def test_history_bytes_count_a_backpack_while_any_of_its_node_starts_is_kept():
    # a run's nodes start in a row and runs interleave: the budget counts each Backpack as
    # long as one of its node_start events is in the history, no longer and no shorter
    from backpackflow.backpack import StateDelta
    from backpackflow.events import NodeStartPayload
    from backpackflow.events._retention import EVENT_BYTES

    streamer = EventStreamer(history_size=12, history_bytes=1 << 40)
    backpacks = {name: Backpack({"blob": name * 50_000}) for name in "abc"}
    sizes = {name: bp.approx_bytes() for name, bp in backpacks.items()}

    def emit(payload):
        emit_at(streamer, type=T.NODE_START if payload is not None else T.CUSTOM, payload=payload)
        time.sleep(0.001)  # distinct timestamps: the budget orders events by them

    for name in "aaabbacc":  # groups: aaa, bb, a, cc
        bp = backpacks[name]
        emit(NodeStartPayload("n", "Step", {}, StateDelta(bp, bp._seq, -1)))
    counted = []
    for _ in range(14):  # other events push the starts out one by one; a pass after each
        streamer._budget.account(streamer._history)
        kept = {e.payload.state.backpack for e in streamer.get_events(type=T.NODE_START)}
        names = "".join(n for n, bp in backpacks.items() if bp in kept)
        estimate = streamer.get_stats()["history_bytes_estimate"]
        assert estimate == len(streamer.get_events()) * EVENT_BYTES + sum(sizes[n] for n in names)
        counted.append(names)
        emit(None)
    assert counted == ["abc"] * 9 + ["ac"] + ["c"] * 2 + [""] * 2


def test_history_bytes_keep_no_backpack_alive_once_its_events_left_the_history():
    # the byte accounting references neither the events nor the Backpacks it counts: a
    # Backpack is freed when the history's last event referring to it leaves, as with no byte
    # bound, not at the next accounting pass
    from backpackflow.backpack import StateDelta
    from backpackflow.events import NodeStartPayload
    from backpackflow.events._retention import EVENT_BYTES

    def freed_after_leaving(streamer: EventStreamer) -> bool:
        backpack = Backpack({"blob": "x" * 10_000})
        ref = weakref.ref(backpack)
        state = StateDelta(backpack, backpack._seq, -1)
        emit_at(streamer, type=T.NODE_START, payload=NodeStartPayload("n", "Step", {}, state))
        del backpack, state
        if streamer._budget is not None:
            streamer._budget.account(streamer._history)  # the start is counted
        for i in range(3):  # the start leaves the history by count
            emit_at(streamer, payload=i)
        assert all(e.type == T.CUSTOM for e in streamer.get_events())
        return ref() is None

    assert freed_after_leaving(EventStreamer(history_size=3, history_bytes=None))
    bounded = EventStreamer(history_size=3, history_bytes=1 << 40)
    assert freed_after_leaving(bounded)
    bounded._budget.account(bounded._history)  # the next pass forgets it
    assert bounded.get_stats()["history_bytes_estimate"] == 3 * EVENT_BYTES


def test_history_bytes_is_checked_and_counts_events_outside_runs():
    from backpackflow.events._retention import EVENT_BYTES, TICKS

    with pytest.raises(InvalidSetting, match="history_bytes"):
        EventStreamer(history_bytes=-1)
    streamer = EventStreamer(history_size=1_000, history_bytes=100 * EVENT_BYTES)
    for i in range(500):
        emit_at(streamer, payload=i)
    kept = streamer.get_events()
    # 100 events fit; those since the last pass may come on top until the next one
    assert 100 <= len(kept) <= 100 + TICKS
    assert [e.payload for e in kept] == list(range(500 - len(kept), 500))
    assert streamer.get_stats()["history_bytes_estimate"] == len(kept) * EVENT_BYTES
    streamer.clear_history()
    assert streamer.get_stats()["history_bytes_estimate"] == 0
    assert streamer.get_stats()["history_size"] == 1_000


def test_history_zero_turns_it_off_but_subscribers_still_get_events():
    streamer = EventStreamer(history_size=0)
    got = []
    streamer.subscribe("*", got.append)
    for _ in range(3):
        emit_at(streamer)
    assert streamer.get_events() == []
    assert streamer.to_json() == []
    assert len(got) == 3
    assert streamer.get_stats()["total_events"] == 3


def test_stats_count_unique_nodes_namespaces_and_runs_of_real_runs():
    streamer = EventStreamer()

    class Step(Node):
        pass

    one, two = Step(id="one", namespace="chat"), Step(id="two")
    one >> two
    flow = Flow(one, namespace="sales")
    flow.run(Backpack(), events=streamer)
    flow.run(Backpack(), events=streamer)
    stats = streamer.get_stats()
    assert stats["unique_nodes"] == 2
    assert stats["unique_namespaces"] == 2  # sales (the flow and node two), sales.chat
    assert stats["runs"] == 2


@pytest.mark.parametrize("size", [-1, 1.5, "10", None, True])
def test_history_size_must_be_a_non_negative_int(size):
    with pytest.raises(InvalidSetting, match="history_size"):
        EventStreamer(history_size=size)


def test_clear_history():
    streamer = EventStreamer()
    emit_at(streamer)
    streamer.clear_history()
    assert streamer.get_events() == []


def test_get_events_filters():
    streamer = EventStreamer()
    bp = Backpack({"question": "q"})
    first = Flow(Reader(id="r", namespace="sales.chat")).execute_sync(bp, events=streamer)
    second = Flow(Writer("x", 1, id="w", namespace="support")).execute_sync(
        Backpack(), events=streamer
    )
    everything = streamer.get_events()
    assert streamer.get_events(run_id=first.run_id) == [
        e for e in everything if e.run_id == first.run_id
    ]
    assert {e.node_id for e in streamer.get_events(node_id="w")} == {"w"}
    assert streamer.get_events(node_id="w") == streamer.get_node_events("w")
    assert {e.namespace for e in streamer.get_events(namespace="sales.*")} == {"sales.chat"}
    assert streamer.get_events(namespace="sales.*") == streamer.get_namespace_events("sales.*")
    assert streamer.get_events(namespace="support")[0].node_id == "w"
    assert [e.type for e in streamer.get_events(run_id=second.run_id, type="node_end")] == [
        T.NODE_END
    ]
    both = streamer.get_events(type=[T.RUN_START, "run_end"])
    assert [e.type for e in both] == [T.RUN_START, T.RUN_END] * 2
    combined = streamer.get_events(run_id=first.run_id, node_id="r", type=T.BACKPACK_UNPACK)
    assert [(e.payload.key, e.run_id) for e in combined] == [("question", first.run_id)]
    assert streamer.get_events(limit=2) == everything[-2:]
    assert streamer.get_events(limit=0) == []
    with pytest.raises(ValueError, match="unknown event type"):
        streamer.get_events(type="bogus")


def test_stats_count_types_nodes_and_subscribers():
    streamer = EventStreamer()
    streamer.subscribe("*", lambda e: None)
    streamer.on(T.ERROR, lambda e: None)
    a = Writer("k", 1, id="a")
    a >> Writer("k", 2, id="b")
    Flow(a).execute_sync(Backpack(), events=streamer)
    Flow(a).execute_sync(Backpack(), events=streamer)
    stats = streamer.get_stats()
    assert stats["by_type"][T.NODE_START] == 4
    assert stats["by_type"]["run_start"] == 2
    assert stats["total_events"] == sum(stats["by_type"].values()) == len(streamer.get_events())
    assert stats["unique_nodes"] == 2
    assert stats["subscribers"] == 2
    assert stats["handler_errors"] == 0
    json.dumps(stats)


# ------------------------------------------------------------------------------- JSON export


class Opaque:
    __slots__ = ()


class RaisingRepr:
    def __repr__(self):
        raise RuntimeError("repr exploded")


class RaisingToJson:
    def to_json(self):
        raise RuntimeError("to_json exploded")


class NonJsonToJson:
    def to_json(self):
        return {"when": Opaque(), "tags": {"a"}}


def _circular():
    data: dict = {"name": "loop"}
    data["self"] = data
    return data


@pytest.mark.parametrize(
    "payload",
    [
        Opaque(),
        {"set": {1, 2}, "bytes": b"\x00\xff", "nan": math.nan, "inf": -math.inf},
        {1: "int key", (1, 2): "tuple key"},
        RaisingRepr(),
        {"inner": RaisingRepr(), "ok": 1},
        RaisingToJson(),
        NonJsonToJson(),
        _circular(),
        ValueError("an exception"),
        threading.Lock(),
    ],
    ids=[
        "opaque",
        "set-bytes-nan",
        "non-str-keys",
        "raising-repr",
        "nested-raising-repr",
        "raising-to_json",
        "to_json-returning-non-json",
        "circular",
        "exception",
        "lock",
    ],
)
def test_to_json_never_fails(payload):
    streamer = EventStreamer()
    emit_at(streamer, "n", "a.b", T.CUSTOM, payload)
    data = streamer.to_json()
    assert len(data) == 1
    # strict JSON: no NaN, no objects json cannot write
    text = json.dumps(data, allow_nan=False)
    assert json.loads(text)[0]["type"] == "custom"
    assert json.loads(streamer.to_json_str())[0]["node_id"] == "n"


def test_custom_events_emitted_by_node_code_serialize():
    class Talker(Node):
        def exec(self, prep_res):
            run = current_run()
            run.emit(T.CUSTOM, {"thing": Opaque()})
            run.log("thinking", data={"step": 1})
            return None

    streamer = EventStreamer()
    assert Flow(Talker(id="talker")).execute_sync(Backpack(), events=streamer).ok
    custom = streamer.get_events(type=T.CUSTOM)[0]
    assert custom.node_id == "talker"
    assert custom.step == 1
    json.dumps(streamer.to_json(), allow_nan=False)
    log = streamer.get_events(type=T.LOG)[0].to_json()["payload"]
    assert log == {"level": "info", "message": "thinking", "data": {"step": 1}}


# ------------------------------------------------------------------------------- lazy snapshots


def test_node_start_state_is_lazy_and_materializes_the_state_at_that_moment():
    a = Writer("k", "from a", id="a")
    b = Writer("k", "from b", id="b")
    a >> b
    streamer = EventStreamer()
    bp = Backpack({"k": "initial", "other": [1, 2]})
    assert Flow(a).execute_sync(bp, events=streamer).ok
    starts = streamer.get_events(type=T.NODE_START)
    # not a materialized dict: a reference to an immutable snapshot
    assert not isinstance(starts[0].payload.state, dict)
    bp.pack("k", "written after the run")
    bp.delete("other")
    # in process: the whole state at that moment
    assert starts[0].payload.state.to_dict() == {"k": "initial", "other": [1, 2]}
    assert starts[1].payload.state.to_dict() == {"k": "from a", "other": [1, 2]}
    # serialized: the first node start has the whole state, later ones what changed since
    assert starts[0].to_json()["payload"]["state"] == {
        "$state": "delta",
        "seq": 2,
        "base_seq": None,
        "changed": {"k": "initial", "other": [1, 2]},
        "removed": [],
    }
    assert starts[1].to_json()["payload"]["state"] == {
        "$state": "delta",
        "seq": 3,
        "base_seq": 2,
        "changed": {"k": "from a"},
        "removed": [],
    }
    # and it stays equal, however often it is serialized
    assert starts[0].to_json() == starts[0].to_json()


def test_node_start_states_cost_what_was_written_not_a_copy_per_node():
    # a large state that no node changes is serialized once per run, not once per node
    nodes = [Writer(f"k{i}", i, id=f"n{i}") for i in range(20)]
    for left, right in itertools.pairwise(nodes):
        left >> right
    streamer = EventStreamer()
    bp = Backpack({"big": "x" * 100_000})
    assert Flow(nodes[0]).execute_sync(bp, events=streamer).ok
    bp.delete("k3")
    starts = [e.to_json()["payload"]["state"] for e in streamer.get_events(type=T.NODE_START)]
    assert len(json.dumps(starts)) < 100_000 + 20 * 200
    # chaining the deltas rebuilds each node's starting state exactly
    state: dict[str, Any] = {}
    for event, delta in zip(streamer.get_events(type=T.NODE_START), starts, strict=True):
        if delta["base_seq"] is None:
            state = {}
        state = {k: v for k, v in state.items() if k not in delta["removed"]}
        state.update(delta["changed"])
        assert state == event.payload.state.to_dict()
    assert state == {"big": "x" * 100_000, **{f"k{i}": i for i in range(19)}}


def test_a_delete_between_node_starts_is_a_removed_key():
    class Drops(Node):
        def post(self, backpack, prep_res, exec_res):
            backpack.delete("gone")

    a, b = Drops(id="a"), Writer("k", 1, id="b")
    a >> b
    streamer = EventStreamer()
    assert Flow(a).execute_sync(Backpack({"gone": 1, "kept": 2}), events=streamer).ok
    second = streamer.get_events(type=T.NODE_START)[1].to_json()["payload"]["state"]
    assert (second["changed"], second["removed"]) == ({}, ["gone"])


def test_error_state_is_the_state_at_the_error():
    class Fails(Node):
        def post(self, backpack, prep_res, exec_res):
            backpack.pack("partial", 1)
            raise ValueError("bad")

    streamer = EventStreamer()
    bp = Backpack({"k": 0})
    result = Flow(Fails()).execute_sync(bp, events=streamer)
    assert result.status == "failed"
    bp.pack("k", 99)
    error = streamer.get_events(type=T.ERROR)[0]
    assert not isinstance(error.payload.state, dict)
    assert error.to_json()["payload"]["state"] == {"k": 0, "partial": 1}


def test_materialized_snapshot_values_cannot_change_history():
    streamer = EventStreamer()
    Flow(Writer("k", 1)).execute_sync(Backpack({"lst": [1]}), events=streamer)
    start = streamer.get_events(type=T.NODE_START)[0]
    state = start.to_json()["payload"]["state"]["changed"]
    state["lst"].append(2)
    assert start.to_json()["payload"]["state"]["changed"] == {"lst": [1]}


def test_snapshot_evicted_by_max_history_serializes_as_a_marker():
    class Many(Node):
        def post(self, backpack, prep_res, exec_res):
            for i in range(10):
                backpack.pack("k", i)

    streamer = EventStreamer()
    bp = Backpack({"a": 1, "b": 2}, max_history=3)
    assert Flow(Many()).execute_sync(bp, events=streamer).ok
    state = streamer.get_events(type=T.NODE_START)[0].to_json()["payload"]["state"]
    assert isinstance(state, dict)
    assert state.get("$evicted") is True
    json.dumps(streamer.to_json())


# ------------------------------------------------------------------------------- Backpack events


def test_backpack_emits_pack_and_unpack_events_in_a_run():
    streamer = EventStreamer()
    bp = Backpack({"question": "why"})
    Flow(Reader(id="reader", namespace="qa")).execute_sync(bp, events=streamer)
    unpack = streamer.get_events(type=T.BACKPACK_UNPACK)
    pack = streamer.get_events(type=T.BACKPACK_PACK)
    assert [(e.node_id, e.namespace, e.payload.key) for e in unpack] == [
        ("reader", "qa", "question")
    ]
    assert unpack[0].payload.access_granted is True
    assert unpack[0].payload.reason is None
    assert [(e.node_id, e.payload.key) for e in pack] == [("reader", "answer")]
    data = pack[0].to_json()["payload"]
    assert data["access_granted"] is True
    assert "answer to why" in data["value_summary"]
    assert data["commit_id"] == bp.get_history()[-1].commit_id


def test_backpack_events_report_denials_with_the_reason():
    streamer = EventStreamer()
    bp = Backpack({"question": "secret"}, strict=False)
    bp.register_permissions("reader", read=["other"], write=["elsewhere"])
    result = Flow(Reader(id="reader")).execute_sync(bp, events=streamer)
    assert result.ok
    unpack = streamer.get_events(type=T.BACKPACK_UNPACK)[0]
    assert unpack.payload.access_granted is False
    assert "other" in unpack.payload.reason
    assert unpack.node_id == "reader"
    pack = streamer.get_events(type=T.BACKPACK_PACK)[0]
    assert pack.payload.access_granted is False
    assert pack.payload.reason
    # a denied write leaks no value
    assert pack.to_json()["payload"]["value_summary"] is None
    assert "answer" not in bp


def test_strict_denial_emits_the_unpack_event_then_the_error():
    streamer = EventStreamer()
    bp = Backpack({"question": "secret"})
    bp.register_permissions("reader", read=["other"])
    result = Flow(Reader(id="reader")).execute_sync(bp, events=streamer)
    assert result.status == "failed"
    types = [e.type for e in streamer.get_events(node_id="reader")]
    assert types == [T.NODE_START, T.BACKPACK_UNPACK, T.ERROR]
    assert streamer.get_events(type=T.BACKPACK_UNPACK)[0].payload.access_granted is False
    assert streamer.get_events(type=T.ERROR)[0].payload.phase == "prep"


def test_backpack_accesses_outside_runs_emit_nothing():
    streamer = EventStreamer()
    bp = Backpack()
    Flow(Writer("k", 1)).execute_sync(bp, events=streamer)
    count = len(streamer.get_events())
    bp.pack("after", 1)
    bp.unpack("after")
    assert len(streamer.get_events()) == count


def test_durations_and_commit_times_are_the_events_own_timestamps():
    """A node's durations are differences of its events' timestamps, and a pack's event is
    stamped with its commit's time: a consumer can line the three up exactly."""
    streamer = EventStreamer()
    result = Flow(Reader()).execute_sync(Backpack({"question": "q"}), events=streamer)
    by_type = {e.type: e for e in streamer.get_events()}
    start, prep = by_type[T.NODE_START], by_type[T.PREP_COMPLETE]
    done, end = by_type[T.EXEC_COMPLETE], by_type[T.NODE_END]
    assert end.payload.duration_ms == pytest.approx((end.timestamp - start.timestamp) * 1e3)
    assert done.payload.duration_ms == pytest.approx((done.timestamp - prep.timestamp) * 1e3)
    commit = result.backpack.get_item("answer")
    assert by_type[T.BACKPACK_PACK].payload.commit_id == commit.commit_id
    assert by_type[T.BACKPACK_PACK].timestamp == commit.timestamp


def test_stats_count_a_run_started_again_once_and_keep_only_the_latest_run_ids(monkeypatch):
    """``runs`` counts distinct runs without keeping every run id ever seen: a long-lived
    streamer (the service's) would otherwise grow by one id per run forever."""
    monkeypatch.setattr(bus, "RECENT_RUNS", 3)
    streamer = EventStreamer()
    counter = itertools.count(1)

    def start(run_id: str) -> None:
        Emitter(streamer, counter, run_id, 0, None, None, None).emit(T.RUN_START, {})

    for run_id in ["a", "b", "a", "c", "b"]:  # a and b started again while remembered
        start(run_id)
    assert streamer.get_stats()["runs"] == 3
    for run_id in ["d", "e", "f"]:
        start(run_id)
    assert len(streamer._recent_runs) == 3  # bounded: only d, e and f are remembered
    start("a")  # started again after more than RECENT_RUNS others: counted again
    assert streamer.get_stats()["runs"] == 7
    streamer.emit(BackpackEvent(99, 1.0, "f", 0, None, None, None, T.RUN_START, {}))
    assert streamer.get_stats()["runs"] == 7  # EventStreamer.emit counts alike
