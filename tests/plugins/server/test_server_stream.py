"""SSE over a real socket, on SQLite and PostgreSQL: live streams, heartbeats, exact resume with
Last-Event-ID (from memory and from the database), replay of finished runs, disconnects."""

from __future__ import annotations

import time
from typing import Any

import httpx
import pytest
from server_kit import (
    GATES,
    LiveServer,
    StreamReader,
    create_workflow,
    echo,
    flow,
    gate,
    read_stream,
    sse_messages,
    start_run,
    unique,
    wait_for_status,
)

from backpackflow.ids import new_id


def stored_trace(client: httpx.Client, run_id: str) -> list[dict[str, Any]]:
    return list(client.get(f"/api/runs/{run_id}/trace", params={"limit": 1000}).json()["items"])


def gated_run(client: httpx.Client, *, lines: int = 3) -> tuple[dict[str, Any], str, str]:
    """A run of echo → gate A → echo → gate B → echo, waiting at gate A."""
    a, b = unique("a"), unique("b")
    graph = flow(
        echo("start", log_lines=lines),
        gate("wait_a", a),
        echo("middle", log_lines=lines * 3),
        gate("wait_b", b),
        echo("finish", log_lines=lines),
    )
    run = start_run(client, create_workflow(client, graph))
    GATES.wait_until_waiting(a)
    return run, a, b


def test_live_stream_from_start_to_end(client: httpx.Client) -> None:
    run, a, b = gated_run(client)
    reader = StreamReader(client, run["id"])
    GATES.open(a)
    GATES.open(b)
    events, end = reader.join()
    assert end["status"] == "succeeded" and end["id"] == run["id"]
    assert [e["seq"] for e in events] == list(range(1, end["last_seq"] + 1))
    assert end["event_count"] == end["last_seq"]
    assert events == stored_trace(client, run["id"])  # what streamed is what was stored
    assert events[0]["type"] == "run_start" and events[-1]["type"] == "run_end"


def test_heartbeats_while_a_run_waits(client: httpx.Client, service: LiveServer) -> None:
    run, _, _ = gated_run(client)
    heartbeats = 0
    with client.stream("GET", f"/api/runs/{run['id']}/stream") as response:
        first = True
        for message in sse_messages(response, comments=True):
            if first:
                assert message.retry == service.settings.sse_retry_ms
                first = False
            if message.event == "comment":
                assert message.comments[0].startswith("ping")
                heartbeats += 1
                if heartbeats == 2:
                    break
    assert heartbeats == 2


@pytest.mark.parametrize("stop_after", [1, 4, 9])
def test_reconnect_with_last_event_id_gets_exactly_the_missed_events(
    client: httpx.Client, service: LiveServer, stop_after: int
) -> None:
    run, a, b = gated_run(client)
    first, end = read_stream(client, run["id"], stop_after=stop_after)
    assert end is None and [e["seq"] for e in first] == list(range(1, stop_after + 1))

    GATES.open(a)  # events happen while the client is away
    GATES.wait_until_waiting(b)
    missed_until = wait_until_stored_beyond(client, run["id"], stop_after + 10)
    handle = service.app.state.service.manager.handle(run["id"])
    deadline = time.monotonic() + 5
    while handle.low <= stop_after + 1:  # the missed events leave memory: the database has them
        assert time.monotonic() < deadline, f"events from {handle.low} are still in memory"
        time.sleep(0.01)

    reader = StreamReader(client, run["id"], headers={"Last-Event-ID": str(first[-1]["seq"])})
    time.sleep(0.1)
    GATES.open(b)
    second, end = reader.join()
    seqs = [e["seq"] for e in first + second]
    assert seqs == list(range(1, end["last_seq"] + 1)), "a gap or a duplicate"
    assert second[0]["seq"] == stop_after + 1 and len(second) > missed_until - stop_after
    assert first + second == stored_trace(client, run["id"])


def wait_until_stored_beyond(client: httpx.Client, run_id: str, count: int) -> int:
    """Wait until the database holds at least ``count`` events of the run (the shared
    server keeps only 4 stored events in memory: older ones must come from the database)."""
    deadline = time.monotonic() + 10
    while True:
        stored = client.get(f"/api/runs/{run_id}").json()["event_count"]
        if stored >= count:
            return int(stored)
        assert time.monotonic() < deadline, f"only {stored} events stored"
        time.sleep(0.01)


