"""Response cache benchmark: run an example flow twice on a fresh SQLite cache and compare.

Run: python bench/cache.py [--flow research|csv-report|PATH] [--latency-ms 0] [--repeat 5]

Each repetition uses a new temporary cache file: the first run is cold (every LLM call goes to
the offline provider), the second is identical and warm. Prints the cache hit rate of the LLM
calls, the cost of each run and the reduction, and the wall time of each run and the time
saved (medians over the repetitions). ``--latency-ms`` makes the offline model simulate a
hosted model's latency per call (it reports 0 by default, so only the framework's own time is
measured). Figures only; the behaviour is asserted in tests/e2e and tests/plugins/nodes.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from decimal import Decimal
from pathlib import Path
from typing import Any

from backpackflow import Backpack
from backpackflow.events import EventStreamer, summarize
from backpackflow.loader import FlowLoader, prepare_inputs
from backpackflow.runner import DependencyContainer
from backpackflow_llm import OfflineProvider, SQLiteCache

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
FLOWS = {
    "research": EXAMPLES / "research" / "flow.json",
    "csv-report": EXAMPLES / "csv-report" / "flow.json",
}


def run_once(
    loader: FlowLoader, flow_path: Path, cache_path: Path, latency_ms: float
) -> dict[str, Any]:
    """One run of the flow with the cache at ``cache_path``: its figures."""
    deps = DependencyContainer()
    cache = SQLiteCache(cache_path)
    deps.register("llm_cache", cache)
    if latency_ms:  # what llm nodes with provider "offline" get (the caller's deps win)
        deps.register("offline", OfflineProvider(latency_ms=latency_ms))
    flow = loader.load_flow(flow_path, deps)
    events = EventStreamer()
    started = time.perf_counter()
    result = flow.execute_sync(Backpack(), inputs=prepare_inputs(flow, {}), events=events)
    seconds = time.perf_counter() - started
    cache.close()
    if not result.ok:
        raise SystemExit(f"{flow_path}: the run failed: {result.error}")
    summary = summarize(events.get_events(run_id=result.run_id))
    calls = [s for s in summary.steps if s.node_type == "llm"]
    return {
        "calls": len(calls),
        "hits": sum(1 for s in calls if s.cache_hit),
        "cost": summary.cost,
        "saved": summary.cost_saved,
        "tokens": summary.tokens_input + summary.tokens_output,
        "seconds": seconds,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--flow", default="research", help="research, csv-report or a path")
    parser.add_argument("--latency-ms", type=float, default=0.0, help="simulated latency per call")
    parser.add_argument("--repeat", type=int, default=5, help="repetitions (fresh cache each)")
    args = parser.parse_args(argv)
    flow_path = FLOWS.get(args.flow, Path(args.flow))
    loader = FlowLoader()

    cold: list[dict[str, Any]] = []
    warm: list[dict[str, Any]] = []
    for _ in range(max(1, args.repeat)):
        with tempfile.TemporaryDirectory(prefix="bpf-cache-bench-") as tmp:
            cache_path = Path(tmp) / "llm-cache.sqlite"
            cold.append(run_once(loader, flow_path, cache_path, args.latency_ms))
            warm.append(run_once(loader, flow_path, cache_path, args.latency_ms))

    first, second = cold[0], warm[0]  # costs and hits are deterministic: every repeat agrees
    cold_s = statistics.median(r["seconds"] for r in cold)
    warm_s = statistics.median(r["seconds"] for r in warm)
    hit_rate = second["hits"] / second["calls"] if second["calls"] else 0.0
    reduction = (
        (first["cost"] - second["cost"]) / first["cost"] * 100 if first["cost"] else Decimal(0)
    )
    print(f"flow: {flow_path} ({args.repeat} repetitions, latency {args.latency_ms:g} ms/call)")
    print(f"LLM calls per run:        {first['calls']}")
    print(f"cache hits, first run:    {first['hits']}/{first['calls']}")
    print(f"cache hits, second run:   {second['hits']}/{second['calls']} ({hit_rate:.0%})")
    print(f"tokens, first / second:   {first['tokens']} / {second['tokens']}")
    print(f"cost, first run:          ${first['cost']}")
    print(f"cost, second run:         ${second['cost']} (saved ${second['saved']})")
    print(f"cost reduction:           {reduction:.1f}%")
    print(f"wall time, first run:     {cold_s * 1000:.1f} ms (median)")
    print(f"wall time, second run:    {warm_s * 1000:.1f} ms (median)")
    print(
        f"time saved:               {(cold_s - warm_s) * 1000:.1f} ms "
        f"({(cold_s - warm_s) / cold_s:.0%})"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
