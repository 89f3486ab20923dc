"""Service load benchmark: N concurrent runs, M SSE subscribers per run, on loopback.

Run: python bench/service_load.py [--runs 50] [--subscribers 2] [--database URL ...]
     [--flow FILE --autoload] [--auth tokens|local-dev]

The service runs in a process of its own (``backpackflow serve`` with the benchmark's node
types); this process starts the runs and reads every stream with ``httpx``. Printed per
database: runs/s (all runs started → every subscriber got ``end``), the delivery latency of
live events (emit timestamp → parsed by the subscriber; events sent as backfill because they
happened before the subscriber connected are counted but not timed; p50 and p99 over every
live event of every subscriber), the service's CPU seconds per run (from the first request to
the last stream's ``end``: the benchmark's checks afterwards are not counted) and the counts: events
emitted (the last seq of each run), stored (in the database) and delivered (per subscriber,
checked to be exactly seq 1..last). Any difference is an error: exit status 1. Each database
gets two rounds on one service; the second (steady state) is reported, the first (cold thread
and connection pools) summarized; both are checked.

Without ``--database`` it measures SQLite (a temporary file) and, when it is reachable,
PostgreSQL (a throwaway database through ``$BACKPACKFLOW_TEST_POSTGRES_URL``, default
``postgresql://postgres@127.0.0.1:5432/test``). The default flow is four ``bench_step`` nodes
(each logs, awaits ``--step-ms``, reports an LLM response); ``--flow FILE`` runs any flow
config instead (``--autoload`` loads the installed plugins, e.g. the offline LLM nodes).
The client authenticates with an admin token made for the run, as any deployment's would
(``--auth local-dev``: a service without tokens).
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import math
import os
import secrets
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import attrs

from backpackflow import AsyncNode, current_run, hookimpl
from backpackflow.events import LLMResponsePayload, StreamEventType

DEFAULT_POSTGRES_URL = "postgresql://postgres@127.0.0.1:5432/test"

# ------------------------------------------------------------------------------ the flow


@attrs.frozen
class StepParams:
    step_ms: float = 2.0
    logs: int = 2
    tokens: int = 40


class BenchStep(AsyncNode):
    """A stand-in for an LLM step: log lines, an await, an ``llm_response`` with usage."""

    Params = StepParams

    async def exec_async(self, prep_res: Any) -> Any:
        p = self.params
        run = current_run()
        for i in range(p.logs):
            run.log(f"{self.id}: working ({i})")
        await asyncio.sleep(p.step_ms / 1000)
        usage = {"input_tokens": p.tokens, "output_tokens": p.tokens // 2}
        run.emit(
            StreamEventType.LLM_RESPONSE,
            LLMResponsePayload("bench", "bench-1", "ok", usage, p.step_ms, "0.0001", True, "stop"),
        )
        run.add_usage(input_tokens=p.tokens, output_tokens=p.tokens // 2, cost="0.0001")
        return f"{self.id} done"


class BenchNodes:
    """The plugin registering ``bench_step`` in the service process."""

    __name__ = "bench_nodes"

    @hookimpl
    def backpackflow_register_node_types(self, register: Any) -> None:
        register("bench_step", BenchStep)


def default_flow(step_ms: float) -> dict[str, Any]:
    names = ["plan", "research", "summarize", "write"]
    return {
        "version": "2.0.0",
        "name": "bench: four steps",
        "nodes": [{"type": "bench_step", "id": n, "params": {"step_ms": step_ms}} for n in names],
        "edges": [{"from": a, "to": b} for a, b in itertools.pairwise(names)],
    }


def serve(argv: list[str]) -> int:
    """The service process: ``backpackflow serve`` with the benchmark's node types."""
    import backpackflow_server.plugin
    from backpackflow.cli import build_parser
    from backpackflow.plugins import build_registry

    autoload = "--autoload" in argv
    argv = [a for a in argv if a != "--autoload"]
    if os.environ.get(GC_LOG):
        _log_collections(Path(os.environ[GC_LOG]))
    if autoload:  # the installed plugins, plus the service's if its entry point is missing
        registry = build_registry(plugins=[BenchNodes()], autoload=True)
        if "serve" not in registry.commands:
            plugins = [BenchNodes(), backpackflow_server.plugin]
            registry = build_registry(plugins=plugins, autoload=True)
    else:
        import backpackflow_conditions.plugin
        import backpackflow_store_sql.plugin

        plugins = [
            BenchNodes(),
            backpackflow_store_sql.plugin,
            backpackflow_conditions.plugin,
            backpackflow_server.plugin,
        ]
        registry = build_registry(plugins=plugins, autoload=False)
    args = build_parser(registry).parse_args(argv)
    return int(args._handler(args, registry))


