"""The webhook sink against real HTTP servers on 127.0.0.1: batching, bodies, signatures,
retries (5xx, 429 + Retry-After), a dead or hanging endpoint that never slows the run, a full
queue, rejected batches, and close() within its timeout."""

from __future__ import annotations

import hashlib
import hmac
import socket
import threading
import time
from typing import Any

import pytest
from sinks_support import HookServer, Reply, chain, event_ids, run_flow

from backpackflow import EventStreamer
from backpackflow.events import StreamEventType
from backpackflow_sinks.webhook import DROP_REASONS, WebhookOptions, WebhookSink


def make(url: str, **options: Any) -> WebhookSink:
    settings: dict[str, Any] = {"trust_env": False, "backoff": 0.01, "max_backoff": 0.05}
    return WebhookSink(WebhookOptions(url=url, **(settings | options)))


def lost(report: dict[str, Any]) -> int:
    return sum(report["dropped"].values())


def test_events_arrive_in_batches_with_the_exact_run_events(hook_server) -> None:
    server: HookServer = hook_server(Reply(200))
    sink = make(server.url, batch_size=10, max_delay=30)
    result = run_flow(chain(5), [sink])
    ids = event_ids(result)
    assert len(ids) == 32  # run_start, 6 per node, run_end
    # run_end flushes at once: everything arrives before close and long before max_delay
    assert server.wait_for(4, timeout=3)
    report = sink.close(timeout=2)

    sizes = [len(r.json()["events"]) for r in server.requests]
    assert sizes == [10, 10, 10, 2]
    received = server.events()
    assert [e["id"] for e in received] == ids
    assert received[0]["type"] == "run_start" and received[-1]["type"] == "run_end"
    assert received[1]["payload"]["state"]["changed"] == {"k0": "start", "q": "question"}
    for request in server.requests:
        assert request.headers["Content-Type"] == "application/json"
        assert request.headers["X-Backpackflow-Attempt"] == "1"
        assert "X-Backpackflow-Signature" not in request.headers
    assert len({r.headers["X-Backpackflow-Batch"] for r in server.requests}) == 4
    assert report == {
        "sink": "webhook",
        "url": server.url,
        "received": 32,
        "sent": 32,
        "batches": 4,
        "retried": 0,
        "failed": 0,
        "dropped": dict.fromkeys(DROP_REASONS, 0),
        "last_error": None,
    }


def test_a_partial_batch_leaves_after_max_delay(hook_server) -> None:
    server = hook_server(Reply(200))
    sink = make(server.url, batch_size=100, max_delay=0.1)
    events = EventStreamer()
    events.subscribe(sink.handle)
    started = time.monotonic()
    events.emit_event(StreamEventType.LOG, None)
    assert server.wait_for(1, timeout=3)
    assert 0.08 <= server.requests[0].at - started < 2
    assert sink.close(timeout=2)["sent"] == 1


def test_hmac_signature_covers_timestamp_and_exact_body(hook_server) -> None:
    server = hook_server(Reply(200))
    sink = make(server.url, secret="s3cret", headers={"Authorization": "Bearer t0ken"})
    run_flow(chain(2), [sink])
    report = sink.close(timeout=2)
    assert report["sent"] == 14 and report["batches"] == 1
    (request,) = server.requests
    stamp = request.headers["X-Backpackflow-Timestamp"]
    assert abs(int(stamp) - time.time()) < 60
    expected = hmac.new(b"s3cret", stamp.encode() + b"." + request.body, hashlib.sha256)
    assert request.headers["X-Backpackflow-Signature"] == f"sha256={expected.hexdigest()}"
    assert request.headers["Authorization"] == "Bearer t0ken"
    # a receiver holding another secret, or seeing another body, rejects it
    forged = hmac.new(b"other", stamp.encode() + b"." + request.body, hashlib.sha256)
    assert request.headers["X-Backpackflow-Signature"] != f"sha256={forged.hexdigest()}"


def test_secret_from_an_environment_variable(hook_server, monkeypatch) -> None:
    monkeypatch.setenv("SINK_TEST_SECRET", "from-env")
    server = hook_server(Reply(200))
    sink = make(server.url, secret_env="SINK_TEST_SECRET")
    run_flow(chain(1), [sink])
    sink.close(timeout=2)
    request = server.requests[0]
    stamp = request.headers["X-Backpackflow-Timestamp"]
    expected = hmac.new(b"from-env", stamp.encode() + b"." + request.body, hashlib.sha256)
    assert request.headers["X-Backpackflow-Signature"] == f"sha256={expected.hexdigest()}"


