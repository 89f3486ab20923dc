"""Two ``backpackflow serve`` processes sharing one PostgreSQL database and one Redis (the
live feed): a run submitted on A streams live from B, resumes there with ``Last-Event-ID``
mid-run, events contiguous and equal to the stored trace; a cancel asked of B stops the run
on A; an answer given to B resumes a run A paused; a provider's rate limit and a node type's
concurrency cap hold for both processes together.

B polls the database only every 30 s (``poll_interval`` and ``live_feed_check``), so a stream
that ends within the join timeout got its events from the feed, not from polling.
"""

from __future__ import annotations

import json
import subprocess
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest
import redis
from server_kit import (
    StreamReader,
    create_workflow,
    flow,
    free_port,
    read_stream,
    start_process,
    start_run,
    wait_for_status,
)

SLOW_POLLING = {"BACKPACKFLOW_POLL_INTERVAL": "30", "BACKPACKFLOW_LIVE_FEED_CHECK": "30"}


def slow(node_id: str, seconds: float, log_lines: int = 3) -> dict[str, Any]:
    return {"type": "slow", "id": node_id, "params": {"seconds": seconds, "log_lines": log_lines}}


#: The Redis keys of this module's services (a fresh prefix: rate windows outlive a test run).
PREFIX = f"bpf-test-{uuid.uuid4().hex[:8]}"
#: The offline model's calls, two a minute for both services together; one slow node at a
#: time in both (the module's other tests run one such node at a time).
LIMITS = {
    "BACKPACKFLOW_PROVIDER_RATE_LIMITS": json.dumps({"offline": "2/minute"}),
    "BACKPACKFLOW_PROVIDER_LIMIT_WAIT": "1",
    "BACKPACKFLOW_NODE_TYPE_CONCURRENCY": json.dumps({"slow": 1}),
}