def test_resume_with_events_not_yet_stored(serve: Any, database_url: str) -> None:
    # The writer waits 5 s to fill a batch: every event is still only in memory.
    server: LiveServer = serve(
        database_url=database_url, writer_max_delay=5.0, writer_max_batch=10_000
    )
    with server.client() as client:
        run, a, b = gated_run(client)
        first, _ = read_stream(client, run["id"], stop_after=3)
        GATES.open(a)
        GATES.wait_until_waiting(b)
        assert stored_trace(client, run["id"]) == []  # nothing stored yet
        assert server.app.state.service.manager.handle(run["id"]).low == 1
        second, _ = read_stream(client, run["id"], headers={"Last-Event-ID": "3"}, stop_after=10)
        assert [e["seq"] for e in first + second] == list(range(1, 14))
        third, _ = read_stream(client, run["id"], params={"after": 13}, stop_after=2)
        assert [e["seq"] for e in third] == [14, 15]
        GATES.open(b)
        done = wait_for_status(client, run["id"], "succeeded", timeout=5)
        assert [e["seq"] for e in stored_trace(client, run["id"])] == list(
            range(1, done["last_seq"] + 1)
        )


def test_last_event_id_wins_over_after(client: httpx.Client) -> None:
    run = start_run(client, create_workflow(client, flow(echo("a", log_lines=5))))
    done = wait_for_status(client, run["id"], "succeeded")
    events, _ = read_stream(client, run["id"], headers={"Last-Event-ID": "6"}, params={"after": 2})
    assert [e["seq"] for e in events] == list(range(7, done["last_seq"] + 1))
    events, _ = read_stream(client, run["id"], params={"after": 2})
    assert [e["seq"] for e in events] == list(range(3, done["last_seq"] + 1))


def test_a_finished_run_replays_everything_and_closes(client: httpx.Client) -> None:
    run = start_run(client, create_workflow(client, flow(echo("a", log_lines=10))))
    done = wait_for_status(client, run["id"], "succeeded")
    events, end = read_stream(client, run["id"])
    assert [e["seq"] for e in events] == list(range(1, done["last_seq"] + 1))
    assert end["status"] == "succeeded" and end["event_count"] == done["event_count"]
    assert events == stored_trace(client, run["id"])
    for last in (str(done["last_seq"]), "1000000"):
        events, end = read_stream(client, run["id"], headers={"Last-Event-ID": last})
        assert events == [] and end["status"] == "succeeded"


