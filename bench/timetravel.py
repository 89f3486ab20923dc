"""Time travel reads: what GET /api/runs/{id}/commits, /state and /diff cost on a long run.

The run is bench/checkpoint.py's chat (one looping node; each turn appends a message and
packs a counter: two commits per turn), checkpointed into the SQL store on SQLite. Measured,
in process (no HTTP, no masking):

- a miss: reading the run's checkpoint records, folding them and rebuilding the Backpack at
  its last commit (``RunHistory.read``), which the service does once per finished run
  (``Histories`` keeps the last few) and at every request for an active run;
- on a built history: the commit list, the state at the last and at a middle commit, and the
  diff between them.

Run:   python bench/timetravel.py [--turns 100 500] [--repeats 7]
Figures are printed (medians and ranges in milliseconds), not asserted.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from backpackflow_server.timetravel import RunHistory, commit_page, diff_between, state_at
from backpackflow_store_sql import SqlRunStore
from checkpoint import chat_flow  # bench/ is the script's folder (on sys.path above)


def timed(work: Callable[[], Any], repeats: int) -> tuple[float, float, float]:
    """Median, min and max milliseconds of ``repeats`` calls."""
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        work()
        times.append((time.perf_counter() - started) * 1000)
    return statistics.median(times), min(times), max(times)


def measure(store: SqlRunStore, turns: int, repeats: int) -> None:
    """Run the chat of ``turns`` turns into ``store`` and print what reading it costs."""
    run_id = f"chat-{turns}"
    result = chat_flow(turns).execute_sync(checkpointer=store, run_id=run_id)
    assert result.ok, result.error
    middle = result.backpack.get_history(key="turn")[turns // 2].commit_id
    history = RunHistory.read(store, run_id)
    rows: list[tuple[str, Callable[[], Any]]] = [
        ("read, fold, rebuild (a miss)", lambda: RunHistory.read(store, run_id)),
        ("commits (all)", lambda: commit_page(history, 0, 5000)),
        ("state at the last commit", lambda: state_at(history, None, False)),
        ("state at a middle commit", lambda: state_at(history, middle, False)),
        ("diff middle -> last", lambda: diff_between(history, middle, None)),
    ]
    print(f"{turns} turns ({history.checkpoint.last_seq} commits), ms")
    for name, work in rows:
        median, low, high = timed(work, repeats)
        print(f"  {name:30s} {median:8.2f}  ({low:.2f}-{high:.2f})")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--turns", type=int, nargs="+", default=[100, 500])
    parser.add_argument("--repeats", type=int, default=7)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        store = SqlRunStore(f"sqlite:///{folder}/bench.db")
        store.upgrade()
        for turns in args.turns:
            measure(store, turns, args.repeats)
        store.close()


if __name__ == "__main__":
    main()
