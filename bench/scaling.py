"""Costs that grow with the work only: the growth tables, beside PocketFlow, LangGraph and Burr.

1. Graph size: chains of N = 10 ... 100,000 nodes. For ours: validating the flow document
   (``FlowLoader.validate``: JSON Schema, ids, cycles, reachability), compiling the graph
   (``Flow.nodes()`` on a fresh flow) and running it with everything on (Backpack history,
   telemetry, a wildcard subscriber, the default 10,000-event ring), as microseconds per node,
   and that per-node figure over the 10-node flow's (goal: within 1.5x). A small chain runs
   over and over (a fresh Backpack each time, at least ``RUN_NODES`` node executions per
   sample, after as many to warm up), as a user of small flows runs it; a large one runs once.
   One run of 10 nodes would time a cold start, not the flow. Peers run the same
   chain (each node adds 1 to one key): PocketFlow (build + run), LangGraph (compile + invoke),
   Burr (build + run), up to ``--peer-max`` nodes (their build is what grows).
2. ``max_history`` 10 ... 10,000: a two-node loop of 20,000 steps, each node packing two keys,
   as microseconds per step and over an unbounded history run side by side (goal: within 10%).
   None of the peers bounds its history, so they have no row here.
3. Stored runs 1,000 ... 100,000: ``bench/scaling_store.py``'s tables, when that file exists.
4. State in events: the JSON of a run's ``node_start`` events while the state grows by a key
   per node (N up to 10,000): flat per event, as each carries what changed, not a full copy.

Every figure is the median of ``--repeats`` interleaved repeats (a slow patch of the shared
machine hits every candidate of a repeat alike), with the range in brackets.

Setup: pip install -r bench/requirements-peers.txt   (peers are benchmark-only dependencies)
Run:   python bench/scaling.py [--sizes 10,100,1000,10000,100000] [--repeats 3] [--peer-max 10000]
"""

from __future__ import annotations

import argparse
import gc
import importlib.util
import itertools
import json
import statistics
import sys
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from backpackflow import Backpack, EventStreamer, Flow, FlowLoader, Limits, Node
from backpackflow.plugins import build_registry
from peers import available

HERE = Path(__file__).resolve().parent
DEFAULT_SIZES = (10, 100, 1_000, 10_000, 100_000)
#: Node executions per sample of a chain's run (a small chain runs several times).
RUN_NODES = 20_000
DEFAULT_HISTORIES = (None, 10, 100, 1_000, 10_000)
LOOP_STEPS = 20_000


class Step(Node):
    """Reads ``k``, adds 1, writes ``k``: the same work as the peers' nodes."""

    def prep(self, backpack: Any) -> int:
        value: int = backpack.unpack("k", 0)
        return value

    def exec(self, prep_res: int) -> int:
        return prep_res + 1

    def post(self, backpack: Any, prep_res: int, exec_res: int) -> None:
        backpack.pack("k", exec_res)


def _timed(fn: Callable[[], Any]) -> tuple[float, Any]:
    start = time.perf_counter()
    result = fn()
    return time.perf_counter() - start, result


# ------------------------------------------------------------------------------ graph size


