"""EventWriter: batching from many threads, retries, nothing lost silently, flush and close."""

from __future__ import annotations

import logging
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy.exc import OperationalError

from backpackflow_store_sql import (
    EventConflict,
    EventWriter,
    SpillFileBusy,
    SqlRunStore,
    WriterClosed,
)


def _response(cost: str) -> dict[str, Any]:
    return {"usage": {"input_tokens": 3, "output_tokens": 2}, "cost": cost, "cost_known": True}


def _transient() -> OperationalError:
    return OperationalError("INSERT ...", {}, Exception("server closed the connection"))


class Recorder:
    """A sink that records calls and can be told to fail or block."""

    def __init__(self, fail_first: int = 0, block: threading.Event | None = None) -> None:
        self.calls: list[tuple[str, list[Any]]] = []
        self.fail_first = fail_first
        self.block = block

    def append_events(self, run_id: str, events: Sequence[Any]) -> None:
        if self.block is not None:
            self.block.wait()
        if self.fail_first > 0:
            self.fail_first -= 1
            raise _transient()
        self.calls.append((run_id, list(events)))


def test_events_from_many_threads_are_stored_once_in_seq_order(
    store: SqlRunStore, trace: Any
) -> None:
    workflow = store.create_workflow("w", {})
    runs = [store.create_run(workflow["id"], {}) for _ in range(12)]
    per_run = 120
    writer = EventWriter(store, max_batch=64, max_delay=0.01)

    def produce(run_ids: list[str]) -> None:
        builders = [trace(run_id) for run_id in run_ids]
        for i in range(per_run):
            for b in builders:  # interleave this thread's runs
                step = i // 4 + 1
                if i % 4 == 0:
                    event = b.event("node_start", {"node_type": "LLMNode"}, step=step)
                elif i % 4 == 3:
                    event = b.event("node_end", {"action": "default", "duration_ms": 1}, step=step)
                else:
                    event = b.event("llm_response", _response("0.000123"), step=step)
                writer.put(b.run_id, event)

    threads = [
        threading.Thread(target=produce, args=([r["id"] for r in runs[i::6]],)) for i in range(6)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert writer.flush(timeout=30)
    stats = writer.stats
    total = per_run * len(runs)
    assert (stats.queued, stats.written, stats.failed, stats.pending) == (total, total, 0, 0)
    assert stats.batches < total / 4  # batched, not one transaction per event
    writer.close()

    for run in runs:
        stored = store.get_trace(run["id"], limit=1000)
        assert [e["seq"] for e in stored] == list(range(1, per_run + 1))
        assert len({e["id"] for e in stored}) == per_run
        details = store.get_run(run["id"])
        assert (details["event_count"], details["last_seq"]) == (per_run, per_run)
        assert Decimal(details["total_cost"]) == Decimal("0.000123") * (per_run // 2)
        assert details["total_tokens_input"] == 3 * (per_run // 2)
        assert [s["status"] for s in details["steps"]] == ["succeeded"] * (per_run // 4)


def test_a_transient_failure_inside_the_transaction_is_retried_without_double_counting(
    store: SqlRunStore, run: dict[str, Any], trace: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    real_derive = store._derive
    failures = []

    def derive_failing_once(*args: Any) -> None:
        real_derive(*args)  # the events and steps are already written in this transaction
        if not failures:
            failures.append(True)
            raise _transient()

    monkeypatch.setattr(store, "_derive", derive_failing_once)
    t = trace(run["id"])
    events = [t.event("llm_response", _response("0.5"), step=1) for _ in range(10)]
    with EventWriter(store, backoff=0.001) as writer:
        for event in events:
            writer.put(run["id"], event)
        assert writer.flush(timeout=10)
        stats = writer.stats
    assert failures and stats.retries >= 1
    assert (stats.written, stats.failed) == (10, 0)
    assert store.get_trace(run["id"]) == events
    details = store.get_run(run["id"])
    assert (details["total_cost"], details["event_count"]) == ("5.0", 10)


def test_retries_with_backoff_then_succeeds() -> None:
    sink = Recorder(fail_first=3)
    writer = EventWriter(sink, backoff=0.01, max_backoff=0.02)
    started = time.monotonic()
    writer.put("r", {"id": "a", "seq": 1})
    assert writer.flush(timeout=5)
    assert time.monotonic() - started >= 0.01 + 0.02 + 0.02
    assert writer.stats.retries == 3 and sink.calls == [("r", [{"id": "a", "seq": 1}])]
    writer.close()


def test_what_cannot_be_stored_is_counted_logged_and_reported(
    store: SqlRunStore, run: dict[str, Any], trace: Any, caplog: pytest.LogCaptureFixture
) -> None:
    reported: list[tuple[str, list[Any], BaseException]] = []
    t = trace(run["id"])
    good = [t.event("log", {"i": i}) for i in range(5)]
    bad = {**t.event("log"), "seq": "seven"}
    writer = EventWriter(
        store,
        max_delay=0.2,  # so the six events share a batch
        on_failure=lambda run_id, events, error: reported.append((run_id, list(events), error)),
    )
    with caplog.at_level(logging.WARNING, logger="backpackflow_store_sql"):
        for event in [*good[:2], bad, *good[2:]]:
            writer.put(run["id"], event)
        assert writer.flush(timeout=10)
    stats = writer.stats
    assert (stats.written, stats.failed, stats.pending) == (5, 1, 0)
    assert store.get_trace(run["id"]) == good  # the batch was split: only the bad one is lost
    assert [(r[0], r[1]) for r in reported] == [(run["id"], [bad])]
    assert "seq must be an integer" in str(reported[0][2])
    assert "could not store 1 trace events" in caplog.text
    writer.close()


def test_gives_up_after_max_retries_and_keeps_going() -> None:
    sink = Recorder(fail_first=3)
    reported: list[Any] = []
    writer = EventWriter(
        sink, max_retries=2, backoff=0, on_failure=lambda *args: reported.append(args)
    )
    writer.put("r", {"id": "a", "seq": 1})
    assert writer.flush(timeout=5)
    writer.put("r", {"id": "b", "seq": 2})  # the database is back
    assert writer.flush(timeout=5)
    stats = writer.stats
    assert (stats.retries, stats.failed, stats.written) == (2, 1, 1)
    assert [args[1] for args in reported] == [[{"id": "a", "seq": 1}]]
    assert sink.calls == [("r", [{"id": "b", "seq": 2}])]
    writer.close()


def test_put_never_waits_for_the_database_and_flush_honours_its_timeout() -> None:
    gate = threading.Event()
    sink = Recorder(block=gate)
    writer = EventWriter(sink, max_batch=10)
    started = time.monotonic()
    for i in range(5000):
        writer.put("r", {"id": str(i), "seq": i + 1})
    assert time.monotonic() - started < 5.0  # a put that waited would wait for the gate: forever
    assert writer.flush(timeout=0.05) is False
    assert writer.stats.pending == 5000
    gate.set()
    assert writer.flush(timeout=10)
    assert sum(len(events) for _, events in sink.calls) == 5000
    assert max(len(events) for _, events in sink.calls) <= 10
    writer.close()


def test_close_stores_everything_then_refuses_more() -> None:
    sink = Recorder()
    writer = EventWriter(sink, max_delay=10)  # only the close can end the wait
    writer.put("r", {"id": "a", "seq": 1})
    writer.put("s", {"id": "b", "seq": 1})
    started = time.monotonic()
    assert writer.close(timeout=5)
    assert time.monotonic() - started < 5
    assert sorted(sink.calls) == [("r", [{"id": "a", "seq": 1}]), ("s", [{"id": "b", "seq": 1}])]
    with pytest.raises(WriterClosed, match="'c' not queued"):
        writer.put("r", {"id": "c", "seq": 2})
    assert writer.close()  # closing twice is harmless
    assert writer.flush(timeout=1)


def test_flush_wakes_a_writer_waiting_for_more_events() -> None:
    sink = Recorder()
    writer = EventWriter(sink, max_delay=10)
    writer.put("r", {"id": "a", "seq": 1})
    started = time.monotonic()
    assert writer.flush(timeout=5)
    assert time.monotonic() - started < 2
    writer.close()


def test_a_full_batch_is_written_without_waiting_for_max_delay() -> None:
    sink = Recorder()
    writer = EventWriter(sink, max_batch=5, max_delay=30)
    for seq in range(1, 13):
        writer.put("r", {"id": f"e{seq}", "seq": seq})
    deadline = time.monotonic() + 5
    while writer.stats.written < 12 and time.monotonic() < deadline:
        time.sleep(0.01)
    # two full batches at once, then the rest that waited behind them: no max_delay waited
    assert [len(events) for _, events in sink.calls] == [5, 5, 2]
    assert [event["seq"] for _, events in sink.calls for event in events] == list(range(1, 13))
    writer.close()


def test_events_put_while_a_batch_fills_share_its_transaction() -> None:
    sink = Recorder()
    writer = EventWriter(sink, max_delay=0.5)
    writer.put("r", {"id": "a", "seq": 1})
    time.sleep(0.1)  # the writer has taken the first event and waits for more
    writer.put("r", {"id": "b", "seq": 2})
    writer.put("r", {"id": "c", "seq": 3})
    assert writer.flush(timeout=5)
    assert [[event["seq"] for event in events] for _, events in sink.calls] == [[1, 2, 3]]
    writer.close()


def test_runs_flushed_while_a_batch_is_written_share_the_next_transaction() -> None:
    class Batches:
        def __init__(self) -> None:
            self.calls: list[dict[str, list[int]]] = []
            self.release = threading.Event()

        def append_events(self, run_id: str, events: Sequence[Any]) -> None:
            self.append_many({run_id: events})  # one run's transaction

        def append_many(self, batches: Any, **_: Any) -> None:
            self.calls.append({r: [e["seq"] for e in events] for r, events in batches.items()})
            if len(self.calls) == 1:
                self.release.wait(5)  # the first transaction is slow

    sink = Batches()
    writer = EventWriter(sink, max_delay=10)
    writer.put("a", {"id": "a1", "seq": 1})
    writer.flush(timeout=0)
    deadline = time.monotonic() + 5
    while not sink.calls and time.monotonic() < deadline:
        time.sleep(0.01)
    for run in ("b", "c", "d"):  # three runs end while the first transaction goes on
        writer.put(run, {"id": f"{run}1", "seq": 1})
        writer.flush(timeout=0)
    sink.release.set()
    assert writer.flush(timeout=5)
    assert sink.calls == [{"a": [1]}, {"b": [1], "c": [1], "d": [1]}]
    writer.close()


def test_invalid_settings() -> None:
    with pytest.raises(ValueError, match="max_batch"):
        EventWriter(Recorder(), max_batch=0)


# --------------------------------------------------------------------------- outages


class Database:
    """A sink that is down (every call fails as a lost connection does) until ``restore``."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, list[Any]]] = []
        self.checkpoints: list[bytes] = []
        self.up = threading.Event()

    def restore(self) -> None:
        self.up.set()

    def append_events(
        self, run_id: str, events: Sequence[Any], *, checkpoint: Sequence[bytes] = ()
    ) -> None:
        if not self.up.is_set():
            raise _transient()
        self.calls.append((run_id, list(events)))
        self.checkpoints.extend(checkpoint)

    def stored(self) -> list[Any]:
        return [event for _, events in self.calls for event in events]


def _events(count: int, pad: int = 100) -> list[dict[str, Any]]:
    return [{"id": f"e{i}", "seq": i + 1, "payload": "x" * pad} for i in range(count)]


def _wait_for(condition: Any, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.01)


def _settles(value: Any, quiet: float = 0.3) -> bool:
    before = value()
    time.sleep(quiet)
    return bool(value() == before)


def test_an_outage_delays_events_in_memory_and_loses_none() -> None:
    database = Database()
    writer = EventWriter(database, max_batch=10, backoff=0.01, max_backoff=0.05)
    events = _events(100)
    for event in events:
        writer.put("r", event)
    _wait_for(lambda: writer.stats.backlog_bytes > 0)  # taken off the queue, sized, held
    stats = writer.stats
    assert stats.outage and stats.pending == 100 and stats.failed == 0
    assert writer.flush(timeout=0.1) is False
    database.restore()
    assert writer.flush(timeout=10)
    stats = writer.stats
    assert (stats.written, stats.failed, stats.dropped, stats.pending) == (100, 0, 0, 0)
    assert not stats.outage and stats.backlog_bytes == 0
    assert database.stored() == events  # each once, in order
    writer.close()


def test_past_the_memory_bound_events_spill_to_a_file_and_are_stored_after(
    tmp_path: Path,
) -> None:
    database = Database()
    spill = tmp_path / "spill" / "writer.jsonl"
    spilled: list[tuple[str, int]] = []
    writer = EventWriter(
        database,
        max_batch=5,
        backoff=0.01,
        max_backoff=0.02,
        max_buffer_bytes=1000,
        spill_path=spill,
        on_spilled=lambda run_id, seq: spilled.append((run_id, seq)),
    )
    events = _events(60)
    for event in events:
        writer.put("r", event)
    _wait_for(lambda: writer.stats.pending == 60 and writer.stats.spilled_bytes > 0)
    _wait_for(lambda: writer.stats.backlog_bytes + writer.stats.spilled_bytes > 5000)
    assert writer.stats.backlog_bytes <= 1000
    assert spill.stat().st_size > 0
    # each event the file took was reported, once, in order (once the file takes events,
    # later ones follow them there); the first ones stayed in memory
    _wait_for(lambda: bool(spilled) and spilled[-1] == ("r", 60))
    first = spilled[0][1]
    assert first > 1 and spilled == [("r", seq) for seq in range(first, 61)]
    database.restore()
    assert writer.flush(timeout=10)
    stats = writer.stats
    assert (stats.written, stats.failed, stats.spilled_bytes) == (60, 0, 0)
    assert sorted(database.stored(), key=lambda e: e["seq"]) == events
    assert len(database.stored()) == 60  # none twice
    assert spill.stat().st_size == 0
    writer.close()


def test_past_both_bounds_events_are_dropped_counted_logged_and_reported(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    database = Database()
    reported: list[Any] = []
    writer = EventWriter(
        database,
        max_batch=5,
        backoff=0.01,
        max_backoff=0.02,
        max_buffer_bytes=1000,
        spill_path=tmp_path / "spill.jsonl",
        max_spill_bytes=2000,
        on_failure=lambda run_id, events, error: reported.extend(events),
    )
    events = _events(60)
    with caplog.at_level(logging.WARNING, logger="backpackflow_store_sql"):
        for event in events:
            writer.put("r", event)
        _wait_for(lambda: writer.stats.dropped > 0)
        _wait_for(lambda: _settles(lambda: writer.stats.dropped))  # the queue is drained
        database.restore()
        assert writer.flush(timeout=10)
    stats = writer.stats
    assert stats.dropped > 0 and stats.failed == stats.dropped
    assert stats.written + stats.dropped == 60
    assert len(reported) == stats.dropped
    assert sorted(database.stored() + reported, key=lambda e: e["seq"]) == events
    assert "dropping events" in caplog.text and "storing 5 events failed" in caplog.text
    writer.close()


def test_closed_during_an_outage_the_next_writer_stores_what_was_spilled(tmp_path: Path) -> None:
    """Events and checkpoint records alike (a run's checkpoint waits out an outage with its
    events, in order)."""
    spill = tmp_path / "writer.jsonl"
    down = Database()
    writer = EventWriter(down, max_batch=5, backoff=0.01, max_backoff=0.02, spill_path=spill)
    events = _events(23)
    for event in events:
        writer.put("r", event)
        if event["seq"] == 10:
            writer.put_checkpoint("r", _lines({"k": "pos", "seq": 10}))
    assert writer.close(timeout=0.3)  # the database never came back: spilled, not lost
    assert writer.stats.failed == 0 and down.calls == []
    back = Database()
    back.restore()
    later = EventWriter(back, spill_path=spill)
    assert later.flush(timeout=10)
    assert later.stats.written == 24
    assert sorted(back.stored(), key=lambda e: e["seq"]) == events
    assert back.checkpoints == [b'{"k":"pos","seq":10}']
    later.close()
    assert spill.stat().st_size == 0


def test_one_spill_file_has_one_writer_at_a_time(tmp_path: Path) -> None:
    spill = tmp_path / "writer.jsonl"
    first = EventWriter(Database(), spill_path=spill)
    with pytest.raises(SpillFileBusy, match=r"writer\.jsonl is in use by another event writer"):
        EventWriter(Database(), spill_path=spill)
    assert first.spill_path == spill
    first.close()
    second = EventWriter(Database(), spill_path=spill)  # free once the first one stopped
    second.close()


_HOLD_SPILL_FILE = """
import sys, time
from backpackflow_store_sql.writer import _SpillFile
held = _SpillFile(__import__("pathlib").Path(sys.argv[1]), 1024)
print("held", flush=True)
time.sleep(600)
"""


def test_a_spill_file_held_by_another_process_is_refused_until_that_process_dies(
    tmp_path: Path,
) -> None:
    spill = tmp_path / "writer.jsonl"
    holder = subprocess.Popen(
        [sys.executable, "-c", _HOLD_SPILL_FILE, str(spill)], stdout=subprocess.PIPE, text=True
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
        with pytest.raises(SpillFileBusy):
            EventWriter(Database(), spill_path=spill)
    finally:
        holder.kill()  # as a crash: the lock goes with the process
        holder.wait()
        if holder.stdout is not None:
            holder.stdout.close()
    writer = EventWriter(Database(), spill_path=spill)
    writer.close()


def test_a_batch_of_several_runs_with_one_bad_event_stores_the_rest(
    store: SqlRunStore, trace: Any
) -> None:
    workflow = store.create_workflow("w", {})
    first, second = (store.create_run(workflow["id"], {}) for _ in range(2))
    builder = trace(first["id"])
    good = [builder.event("log", {"i": i}) for i in range(3)]
    t = trace(second["id"])
    fine, bad = t.event("log"), {**t.event("log"), "timestamp": "noon"}
    writer = EventWriter(store, max_delay=0.2)  # one batch, two runs: one transaction
    for run_id, event in [*((first["id"], e) for e in good), (second["id"], fine)]:
        writer.put(run_id, event)
    writer.put(second["id"], bad)
    assert writer.flush(timeout=10)
    assert (writer.stats.written, writer.stats.failed) == (4, 1)
    assert store.get_trace(first["id"]) == good
    assert store.get_trace(second["id"]) == [fine]
    writer.close()


# ------------------------------------------------------------------------- checkpoint records


def _lines(*records: dict[str, Any]) -> list[bytes]:
    from backpackflow.runner import encode_records

    return encode_records(list(records))


def test_checkpoint_records_are_stored_with_the_events_queued_before_them(
    store: SqlRunStore, trace: Any
) -> None:
    """One writer, several runs: each run's checkpoint records land in order, in the
    transactions of its events (a batch holds both), and count in the stats as items."""
    workflow = store.create_workflow("w", {})
    runs = [store.create_run(workflow["id"], {})["id"] for _ in range(3)]
    builders = {run_id: trace(run_id) for run_id in runs}
    writer = EventWriter(store, max_batch=7, max_delay=0.01)
    for i in range(10):
        for run_id in runs:
            writer.put(run_id, builders[run_id].event("log", {"message": str(i)}))
            writer.put_checkpoint(run_id, _lines({"k": "pos", "i": i}))
    assert writer.flush(timeout=30)
    assert writer.stats.written == 60 and writer.stats.failed == 0
    for run_id in runs:
        assert store.records(run_id) == [{"k": "pos", "i": i} for i in range(10)]
        assert store.count_events(run_id) == 10
    writer.close()


def test_a_batch_is_one_transaction_for_events_and_checkpoint(
    store: SqlRunStore, trace: Any
) -> None:
    """A batch refused as a whole stores neither its events nor its checkpoint records."""
    workflow = store.create_workflow("w", {})
    run_id = store.create_run(workflow["id"], {})["id"]
    builder = trace(run_id)
    event = builder.event("log", {})
    store.append_events(run_id, [event], checkpoint=_lines({"k": "start"}))
    assert store.records(run_id) == [{"k": "start"}]
    clash = dict(builder.event("log", {}), seq=event["seq"])  # a new id reusing a seq
    with pytest.raises(EventConflict):
        store.append_many({run_id: [clash]}, checkpoints={run_id: _lines({"k": "pos"})})
    assert store.records(run_id) == [{"k": "start"}]
    assert store.count_events(run_id) == 1


def test_a_flush_behind_a_full_batch_is_not_kept_waiting() -> None:
    release = threading.Event()
    sink = Recorder(block=release)
    writer = EventWriter(sink, max_batch=3, max_delay=30)
    writer.put("r", {"id": "e0", "seq": 0})
    writer.flush(timeout=0)
    time.sleep(0.2)  # the writer is storing e0 by now (the sink holds it)
    for seq in range(1, 5):  # a full batch, then e4 and the flush behind it
        writer.put("r", {"id": f"e{seq}", "seq": seq})
    started = time.monotonic()
    release.set()
    assert writer.flush(timeout=10)
    assert time.monotonic() - started < 10
    assert [[event["seq"] for event in events] for _, events in sink.calls] == [
        [0],
        [1, 2, 3],
        [4],
    ]
    writer.close()