def test_server_errors_are_retried_and_nothing_is_lost(hook_server) -> None:
    server = hook_server(Reply(500), Reply(503), Reply(200))
    sink = make(server.url, batch_size=100, secret="k")
    result = run_flow(chain(3), [sink])
    report = sink.close(timeout=3)
    assert [e["id"] for e in server.events()] == event_ids(result)
    assert report["sent"] == report["received"] == 20
    assert report["retried"] == 2 and report["failed"] == 0 and lost(report) == 0
    assert report["batches"] == 1
    assert report["last_error"] == "HTTP 503 Service Unavailable"
    # one batch, three attempts: the same batch id, counted attempts, fresh signatures
    assert len({r.headers["X-Backpackflow-Batch"] for r in server.requests}) == 1
    assert [r.headers["X-Backpackflow-Attempt"] for r in server.requests] == ["1", "2", "3"]
    assert len({r.body for r in server.requests}) == 1


def test_429_waits_as_long_as_retry_after_says(hook_server) -> None:
    server = hook_server(Reply(429, {"Retry-After": "1"}), Reply(200))
    sink = make(server.url, max_backoff=5)
    run_flow(chain(1), [sink])
    report = sink.close(timeout=5)
    assert len(server.requests) == 2
    gap = server.requests[1].at - server.requests[0].at
    assert 0.95 <= gap < 3
    assert report["retried"] == 1 and report["sent"] == 8 and lost(report) == 0
    assert report["last_error"] == "HTTP 429 Too Many Requests"


def test_retry_after_is_capped_by_max_backoff(hook_server) -> None:
    server = hook_server(Reply(429, {"Retry-After": "3600"}), Reply(200))
    sink = make(server.url, max_backoff=0.2)
    run_flow(chain(1), [sink])
    report = sink.close(timeout=5)
    assert server.requests[1].at - server.requests[0].at < 1.5
    assert report["sent"] == 8


def test_client_errors_drop_the_batch_without_retrying(hook_server) -> None:
    server = hook_server(Reply(400))
    sink = make(server.url, batch_size=5)
    run_flow(chain(1), [sink])
    report = sink.close(timeout=3)
    assert report["retried"] == 0
    assert report["sent"] == 0 and report["dropped"]["rejected"] == 8
    assert report["failed"] == 2  # batches of 5 and 3
    assert report["last_error"] == "HTTP 400 Bad Request"


def test_retries_are_bounded_and_logged_once(hook_server, caplog) -> None:
    server = hook_server(Reply(500))
    sink = make(server.url, max_retries=2, batch_size=3)
    run_flow(chain(1), [sink])
    report = sink.close(timeout=3)
    assert len(server.requests) == 9  # 3 batches x 3 attempts
    assert report["retried"] == 6 and report["dropped"]["retries_exhausted"] == 8
    assert report["failed"] == 3
    warnings = [r.getMessage() for r in caplog.records if r.name == "backpackflow.sinks"]
    assert warnings == [
        "sink 'webhook': dropped a batch of 3 events (retries_exhausted): HTTP 500 Internal "
        "Server Error (later ones are only counted in its report)"
    ]


def test_a_hanging_endpoint_slows_neither_the_run_nor_close(hook_server) -> None:
    server = hook_server(Reply(hang=True))
    baseline = time.perf_counter()
    run_flow(chain(5), [])
    bare = time.perf_counter() - baseline

    sink = make(server.url, timeout=0.3, batch_size=4, max_delay=0.01, max_retries=10)
    started = time.perf_counter()
    result = run_flow(chain(5), [sink])
    elapsed = time.perf_counter() - started
    assert result.ok
    assert server.wait_for(1, timeout=3)
    # the flow never waited for the endpoint (waiting: 0.3 s per attempt, 10 retries per batch)
    assert elapsed < bare + 2.0

    closing = time.monotonic()
    report = sink.close(timeout=1.0)
    assert time.monotonic() - closing < 1.5
    assert report["sent"] == 0 and report["received"] == 32
    assert lost(report) == 32 and report["dropped"]["close_timeout"] > 0
    assert report["failed"] >= 1
    assert "timed out" in report["last_error"] or "close" in report["last_error"]