def ours(n: int) -> dict[str, float]:
    """Seconds to validate, compile and run an ``n``-node chain (run: per run, see RUN_NODES)."""
    loader = FlowLoader(build_registry(plugins=[], autoload=False))
    loader.register("step", Step)
    document = {
        "version": "2.0.0",
        "nodes": [{"type": "step", "id": f"n{i}"} for i in range(n)],
        "edges": [{"from": f"n{i}", "to": f"n{i + 1}"} for i in range(n - 1)],
    }
    validate, report = _timed(lambda: loader.validate(document))
    assert report.ok, report.errors
    nodes = [Step(id=f"n{i}") for i in range(n)]
    for left, right in itertools.pairwise(nodes):
        left >> right
    flow = Flow(nodes[0])
    compile_, _ = _timed(flow.nodes)
    events = EventStreamer()
    events.subscribe("*", lambda event: None)
    runs = max(1, RUN_NODES // n)

    def run_all() -> Backpack:
        for _ in range(runs):
            backpack = Backpack()
            result = flow.execute_sync(backpack, events=events)
        assert result.ok, result.error
        return backpack

    if runs > 1:
        run_all()  # warm-up: the ring buffer and the interpreter's caches reach steady state
        gc.collect()
    run, backpack = _timed(run_all)
    assert backpack.unpack("k") == n
    return {"validate": validate, "compile": compile_, "run": run / runs}


def pocketflow(n: int) -> float:
    from pocketflow import Flow as PFlow
    from pocketflow import Node as PNode

    class PStep(PNode):  # type: ignore[misc]
        def prep(self, shared: dict[str, int]) -> int:
            return shared.get("k", 0)

        def exec(self, prep_res: int) -> int:
            return prep_res + 1

        def post(self, shared: dict[str, int], prep_res: int, exec_res: int) -> None:
            shared["k"] = exec_res

    def build_and_run() -> int:
        nodes = [PStep() for _ in range(n)]
        for left, right in itertools.pairwise(nodes):
            left >> right
        shared: dict[str, int] = {}
        PFlow(start=nodes[0]).run(shared)
        return shared["k"]

    seconds, value = _timed(build_and_run)
    assert value == n
    return seconds


def langgraph(n: int) -> float:
    from typing import TypedDict

    from langgraph.graph import END, START, StateGraph

    class State(TypedDict, total=False):
        k: int

    def step(state: State) -> dict[str, int]:
        return {"k": state.get("k", 0) + 1}

    def build_and_run() -> int:
        builder = StateGraph(State)
        for i in range(n):
            builder.add_node(f"n{i}", step)
        builder.add_edge(START, "n0")
        for i in range(n - 1):
            builder.add_edge(f"n{i}", f"n{i + 1}")
        builder.add_edge(f"n{n - 1}", END)
        graph = builder.compile()
        value: int = graph.invoke({"k": 0}, {"recursion_limit": n + 10})["k"]
        return value

    seconds, value = _timed(build_and_run)
    assert value == n
    return seconds


def burr(n: int) -> float:
    from burr.core import ApplicationBuilder, State, action

    @action(reads=["k"], writes=["k"])
    def step(state: State) -> State:
        return state.update(k=state["k"] + 1)

    def build_and_run() -> int:
        app = (
            ApplicationBuilder()
            .with_actions(**{f"n{i}": step for i in range(n)})
            .with_transitions(*((f"n{i}", f"n{i + 1}") for i in range(n - 1)))
            .with_state(k=0)
            .with_entrypoint("n0")
            .build()
        )
        _, _, state = app.run(halt_after=[f"n{n - 1}"])
        value: int = state["k"]
        return value

    seconds, value = _timed(build_and_run)
    assert value == n
    return seconds


PEERS: dict[str, Callable[[int], float]] = {
    "pocketflow": pocketflow,
    "langgraph": langgraph,
    "burr": burr,
}


def _fmt(values: list[float], scale: float = 1.0, digits: int = 1) -> str:
    if not values:
        return "-"
    scaled = [v * scale for v in values]
    median = statistics.median(scaled)
    if len(scaled) == 1:
        return f"{median:.{digits}f}"
    return f"{median:.{digits}f} [{min(scaled):.{digits}f}-{max(scaled):.{digits}f}]"


def graph_table(sizes: list[int], repeats: int, peer_max: int) -> None:
    installed = available()
    peers = [name for name in PEERS if installed.get(name)]
    missing = [name for name in PEERS if not installed.get(name)]
    samples: dict[tuple[str, int], list[float]] = {}
    for _ in range(repeats):
        for n in sizes:
            gc.collect()
            for part, seconds in ours(n).items():
                samples.setdefault((part, n), []).append(seconds)
            for name in peers:
                if n <= peer_max:
                    gc.collect()
                    samples.setdefault((name, n), []).append(PEERS[name](n))
    print("\n1. graph size: chains of N nodes; ms for the whole graph, us per node run")
    print(
        f"{'N':>8}  {'validate ms':>22}  {'compile ms':>20}  {'run us/node':>20}  "
        f"{'per node / 10-node':>18}  " + "  ".join(f"{name + ' us/node':>20}" for name in peers)
    )
    base = statistics.median(samples[("run", sizes[0])]) / sizes[0]
    for n in sizes:
        per_node = [s / n for s in samples[("run", n)]]
        row = (
            f"{n:>8,}  {_fmt(samples[('validate', n)], 1e3):>22}  "
            f"{_fmt(samples[('compile', n)], 1e3, 2):>20}  {_fmt(per_node, 1e6):>20}  "
            f"{statistics.median(per_node) / base:>17.2f}x"
        )
        for name in peers:
            peer = [s / n for s in samples.get((name, n), [])]
            row += f"  {_fmt(peer, 1e6) if peer else 'not run':>20}"
        print(row)
    print(
        f"(ours: everything on, runs of a chain repeated to {RUN_NODES:,} node executions; "
        f"peers: build + run once, up to --peer-max {peer_max:,} nodes; first size "
        f"{sizes[0]} is the base of the ratio)"
    )
    for name in missing:
        print(f"  {name} not installed (pip install -r bench/requirements-peers.txt)")


# ------------------------------------------------------------------------------ max_history


class Count(Node):
    """One of two nodes in a loop: reads ``n``, packs ``n`` and its own key; stops at the end."""

    def prep(self, backpack: Any) -> int:
        value: int = backpack.unpack("n", 0)
        return value

    def exec(self, prep_res: int) -> int:
        return prep_res + 1

    def post(self, backpack: Any, prep_res: int, exec_res: int) -> str | None:
        backpack.pack("n", exec_res)
        backpack.pack(self.id, exec_res)
        return "done" if exec_res >= LOOP_STEPS else None


def history_table(histories: list[int | None], repeats: int) -> None:
    a, b = Count(id="a"), Count(id="b")
    a >> b
    b >> a
    flow = Flow(a)
    limits = Limits(max_steps=None)
    samples: dict[int | None, list[float]] = {h: [] for h in histories}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "flow ends after node ...": the loop's end, on purpose
        for _ in range(repeats):
            for history in histories:
                gc.collect()
                backpack = Backpack(max_history=history)
                events = EventStreamer(history_size=0)
                seconds, result = _timed(
                    lambda b=backpack, e=events: flow.execute_sync(b, events=e, limits=limits)
                )
                assert result.ok, result.error
                retained = len(backpack.get_history())
                assert history is None or retained == history, (history, retained)
                samples[history].append(seconds)
    print(f"\n2. max_history: a 2-node loop of {LOOP_STEPS:,} steps (2 commits per step)")
    print(f"{'max_history':>12}  {'us/step':>20}  {'over unbounded':>22}")
    unbounded = samples[None]
    for history in histories:
        ratios = [s / u for s, u in zip(samples[history], unbounded, strict=True)]
        label = "none" if history is None else f"{history:,}"
        print(
            f"{label:>12}  {_fmt([s / LOOP_STEPS for s in samples[history]], 1e6, 2):>20}  "
            f"{_fmt(ratios, 1.0, 3):>22}"
        )
    print("(PocketFlow, LangGraph and Burr keep no bounded history: no peer row)")


# ------------------------------------------------------------------------------ state in events


class Grow(Node):
    """Packs a key of its own (100 characters): the state grows by one key per node."""

    def post(self, backpack: Any, prep_res: Any, exec_res: Any) -> None:
        backpack.pack(f"key_{self.id}", "x" * 100)


def state_table(sizes: list[int]) -> None:
    """The JSON of a run's ``node_start`` events (each carries the state it starts from) as
    the state grows by one key per node: flat per event if the state goes by delta, growing
    with N (N² per run) if each event held a full copy."""
    print("\n4. state in node_start events (a chain of N nodes, each packing a key of its own)")
    print(
        f"{'N':>8}{'final state, bytes':>20}{'node_start JSON, bytes/event':>30}"
        f"{'all node_start, bytes/run':>27}{'a full copy per event would be':>32}"
    )
    for n in sizes:
        nodes = [Grow(id=f"n{i}") for i in range(n)]
        for left, right in itertools.pairwise(nodes):
            left >> right
        emitted: list[Any] = []
        events = EventStreamer(history_size=0)
        events.subscribe("*", emitted.append)
        backpack = Backpack()
        result = Flow(nodes[0]).execute_sync(backpack, events=events)
        assert result.ok, result.error
        sizes_ = [len(e.to_json_str()) for e in emitted if e.type == "node_start"]
        state = len(json.dumps(backpack.to_dict()))
        # each node_start holding the whole state so far: the sum of the states before each node
        full = sum(state * i // n for i in range(n))
        print(f"{n:>8,}{state:>20,}{statistics.mean(sizes_):>30,.0f}{sum(sizes_):>27,}{full:>32,}")


# ------------------------------------------------------------------------------ stored runs


def store_table() -> None:
    path = HERE / "scaling_store.py"
    print("\n3. stored runs")
    if not path.exists():
        print("bench/scaling_store.py is absent: no stored-runs table")
        return
    spec = importlib.util.spec_from_file_location("scaling_store", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    module.main([])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default=",".join(map(str, DEFAULT_SIZES)))
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--peer-max", type=int, default=10_000)
    parser.add_argument("--no-store", action="store_true", help="skip the stored-runs table")
    args = parser.parse_args(argv)
    sizes = sorted(int(s) for s in args.sizes.split(","))
    print(f"python {sys.version.split()[0]}; median [range] of {args.repeats} repeats")
    graph_table(sizes, args.repeats, args.peer_max)
    history_table(list(DEFAULT_HISTORIES), args.repeats)
    state_table([n for n in sizes if n <= 10_000])
    if not args.no_store:
        store_table()
    return 0


if __name__ == "__main__":
    sys.exit(main())
