"""Runs on Celery workers with the real Redis and PostgreSQL: two API processes, three worker
processes, 100 runs submitted through one API and read through the other, one worker killed
with SIGKILL mid-run. Every run ends ``succeeded`` with its stored events numbered 1..n (none
lost, none twice), and no run was driven by two workers at once: the trace of a run falls into
one segment per driver (a resumed driver announces itself with a ``log`` event), the segments
follow each other in time without overlap, and there are no more of them than the lease
tokens the run's lease handed out.

Every run's SSE stream is read through the second API while it executes (the live feed,
Redis Streams, carries what the workers store): it delivers exactly the stored events.

The same test runs again with every API and worker process in a network namespace of its own
(30 runs), as separate hosts that reach each other and the services only over a bridge, when
the machine allows it (root and ``ip netns``; required under BACKPACKFLOW_REQUIRE_SERVICES=1).
There, a flow on a worker still may not reach the services host's private address.
"""

from __future__ import annotations

import contextlib
import itertools
import shutil
import signal
import subprocess
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

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
from netns_kit import Forwarder, Hosts, netns_unavailable
from server_kit import StreamReader, create_workflow, flow, start_run, wait_for
from sqlalchemy import create_engine, text

from backpackflow_server.credentials import hash_token, new_token
from backpackflow_store_sql import SqlRunStore
from services import service_unavailable

EXAMPLES = Path(__file__).resolve().parents[3] / "examples"

RUNS = 100
#: the same test across network namespaces: fewer runs, as each process is a host of its own
NETNS_RUNS = 30
HOST_NAMES = ("api1", "api2", "w0", "w1", "w2")
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


@dataclass
class Layout:
    """Where the kill test's processes run, and how they reach the services."""

    database: str  # the database and the broker as the test process reaches them
    broker: str
    runs: int
    #: the database and the broker as the API and worker processes reach them
    process_database: str
    process_broker: str
    hosts: Hosts | None = None  # None: every process on this host's loopback
    headers: dict[str, str] = field(default_factory=dict)  # the clients' credentials

    def place(self, name: str) -> tuple[list[str], str]:
        """(argv prefix, address) of the process ``name``: its own host, or loopback."""
        if self.hosts is None:
            return [], "127.0.0.1"
        return self.hosts.exec_prefix(name), self.hosts.addresses[name]


def _moved(url: str, host: str) -> tuple[str, tuple[str, int]]:
    """``url`` with its host replaced by ``host`` (same port); and the original (host, port)."""
    parts = urlsplit(url)
    assert parts.hostname is not None, url
    port = parts.port or (6379 if parts.scheme.startswith("redis") else 5432)
    credentials = parts.netloc.rsplit("@", 1)[0] + "@" if "@" in parts.netloc else ""
    return (
        urlunsplit(parts._replace(netloc=f"{credentials}{host}:{port}")),
        (parts.hostname, port),
    )


@pytest.fixture(params=["one-host", "netns"])
def layout(request: pytest.FixtureRequest, postgres_databases: Any) -> Iterator[Layout]:
    """``one-host``: every process on this machine's loopback, 100 runs. ``netns``: the two
    APIs and three workers each in a network namespace of its own, the services (PostgreSQL,
    Redis) on the root namespace's bridge address through a forwarder, 30 runs: as separate
    hosts (tests/plugins/celery/netns_kit.py). Needs root and ``ip netns``."""
    broker = require_redis()
    database = postgres_databases()
    if request.param == "one-host":
        yield Layout(database, broker, RUNS, database, broker)
        return
    reason = netns_unavailable()
    if reason is not None:
        service_unavailable(f"the separate-hosts test cannot run: {reason}")
    secret = new_token()
    with SqlRunStore(database) as store:  # a service off loopback wants API tokens
        store.upgrade()
        store.create_token("netns-test", "admin", hash_token(secret), hint="test")
    with contextlib.ExitStack() as cleanup:
        try:
            hosts = cleanup.enter_context(Hosts())
            for name in HOST_NAMES:
                hosts.add(name)
        except RuntimeError as exc:  # an ip command failed (no bridge or veth support)
            service_unavailable(f"the separate-hosts test cannot make its network: {exc}")
            raise  # unreachable: service_unavailable always raises
        process_database, database_at = _moved(database, hosts.services)
        process_broker, broker_at = _moved(broker, hosts.services)
        routes = [(hosts.services, target[1], *target) for target in (database_at, broker_at)]
        cleanup.enter_context(Forwarder(routes))
        yield Layout(
            database,
            broker,
            NETNS_RUNS,
            process_database,
            process_broker,
            hosts,
            {"Authorization": f"Bearer {secret}"},
        )