@pytest.fixture(scope="module")
def services(
    postgres_databases: Callable[[], str], redis_url: str
) -> Iterator[tuple[httpx.Client, httpx.Client]]:
    """Clients of A and B, both started before any run is submitted."""
    database = postgres_databases()
    feed = f"{redis_url}?prefix={PREFIX}"
    env = {"BACKPACKFLOW_LIVE_FEED": feed, **SLOW_POLLING, **LIMITS}
    processes: list[subprocess.Popen[str]] = []
    clients: list[httpx.Client] = []
    try:
        for _ in range(2):
            port = free_port()
            processes.append(start_process(database, port, env))
            clients.append(httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=20))
        yield clients[0], clients[1]
    finally:
        for client in clients:
            client.close()
        for process in processes:
            process.terminate()
        for process in processes:
            try:
                process.wait(30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


def stored_trace(client: httpx.Client, run_id: str) -> list[dict[str, Any]]:
    response = client.get(f"/api/runs/{run_id}/trace", params={"limit": 1000})
    assert response.status_code == 200, response.text
    body = response.json()
    assert not body["has_more"]
    return list(body["items"])


def test_a_run_on_a_streams_live_from_b_and_resumes_there(
    services: tuple[httpx.Client, httpx.Client], redis_url: str
) -> None:
    a, b = services
    # the last node takes 2 s: the run is still going when the first reader has its 7 events
    nodes = [*(slow(f"n{i}", 0.1) for i in range(4)), slow("last", 2.0)]
    workflow_id = create_workflow(a, flow(*nodes), "live feed")
    run_id = start_run(a, workflow_id)["id"]
    first, end = StreamReader(b, run_id, stop_after=7).join(15)
    assert end is None and len(first) == 7
    assert b.get(f"/api/runs/{run_id}").json()["status"] in ("queued", "running")  # mid-run
    rest_reader = StreamReader(b, run_id, headers={"Last-Event-ID": str(first[-1]["seq"])})
    # the feed emptied mid-run (as MAXLEN trims a long run's): a new reader gets the older
    # events from the store, the rest from the feed
    feed = redis.Redis.from_url(redis_url)
    feed.xtrim(f"{PREFIX}:run:{run_id}", maxlen=0)
    whole_reader = StreamReader(b, run_id)
    rest, end = rest_reader.join(15)
    assert end is not None and end["status"] == "succeeded"
    events = first + rest
    assert [e["seq"] for e in events] == list(range(1, len(events) + 1))
    assert events == stored_trace(a, run_id)
    whole, end = whole_reader.join(15)
    assert whole == events and end is not None and end["status"] == "succeeded"
    # the run's stream in Redis: ids are the seqs (those after the trim), then the end
    # marker; it expires
    entries = feed.xrange(f"{PREFIX}:run:{run_id}")
    ids = [entry_id.decode() for entry_id, _ in entries]
    assert ids[-1] == f"{len(events)}-1" and len(ids) > 1
    assert ids[:-1] == [f"{seq}-0" for seq in range(len(events) - len(ids) + 2, len(events) + 1)]
    assert 0 < feed.ttl(f"{PREFIX}:run:{run_id}") <= 600
    feed.close()
    # a finished run replays from B whole (the store; its feed is not needed)
    replay, end = read_stream(b, run_id)
    assert replay == events and end is not None and end["status"] == "succeeded"


def test_a_cancel_asked_of_b_stops_the_run_on_a(
    services: tuple[httpx.Client, httpx.Client],
) -> None:
    a, b = services
    workflow_id = create_workflow(a, flow(slow("long", 120.0, 1), slow("after", 0.0)), "cancel")
    run_id = start_run(a, workflow_id)["id"]
    wait_for_status(a, run_id, "running")
    response = b.post(f"/api/runs/{run_id}/cancel")
    assert response.status_code == 202, response.text
    assert "sent to the service process running the run" in response.json()["detail"]
    # pub/sub delivers it at once; A's own check of cancel marks is 30 s away
    run = wait_for_status(b, run_id, "canceled", timeout=10)
    assert run["error_summary"] == "canceled through the API"
    assert [step["node_id"] for step in run["steps"]] == ["long"]


def test_an_answer_given_to_b_resumes_a_run_paused_on_a(
    services: tuple[httpx.Client, httpx.Client],
) -> None:
    a, b = services
    workflow_id = create_workflow(a, flow({"type": "ask", "id": "ask"}, slow("then", 0.0)), "ask")
    run_id = start_run(a, workflow_id)["id"]
    wait_for_status(a, run_id, "paused")
    response = b.post(f"/api/runs/{run_id}/resume", json={"answer": 3})
    assert response.status_code == 202, response.text
    run = wait_for_status(a, run_id, "succeeded")
    assert [s["node_id"] for s in run["steps"] if s["status"] == "succeeded"][-1] == "then"
    events, end = read_stream(a, run_id)
    assert [e["seq"] for e in events] == list(range(1, len(events) + 1))
    assert end is not None and end["status"] == "succeeded"


def test_a_provider_rate_limit_holds_across_both_processes(
    services: tuple[httpx.Client, httpx.Client],
) -> None:
    """Two calls a minute: of four runs, two on each process, two get a permit and two fail
    after waiting a second (each process alone would let its two through)."""
    a, b = services
    llm = {"type": "llm", "id": "ask", "params": {"prompt": "Say: hello there.", "cache": False}}
    workflow_id = create_workflow(a, flow(llm), "limited")
    run_ids = [start_run(client, workflow_id)["id"] for client in (a, b, a, b)]
    runs = [wait_for_status(a, r, "succeeded", "failed", timeout=20) for r in run_ids]
    assert sorted(run["status"] for run in runs) == ["failed", "failed", "succeeded", "succeeded"]
    for run in runs:
        if run["status"] == "failed":
            assert "rate limit of 'offline' gave no permit within 1s" in run["error_summary"]


def test_a_node_type_cap_holds_across_both_processes(
    services: tuple[httpx.Client, httpx.Client],
) -> None:
    """One slow node at a time: a run on A and one on B take turns (their steps do not
    overlap), where each process alone would run its own at once."""
    a, b = services
    workflow_id = create_workflow(a, flow(slow("capped", 0.4, 0)), "capped")
    run_ids = [start_run(client, workflow_id)["id"] for client in (a, b)]
    runs = [wait_for_status(a, r, "succeeded", timeout=15) for r in run_ids]
    first, second = sorted((run["steps"][0] for run in runs), key=lambda s: s["started_at"])
    assert first["finished_at"] <= second["started_at"]


def test_wrong_feed_and_limit_settings_are_refused_naming_the_setting() -> None:
    from server_kit import make_registry

    from backpackflow import ConfigError
    from backpackflow_server import Settings
    from backpackflow_server.feed import open_feed, provider_limits

    registry = make_registry(commands=True)
    with pytest.raises(ConfigError, match="live_feed: no live feed serves 'nats' URLs"):
        open_feed(registry, "nats://127.0.0.1:4222")
    with pytest.raises(ConfigError, match=r"provider_rate_limits\.openai: '5 a minute'"):
        provider_limits(Settings(provider_rate_limits={"openai": "5 a minute"}), None)
    assert provider_limits(Settings(), None) is None
    limits = provider_limits(Settings(provider_concurrency={"openai": 2}), None)
    assert limits.concurrency == {"openai": 2} and limits.rates == {}
