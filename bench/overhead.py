"""Orchestration overhead per node, side by side with PocketFlow, LangGraph and Burr, and event
dispatch throughput.

The same 5-node linear flow everywhere (node i reads ``k{i-1}`` and writes ``k{i}``). Ours runs
with everything on: Backpack history (every write a commit), access-control checks, full
telemetry (node lifecycle and Backpack events), one wildcard subscriber, and the event history
ring buffer at its default bounds (10,000 events, 32 MiB). Each run gets a fresh Backpack, as
users do.

Setup: pip install -r bench/requirements-peers.txt   (peers are benchmark-only dependencies)
Run:   python bench/overhead.py [--runs 2000] [--repeats 7]

Goals (DESIGN §5; issue 14 tightened the first from 6x): ours <= 5x bare
PocketFlow, >= 40x faster than LangGraph with its checkpointer, and >= 300,000 events/s through
5 pattern subscribers. Figures are printed, not asserted.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from backpackflow import Backpack, EventStreamer
from backpackflow.events import BackpackEvent, NodeEndPayload, StreamEventType
from backpackflow.policy import SecretMasker
from flows import linear_flow
from peers import EXPECTED, NODES, RUNNERS, START, available, measure


def ours(
    history_size: int = 10_000,
    *,
    secrets: bool = False,
    mapped: bool = False,
    history_bytes: int | None = 32 << 20,
) -> Callable[[], int]:
    """A backpackflow run of the 5-node flow with full telemetry; returns ``k5``. With
    ``secrets`` the flow has a secret to mask, as a loaded flow with a ``${NAME}`` reference
    does: every event's payload is then checked (and copied where it holds the secret). With
    ``mapped`` every node reads its key through a key mapping."""
    flow = linear_flow(mapped=mapped)
    if secrets:
        flow.secrets = SecretMasker({"API_KEY": "sk-bench-0123456789abcdef"})
    events = EventStreamer(history_size=history_size, history_bytes=history_bytes)
    events.subscribe("*", lambda event: None)

    def run() -> int:
        backpack = Backpack({"k0": START})
        backpack.register_permissions("n1", read=["k0"], write=["k1"])  # access control on
        flow.run(backpack, events=events)
        value: int = backpack.unpack(f"k{NODES}")
        return value

    return run


def dispatch_rate(events: int = 200_000, subscribers: int = 5) -> float:
    """Events per second through ``subscribers`` pattern subscriptions (built and emitted)."""
    streamer = EventStreamer()
    patterns = ["*", "sales.*", "*.chat", "sales.**", "n1"][:subscribers]
    seen = [0] * len(patterns)
    for i, pattern in enumerate(patterns):

        def handler(event: BackpackEvent, i: int = i) -> None:
            seen[i] += 1

        streamer.subscribe(pattern, handler)
    payload = NodeEndPayload("default", [], 1.0)
    namespaces = ["sales.chat", "support.chat", "sales.crm.eu"]
    start = time.perf_counter()
    for seq in range(events):
        streamer.emit(
            BackpackEvent(
                seq,
                time.time(),
                "run",
                1,
                "n1",
                "N1",
                namespaces[seq % 3],
                StreamEventType.NODE_END,
                payload,
            )
        )
    elapsed = time.perf_counter() - start
    assert seen[0] == events, "the wildcard subscriber must see every event"
    return events / elapsed


def interleaved(
    candidates: dict[str, tuple[Callable[[], int], int]], repeats: int
) -> dict[str, list[float]]:
    """µs per node of each candidate ``name: (run, runs per repeat)``, one figure per repeat.
    Every candidate is warmed up first (caches, the specializing interpreter, and our history
    ring buffer reach their steady state), then the repeats take turns: a slow patch of a shared
    machine hits every candidate of that repeat alike, and ratios are taken repeat by repeat."""
    for run, runs in candidates.values():
        measure(run, 1, 1, expected=EXPECTED, warmup=max(10, runs // 2))
    samples: dict[str, list[float]] = {name: [] for name in candidates}
    for _ in range(repeats):
        for name, (run, runs) in candidates.items():
            samples[name].append(measure(run, runs, 1, expected=EXPECTED, warmup=0))
    return samples


def ratio(numerator: list[float], denominator: list[float]) -> float:
    """The median of the per-repeat ratios (figures of one repeat were timed side by side)."""
    return statistics.median(n / d for n, d in zip(numerator, denominator, strict=True))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=2000)
    parser.add_argument("--repeats", type=int, default=7)
    args = parser.parse_args(argv)

    print(
        f"python {sys.version.split()[0]}; {NODES}-node linear flow; median of "
        f"{args.repeats} interleaved repeats of {args.runs} runs (LangGraph: a tenth); "
        "microseconds per node"
    )
    installed = available()
    candidates: dict[str, tuple[Callable[[], int], int]] = {
        "backpackflow": (ours(), args.runs),
        "backpackflow (1k history)": (ours(history_size=1_000), args.runs),
        "backpackflow (a secret)": (ours(secrets=True), args.runs),
        "backpackflow (mapped reads)": (ours(mapped=True), args.runs),
        "backpackflow (no byte bound)": (ours(history_bytes=None), args.runs),
    }
    for name, build in RUNNERS.items():
        if installed.get(name) is None:
            print(f"  {name:<24} not installed (pip install -r bench/requirements-peers.txt)")
            continue
        runs = args.runs if "langgraph" not in name else max(args.runs // 10, 50)
        candidates[name] = (build(), runs)
    samples = interleaved(candidates, args.repeats)
    ours_default = samples["backpackflow"]
    ours_small = samples.pop("backpackflow (1k history)")
    ours_masked = samples.pop("backpackflow (a secret)")
    ours_mapped = samples.pop("backpackflow (mapped reads)")
    ours_unbounded = samples.pop("backpackflow (no byte bound)")
    print()
    for name, values in samples.items():
        version = installed.get(name) or ""
        print(f"  {name:<24} {statistics.median(values):>9.2f} us/node  {version}")
    print(f"  {'backpackflow (1k history)':<24} {statistics.median(ours_small):>9.2f} us/node")
    print(f"  {'backpackflow (a secret)':<24} {statistics.median(ours_masked):>9.2f} us/node")
    print(f"  {'backpackflow (mapped reads)':<24} {statistics.median(ours_mapped):>9.2f} us/node")
    unbounded = statistics.median(ours_unbounded)
    print(f"  {'backpackflow (no byte bound)':<24} {unbounded:>9.2f} us/node")
    print("\nratios: the median of the per-repeat ratios")
    if "pocketflow" in samples:
        pocketflow = samples["pocketflow"]
        print(
            f"backpackflow / PocketFlow:               {ratio(ours_default, pocketflow):5.1f}x"
            "   (goal <= 5x)"
        )
        print(f"backpackflow (1k history) / PocketFlow:  {ratio(ours_small, pocketflow):5.1f}x")
    print(f"backpackflow with a secret to mask / without: {ratio(ours_masked, ours_default):5.2f}x")
    print(
        f"backpackflow with every read mapped / without: {ratio(ours_mapped, ours_default):5.2f}x"
    )
    print(
        "backpackflow with the history's byte bound / without: "
        f"{ratio(ours_default, ours_unbounded):5.2f}x"
    )
    if "langgraph+checkpointer" in samples:
        faster = ratio(samples["langgraph+checkpointer"], ours_default)
        print(f"LangGraph+checkpointer / backpackflow:   {faster:5.1f}x   (goal >= 40x)")
    if "langgraph" in samples:
        print(
            f"LangGraph / backpackflow:                "
            f"{ratio(samples['langgraph'], ours_default):5.1f}x"
        )
    if "burr" in samples:
        burr = ratio(samples["burr"], ours_default)
        print(f"Burr / backpackflow:                     {burr:5.1f}x")
    rates = [dispatch_rate() for _ in range(3)]
    print(
        f"\nevent dispatch, 5 pattern subscribers: {statistics.median(rates):,.0f} events/s "
        "(goal >= 300,000)"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
