"""Kill -9 of the service mid-run, on SQLite and PostgreSQL: every run resumes and ends as if
nothing had happened.

``backpackflow serve`` runs as a process of its own on a real port; 20 runs of a flow whose
nodes take time are submitted at once (more than the service runs concurrently, so some are
still queued), the process is SIGKILLed once a part of the work is stored, and a new process
starts on the same database. Every run must end ``succeeded``, with its stored events numbered
1..n (none lost, none twice), its nodes each succeeded once, and the same final Backpack and
outputs as a run that was never interrupted.
"""

from __future__ import annotations

import signal
import subprocess
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import pytest
from server_kit import create_workflow, flow, free_port, start_process, start_run, wait_for

from backpackflow_server.durable import RERUN_REASON
from backpackflow_store_sql import SqlRunStore

RUNS = 20
NODES = 6
#: A node's time: long enough that a kill finds nodes in flight, short enough for CI.
NODE_SECONDS = 0.2


def slow(node_id: str) -> dict[str, Any]:
    return {"type": "slow", "id": node_id, "params": {"seconds": NODE_SECONDS, "log_lines": 2}}


GRAPH = flow(*(slow(f"s{i}") for i in range(NODES)), outputs=["trail"])


@pytest.fixture
def processes() -> Iterator[list[subprocess.Popen[str]]]:
    """Service processes started by the test, killed at its end if still alive."""
    started: list[subprocess.Popen[str]] = []
    yield started
    for process in started:
        if process.poll() is None:
            process.kill()
            process.wait(10)
        if process.stdout is not None:
            process.stdout.close()


def _runs(client: httpx.Client, run_ids: list[str]) -> list[dict[str, Any]]:
    return [client.get(f"/api/runs/{run_id}").json() for run_id in run_ids]


def _trace(client: httpx.Client, run_id: str) -> list[dict[str, Any]]:
    page = client.get(f"/api/runs/{run_id}/trace", params={"limit": 1000})
    assert page.status_code == 200, page.text
    items = page.json()["items"]
    assert len(items) < 1000
    return list(items)


def test_a_killed_service_resumes_every_run(
    database_url: str, tmp_path: Path, processes: list[subprocess.Popen[str]]
) -> None:
    env = {
        "BACKPACKFLOW_MAX_CONCURRENT_RUNS": "8",
        "BACKPACKFLOW_SPILL_DIR": str(tmp_path / "spill"),
        "BACKPACKFLOW_LLM_CACHE": str(tmp_path / "llm-cache.sqlite"),
    }
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    first = start_process(database_url, port, env)
    processes.append(first)
    with httpx.Client(base_url=base, timeout=20) as client:
        workflow_id = create_workflow(client, GRAPH, "crash")
        with ThreadPoolExecutor(8) as pool:
            run_ids = [
                r["id"] for r in pool.map(lambda _: start_run(client, workflow_id), range(RUNS))
            ]

        def a_third_stored() -> bool:
            steps = sum(len(r["steps"]) for r in _runs(client, run_ids))
            return steps >= RUNS * NODES // 3

        wait_for(a_third_stored, 60, "a third of the steps to be stored")
        first.send_signal(signal.SIGKILL)
        first.wait(10)
    with SqlRunStore(database_url) as store:
        before = {run_id: store.get_run(run_id) for run_id in run_ids}
    unfinished = [r for r in before.values() if r["status"] != "succeeded"]
    assert unfinished, "every run had finished before the kill; nothing was tested"

    # one slot and no queue: the recovery starts every run admitted before the crash anyway
    bounds = {"BACKPACKFLOW_MAX_CONCURRENT_RUNS": "1", "BACKPACKFLOW_MAX_QUEUED_RUNS": "0"}
    second = start_process(database_url, port, {**env, **bounds})
    processes.append(second)
    with httpx.Client(base_url=base, timeout=20) as client:

        def all_succeeded() -> list[dict[str, Any]] | None:
            runs = _runs(client, run_ids)
            return runs if all(r["status"] == "succeeded" for r in runs) else None

        done = wait_for(all_succeeded, 180, "every run to succeed")
        reference = start_run(client, workflow_id)  # never interrupted
        expected = wait_for(
            lambda: (
                (r := client.get(f"/api/runs/{reference['id']}").json())["status"] == "succeeded"
                and r
            ),
            60,
            "the reference run",
        )
        traces = {run_id: _trace(client, run_id) for run_id in run_ids}
    second.send_signal(signal.SIGINT)
    assert second.wait(30) == 0

    resumed = 0
    with SqlRunStore(database_url) as store:
        reference_state = _final_backpack(store, reference["id"])
        for run in done:
            run_id = run["id"]
            events = traces[run_id]
            # contiguous, none lost or twice; the run's totals agree with its trace
            assert [e["seq"] for e in events] == list(range(1, len(events) + 1)), run_id
            assert len({e["id"] for e in events}) == len(events)
            assert (run["event_count"], run["last_seq"]) == (len(events), len(events))
            assert (
                run["outputs"] == expected["outputs"] == {"trail": [f"s{i}" for i in range(NODES)]}
            )
            assert _final_backpack(store, run_id) == reference_state, run_id
            # each node succeeded once; a step cut by the kill says it ran again
            succeeded = [s["node_id"] for s in run["steps"] if s["status"] == "succeeded"]
            assert succeeded == [f"s{i}" for i in range(NODES)], run_id
            others = [s for s in run["steps"] if s["status"] != "succeeded"]
            assert all((s["status"], s["error"]) == ("failed", RERUN_REASON) for s in others)
            assert [s["step"] for s in run["steps"]] == list(range(1, len(run["steps"]) + 1))
            notes = [e for e in events if e["type"] == "log" and (e["payload"].get("data") or {})]
            if any(n["payload"]["data"].get("resumed") for n in notes):
                resumed += 1
    assert resumed >= 1, "no run resumed from a checkpoint"


def _final_backpack(store: SqlRunStore, run_id: str) -> dict[str, Any]:
    """The values of the run's last Backpack, from its checkpoint."""
    checkpoint = store.load(run_id)
    assert checkpoint is not None and checkpoint.status == "succeeded", run_id
    return dict(checkpoint.backpack(checkpoint.last_seq).to_dict())