def test_runs_survive_a_killed_worker(
    layout: Layout,
    processes: list[subprocess.Popen[str]],
    queues: Callable[[str], str],
) -> None:
    broker, database = layout.process_broker, layout.process_database
    postgres_url = layout.database
    # the live feed (Redis Streams): the second API streams what the workers store, live
    env = worker_env(queues(layout.broker), BACKPACKFLOW_LIVE_FEED=broker)
    prefix, host = layout.place("api1")
    first, first_url = start_api(database, broker, env, host=host, prefix=prefix)
    processes.append(first)
    prefix, host = layout.place("api2")
    second, second_url = start_api(database, broker, env, host=host, prefix=prefix)
    processes.append(second)
    workers = []
    for i in range(3):
        prefix, _ = layout.place(f"w{i}")
        workers.append(start_worker(database, broker, env, f"w{i}", prefix=prefix))
    processes.extend(workers)
    if layout.hosts is not None:  # separate hosts: the services only through the network
        _, (database_host, database_port) = _moved(layout.database, layout.hosts.services)
        assert not layout.hosts.reaches("w0", database_host, database_port)
        assert layout.hosts.reaches("w0", layout.hosts.services, database_port)

    with httpx.Client(base_url=first_url, headers=layout.headers, timeout=30) as client:
        workflow_id = create_workflow(client, GRAPH, "workers")
        with ThreadPoolExecutor(8) as pool:
            run_ids = [
                r["id"]
                for r in pool.map(lambda _: start_run(client, workflow_id), range(layout.runs))
            ]

    second_client = httpx.Client(base_url=second_url, headers=layout.headers, timeout=30)
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

    with httpx.Client(base_url=second_url, headers=layout.headers, timeout=30) as client:

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
    if layout.hosts is not None:
        _egress_is_refused(first_url, layout)


def _egress_is_refused(api: str, layout: Layout) -> None:
    """A flow's ``http_fetch`` to the services host (the address the workers reach PostgreSQL
    at) fails on the worker: the flow sandbox denies private ranges whatever the workers'
    own network."""
    assert layout.hosts is not None
    services = layout.hosts.services
    target = f"http://{services}:{urlsplit(layout.process_database).port}/"
    fetch = {
        "type": "tool",
        "id": "get",
        "params": {"tool": "http_fetch", "arguments": {"url": target, "allowed_hosts": [services]}},
    }
    with httpx.Client(base_url=api, headers=layout.headers, timeout=30) as client:
        run_id = start_run(client, create_workflow(client, flow(fetch), "egress"))["id"]

        def ended() -> dict[str, Any] | None:
            run: dict[str, Any] = client.get(f"/api/runs/{run_id}").json()
            return run if run["status"] in ("succeeded", "failed", "canceled") else None

        run = wait_for(ended, 60, "the fetching run to end")
    assert run["status"] == "failed", run
    assert "private address" in run["error_summary"], run["error_summary"]


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


def test_a_seeded_demo_reads_its_files_on_a_worker(
    postgres_databases: Any,
    processes: list[subprocess.Popen[str]],
    queues: Callable[[str], str],
    tmp_path: Path,
) -> None:
    """A demo workflow the API seeded reads the files beside its flow file on a worker too
    (the worker knows the seeds' folders from the same settings), as it does in-process."""
    broker = require_redis()
    database = postgres_databases()
    seeds = tmp_path / "seeds"
    shutil.copytree(EXAMPLES / "research", seeds / "research")
    env = worker_env(queues(broker), BACKPACKFLOW_SEED_DIR=str(seeds))
    api, url = start_api(database, broker, env, seed=True)
    processes.append(api)
    processes.append(start_worker(database, broker, env, "seeds", concurrency=2))
    with httpx.Client(base_url=url, timeout=30) as client:
        (workflow,) = client.get("/api/workflows").json()
        run_id = start_run(client, workflow["id"])["id"]

        def ended() -> dict[str, Any] | None:
            run: dict[str, Any] = client.get(f"/api/runs/{run_id}").json()
            return run if run["status"] in ("succeeded", "failed", "canceled") else None

        run = wait_for(ended, 90, "the run to end")
    assert run["status"] == "succeeded", run.get("error_summary")


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
