"""Runs on Celery workers against the in-process executor: runs/s, event latency, queue cost.

Run: python bench/workers.py [--runs 100] [--workers 1,2,4] [--repeats 3] [--broker URL]

Each configuration gets a throwaway PostgreSQL database (``$BACKPACKFLOW_TEST_POSTGRES_URL``,
default ``postgresql://postgres@127.0.0.1:5432/test``) and processes of its own on this
machine: ``in-process`` is one ``backpackflow serve``; ``celery xN`` is one ``serve
--executor celery`` and N ``backpackflow worker`` processes (``--concurrency`` runs each) on the
Redis broker. The client (bench/service_load.py's) starts ``--runs`` runs of four
``bench_step`` nodes at once and reads each run's SSE stream through the API; printed per
configuration, as median and range over ``--repeats`` rounds:

* runs/s: all runs started -> every stream got its ``end``;
* event latency p50/p99: emit timestamp (in the process that drives the run) -> parsed by the
  client. For worker runs the API reads them from the database every ``poll_interval``
  (0.5 s by default), so this is what a client of this version sees;
* with ``--live-feed`` the API and workers share a live feed on the broker's Redis, and the
  API streams worker runs from Redis Streams instead;
* queue cost per run: ``--single`` runs one at a time, POST -> ``succeeded`` stored, median;
  the difference against in-process is what going through the broker, a worker and its lease
  adds to one run.

Every round also checks events emitted = stored = delivered (exit status 1 otherwise).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from service_load import (
    BenchNodes,
    PostgresDatabase,
    default_flow,
    free_port,
    load,
)

DEFAULT_BROKER = "redis://127.0.0.1:6379/0"


def registry() -> Any:
    import backpackflow_celery.plugin
    import backpackflow_conditions.plugin
    import backpackflow_redis.plugin
    import backpackflow_server.plugin
    import backpackflow_store_sql.plugin
    from backpackflow.plugins import build_registry

    plugins = [
        BenchNodes(),
        backpackflow_store_sql.plugin,
        backpackflow_conditions.plugin,
        backpackflow_server.plugin,
        backpackflow_celery.plugin,
        backpackflow_redis.plugin,
    ]
    return build_registry(plugins=plugins, autoload=False)


def command(argv: list[str]) -> int:
    """A ``serve`` or ``worker`` process with the benchmark's node types."""
    from backpackflow.cli import build_parser

    plugins = registry()
    args = build_parser(plugins).parse_args(argv)
    return int(args._handler(args, plugins))


def _spawn(argv: list[str], env: dict[str, str]) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, __file__, "--process", *argv],
        env={**os.environ, **env},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


def start(
    database: str, broker: str, workers: int, concurrency: int, queue: str, live_feed: bool
) -> tuple[list[subprocess.Popen[bytes]], str]:
    import httpx

    env = {"BACKPACKFLOW_BROKER_QUEUE": queue, "BACKPACKFLOW_MAX_CONCURRENT_RUNS": "200"}
    if live_feed:  # every process on the broker's Redis, under a prefix of the round's own
        env["BACKPACKFLOW_LIVE_FEED"] = f"{broker}?prefix={queue}"
    port = free_port()
    serve = ["serve", "--port", str(port), "--database", database, "--no-seed", "--local-dev"]
    serve += ["--log-level", "warning"]
    if workers:
        serve += ["--executor", "celery", "--broker", broker]
    processes = [_spawn(serve, env)]
    for i in range(workers):
        worker = ["worker", "--broker", broker, "--database", database, "--hostname", f"w{i}@b"]
        worker += ["--concurrency", str(concurrency), "--log-level", "warning"]
        processes.append(_spawn(worker, env))
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while True:
        try:
            if httpx.get(f"{url}/health", timeout=1).status_code == 200:
                break
        except httpx.TransportError:
            pass
        if processes[0].poll() is not None or time.monotonic() > deadline:
            stop(processes)
            raise RuntimeError("the service did not start")
        time.sleep(0.1)
    if workers:
        from backpackflow_celery.plugin import live_workers

        while len(live_workers(broker, timeout=1, queue=queue)["workers"]) < workers:
            if time.monotonic() > deadline:
                stop(processes)
                raise RuntimeError("the workers did not start")
    return processes, url


