"""The cyclic GC's share of the service's CPU: collections during steady-state rounds.

Run: python bench/service_gc.py [--database URL ...] [--rounds 3] [--runs 50]

Starts the service as ``bench/service_load.py`` does (the research example, 2 SSE subscribers
per run, an admin token), runs one warm-up round, then ``--rounds`` measured rounds, and prints
the service's CPU seconds over those rounds, the CPU its garbage collections took (by
generation) and the longest one (a full collection stops the event loop, so it is a floor
of the event latency's tail). The service logs its collections to a file
(``BACKPACKFLOW_BENCH_GC_LOG``); only those during the measured rounds count.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import tempfile
import time
from pathlib import Path

import service_load as sl


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    sl.add_database_option(parser)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--runs", type=int, default=50)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp, sl.databases(args.database, Path(tmp)) as targets:
        for label, url in targets:
            print(f"{label:<11} {measure(url, args, Path(tmp) / f'{label}-collections.json')}")
    return 0


def measure(database: str, args: argparse.Namespace, log: Path) -> str:
    """One service on ``database``: the summary line of its collections."""
    flow_path = (Path(__file__).parent.parent / "examples/research/flow.json").resolve()
    flow = json.loads(flow_path.read_text())
    os.environ[sl.GC_LOG] = str(log)
    token = sl.create_token(database)
    process, url = sl.start_service(database, args.runs, True, flow_path.parent)
    try:
        asyncio.run(sl.load(url, flow, args.runs, 2, token))  # warm-up
        started, cpu = time.time(), 0.0
        for _ in range(args.rounds):
            result = asyncio.run(
                sl.load(
                    url,
                    flow,
                    args.runs,
                    2,
                    token,
                    service_cpu=lambda: sl.cpu_seconds(process.pid),
                )
            )
            cpu += result["service_cpu_s"]
        ended = time.time()
        time.sleep(0.8)  # the log is written twice a second
    finally:
        process.send_signal(signal.SIGTERM)
        process.wait(60)
    collections = [c for c in json.loads(log.read_text()) if started <= c[3] <= ended]
    gc_cpu = sum(c[2] for c in collections)
    by_generation = "; ".join(
        f"generation {g}: {sum(1 for c in collections if c[0] == g)} x, "
        f"{sum(c[2] for c in collections if c[0] == g) * 1e3:.0f} ms"
        for g in (0, 1, 2)
    )
    longest = max((c[1] for c in collections), default=0.0)
    return (
        f"service CPU {cpu:.2f} s over {args.rounds} rounds of {args.runs} runs; "
        f"garbage collection {gc_cpu:.3f} s of it ({gc_cpu / cpu * 100:.0f}%); {by_generation}; "
        f"the longest {longest * 1e3:.0f} ms"
    )


if __name__ == "__main__":
    raise SystemExit(main())