#: Set in the service's environment: it writes every garbage collection to this file.
GC_LOG = "BACKPACKFLOW_BENCH_GC_LOG"


def _log_collections(path: Path) -> None:
    """Time every collection of the cyclic GC (generation, wall and CPU seconds, when it
    ended) and write them all to ``path`` twice a second (``bench/service_gc.py`` reads it)."""
    import gc
    import threading

    started = [0.0, 0.0]
    collections: list[tuple[int, float, float, float]] = []

    def note(phase: str, info: dict[str, Any]) -> None:
        if phase == "start":
            started[:] = [time.perf_counter(), time.thread_time()]
        else:
            wall, cpu = time.perf_counter() - started[0], time.thread_time() - started[1]
            collections.append((info["generation"], wall, cpu, time.time()))

    def write() -> None:
        while True:
            time.sleep(0.5)
            path.write_text(json.dumps(collections))

    gc.callbacks.append(note)
    threading.Thread(target=write, name="bench-gc-log", daemon=True).start()


def bench_registry(autoload: bool) -> Any:
    """The plugins the service process runs with (``serve`` builds the same)."""
    from backpackflow.plugins import build_registry

    if autoload:
        return build_registry(plugins=[BenchNodes()], autoload=True)
    import backpackflow_conditions.plugin

    return build_registry(plugins=[BenchNodes(), backpackflow_conditions.plugin], autoload=False)


def in_process(argv: list[str]) -> int:
    """The same runs without the service: ``--runs`` executions of the flow at once in one
    event loop, each with its own EventStreamer (full telemetry, the default 10,000-event
    history) and a wildcard subscriber; prints the CPU seconds per run (steady state: a first
    round warms up) as JSON. ``argv``: RUNS STEP_MS [--autoload] [FLOW_FILE]."""
    from backpackflow import Backpack, EventStreamer
    from backpackflow.loader import FlowLoader

    autoload = "--autoload" in argv
    runs, step_ms, *rest = [a for a in argv if a != "--autoload"]
    loader = FlowLoader(bench_registry(autoload))
    source: Any = Path(rest[0]) if rest else default_flow(float(step_ms))
    flow = loader.load_flow(source)
    from backpackflow_server.runs import RunManager

    inputs = RunManager.resolve_inputs(flow, {})  # the declared defaults, as the service does
    seen = [0]

    def subscriber(_event: Any) -> None:
        seen[0] += 1

    async def one() -> None:
        events = EventStreamer()
        events.subscribe("*", subscriber)
        result = await flow.execute(Backpack(), inputs=inputs, events=events)
        if result.status != "succeeded":
            raise RuntimeError(f"the flow {result.status} in process: {result.error}")

    async def round_() -> None:
        await asyncio.gather(*(one() for _ in range(int(runs))))

    asyncio.run(round_())
    started = time.process_time()
    asyncio.run(round_())
    cpu = time.process_time() - started
    print(json.dumps({"cpu_s_per_run": cpu / int(runs), "events_per_run": seen[0] / 2 / int(runs)}))
    return 0


def measure_in_process(args: argparse.Namespace) -> float:
    """CPU seconds per run of the flow in a process of its own, without the service."""
    command = [sys.executable, __file__, "--in-process", str(args.runs), str(args.step_ms)]
    if args.autoload:
        command.append("--autoload")
    if args.flow:
        command.append(str(args.flow.resolve()))
    output = subprocess.run(command, check=True, capture_output=True, text=True).stdout
    return float(json.loads(output.strip().splitlines()[-1])["cpu_s_per_run"])


def database_server_cpu(store: Any) -> float:
    """CPU seconds the PostgreSQL server processes serving ``store``'s database have used so
    far (NaN on SQLite, or when the server runs on another host: its processes are not here)."""
    if store.dialect != "postgresql":
        return math.nan
    from sqlalchemy import text

    with store.engine.connect() as connection:
        pids = connection.execute(
            text("SELECT pid FROM pg_stat_activity WHERE datname = current_database()")
        ).scalars()
        total = sum(cpu_seconds(pid) for pid in pids)
    return total


