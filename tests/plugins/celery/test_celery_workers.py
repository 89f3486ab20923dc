"""Runs on Celery workers with the real Redis and PostgreSQL: two API processes, three worker
processes, 100 runs submitted through one API and read through the other, one worker killed
with SIGKILL mid-run. Every run ends ``succeeded`` with its stored events numbered 1..n (none
lost, none twice), and no run was driven by two workers at once: the trace of a run falls into
one segment per driver (a resumed driver announces itself with a ``log`` event), the segments
follow each other in time without overlap, and there are no more of them than the lease
tokens the run's lease handed out.

Every run's SSE stream is read through the second API while it executes (the live feed,
Redis Streams, carries what the workers store): it delivers exactly the stored events.
"""

from __future__ import annotations

import itertools
import signal
import subprocess
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
import pytest
from celery_kit import (
    delete_queue,
    require_rabbitmq,
    require_redis,
    start_api,
    start_worker,
    stop,
    unique_queue,
    worker_env,
)
from server_kit import StreamReader, create_workflow, flow, start_run, wait_for
from sqlalchemy import create_engine, text

from backpackflow_store_sql import SqlRunStore

RUNS = 100
NODES = 4
#: A node's time: a kill finds runs in flight, and 100 runs stay a few seconds of work.
NODE_SECONDS = 0.3


def slow(node_id: str) -> dict[str, Any]:
    return {"type": "slow", "id": node_id, "params": {"seconds": NODE_SECONDS, "log_lines": 1}}


GRAPH = flow(*(slow(f"s{i}") for i in range(NODES)), outputs=["trail"])


@pytest.fixture
def queues() -> Iterator[Callable[[str], str]]:
    """``queues(broker)``: a new queue of the test's own, deleted from the broker after it."""
    made: list[tuple[str, str]] = []

    def make(broker: str) -> str:
        made.append((broker, unique_queue()))
        return made[-1][1]

    yield make
    for broker, queue in made:
        delete_queue(broker, queue)


@pytest.fixture
def processes(queues: Callable[[str], str]) -> Iterator[list[subprocess.Popen[str]]]:
    """Processes the test starts, killed after it (before its queues are deleted)."""
    started: list[subprocess.Popen[str]] = []
    yield started
    stop(started)


def _trace(client: httpx.Client, run_id: str) -> list[dict[str, Any]]:
    page = client.get(f"/api/runs/{run_id}/trace", params={"limit": 1000})
    assert page.status_code == 200, page.text
    items: list[dict[str, Any]] = page.json()["items"]
    assert len(items) < 1000
    return items


def _read_results(
    client: httpx.Client, run_ids: list[str]
) -> tuple[list[dict[str, Any]], dict[str, list[dict[str, Any]]]]:
    """Every run and its stored trace, through the given API."""
    runs = [client.get(f"/api/runs/{run_id}").json() for run_id in run_ids]
    return runs, {run_id: _trace(client, run_id) for run_id in run_ids}


def _driver_segments(events: list[dict[str, Any]]) -> list[list[dict[str, Any]]]:
    """The trace cut where a worker resumed the run (its first event is a ``log`` saying so)."""
    segments: list[list[dict[str, Any]]] = [[]]
    for event in events:
        data = (event.get("payload") or {}).get("data") or {}
        if event["type"] == "log" and data.get("resumed") and segments[-1]:
            segments.append([])
        segments[-1].append(event)
    return segments


