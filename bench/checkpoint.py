"""Checkpoint cost: time per step and bytes stored for a long chat, per durability mode and
checkpointer.

The flow is a 500-turn chat: one node loops, each turn appends one message (~130 bytes of
JSON) to ``messages`` and packs a turn counter. Measured per step (one node execution):

- time, without a checkpointer and with each checkpointer and durability mode (memory, file,
  file with fsync, the SQL store on SQLite; PostgreSQL with ``--postgres URL``);
- bytes stored after 100, 250 and 500 turns: ours store deltas, so they grow linearly; for
  comparison, the bytes a checkpointer that saves the whole state at every step would store
  (computed from the same run: the sum of the state's JSON size after each step), which grows
  quadratically. That is what full-state checkpoint savers do (LangGraph's SQLite and
  PostgreSQL savers store the channel values at each step); they are not installed here, so
  their own figures are not measured by this script.

Run:   python bench/checkpoint.py [--turns 500] [--repeats 3] [--postgres URL]
Figures are printed, not asserted.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from backpackflow import Backpack, Checkpointer, FileCheckpointer, Flow, MemoryCheckpointer, Node


class Chat(Node):
    """One chat turn: append the user's message, count the turn, loop until ``turns``."""

    def __init__(self, turns: int) -> None:
        super().__init__(id="chat")
        self.turns = turns

    def post(self, backpack: Any, prep_res: Any, exec_res: Any) -> str:
        turn = backpack.unpack("turn", 0) + 1
        backpack.pack("turn", turn)
        text = f"turn {turn}: " + "lorem ipsum dolor sit amet " * 4
        backpack.append("messages", [{"role": "user", "content": text}])
        return "again" if turn < self.turns else "done"


def chat_flow(turns: int) -> Flow:
    node = Chat(turns)
    node - "again" >> node
    node - "done" >> None  # type: ignore[operator]
    return Flow(node, max_steps=turns + 10)


def per_step_us(
    turns: int, checkpointer: Checkpointer | None, durability: str, repeats: int
) -> float:
    """Median microseconds per step over ``repeats`` runs (a new run id each)."""
    flow = chat_flow(turns)
    times = []
    for i in range(repeats):
        options: dict[str, Any] = {}
        if checkpointer is not None:
            options = {
                "checkpointer": checkpointer,
                "durability": durability,
                "run_id": f"bench-{durability}-{time.time_ns()}-{i}",
            }
        started = time.perf_counter()
        result = flow.execute_sync(Backpack(), **options)
        times.append((time.perf_counter() - started) / turns * 1e6)
        assert result.ok, result.error
    return statistics.median(times)


def sizes(turns: int, checkpointer: Checkpointer, size: Callable[[str], int]) -> list[tuple]:
    """(turns, our bytes, full-state bytes) after each of 100, 250, ``turns`` turns."""
    out = []
    for n in sorted({min(100, turns), min(250, turns), turns}):
        run_id = f"size-{n}-{time.time_ns()}"
        result = chat_flow(n).execute_sync(Backpack(), checkpointer=checkpointer, run_id=run_id)
        assert result.ok, result.error
        full = 0
        backpack = result.backpack
        for commit in backpack.get_history():
            if commit.key == "turn":  # one step ends with its turn's commits
                state = backpack.get_snapshot_at_commit(commit.commit_id).to_dict()
                full += len(json.dumps(state, separators=(",", ":")))
        out.append((n, size(run_id), full))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--turns", type=int, default=500)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--postgres", metavar="URL", help="also measure the SQL store there")
    args = parser.parse_args()
    folder = Path(tempfile.mkdtemp(prefix="bench-checkpoints-"))
    memory = MemoryCheckpointer()
    file = FileCheckpointer(folder / "files")
    synced = FileCheckpointer(folder / "synced", fsync=True)
    stores: list[tuple[str, Checkpointer, Callable[[str], int]]] = [
        ("memory", memory, memory.size),
        ("file", file, file.size),
        ("file+fsync", synced, synced.size),
    ]
    try:
        from backpackflow_store_sql import SqlRunStore
    except ImportError:  # the [server] extra is not installed
        print("SQL store: not installed (pip install 'backpackflow[server]')")
    else:
        sqlite = SqlRunStore(f"sqlite:///{folder / 'store.db'}")
        sqlite.upgrade()
        stores.append(("sqlite store", sqlite, sqlite.checkpoint_size))
        if args.postgres:
            postgres = SqlRunStore(args.postgres)
            postgres.upgrade()
            stores.append(("postgresql store", postgres, postgres.checkpoint_size))

    turns, repeats = args.turns, args.repeats
    print(f"{turns}-turn chat; median of {repeats} runs; microseconds per step (one node)")
    base = per_step_us(turns, None, "node", repeats)
    print(f"  {'no checkpointer':<28} {base:8.1f} us/step")
    for name, checkpointer, _ in stores:
        for mode in ("exit", "node", "commit"):
            if name == "file+fsync" and mode == "commit":
                continue  # one disk flush per commit: measure it knowingly (--turns small)
            us = per_step_us(turns, checkpointer, mode, repeats)
            print(f"  {name + ' / ' + mode:<28} {us:8.1f} us/step  (+{us - base:.1f})")
    print("\nbytes stored (ours: deltas) vs a full-state checkpoint per step (computed)")
    for name, checkpointer, size in stores[:2] + stores[3:]:
        for n, ours, full in sizes(turns, checkpointer, size):
            print(f"  {name:<18} {n:4d} turns: {ours:>10,} B   full-state: {full:>12,} B")


if __name__ == "__main__":
    main()