def store_path(
    args: argparse.Namespace, flow_document: dict[str, Any], url: str
) -> tuple[list[float], list[float]]:
    """The store's share of a run, without HTTP, SSE or the flow: the events of one real run
    of the flow (as the service stores them) are stored for ``--runs`` runs as the service
    does it (read the workflow, create the run, mark it running, the events of 8 runs per
    writer batch, finish it). Returns the CPU milliseconds per run of each of ``--repeats``
    rounds (after one warm-up round): CPU time of this process, and that of the PostgreSQL
    server's processes of the database (NaN on SQLite or a server on another host)."""
    from backpackflow import Backpack, EventStreamer
    from backpackflow.ids import new_id
    from backpackflow.loader import FlowLoader
    from backpackflow_server.runs import RunManager
    from backpackflow_store_sql import SqlRunStore

    source: Any = args.flow.resolve() if args.flow else flow_document  # a file: its folder
    flow = FlowLoader(bench_registry(args.autoload)).load_flow(source)
    events = EventStreamer()
    emitted: list[Any] = []
    events.subscribe("*", emitted.append)
    inputs = RunManager.resolve_inputs(flow, {})
    result = asyncio.run(flow.execute(Backpack(), inputs=inputs, events=events))
    if result.status != "succeeded":
        raise RuntimeError(f"the flow {result.status} in process: {result.error}")
    documents = [event.to_json() for event in emitted]
    rounds: list[float] = []
    server_rounds: list[float] = []
    with SqlRunStore(url) as store:
        store.upgrade()
        workflow_id = store.create_workflow("bench", flow_document)["id"]
        for _ in range(args.repeats + 1):
            server_before = database_server_cpu(store)
            started = time.process_time()
            for first in range(0, args.runs, 8):
                runs = []
                for _ in range(min(8, args.runs - first)):
                    store.get_workflow(workflow_id)  # as the service does for each new run
                    runs.append(store.create_run(workflow_id, inputs, "bench")["id"])
                for run_id in runs:
                    store.mark_running(run_id)
                store.append_many(
                    {r: [{**d, "id": new_id(), "run_id": r} for d in documents] for r in runs}
                )
                for run_id in runs:
                    store.finish_run(run_id, "succeeded")
            rounds.append((time.process_time() - started) / args.runs * 1e3)
            server = database_server_cpu(store) - server_before
            server_rounds.append(server / args.runs * 1e3)
    return rounds[1:], server_rounds[1:]


def report_store_path(args: argparse.Namespace, flow: dict[str, Any]) -> None:
    with tempfile.TemporaryDirectory() as tmp, databases(args.database, Path(tmp)) as targets:
        for label, url in targets:
            rounds, server = store_path(args, flow, url)
            line = f"{label:<11} the store's CPU per run: {_spread(rounds, ' ms', 2)}"
            if any(value == value for value in server):  # not NaN: measured
                line += f", the database server's {_spread(server, ' ms', 2)}"
            print(f"{line} ({len(rounds)} rounds of {args.runs} runs)")


# ------------------------------------------------------------------------------ the client


@dataclass
class Subscriber:
    seqs: list[int] = field(default_factory=list)
    latencies: list[float] = field(default_factory=list)
    backfilled: int = 0
    end: dict[str, Any] | None = None


async def subscribe(client: Any, run_id: str) -> Subscriber:
    """Read a run's stream to its ``end``; time the events emitted after connecting."""
    result = Subscriber()
    connected = time.time()
    event = data = None
    async with client.stream("GET", f"/api/runs/{run_id}/stream") as response:
        response.raise_for_status()
        async for line in response.aiter_lines():
            if line.startswith("event: "):
                event = line[7:]
            elif line.startswith("data: "):
                data = line[6:]
            elif line == "" and event is not None and data is not None:
                received = time.time()
                document = json.loads(data)
                if event == "end":
                    result.end = document
                    return result
                result.seqs.append(document["seq"])
                if document["timestamp"] >= connected:
                    result.latencies.append(received - document["timestamp"])
                else:
                    result.backfilled += 1
                event = data = None
    raise RuntimeError(f"run {run_id}: the stream closed without an end event")


async def one_run(client: Any, workflow_id: str, subscribers: int) -> tuple[str, list[Subscriber]]:
    response = await client.post(f"/api/workflows/{workflow_id}/runs", json={})
    response.raise_for_status()
    run_id = response.json()["id"]
    results = await asyncio.gather(*(subscribe(client, run_id) for _ in range(subscribers)))
    return run_id, list(results)


