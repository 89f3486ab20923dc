"""Peer side of the per-node orchestration-overhead benchmark.

Every peer runs the same 5-node linear flow: node i reads ``k{i-1}`` from the shared state and
writes ``k{i}`` = that value + 1, so a run started from ``k0 = 0`` must end with ``k5 == 5``.
The nodes do no work of their own, so the time per node is the framework's overhead.

Peers are imported lazily so this module imports (and ``available()`` answers) in an
environment that has none of them. Install them with bench/requirements-peers.txt.

Run: python bench/peers.py [--runs 2000]
"""

from __future__ import annotations

import argparse
import importlib
import importlib.metadata
import itertools
import os
import statistics
import time
from collections.abc import Callable
from typing import Any, TypedDict

NODES = 5
START = 0
EXPECTED = START + NODES

# LangSmith tracing is off unless these are set, but a developer's shell may set them; the
# benchmark must never time network tracing, so force it off before langchain-core is imported.
os.environ["LANGSMITH_TRACING"] = "false"
os.environ["LANGCHAIN_TRACING_V2"] = "false"


def measure(
    fn: Callable[[], Any],
    runs: int,
    repeats: int = 5,
    *,
    expected: Any = EXPECTED,
    warmup: int | None = None,
) -> float:
    """Median microseconds per node of ``fn``, one call being one full run of the flow.

    ``fn`` must return the flow's final value (``k5``); it is checked against ``expected`` on
    every warm-up call and on the last call of each timed repeat (outside the timed region), so
    a broken flow raises instead of being reported as fast. Warm-up lets caches, lazy imports
    and the specializing interpreter settle before timing.
    """
    if runs < 1 or repeats < 1:
        raise ValueError("runs and repeats must be >= 1")
    for _ in range(warmup if warmup is not None else max(10, runs // 10)):
        _check(fn(), expected)
    per_node: list[float] = []
    for _ in range(repeats):
        result: Any = None
        start = time.perf_counter()
        for _ in range(runs):
            result = fn()
        elapsed = time.perf_counter() - start
        _check(result, expected)
        per_node.append(elapsed / (runs * NODES) * 1e6)
    return statistics.median(per_node)


def _check(result: Any, expected: Any) -> None:
    if result != expected:
        raise RuntimeError(f"flow produced k{NODES}={result!r}, expected {expected!r}")


# --- PocketFlow ---------------------------------------------------------------------------


def _pocketflow_run() -> Callable[[], int]:
    """Build a bare PocketFlow Node/Flow chain once; each call runs it on a fresh shared dict."""
    from pocketflow import Flow, Node

    class Step(Node):
        """Reads one key in prep, adds 1 in exec, writes one key in post (PocketFlow's idiom)."""

        def __init__(self, src: str, dst: str) -> None:
            super().__init__()
            self.src, self.dst = src, dst

        def prep(self, shared: dict[str, Any]) -> int:
            return shared[self.src]

        def exec(self, prep_res: int) -> int:
            return prep_res + 1

        def post(self, shared: dict[str, Any], prep_res: int, exec_res: int) -> None:
            shared[self.dst] = exec_res

    steps = [Step(f"k{i - 1}", f"k{i}") for i in range(1, NODES + 1)]
    for a, b in itertools.pairwise(steps):
        a >> b
    flow = Flow(start=steps[0])

    def run() -> int:
        shared = {"k0": START}
        flow.run(shared)
        return shared[f"k{NODES}"]

    return run


# --- LangGraph ----------------------------------------------------------------------------


class _KState(TypedDict, total=False):
    """LangGraph state schema: one plain (last-value) channel per key."""

    k0: int
    k1: int
    k2: int
    k3: int
    k4: int
    k5: int


def _langgraph_builder() -> Any:
    """StateGraph with 5 nodes in a line; compiled by the callers, outside any timing."""
    from langgraph.graph import END, StateGraph
    from langgraph.graph import START as LG_START

    def step(src: str, dst: str) -> Callable[[_KState], dict[str, int]]:
        def node(state: _KState) -> dict[str, int]:
            return {dst: state[src] + 1}  # type: ignore[literal-required]

        return node

    builder = StateGraph(_KState)
    for i in range(1, NODES + 1):
        builder.add_node(f"n{i}", step(f"k{i - 1}", f"k{i}"))
    builder.add_edge(LG_START, "n1")
    for i in range(1, NODES):
        builder.add_edge(f"n{i}", f"n{i + 1}")
    builder.add_edge(f"n{NODES}", END)
    return builder


def _langgraph_run() -> Callable[[], int]:
    """The compiled StateGraph without a checkpointer; each call is one ``invoke``."""
    graph = _langgraph_builder().compile()

    def run() -> int:
        return graph.invoke({"k0": START})[f"k{NODES}"]

    return run


def _langgraph_checkpointer_run() -> Callable[[], int]:
    """Same graph with the in-memory checkpointer; every run is a new thread, as a new
    conversation would be. Default durability ("async": checkpoints are written on a
    background thread while the next step runs; invoke waits for them before returning)."""
    try:
        from langgraph.checkpoint.memory import InMemorySaver
    except ImportError:  # older langgraph-checkpoint only has the old name
        from langgraph.checkpoint.memory import MemorySaver as InMemorySaver

    graph = _langgraph_builder().compile(checkpointer=InMemorySaver())
    thread_ids = itertools.count()

    def run() -> int:
        config = {"configurable": {"thread_id": f"t{next(thread_ids)}"}}
        return graph.invoke({"k0": START}, config)[f"k{NODES}"]

    return run


# --- Burr ---------------------------------------------------------------------------------


def _burr_run() -> Callable[[], int]:
    """Build one Burr Application once; each call resets its state to ``{k0: 0}`` (which also
    clears the prior step, so it starts again at the entrypoint) and runs it to ``n5``.

    Burr 0.43 has no telemetry (removed per ASF policy) and tracking is opt-in via
    ``with_tracker``, which is not called, so there is nothing to turn off.
    """
    from burr.core import ApplicationBuilder, State, action

    def step(src: str, dst: str) -> Any:
        @action(reads=[src], writes=[dst])
        def node(state: State) -> State:
            return state.update(**{dst: state[src] + 1})

        return node

    app = (
        ApplicationBuilder()
        .with_actions(**{f"n{i}": step(f"k{i - 1}", f"k{i}") for i in range(1, NODES + 1)})
        .with_transitions(*((f"n{i}", f"n{i + 1}") for i in range(1, NODES)))
        .with_state(k0=START)
        .with_entrypoint("n1")
        .build()
    )
    last = f"n{NODES}"

    def run() -> int:
        app.update_state(State({"k0": START}))
        _, _, state = app.run(halt_after=[last])
        return state[f"k{NODES}"]

    return run


# --- registry -----------------------------------------------------------------------------

#: peer -> a builder of one run of its flow (built once; each call of the result is one run)
RUNNERS: dict[str, Callable[[], Callable[[], int]]] = {
    "pocketflow": _pocketflow_run,
    "langgraph": _langgraph_run,
    "langgraph+checkpointer": _langgraph_checkpointer_run,
    "burr": _burr_run,
}

# peer -> (modules that must import, distributions whose versions are reported)
_REQUIRES: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    "pocketflow": (("pocketflow",), ("pocketflow",)),
    "langgraph": (("langgraph.graph",), ("langgraph",)),
    "langgraph+checkpointer": (
        ("langgraph.graph", "langgraph.checkpoint.memory"),
        ("langgraph", "langgraph-checkpoint"),
    ),
    "burr": (("burr.core",), ("apache-burr",)),
}


def _version(dist: str) -> str:
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        if dist == "apache-burr":  # releases before the move to Apache were named "burr"
            return importlib.metadata.version("burr")
        raise


def installed(modules: tuple[str, ...], dists: tuple[str, ...]) -> str | None:
    """The version of ``dists[0]`` (with any further distributions' named beside it) when all
    ``modules`` import, else None: the benches print "not installed" instead of crashing."""
    try:
        for module in modules:
            importlib.import_module(module)
        versions = [_version(d) for d in dists]
    except Exception:  # noqa: BLE001 - any failure to import means "not usable here"
        return None
    extras = [f"{d} {v}" for d, v in zip(dists[1:], versions[1:], strict=True)]
    return " / ".join([versions[0], *extras])


def available() -> dict[str, str | None]:
    """Each peer's installed version, or None when it does not import."""
    return {peer: installed(*requires) for peer, requires in _REQUIRES.items()}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=2000, help="flow runs per timed repeat")
    args = parser.parse_args(argv)
    versions = available()
    print(f"{NODES}-node linear flow, {args.runs} runs x 5 repeats, median µs per node")
    for name, build in RUNNERS.items():
        version = versions[name]
        if version is None:
            print(f"{name:24} not installed")
            continue
        print(f"{name:24} {measure(build(), args.runs, 5):9.2f} us/node   ({version})")


if __name__ == "__main__":
    main()
