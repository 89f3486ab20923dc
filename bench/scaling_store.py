"""The run store as it fills up: stored runs 1,000 ... 100,000 on SQLite and PostgreSQL.

Run: python bench/scaling_store.py [--sizes 1000,10000,100000] [--database URL ...]

At each size it times, median [range] of ``--calls`` calls each: a page of the run list
(``list_runs()``, 50 runs), the same filtered by a workflow and by a status each holding 5% of
the runs (a full page at every size; the filters that read and sorted every matching run before
the ``(workflow_id, id)``
and ``(status, id)`` indexes), creating a run, and appending a 10-event batch to a run (one
node with an LLM call: the steps and totals it derives included). The runs are put in with
bulk inserts between sizes (run creation through the store at 100,000 would take minutes);
their ids are time-ordered as the store's own. The goal is flat rows: a figure that grows with
the number of stored runs is a missing index.

Without ``--database`` it measures SQLite (a temporary file) and PostgreSQL when reachable (a
throwaway database created beside ``$BACKPACKFLOW_TEST_POSTGRES_URL``, default
``postgresql://postgres@127.0.0.1:5432/test``, and dropped at the end). ``bench/scaling.py``
calls :func:`main` for its stored-runs table.
"""

from __future__ import annotations

import argparse
import itertools
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from sqlalchemy import Table, func, select

from backpackflow.ids import new_id
from backpackflow_store_sql import SqlRunStore
from backpackflow_store_sql.models import WorkflowRun
from service_load import add_database_option, databases

DEFAULT_SIZES = (1_000, 10_000, 100_000)
WORKFLOWS = 10  # the first holds 5% of the runs, the others share the rest
RARE_STATUS = "failed"  # 5% of the runs (others than the first workflow's); others succeeded
INSERT_CHUNK = 5_000
runs: Table = WorkflowRun.__table__  # type: ignore[assignment]


def _run_rows(workflows: list[dict[str, Any]], start: int, count: int) -> list[dict[str, Any]]:
    """``count`` finished runs as rows of ``workflow_runs`` (numbered from ``start``)."""
    now = datetime.now(UTC)
    rows = []
    for number in range(start, start + count):
        workflow = workflows[0] if number % 20 == 0 else workflows[1 + number % (WORKFLOWS - 1)]
        rows.append(
            {
                "id": new_id(),
                "workflow_id": workflow["id"],
                "workflow_name": workflow["name"],
                "workflow_version": 1,
                "triggered_by": "bench",
                "status": RARE_STATUS if number % 20 == 10 else "succeeded",
                "input_vars": {"n": number},
                "created_at": now,
                "started_at": now,
                "finished_at": now,
                "total_tokens_input": 100,
                "total_tokens_output": 20,
                "total_cost": Decimal("0.0001"),
                "total_latency_ms": 12.5,
                "error_summary": None,
                "event_count": 0,
                "last_seq": 0,
            }
        )
    return rows


def _fill(store: SqlRunStore, workflows: list[dict[str, Any]], have: int, want: int) -> None:
    for start in range(have, want, INSERT_CHUNK):
        with store.engine.begin() as connection:
            connection.execute(
                runs.insert(), _run_rows(workflows, start, min(INSERT_CHUNK, want - start))
            )
    if store.dialect == "postgresql":  # fresh statistics, as autovacuum would give them
        with store.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as c:
            c.exec_driver_sql("ANALYZE workflow_runs")


def _batch(run_id: str, first_seq: int) -> list[dict[str, Any]]:
    """A node with an LLM call: 10 events (step numbers new to the run)."""
    step = first_seq
    types = ["node_start", "prep_complete", "llm_request", "log", "log", "llm_response"]
    types += ["log", "exec_complete", "backpack_pack", "node_end"]
    payloads: dict[str, Any] = {
        "node_start": {"node_type": "llm"},
        "llm_response": {
            "provider": "offline",
            "usage": {"input_tokens": 100, "output_tokens": 20},
            "cost": "0.0001",
        },
        "exec_complete": {"attempts": 1},
        "node_end": {"action": "default", "duration_ms": 3.0},
    }
    return [
        {
            "id": new_id(),
            "seq": first_seq + i,
            "timestamp": time.time(),
            "run_id": run_id,
            "step": step,
            "node_id": "summarize",
            "node_name": "Summarize",
            "namespace": "research.summarize",
            "type": kind,
            "payload": payloads.get(kind, {"message": "working"}),
        }
        for i, kind in enumerate(types)
    ]


def _time(calls: int, call: Callable[[int], Any]) -> list[float]:
    call(-1)  # warm: statement caches, pool
    times = []
    for i in range(calls):
        started = time.perf_counter()
        call(i)
        times.append((time.perf_counter() - started) * 1e3)
    return times


def _spread(times: list[float]) -> str:
    return f"{statistics.median(times):6.2f} [{min(times):.2f}-{max(times):.2f}]"


COLUMNS = (
    "list",
    "list by workflow",
    "list by status",
    "create run",
    "append 10 events",
)


def measure(
    label: str, url: str, sizes: list[int], calls: int, revision: str = "head"
) -> list[dict[str, Any]]:
    """Fill the store step by step; time each operation at each size (ms)."""
    results = []
    with SqlRunStore(url) as store:
        store.upgrade(revision)
        workflows = [
            store.create_workflow(f"bench {i}", {"version": "2.0.0", "nodes": [], "edges": []})
            for i in range(WORKFLOWS)
        ]
        rare = workflows[0]["id"]
        runner = store.create_run(workflows[1]["id"], {})
        seqs = itertools.count(1, 10)
        print(f"\n{label}: milliseconds per call, median [range] of {calls} calls")
        print(f"{'stored runs':>11}  " + "  ".join(f"{c:>22}" for c in COLUMNS))
        for size in sizes:
            with store.engine.connect() as connection:
                have = connection.execute(select(func.count()).select_from(runs)).scalar_one()
            _fill(store, workflows, have, size)
            row = {
                "list": _time(calls, lambda _i: store.list_runs(limit=50)),
                "list by workflow": _time(
                    calls, lambda _i: store.list_runs(workflow_id=rare, limit=50)
                ),
                "list by status": _time(
                    calls, lambda _i: store.list_runs(status=RARE_STATUS, limit=50)
                ),
                "create run": _time(calls, lambda _i: store.create_run(workflows[1]["id"], {})),
                "append 10 events": _time(
                    calls,
                    lambda _i: store.append_events(runner["id"], _batch(runner["id"], next(seqs))),
                ),
            }
            print(f"{size:>11,}  " + "  ".join(f"{_spread(row[c]):>22}" for c in COLUMNS))
            results.append({"backend": label, "stored_runs": size, **row})
    return results


def main(argv: list[str] | None = None) -> list[dict[str, Any]]:
    """Print the tables; returns the measurements (one dict per database and size)."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument(
        "--sizes",
        default=",".join(map(str, DEFAULT_SIZES)),
        help="stored runs at which to measure, comma-separated (default: %(default)s)",
    )
    parser.add_argument("--calls", type=int, default=20, help="timed calls per figure")
    add_database_option(parser)
    parser.add_argument(
        "--revision",
        default="head",
        help="schema revision to measure (e.g. 0003: before the run-list indexes)",
    )
    args = parser.parse_args(sys.argv[1:] if argv is None else argv)
    sizes = sorted(int(s.replace("_", "")) for s in args.sizes.split(","))
    results: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory() as tmp, databases(args.database, Path(tmp)) as targets:
        for label, url in targets:
            results += measure(label, url, sizes, args.calls, args.revision)
    return results


if __name__ == "__main__":
    main()