async def load(
    url: str,
    flow: dict[str, Any],
    runs: int,
    subscribers: int,
    token: str | None = None,
    service_cpu: Callable[[], float] | None = None,
) -> dict[str, Any]:
    """One round; ``token``: the API token to send (``None``: a local-dev service);
    ``service_cpu``: reads the service's CPU seconds so far. It is read when the runs start
    and when the last stream has ended, so the CPU of a round is that of the runs and their
    streams, not of the benchmark's own checks afterwards (each run read back, ``/health``)."""
    import httpx

    # idle connections expire before the server closes them (uvicorn: after 5 s), so a
    # request is never sent on a connection the server is closing at that moment
    limits = httpx.Limits(
        max_connections=None, max_keepalive_connections=runs * subscribers, keepalive_expiry=2.0
    )
    headers = {} if token is None else {"Authorization": f"Bearer {token}"}
    async with httpx.AsyncClient(
        base_url=url, timeout=120, limits=limits, headers=headers
    ) as client:
        created = await client.post("/api/workflows", json={"name": "bench", "graph_json": flow})
        if created.status_code != 201:
            raise RuntimeError(f"the flow was refused: {created.text}")
        workflow_id = created.json()["id"]
        cpu_before = service_cpu() if service_cpu else math.nan
        client_before = time.process_time()
        started = time.perf_counter()
        outcomes = await asyncio.gather(
            *(one_run(client, workflow_id, subscribers) for _ in range(runs))
        )
        elapsed = time.perf_counter() - started
        service_cpu_s = (service_cpu() if service_cpu else math.nan) - cpu_before
        client_cpu_s = time.process_time() - client_before
        stored_runs = await asyncio.gather(
            *(client.get(f"/api/runs/{run_id}") for run_id, _ in outcomes)
        )
        health = (await client.get("/health")).json()

    problems: list[str] = []
    emitted = stored = 0
    delivered = [0] * subscribers
    latencies: list[float] = []
    backfilled = 0
    statuses: dict[str, int] = {}
    for (run_id, subs), stored_response in zip(outcomes, stored_runs, strict=True):
        run = stored_response.json()
        statuses[run["status"]] = statuses.get(run["status"], 0) + 1
        last = run["last_seq"]
        emitted += last
        stored += run["event_count"]
        if run["event_count"] != last:
            problems.append(f"run {run_id}: {last} events emitted, {run['event_count']} stored")
        for index, sub in enumerate(subs):
            delivered[index] += len(sub.seqs)
            if sub.seqs != list(range(1, last + 1)):
                problems.append(
                    f"run {run_id}, subscriber {index}: got {len(sub.seqs)} events, not "
                    f"exactly seq 1..{last}"
                )
            latencies += sub.latencies
            backfilled += sub.backfilled
    if health.get("events_failed"):
        problems.append(f"the service gave up on {health['events_failed']} events")
    latencies.sort()

    def percentile(q: float) -> float:
        if not latencies:
            return float("nan")
        return latencies[min(len(latencies) - 1, int(q * len(latencies)))] * 1e3

    return {
        "runs": runs,
        "subscribers": subscribers,
        "seconds": elapsed,
        "runs_per_s": runs / elapsed,
        "statuses": statuses,
        "events_emitted": emitted,
        "events_stored": stored,
        "events_delivered": delivered,
        "live_events_timed": len(latencies),
        "backfilled_events": backfilled,
        "latency_ms": {
            "p50": percentile(0.50),
            "p99": percentile(0.99),
            "mean": statistics.fmean(latencies) * 1e3 if latencies else float("nan"),
            "max": latencies[-1] * 1e3 if latencies else float("nan"),
        },
        "problems": problems,
        "service_cpu_s": service_cpu_s,
        "client_cpu_s": client_cpu_s,
    }