def test_a_run_that_ended_lately_streams_from_memory_until_others_push_it_out(
    serve: Any, database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    server: LiveServer = serve(database_url=database_url, stream_buffer_events=40)
    store = server.app.state.service.store
    reads: list[str] = []
    get_trace = store.get_trace

    def counted(run_id: str, **kwargs: Any) -> Any:  # the real read, counted
        reads.append(run_id)
        return get_trace(run_id, **kwargs)

    monkeypatch.setattr(store, "get_trace", counted)
    with server.client() as client:
        workflow = create_workflow(client, flow(echo("a", log_lines=10)))
        first = start_run(client, workflow)
        done = wait_for_status(client, first["id"], "succeeded")
        assert done["last_seq"] > 10  # so that a second run's events push it out
        events, end = read_stream(client, first["id"])
        assert reads == []  # from memory: the run ended here a moment ago
        assert [e["seq"] for e in events] == list(range(1, done["last_seq"] + 1))
        assert end["status"] == "succeeded" and end["event_count"] == done["event_count"]
        assert events == stored_trace(client, first["id"])
        reads.clear()  # (the trace route read it)
        for _ in range(3):  # 40 events kept in all: these runs' push the first one out
            later = start_run(client, workflow)
            wait_for_status(client, later["id"], "succeeded")
        again, end = read_stream(client, first["id"])
        assert first["id"] in reads  # from the database now, with the same content
        assert again == events and end["status"] == "succeeded"


def test_bad_last_event_id_is_refused(client: httpx.Client) -> None:
    run = start_run(client, create_workflow(client, flow(echo("a"))))
    for value in ("abc", "-1"):
        response = client.get(f"/api/runs/{run['id']}/stream", headers={"Last-Event-ID": value})
        assert response.status_code == 422
        assert response.json()["detail"][0]["path"] == "header.Last-Event-ID"


def test_client_disconnects_do_not_affect_the_run(client: httpx.Client) -> None:
    run, a, b = gated_run(client)
    for _ in range(3):
        read_stream(client, run["id"], stop_after=2)  # connect, read, hang up
    with client.stream("GET", f"/api/runs/{run['id']}/stream") as response:
        next(response.iter_bytes())  # hang up mid-stream, without reading further
    GATES.open(a)
    GATES.open(b)
    done = wait_for_status(client, run["id"], "succeeded")
    assert [e["seq"] for e in stored_trace(client, run["id"])] == list(
        range(1, done["last_seq"] + 1)
    )


def test_concurrent_subscribers_receive_identical_streams(client: httpx.Client) -> None:
    run, a, b = gated_run(client, lines=5)
    readers = [StreamReader(client, run["id"]) for _ in range(4)]
    time.sleep(0.1)
    GATES.open(a)
    GATES.open(b)
    results = []
    for reader in readers:
        events, end = reader.join()
        assert end is not None
        results.append([e["seq"] for e in events])
    done = client.get(f"/api/runs/{run['id']}").json()
    assert results == [list(range(1, done["last_seq"] + 1))] * 4


def test_events_emitted_from_worker_threads(client: httpx.Client) -> None:
    name = unique("t")
    graph = flow(
        gate("wait", name), {"type": "threaded", "id": "worker", "params": {"log_lines": 7}}
    )
    run = start_run(client, create_workflow(client, graph))
    GATES.wait_until_waiting(name)
    reader = StreamReader(client, run["id"])
    GATES.open(name)
    events, end = reader.join()
    logs = [e["payload"]["message"] for e in events if e["type"] == "log"]
    assert logs == [f"from a thread {i}" for i in range(7)]
    assert [e["seq"] for e in events] == list(range(1, end["last_seq"] + 1))


def test_stream_of_a_run_another_process_executes(
    client: httpx.Client, service: LiveServer
) -> None:
    """A run this process does not execute is streamed from the database, polling."""
    store = service.app.state.service.store
    workflow_id = create_workflow(client, flow(echo("a")))
    run = store.create_run(workflow_id, {}, triggered_by="elsewhere")
    store.mark_running(run["id"])

    def event(seq: int, kind: str) -> dict[str, Any]:
        return {
            "id": new_id(),
            "seq": seq,
            "timestamp": time.time(),
            "run_id": run["id"],
            "step": None,
            "node_id": None,
            "node_name": None,
            "namespace": None,
            "type": kind,
            "payload": {"n": seq},
        }

    store.append_events(run["id"], [event(1, "run_start"), event(2, "log")])
    reader = StreamReader(client, run["id"], headers={"Last-Event-ID": "1"})
    time.sleep(0.3)
    store.append_events(run["id"], [event(3, "log"), event(4, "run_end")])
    store.finish_run(run["id"], "succeeded")
    events, end = reader.join()
    assert [e["seq"] for e in events] == [2, 3, 4]
    assert end["status"] == "succeeded"


@pytest.mark.parametrize(
    "value",
    [
        {"seq": 1, "payload": {}},
        {"text": "line one\nline two\r\nthree\rfour", "tab": "\t", "nul": "\x00"},
        {"unicode": "é 漢字 🎉 \u2028 \u2029 \x85 \x1c", "empty": ""},
        ["data: not a field", "id: 7", ": comment"],
    ],
)
def test_trace_messages_are_framed_as_sse_starlette_frames_them(value: Any) -> None:
    """The stream frames ``trace`` messages itself (no per-message line splitting); they
    must be byte for byte what sse-starlette's ServerSentEvent makes of the same JSON."""
    from backpackflow_server.streaming import _dumps, _encoded, _trace

    text = _dumps(value)
    ours = _encoded([_trace(12, text), _trace(13, text)])
    assert ours == _sse_starlette_frames(text, 12, 13)
    # one data line each: id, event, data, blank line (the spec ends lines at CR or LF only)
    assert ours.replace(b"\r\n", b"").count(b"\n") == ours.count(b"\r") - 8 == 0


def test_a_trace_text_of_several_lines_is_framed_as_sse_starlette_frames_it() -> None:
    """A text that is not JSON on one line (a live feed's, say) gets one data line per line."""
    from backpackflow_server.streaming import _encoded, _trace

    text = "one\ntwo\r\nthree\rfour"
    ours = _encoded([_trace(5, text)])
    assert ours == _sse_starlette_frames(text, 5)
    assert ours.count(b"data: ") == 4


def _sse_starlette_frames(text: str, *seqs: int) -> bytes:
    from sse_starlette import ServerSentEvent

    return b"".join(ServerSentEvent(text, event="trace", id=str(s)).encode() for s in seqs)