def test_runs_survive_a_killed_worker(
    postgres_databases: Any,
    processes: list[subprocess.Popen[str]],
    queues: Callable[[str], str],
) -> None:
    broker = require_redis()
    postgres_url = postgres_databases()
    # the live feed (Redis Streams): the second API streams what the workers store, live
    env = worker_env(queues(broker), BACKPACKFLOW_LIVE_FEED=broker)
    first, first_url = start_api(postgres_url, broker, env)
    processes.append(first)
    second, second_url = start_api(postgres_url, broker, env)
    processes.append(second)
    workers = [start_worker(postgres_url, broker, env, f"w{i}") for i in range(3)]
    processes.extend(workers)

    with httpx.Client(base_url=first_url, timeout=30) as client:
        workflow_id = create_workflow(client, GRAPH, "workers")
        with ThreadPoolExecutor(8) as pool:
            run_ids = [
                r["id"] for r in pool.map(lambda _: start_run(client, workflow_id), range(RUNS))
            ]

    second_client = httpx.Client(base_url=second_url, timeout=30)
    streams = {run_id: StreamReader(second_client, run_id) for run_id in run_ids}
    victim = workers[0]
    engine = create_engine(postgres_url.replace("postgresql://", "postgresql+psycopg://", 1))
    # runs the victim drives that have stored a node's events: they resume, not restart
    held_by_victim = text(
        "SELECT id FROM workflow_runs WHERE status = 'running' AND last_seq > 5 "
        "AND lease_owner LIKE 'w0@test:%'"
    )
    try:

        def victim_runs() -> list[str]:
            with engine.connect() as connection:
                held = list(connection.execute(held_by_victim).scalars())
            return held if len(held) >= 2 else []

        wait_for(victim_runs, 60, "the first worker to drive runs")
        victim.send_signal(signal.SIGKILL)
        victim.wait(10)
        cut = victim_runs()  # the runs it drove when it died, unfinished
    finally:
        engine.dispose()
    assert cut, "the killed worker had finished its runs; nothing was tested"

    with httpx.Client(base_url=second_url, timeout=30) as client:

        def all_ended() -> bool:
            statuses = [client.get(f"/api/runs/{r}").json()["status"] for r in run_ids]
            return all(s in ("succeeded", "failed", "canceled") for s in statuses)

        wait_for(all_ended, 240, "every run to end")
        runs, traces = _read_results(client, run_ids)
        delivered = {run_id: reader.join(60) for run_id, reader in streams.items()}
    second_client.close()

    with SqlRunStore(postgres_url) as store:
        leases = {run_id: store.get_lease(run_id) for run_id in run_ids}
    for run in runs:
        run_id = run["id"]
        assert run["status"] == "succeeded", (run_id, run.get("error_summary"))
        assert run["outputs"] == {"trail": [f"s{i}" for i in range(NODES)]}, run_id
        events = traces[run_id]
        assert [e["seq"] for e in events] == list(range(1, len(events) + 1)), run_id
        assert len({e["id"] for e in events}) == len(events), run_id
        assert (run["event_count"], run["last_seq"]) == (len(events), len(events))
        # streamed live through the other API: exactly what was stored, then the end
        streamed, end = delivered[run_id]
        assert [e["id"] for e in streamed] == [e["id"] for e in events], run_id
        assert end is not None and end["status"] == "succeeded", run_id
        # one driver at a time: segments in time order, no more than the leases given out
        segments = _driver_segments(events)
        assert len(segments) <= leases[run_id]["token"], run_id
        for earlier, later in itertools.pairwise(segments):
            assert earlier[-1]["timestamp"] <= later[0]["timestamp"], run_id
        assert leases[run_id]["owner"] is None, run_id  # released at the end
    resumed = [r for r in cut if len(_driver_segments(traces[r])) > 1]
    assert resumed, "no run the killed worker held was resumed by another worker"
    for process in (first, second, *workers[1:]):
        assert process.poll() is None, "a process died"


