"""Backpack benchmark: throughput, snapshot time in a long history, storage of a chat history.

Run: python bench/backpack.py [--commits 100000] [--keys 1000] [--turns 500]
Prints figures only; goals are stated beside them (they are not asserted: see tests/ for that).
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import sys
import time
import tracemalloc

from backpackflow import Backpack


def pack_unpack_throughput(n: int) -> tuple[float, float]:
    bp = Backpack()
    view = bp.view(node_id="bench", namespace="bench")
    value = {"role": "assistant", "content": "a short answer", "score": 0.5}
    start = time.perf_counter()
    for i in range(n):
        view.pack(f"k{i % 100}", value)
    packs = n / (time.perf_counter() - start)
    start = time.perf_counter()
    for i in range(n):
        view.unpack(f"k{i % 100}")
    unpacks = n / (time.perf_counter() - start)
    return packs, unpacks


def snapshot_in_long_history(commits: int, keys: int) -> tuple[float, float, int]:
    rng = random.Random(7)
    bp = Backpack()
    for i in range(commits):
        bp.pack(f"key-{rng.randrange(keys)}", i)
    middle = bp.get_history()[commits // 2].commit_id
    times = []
    for _ in range(200):
        start = time.perf_counter()
        snap = bp.get_snapshot_at_commit(middle)
        times.append(time.perf_counter() - start)
    materialize = []
    for _ in range(50):
        start = time.perf_counter()
        snap.to_dict()
        materialize.append(time.perf_counter() - start)
    return statistics.median(times) * 1e3, statistics.median(materialize) * 1e3, len(snap)


def chat_history_storage(turns: int) -> dict[str, float]:
    rng = random.Random(3)
    words = [
        "the",
        "agent",
        "reads",
        "the",
        "ticket",
        "then",
        "drafts",
        "a",
        "careful",
        "answer",
        "with",
        "sources",
    ]

    def message(i: int) -> dict[str, str]:
        text = " ".join(rng.choice(words) for _ in range(rng.randint(20, 60)))
        return {"role": "user" if i % 2 == 0 else "assistant", "content": text}

    tracemalloc.start()
    before = tracemalloc.take_snapshot()
    bp = Backpack()
    for i in range(turns):
        bp.append("messages", [message(i)], node_id="chat", namespace="support.chat")
    after = tracemalloc.take_snapshot()
    tracemalloc.stop()
    backpack_bytes = sum(s.size_diff for s in after.compare_to(before, "filename"))

    final_state = bp.unpack("messages")
    tracemalloc.start()
    before = tracemalloc.take_snapshot()
    copy = json.loads(json.dumps(final_state))
    after = tracemalloc.take_snapshot()
    tracemalloc.stop()
    state_bytes = sum(s.size_diff for s in after.compare_to(before, "filename"))
    del copy

    final_json = len(json.dumps(final_state))
    serialized = len(bp.to_json_str())
    full_copy_per_commit = sum(
        len(json.dumps(final_state[: i + 1])) for i in range(len(final_state))
    )
    return {
        "memory_ratio": backpack_bytes / state_bytes,
        "serialized_ratio": serialized / final_json,
        "full_copy_ratio": full_copy_per_commit / final_json,
        "final_state_bytes": final_json,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ops", type=int, default=200_000)
    parser.add_argument("--commits", type=int, default=100_000)
    parser.add_argument("--keys", type=int, default=1_000)
    parser.add_argument("--turns", type=int, default=500)
    args = parser.parse_args(argv)

    print(f"python {sys.version.split()[0]}")
    packs, unpacks = pack_unpack_throughput(args.ops)
    print(f"pack (through a node view, history on):   {packs:>12,.0f} ops/s")
    print(f"unpack (through a node view):             {unpacks:>12,.0f} ops/s")

    snap_ms, mat_ms, size = snapshot_in_long_history(args.commits, args.keys)
    print(
        f"get_snapshot_at_commit, middle of {args.commits:,} commits over {args.keys:,} "
        "keys: "
        f"{snap_ms:.3f} ms (goal: well under 1 ms); materializing its {size} values: "
        f"{mat_ms:.3f} ms"
    )

    chat = chat_history_storage(args.turns)
    print(
        f"{args.turns}-turn chat kept with append: memory {chat['memory_ratio']:.2f}x the final "
        f"state, serialized (values + full commit metadata) {chat['serialized_ratio']:.2f}x "
        f"(goal: <= 2x; a full copy per commit would be {chat['full_copy_ratio']:.0f}x)"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
