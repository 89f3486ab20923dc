"""A finished run written straight into a store, as large as a test or benchmark wants: the
run view's behaviour with many steps (tests/ui/test_ui_runs.py) and its speed with 2,000 steps
and 50,000 events (bench/ui_run_view.py), without running a flow that long."""

from __future__ import annotations

import itertools
import time
from typing import Any

from backpackflow_store_sql import SqlRunStore

NODES = [f"n{i}" for i in range(7)]


def store_run(url: str, steps: int, events_per_step: int) -> str:
    """A finished run of ``steps`` llm-like steps of ``events_per_step`` events each."""
    store = SqlRunStore(url)
    store.upgrade()
    graph = {
        "version": "2.0.0",
        "nodes": [{"type": "router", "id": node, "params": {"rule": "'x'"}} for node in NODES],
        "edges": [{"from": a, "to": b} for a, b in itertools.pairwise(NODES)],
    }
    workflow = store.create_workflow("big run", graph)
    run_id = str(store.create_run(workflow["id"], {})["id"])
    store.mark_running(run_id)
    seq, batch = 0, []
    start = time.time() - steps

    def add(step: int | None, node: str | None, kind: str, payload: dict[str, Any]) -> None:
        nonlocal seq
        seq += 1
        batch.append(
            {
                "id": f"{run_id}.{seq}",
                "seq": seq,
                "timestamp": start + seq / events_per_step,
                "run_id": run_id,
                "step": step,
                "node_id": node,
                "node_name": node,
                "namespace": None,
                "type": kind,
                "payload": payload,
            }
        )
        if len(batch) == 1000:
            store.append_events(run_id, batch)
            batch.clear()

    add(None, None, "run_start", {"flow_name": "big", "inputs": {}, "limits": {}})
    for step in range(1, steps + 1):
        node = NODES[(step - 1) % len(NODES)]
        add(step, node, "node_start", {"node_name": node, "node_type": "llm", "params": {}})
        for line in range(events_per_step - 3):
            add(step, node, "log", {"level": "info", "message": f"line {line}"})
        usage = {"input_tokens": 10, "output_tokens": 5}
        add(step, node, "llm_response", {"provider": "p", "usage": usage, "cost": "0.000001"})
        add(step, node, "node_end", {"action": None, "writes": [], "duration_ms": 1.0})
    add(None, None, "run_end", {"status": "succeeded", "duration_ms": 1.0, "node_count": steps})
    if batch:
        store.append_events(run_id, batch)
    store.finish_run(run_id, "succeeded")
    store.close()
    return run_id