# ------------------------------------------------------------------------------ databases


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class PostgresDatabase:
    """A throwaway PostgreSQL database (``None`` from :meth:`create` if unreachable)."""

    def __init__(self) -> None:
        self.engine: Any = None
        self.name = f"bpf_bench_{secrets.token_hex(5)}"

    def create(self) -> str | None:
        try:
            from sqlalchemy import create_engine
            from sqlalchemy.engine import make_url
            from sqlalchemy.pool import NullPool

            admin = make_url(
                os.environ.get("BACKPACKFLOW_TEST_POSTGRES_URL") or DEFAULT_POSTGRES_URL
            )
            if admin.drivername in ("postgresql", "postgres"):
                admin = admin.set(drivername="postgresql+psycopg")
            self.engine = create_engine(
                admin,
                isolation_level="AUTOCOMMIT",
                poolclass=NullPool,
                connect_args={"connect_timeout": 3},
            )
            with self.engine.connect() as connection:
                connection.exec_driver_sql(f'CREATE DATABASE "{self.name}"')
        except Exception as exc:  # noqa: BLE001 - PostgreSQL is optional unless asked for
            print(f"PostgreSQL unavailable, skipped: {' '.join(str(exc).split())[:200]}")
            return None
        return str(admin.set(database=self.name).render_as_string(hide_password=False))

    def drop(self) -> None:
        if self.engine is not None:
            with self.engine.connect() as connection:
                connection.exec_driver_sql(f'DROP DATABASE IF EXISTS "{self.name}" WITH (FORCE)')
            self.engine.dispose()


def add_database_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--database",
        action="append",
        metavar="URL",
        help="database URL (repeatable); default: SQLite, and PostgreSQL when reachable",
    )


@contextmanager
def databases(urls: list[str] | None, folder: Path) -> Iterator[list[tuple[str, str]]]:
    """(label, URL) of the databases to measure: ``urls``, or else SQLite in ``folder`` and
    PostgreSQL when reachable (a throwaway database, dropped on exit)."""
    if urls:
        yield [(url.split(":", 1)[0].split("+")[0], url) for url in urls]
        return
    targets = [("sqlite", f"sqlite:///{folder / 'bench.db'}")]
    postgres = PostgresDatabase()
    url = postgres.create()
    if url is not None:
        targets.append(("postgresql", url))
    try:
        yield targets
    finally:
        postgres.drop()


def create_token(database: str) -> str:
    """An admin token in ``database`` (as ``backpackflow tokens create --role admin``)."""
    from backpackflow_server.credentials import hash_token, new_token
    from backpackflow_store_sql import SqlRunStore

    secret = new_token()
    with SqlRunStore(database) as store:
        store.upgrade()
        store.create_token(f"bench-{secret[-8:]}", "admin", hash_token(secret), hint="bench")
    return secret


def start_service(
    database: str,
    max_concurrent_runs: int,
    autoload: bool,
    files_dir: Path | None,
    local_dev: bool = False,
    profile: Path | None = None,
) -> tuple[subprocess.Popen[bytes], str]:
    import httpx

    port = free_port()
    command = [
        sys.executable,
        __file__,
        "--serve",
        "serve",
        "--port",
        str(port),
        "--database",
        database,
        "--no-seed",
        "--max-concurrent-runs",
        str(max_concurrent_runs),
        "--log-level",
        "warning",
    ]
    if autoload:
        command.append("--autoload")
    if local_dev:
        command.append("--local-dev")
    if profile is not None:  # py-spy samples the service while it holds the GIL: its CPU
        command = [
            *("py-spy", "record", "--gil", "--threads", "--format", "raw", "-r", "200"),
            *("-o", str(profile), "--", *command),
        ]
    env = dict(os.environ)
    if files_dir is not None:  # a flow file's relative paths point into its folder
        env["BACKPACKFLOW_FILES_DIR"] = str(files_dir)
    process = subprocess.Popen(command, env=env)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while True:
        try:
            if httpx.get(f"{url}/health", timeout=1).status_code == 200:
                return process, url
        except httpx.TransportError:
            pass
        if process.poll() is not None or time.monotonic() > deadline:
            process.kill()
            raise RuntimeError("the service did not start")
        time.sleep(0.05)