def test_a_stalled_workers_writes_are_refused(
    postgres_databases: Any,
    processes: list[subprocess.Popen[str]],
    queues: Callable[[str], str],
) -> None:
    """A worker frozen (SIGSTOP) past its leases loses its runs to another worker; thawed, it
    still believes it drives them, but its writes carry stale fencing tokens: refused, so
    every run's trace is the new holder's continuation, contiguous, and the run succeeds."""
    broker = require_redis()
    database = postgres_databases()
    env = worker_env(queues(broker))
    api, url = start_api(database, broker, env)
    processes.append(api)
    frozen, other = (start_worker(database, broker, env, f"f{i}", 4) for i in range(2))
    processes.extend([frozen, other])
    graph = flow(*(slow(f"s{i}") for i in range(6)), outputs=["trail"])
    engine = create_engine(database.replace("postgresql://", "postgresql+psycopg://", 1))
    held_by = text(
        "SELECT id FROM workflow_runs WHERE status = 'running' AND last_seq > 5 "
        "AND lease_owner LIKE 'f0@test:%'"
    )
    try:
        with httpx.Client(base_url=url, timeout=30) as client, SqlRunStore(database) as store:
            workflow_id = create_workflow(client, graph, "stall")
            run_ids = [start_run(client, workflow_id)["id"] for _ in range(8)]

            def frozen_runs() -> list[str]:
                with engine.connect() as connection:
                    return list(connection.execute(held_by).scalars())

            stalled = wait_for(frozen_runs, 60, "the first worker to drive runs")
            frozen.send_signal(signal.SIGSTOP)
            try:
                wait_for(
                    lambda: all(store.get_lease(r)["token"] >= 2 for r in stalled),
                    60,
                    "the other worker to take the frozen worker's runs over",
                )
            finally:
                frozen.send_signal(signal.SIGCONT)

            def all_ended() -> bool:
                statuses = [client.get(f"/api/runs/{r}").json()["status"] for r in run_ids]
                return all(s in ("succeeded", "failed", "canceled") for s in statuses)

            wait_for(all_ended, 120, "every run to end")
            runs, traces = _read_results(client, run_ids)
    finally:
        engine.dispose()
    for run in runs:
        assert run["status"] == "succeeded", (run["id"], run.get("error_summary"))
        assert run["outputs"] == {"trail": [f"s{i}" for i in range(6)]}
        events = traces[run["id"]]
        assert [e["seq"] for e in events] == list(range(1, len(events) + 1)), run["id"]
        assert len({e["id"] for e in events}) == len(events)
    for run_id in stalled:  # resumed by the other worker, the frozen one's later writes gone
        segments = _driver_segments(traces[run_id])
        assert len(segments) == 2, run_id
        assert segments[0][-1]["timestamp"] <= segments[1][0]["timestamp"], run_id
    assert frozen.poll() is None, "the thawed worker died"
    frozen.terminate()
    output = frozen.communicate(timeout=60)[0]
    assert "stop driving this run" in output  # its stale writes were refused (LeaseLost)


def test_a_run_goes_through_rabbitmq(
    postgres_databases: Any,
    processes: list[subprocess.Popen[str]],
    queues: Callable[[str], str],
) -> None:
    """The same executor on RabbitMQ (through Celery's AMQP transport): a run succeeds."""
    broker = require_rabbitmq()
    database = postgres_databases()
    env = worker_env(queues(broker))
    api, url = start_api(database, broker, env)
    processes.append(api)
    processes.append(start_worker(database, broker, env, "rabbit", concurrency=2))
    with httpx.Client(base_url=url, timeout=30) as client:
        workflow_id = create_workflow(client, GRAPH, "rabbit")
        run_id = start_run(client, workflow_id)["id"]

        def ended() -> dict[str, Any] | None:
            run: dict[str, Any] = client.get(f"/api/runs/{run_id}").json()
            return run if run["status"] in ("succeeded", "failed", "canceled") else None

        run = wait_for(ended, 90, "the run to end")
        assert run["status"] == "succeeded", run.get("error_summary")
        assert run["outputs"] == {"trail": [f"s{i}" for i in range(NODES)]}