def test_a_request_in_flight_when_close_starts_is_abandoned_in_time(hook_server) -> None:
    server = hook_server(Reply(hang=True))
    sink = make(server.url, timeout=30, max_delay=0.01)
    run_flow(chain(1), [sink])
    assert server.wait_for(1, timeout=3)  # the worker now waits up to 30 s for an answer
    closing = time.monotonic()
    report = sink.close(timeout=0.3)
    assert time.monotonic() - closing < 10  # not the 30 s the request may take
    assert report["dropped"]["close_timeout"] == report["received"] == 8
    assert report["failed"] == 1
    assert sink.close() == report  # idempotent


def test_a_dead_endpoint_never_fails_the_run() -> None:
    with socket.socket() as probe:  # a port nothing listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    sink = make(f"http://127.0.0.1:{port}/hook", max_delay=0.01, max_retries=3)
    result = run_flow(chain(5), [sink])
    assert result.ok
    report = sink.close(timeout=2)
    assert report["sent"] == 0 and lost(report) == report["received"] == 32
    assert report["retried"] >= 3
    assert "ConnectError" in report["last_error"]


@pytest.mark.parametrize("drop", ["oldest", "newest"])
def test_a_full_queue_drops_and_counts(hook_server, drop: str) -> None:
    gate = threading.Event()
    server = hook_server(Reply(200, gate=gate))
    sink = make(server.url, batch_size=2, max_queue=5, max_delay=0.01, drop=drop)
    events = EventStreamer()
    events.subscribe(sink.handle)
    emitted = [events.emit_event(StreamEventType.LOG, None, run_id="r1") for _ in range(2)]
    assert server.wait_for(1, timeout=3)  # the first batch is held at the gate
    started = time.perf_counter()
    emitted += [events.emit_event(StreamEventType.LOG, None, run_id="r1") for _ in range(48)]
    assert time.perf_counter() - started < 5  # never blocked on the gate (10 s)
    gate.set()
    report = sink.close(timeout=3)

    ids = [e.id for e in emitted]
    kept = ids[45:] if drop == "oldest" else ids[2:7]
    assert [e["id"] for e in server.events()] == ids[:2] + kept
    assert report["dropped"]["queue_full"] == 43
    assert report["received"] == 50 and report["sent"] == 7
    assert report["sent"] + lost(report) == report["received"]


class Hostile:
    """A payload that fails every way a payload can: its summary reports the failure."""

    def to_json(self) -> Any:
        raise RuntimeError("cannot describe myself")


class Broken:
    """A payload whose fields cannot even be listed: the event cannot be serialized."""

    def _asdict(self) -> Any:
        raise RuntimeError("no fields for you")


def test_handle_never_raises_and_counts_what_it_cannot_serialize(hook_server) -> None:
    server = hook_server(Reply(200))
    sink = make(server.url)
    events = EventStreamer()
    events.subscribe(sink.handle)
    events.emit_event(StreamEventType.CUSTOM, Broken())
    events.emit_event(StreamEventType.CUSTOM, Hostile())
    events.emit_event(StreamEventType.CUSTOM, {"fine": object()})
    report = sink.close(timeout=2)
    assert report["dropped"]["unserializable"] == 1
    assert report["sent"] == 2
    hostile, fine = (e["payload"] for e in server.events())
    assert "cannot describe myself" in hostile["$error"]
    assert fine["fine"]["$type"] == "builtins.object"
    assert events.get_stats()["handler_errors"] == 0


def test_events_after_close_are_counted_not_sent(hook_server) -> None:
    server = hook_server(Reply(200))
    sink = make(server.url)
    sink.close(timeout=1)
    events = EventStreamer()
    events.subscribe(sink.handle)
    events.emit_event(StreamEventType.LOG, None)
    assert sink.close()["dropped"]["after_close"] == 0  # the report was final at close
    assert server.requests == []


def test_report_hides_credentials_in_the_url(hook_server) -> None:
    server = hook_server(Reply(200))
    url = server.url.replace("http://", "http://user:pw@") + "?token=abc"
    report = make(url).close(timeout=1)
    assert report["url"] == server.url