def stop(processes: list[subprocess.Popen[bytes]]) -> None:
    for process in processes:
        process.terminate()
    for process in processes:
        try:
            process.wait(20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(10)


def single_runs(url: str, flow: dict[str, Any], count: int) -> list[float]:
    """Seconds from POST to ``succeeded`` stored, one run at a time."""
    import httpx

    seconds = []
    with httpx.Client(base_url=url, timeout=60) as client:
        created = client.post("/api/workflows", json={"name": "single", "graph_json": flow})
        workflow_id = created.json()["id"]
        for _ in range(count):
            started = time.perf_counter()
            run_id = client.post(f"/api/workflows/{workflow_id}/runs", json={}).json()["id"]
            while client.get(f"/api/runs/{run_id}").json()["status"] != "succeeded":
                time.sleep(0.005)
            seconds.append(time.perf_counter() - started)
    return seconds


def round_of(args: argparse.Namespace, workers: int, index: int) -> dict[str, Any]:
    postgres = PostgresDatabase()
    database = postgres.create()
    if database is None:
        raise SystemExit("PostgreSQL is needed (set BACKPACKFLOW_TEST_POSTGRES_URL)")
    queue = f"bpf-bench-{os.getpid()}-{workers}-{index}"
    try:
        processes, url = start(
            database, args.broker, workers, args.concurrency, queue, args.live_feed
        )
        try:
            flow = default_flow(args.step_ms)
            single = single_runs(url, flow, args.single)
            result = asyncio.run(load(url, flow, args.runs, 1))
            result["single_s"] = statistics.median(single)
        finally:
            stop(processes)
    finally:
        postgres.drop()
    return result


def _spread(values: list[float], unit: str, digits: int = 1) -> str:
    return (
        f"{statistics.median(values):.{digits}f}{unit} "
        f"({min(values):.{digits}f}-{max(values):.{digits}f})"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=100, help="runs started at once")
    parser.add_argument("--workers", default="1,2,4", help="worker counts to measure")
    parser.add_argument("--concurrency", type=int, default=16, help="runs per worker at once")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--single", type=int, default=10, help="one-at-a-time runs per round")
    parser.add_argument("--step-ms", type=float, default=2.0, help="each node's await")
    parser.add_argument(
        "--live-feed",
        action="store_true",
        help="API and workers share a live feed on the broker's Redis (SSE through Redis "
        "Streams instead of database polling)",
    )
    parser.add_argument(
        "--broker", default=os.environ.get("BACKPACKFLOW_BROKER_URL", DEFAULT_BROKER)
    )
    args = parser.parse_args(argv)
    configs = [0, *(int(n) for n in args.workers.split(","))]
    results: dict[int, list[dict[str, Any]]] = {n: [] for n in configs}
    problems = []
    for index in range(args.repeats):  # configurations take turns: drift hits them alike
        for workers in configs:
            result = round_of(args, workers, index)
            results[workers].append(result)
            problems += result["problems"]
            label = "in-process" if workers == 0 else f"celery x{workers}"
            print(
                f"round {index + 1} {label}: {result['runs_per_s']:.1f} runs/s, "
                f"p50 {result['latency_ms']['p50']:.0f} ms, p99 "
                f"{result['latency_ms']['p99']:.0f} ms, single run "
                f"{result['single_s'] * 1e3:.0f} ms, {result['statuses']}",
                flush=True,
            )
    print(f"\n{args.runs} runs of 4 nodes, {args.repeats} rounds: median (min-max)")
    base = [r["single_s"] for r in results[0]]
    for workers in configs:
        rounds = results[workers]
        label = "in-process" if workers == 0 else f"celery x{workers}"
        single = [r["single_s"] for r in rounds]
        costs = [(s - b) * 1e3 for s, b in zip(single, base, strict=True)]
        cost = "" if workers == 0 else f"; queue cost per run {_spread(costs, ' ms', 0)}"
        print(
            f"{label:>12}: {_spread([r['runs_per_s'] for r in rounds], ' runs/s')}; "
            f"latency p50 {_spread([r['latency_ms']['p50'] for r in rounds], ' ms', 0)}, "
            f"p99 {_spread([r['latency_ms']['p99'] for r in rounds], ' ms', 0)}; "
            f"single run {_spread([s * 1e3 for s in single], ' ms', 0)}{cost}"
        )
    for problem in problems:
        print(f"PROBLEM: {problem}")
    return 1 if problems else 0


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--process":
        raise SystemExit(command(sys.argv[2:]))
    raise SystemExit(main())