def cpu_seconds(pid: int) -> float:
    """CPU time (user + system) a process has used so far (Linux; NaN elsewhere)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return float("nan")
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def measure(
    label: str, database: str, flow: dict[str, Any], args: argparse.Namespace
) -> dict[str, Any]:
    local_dev = args.auth == "local-dev"
    token = None if local_dev else create_token(database)
    process, url = start_service(
        database,
        args.max_concurrent_runs or args.runs,
        args.autoload,
        args.flow.resolve().parent if args.flow else None,
        local_dev,
        args.profile
        and args.profile.with_name(f"{args.profile.stem}-{label}{args.profile.suffix}"),
    )
    try:
        cold = None
        if args.warmup:  # a first round fills thread and connection pools and caches
            cold = asyncio.run(load(url, flow, args.runs, args.subscribers, token))
        result = asyncio.run(
            load(
                url,
                flow,
                args.runs,
                args.subscribers,
                token,
                service_cpu=lambda: cpu_seconds(process.pid),
            )
        )
        if cold is not None:
            result["cold"] = {k: cold[k] for k in ("runs_per_s", "latency_ms", "problems")}
    finally:
        # py-spy writes its profile on SIGINT (and stops the service with it)
        process.send_signal(signal.SIGINT if args.profile else signal.SIGTERM)
        process.wait(60)
    result["backend"] = label
    return result


def report(result: dict[str, Any]) -> None:
    lat = result["latency_ms"]
    per_sub = result["events_delivered"]
    delivered = (
        f"{per_sub[0]} x{len(per_sub)}" if len(set(per_sub)) == 1 else ", ".join(map(str, per_sub))
    )
    print(
        f"{result['backend']:<11} runs {result['runs']:>4}  subscribers/run {result['subscribers']}"
        f"  {result['runs_per_s']:8.1f} runs/s  ({result['seconds']:.2f} s)  statuses "
        f"{result['statuses']}"
    )
    print(
        f"{'':<11} event latency p50 {lat['p50']:.2f} ms  p99 {lat['p99']:.2f} ms  "
        f"max {lat['max']:.2f} ms  ({result['live_events_timed']} live events timed, "
        f"{result['backfilled_events']} backfilled)"
    )
    print(
        f"{'':<11} events emitted {result['events_emitted']}  stored {result['events_stored']}"
        f"  delivered per subscriber {delivered}"
    )
    print(
        f"{'':<11} CPU: service {result['service_cpu_s']:.2f} s, client "
        f"{result['client_cpu_s']:.2f} s, on {os.cpu_count()} CPUs"
    )
    per_run = result["service_cpu_s"] / result["runs"]
    result["service_cpu_s_per_run"] = per_run
    line = f"{'':<11} service CPU per run {per_run * 1e3:.2f} ms"
    flow_cpu = result.get("in_process_cpu_s_per_run")
    if flow_cpu:
        line += f"; the flow in process {flow_cpu * 1e3:.2f} ms: {per_run / flow_cpu:.2f}x"
    print(line)
    cold = result.get("cold")
    if cold is not None:
        print(
            f"{'':<11} (first, cold round: {cold['runs_per_s']:.1f} runs/s, latency p50 "
            f"{cold['latency_ms']['p50']:.2f} ms, p99 {cold['latency_ms']['p99']:.2f} ms)"
        )
        result["problems"] = [*cold["problems"], *result["problems"]]
    for problem in result["problems"][:20]:
        print(f"{'':<11} ERROR: {problem}")


def _spread(values: list[float], unit: str = "", digits: int = 1) -> str:
    values = [v for v in values if v == v]  # NaN: not measured
    if not values:
        return "n/a"
    median = statistics.median(values)
    return f"{median:.{digits}f}{unit} [{min(values):.{digits}f}-{max(values):.{digits}f}]"


def summarize(results: list[dict[str, Any]]) -> None:
    """Per database: the median and range over the repeats of each figure."""
    print(f"\nsummary: median [range] over the repeats, {os.cpu_count()} CPUs")
    for label in dict.fromkeys(r["backend"] for r in results):
        mine = [r for r in results if r["backend"] == label]
        ratios = [
            r["service_cpu_s_per_run"] / r["in_process_cpu_s_per_run"]
            for r in mine
            if r.get("in_process_cpu_s_per_run")
        ]
        flow_cpu = [r.get("in_process_cpu_s_per_run", math.nan) * 1e3 for r in mine]
        print(
            f"{label:<11} {len(mine)} repeats: {_spread([r['runs_per_s'] for r in mine])} runs/s"
            f"  event latency p50 {_spread([r['latency_ms']['p50'] for r in mine], ' ms')}"
            f"  p99 {_spread([r['latency_ms']['p99'] for r in mine], ' ms')}"
        )
        print(
            f"{'':<11} service CPU per run "
            f"{_spread([r['service_cpu_s_per_run'] * 1e3 for r in mine], ' ms', 2)}"
            f"  the flow in process {_spread(flow_cpu, ' ms', 2)}"
            f"  ratio {_spread(ratios, 'x', 2)}"
        )


def goals(results: list[dict[str, Any]]) -> list[str]:
    """The service's goals (issue 14), each with the medians that meet it or not."""
    by_backend: dict[str, list[dict[str, Any]]] = {}
    for result in results:
        by_backend.setdefault(result["backend"], []).append(result)
    lines = []
    medians: dict[str, float] = {}
    for label, mine in by_backend.items():
        ratios = [
            r["service_cpu_s_per_run"] / r["in_process_cpu_s_per_run"]
            for r in mine
            if r.get("in_process_cpu_s_per_run")
        ]
        if ratios:
            ratio = statistics.median(ratios)
            lines.append(
                f"{label}: service CPU per run {ratio:.2f}x the flow's (goal <= 2x): "
                + ("met" if ratio <= 2 else "not met")
            )
        p99 = statistics.median(r["latency_ms"]["p99"] for r in mine)
        lines.append(
            f"{label}: event latency p99 {p99:.1f} ms at {mine[0]['runs']} runs x "
            f"{mine[0]['subscribers']} subscribers (goal < 50 ms): "
            + ("met" if p99 < 50 else "not met")
        )
        medians[label] = statistics.median(r["runs_per_s"] for r in mine)
    if "sqlite" in medians and "postgresql" in medians:
        pg, lite = medians["postgresql"], medians["sqlite"]
        lines.append(
            f"PostgreSQL {pg:.1f} runs/s vs SQLite {lite:.1f} (goal: at least as fast): "
            + ("met" if pg >= lite else "not met")
        )
    return lines


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["--serve"]:
        return serve(argv[1:])
    if argv[:1] == ["--in-process"]:
        return in_process(argv[1:])
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--runs", type=int, default=50, help="concurrent runs (N)")
    parser.add_argument("--subscribers", type=int, default=2, help="SSE subscribers per run (M)")
    add_database_option(parser)
    parser.add_argument("--flow", type=Path, help="a flow config file to run instead")
    parser.add_argument(
        "--autoload", action="store_true", help="load the installed plugins in the service"
    )
    parser.add_argument("--step-ms", type=float, default=2.0, help="await per default step")
    parser.add_argument(
        "--max-concurrent-runs", type=int, help="the service's run slots (default: --runs)"
    )
    parser.add_argument(
        "--no-warmup",
        dest="warmup",
        action="store_false",
        help="measure the first round (cold pools and caches) instead of the second",
    )
    parser.add_argument(
        "--auth",
        choices=["tokens", "local-dev"],
        default="tokens",
        help="the service's auth mode (tokens: the client sends an admin token)",
    )
    parser.add_argument(
        "--repeats",
        type=int,
        default=3,
        help="rounds per database, taking turns (the summary gives medians and ranges)",
    )
    parser.add_argument(
        "--no-in-process",
        dest="in_process",
        action="store_false",
        help="skip measuring the flow's own CPU per run without the service",
    )
    parser.add_argument(
        "--profile",
        type=Path,
        metavar="FILE",
        help="sample the service with py-spy (pip install py-spy) into FILE-<database>, in "
        "py-spy's raw (collapsed stacks) format (the CPU figures are then py-spy's)",
    )
    parser.add_argument("--json", type=Path, help="also write the results to this file")
    parser.add_argument(
        "--store-only",
        action="store_true",
        help="measure only the store's CPU per run (the events of a real run stored for "
        "--runs runs, as the service stores them), --repeats rounds per database",
    )
    args = parser.parse_args(argv)

    flow = json.loads(args.flow.read_text()) if args.flow else default_flow(args.step_ms)
    if args.store_only:
        report_store_path(args, flow)
        return 0
    results = []
    with tempfile.TemporaryDirectory() as tmp, databases(args.database, Path(tmp)) as targets:
        for repeat in range(args.repeats):
            for label, url in targets:  # databases take turns: a slow patch hits both
                print(f"--- {label}, repeat {repeat + 1}/{args.repeats}")
                result = measure(label, url, flow, args)
                if args.in_process:
                    result["in_process_cpu_s_per_run"] = measure_in_process(args)
                results.append(result)
                report(result)
        summarize(results)
        print("\ngoals (medians):")
        for line in goals(results):
            print(f"  {line}")
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))
    failed = [r for r in results if r["problems"] or set(r["statuses"]) != {"succeeded"}]
    if failed:
        print(f"FAILED: {', '.join(r['backend'] for r in failed)}: events or runs were lost")
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
