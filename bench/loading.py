"""Loading cost of a flow of many ``llm`` nodes: validate and build, per node, N = 10 ... 3,000.

The flow is a chain of N ``llm`` nodes (the first-party nodes plugin, offline provider), as a
generated pipeline would be: every node has the same system prompt and prompt template, and one
input binding to the previous node's output (``{"text": "{{ node.<previous>.output }}"}``), so
each node has three templates, one of them its own. Variant ``distinct``: every node's prompt
is a different text as well (nothing to share between nodes).

For each N: ``FlowLoader.validate`` (JSON Schema, graph checks, building every node to run its
load-time checks: params, templates, providers) and then ``FlowLoader.load_flow`` of the same
document (what ``backpackflow run`` and the service do), as microseconds per node, and the
per-node cost over the 10-node flow's (the goal: flat). Every sample loads a flow never seen
before (its node ids and prompt carry the sample's number), so nothing is reused from an
earlier sample. Figures are the median of ``--repeats`` interleaved rounds with the range in
brackets.

Run:   python bench/loading.py [--sizes 10,100,1000,3000] [--repeats 3] [--profile N]
``--profile N`` prints a cProfile of one load of N nodes instead (the top functions).
"""

from __future__ import annotations

import argparse
import cProfile
import gc
import itertools
import pstats
import statistics
import time
from typing import Any

from backpackflow import FlowLoader

DEFAULT_SIZES = (10, 100, 1_000, 3_000)
VARIANTS = ("shared", "distinct")
_samples = itertools.count()


def llm_chain(n: int, variant: str) -> dict[str, Any]:
    """A flow document: a chain of ``n`` llm nodes, new (by its ids and prompt) on each call."""
    sample = next(_samples)
    nodes = []
    for i in range(n):
        prompt = f"Summarize {{{{ text }}}} in three sentences (sample {sample})"
        if variant == "distinct":
            prompt += f", part {i}"
        text = "{{ inputs.doc }}" if i == 0 else f"{{{{ node.s{sample}n{i - 1}.output }}}}"
        nodes.append(
            {
                "type": "llm",
                "id": f"s{sample}n{i}",
                "params": {
                    "provider": "offline",
                    "model": "offline-extractive-1",
                    "system": "You are a concise analyst. Keep to the facts.",
                    "prompt": prompt,
                },
                "inputs": {"text": text},
            }
        )
    return {
        "version": "2.0.0",
        "inputs": {"doc": {"default": "notes"}},
        "nodes": nodes,
        "edges": [{"from": f"s{sample}n{i}", "to": f"s{sample}n{i + 1}"} for i in range(n - 1)],
        "limits": {"max_steps": n + 10},
    }


def sample(loader: FlowLoader, n: int, variant: str) -> tuple[float, float]:
    """Seconds to validate, then to load, one new ``n``-node flow."""
    document = llm_chain(n, variant)
    gc.collect()
    started = time.perf_counter()
    report = loader.validate(document)
    validated = time.perf_counter()
    assert report.ok, report.errors[:3]
    flow = loader.load_flow(document)
    loaded = time.perf_counter()
    assert len(flow.nodes()) == n
    return validated - started, loaded - validated


def _fmt(values: list[float]) -> str:
    return f"{statistics.median(values):7.0f} [{min(values):.0f}-{max(values):.0f}]"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default=",".join(map(str, DEFAULT_SIZES)))
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--profile", type=int, metavar="N", help="profile one load of N nodes")
    args = parser.parse_args(argv)
    loader = FlowLoader()
    sample(loader, 10, "shared")  # warm-up: plugins, the composed schema, imports
    if args.profile:
        document = llm_chain(args.profile, "shared")
        profile = cProfile.Profile()
        profile.runcall(loader.validate, document)
        profile.runcall(loader.load_flow, document)
        pstats.Stats(profile).sort_stats("cumulative").print_stats(30)
        return
    sizes = [int(s) for s in args.sizes.split(",")]
    times: dict[tuple[str, int], tuple[list[float], list[float]]] = {}
    for _ in range(args.repeats):
        for variant in VARIANTS:
            for n in sizes:
                validate, load = sample(loader, n, variant)
                v, ld = times.setdefault((variant, n), ([], []))
                v.append(validate / n * 1e6)
                ld.append(load / n * 1e6)
    print(
        f"chains of N llm nodes; microseconds per node, median [min-max] of {args.repeats} "
        "interleaved rounds"
    )
    print(
        f"  {'variant':<9}{'N':>7}  {'validate':>20}  {'load':>20}  {'both':>8}  per node / 10-node"
    )
    for variant in VARIANTS:
        base = None
        for n in sizes:
            v, ld = times[(variant, n)]
            both = statistics.median([a + b for a, b in zip(v, ld, strict=True)])
            base = base if base is not None else both
            print(
                f"  {variant:<9}{n:>7,}  {_fmt(v):>20}  {_fmt(ld):>20}  {both:8.0f}  "
                f"{both / base:.2f}x"
            )


if __name__ == "__main__":
    main()