def test_an_answer_resumes_a_paused_run_on_a_worker(
    postgres_databases: Any,
    processes: list[subprocess.Popen[str]],
    queues: Callable[[str], str],
) -> None:
    """A run that pauses on a worker is answered through another API instance: the API checks
    the answer (422 with its path), a worker resumes the run from its checkpoint."""
    broker = require_redis()
    database = postgres_databases()
    env = worker_env(queues(broker))
    first, first_url = start_api(database, broker, env)
    second, second_url = start_api(database, broker, env)
    processes.extend([first, second])
    processes.extend(start_worker(database, broker, env, f"a{i}", 2) for i in range(2))
    graph = flow(
        {"type": "ask", "id": "q", "params": {"prompt": "How many?"}},
        slow("after"),
        outputs=["answer_q"],
    )
    with httpx.Client(base_url=first_url, timeout=30) as client:
        run_id = start_run(client, create_workflow(client, graph, "ask"))["id"]
    with httpx.Client(base_url=second_url, timeout=30) as client:
        wait_for(
            lambda: client.get(f"/api/runs/{run_id}").json()["status"] == "paused",
            60,
            "the run to pause",
        )
        refused = client.post(f"/api/runs/{run_id}/resume", json={"answer": 0})
        assert refused.status_code == 422, refused.text
        accepted = client.post(f"/api/runs/{run_id}/resume", json={"answer": 3})
        assert accepted.status_code == 202, accepted.text

        def ended() -> dict[str, Any] | None:
            run: dict[str, Any] = client.get(f"/api/runs/{run_id}").json()
            return run if run["status"] in ("succeeded", "failed", "canceled") else None

        run = wait_for(ended, 60, "the answered run to end")
        trace = _trace(client, run_id)
    assert run["status"] == "succeeded", run.get("error_summary")
    assert run["outputs"] == {"answer_q": 3}
    assert [e["seq"] for e in trace] == list(range(1, len(trace) + 1))


def test_cancel_reaches_the_worker_and_workers_lists_it(
    postgres_databases: Any,
    processes: list[subprocess.Popen[str]],
    queues: Callable[[str], str],
) -> None:
    """A cancel through the API is stored; the worker reads it at its next heartbeat and stops
    the run (releasing its lease). ``backpackflow workers`` lists the worker and its run."""
    from backpackflow_celery.plugin import live_workers

    broker = require_redis()
    database = postgres_databases()
    queue = queues(broker)
    env = worker_env(queue)
    api, url = start_api(database, broker, env)
    processes.append(api)
    processes.append(start_worker(database, broker, env, "canceler", concurrency=2))
    graph = flow(*(slow(f"long{i}") for i in range(40)))
    with httpx.Client(base_url=url, timeout=30) as client, SqlRunStore(database) as store:
        workflow_id = create_workflow(client, graph, "long")
        run_id = start_run(client, workflow_id)["id"]
        wait_for(lambda: store.get_lease(run_id)["owner"], 60, "a worker to take the run")

        listed = live_workers(broker, timeout=2, queue=queue, store=store)
        (worker,) = listed["workers"]
        assert worker["worker"] == "canceler@test"
        assert [r["run_id"] for r in worker["runs"]] == [run_id]
        assert worker["runs"][0]["lease_owner"].startswith("canceler@test:")
        assert listed["queued"] == 0

        canceled = client.post(f"/api/runs/{run_id}/cancel")
        assert canceled.status_code == 202, canceled.text
        assert client.get(f"/api/runs/{run_id}").json()["status"] == "canceled"
        # the worker stops the run and lets its lease go, long before its 40 nodes are done
        wait_for(lambda: store.get_lease(run_id)["owner"] is None, 60, "the worker to stop")
        trace = _trace(client, run_id)
    ended = [e for e in trace if e["type"] == "node_end"]
    assert len(ended) < 40
    assert trace[-1]["type"] == "run_end"
    assert [e["seq"] for e in trace] == list(range(1, len(trace) + 1))
