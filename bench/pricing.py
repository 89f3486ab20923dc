"""Pricing benchmark: the cost of pricing one LLM call, side by side in one process.

Run: python bench/pricing.py [--calls 20000] [--rounds 7]

Compares ``PricingTable.price`` for a commercial model (gpt-4o, with cached tokens) priced by
a pricing file alone (``tests/plugins/llm/pinned-prices.json``, the hand-kept table
backpackflow shipped before genai-prices: the old path) against the default layers (no
overrides, genai-prices' bundled data, the shipped fallback), and the offline model, which the
default layers price from the fallback file after genai-prices says it does not know the
provider. Prints microseconds per call: the median of the rounds with their range, and the
ratio to the file-only table. One-off costs (importing genai-prices, about 0.2 s) are paid
before timing. Figures only; exactness is tested in tests/plugins/llm.
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

from backpackflow_llm import PricingTable, Usage

PINNED = Path(__file__).resolve().parents[1] / "tests" / "plugins" / "llm" / "pinned-prices.json"
USAGE = Usage(1200, 300, cached_input_tokens=400)
AT = datetime(2026, 6, 1, tzinfo=UTC)


def per_call(price: Callable[[], object], calls: int) -> float:
    start = time.perf_counter()
    for _ in range(calls):
        price()
    return (time.perf_counter() - start) / calls * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=20_000)
    parser.add_argument("--rounds", type=int, default=7)
    args = parser.parse_args()
    pinned = PricingTable.load(PINNED)
    layered = PricingTable.load()
    cases = {
        "file only, gpt-4o": lambda: pinned.price("openai", "gpt-4o", USAGE, at=AT),
        "layers, gpt-4o (genai-prices)": lambda: layered.price("openai", "gpt-4o", USAGE, at=AT),
        "layers, offline (fallback file)": lambda: layered.price(
            "offline", "offline-extractive-1", USAGE, at=AT
        ),
    }
    for price in cases.values():  # warm: imports, lookup caches
        per_call(price, 100)
    results: dict[str, list[float]] = {name: [] for name in cases}
    for _ in range(args.rounds):  # interleaved, so drift of the machine hits every case alike
        for name, price in cases.items():
            results[name].append(per_call(price, args.calls))
    base = statistics.median(results["file only, gpt-4o"])
    print(f"{'case':<34} {'µs/call (median)':>17} {'range':>17} {'ratio':>7}")
    for name, times in results.items():
        median = statistics.median(times)
        spread = f"{min(times):.1f}-{max(times):.1f}"
        print(f"{name:<34} {median:>17.1f} {spread:>17} {median / base:>6.1f}x")


if __name__ == "__main__":
    main()
