"""Spill files shared by services: each writer holds its own, and what a stopped service left
in one is stored by the next service that starts on the folder, whatever its writer count."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from server_kit import LiveServer, create_workflow, echo, flow, start_run, wait_for_status

from backpackflow import Backpack, EventStreamer, Flow, Node
from backpackflow_store_sql import EventWriter, SqlRunStore
from backpackflow_store_sql.errors import DatabaseUnavailable


def _spill_files(server: LiveServer) -> list[Path]:
    paths = [w.spill_path for w in server.app.state.service.manager.writers]
    assert all(p is not None for p in paths)
    return sorted(p for p in paths if p is not None)


class _Down:
    """A database that is down: what a writer is given goes to its spill file."""

    def append_events(self, run_id: str, events: Sequence[Any]) -> None:
        raise DatabaseUnavailable("down")


class _Pack(Node):
    def post(self, backpack: Any, prep_res: Any, exec_res: Any) -> None:
        backpack.pack("answer", 42)


def test_services_on_one_spill_folder_hold_files_of_their_own_and_adopt_a_stopped_ones(
    serve: Callable[..., LiveServer], database_url: str, tmp_path: Path
) -> None:
    folder = tmp_path / "spill"
    first = serve(database_url=database_url, spill_dir=folder, writer_threads=2)
    second = serve(database_url=database_url, spill_dir=folder, writer_threads=2)
    numbers = [[p.name.rsplit("-", 1)[1] for p in _spill_files(s)] for s in (first, second)]
    assert numbers == [["0.jsonl", "1.jsonl"], ["2.jsonl", "3.jsonl"]]

    # a run whose events a stopped service (with more writers) left in its spill file 9
    with first.client() as client:
        workflow_id = create_workflow(client, flow(echo("a")))
        wait_for_status(client, start_run(client, workflow_id)["id"], "succeeded")
    with SqlRunStore(database_url) as store:
        left = store.create_run(workflow_id, {})
        store.mark_running(left["id"])
    streamer = EventStreamer()
    Flow(_Pack(id="pack")).execute_sync(Backpack(), events=streamer, run_id=left["id"])
    events = [e.to_json() for e in streamer.get_events()]
    prefix = _spill_files(first)[0].name[: -len("0.jsonl")]  # events-<database>-
    orphan = folder / f"{prefix}9.jsonl"
    stopped = EventWriter(_Down(), spill_path=orphan, backoff=0.01, max_backoff=0.02)
    for event in events:
        stopped.put(left["id"], event)
    assert stopped.close(timeout=0.3)  # the database never answered: all spilled
    assert orphan.stat().st_size > 0

    third = serve(database_url=database_url, spill_dir=folder, writer_threads=1)
    assert [p.name.rsplit("-", 1)[1] for p in _spill_files(third)] == ["4.jsonl"]
    with third.client() as client:
        deadline = time.monotonic() + 30
        while True:
            trace = client.get(f"/api/runs/{left['id']}/trace", params={"limit": 100}).json()
            if len(trace["items"]) == len(events) or time.monotonic() > deadline:
                break
            time.sleep(0.05)
        assert [e["id"] for e in trace["items"]] == [e["id"] for e in events]
    deadline = time.monotonic() + 10
    while orphan.stat().st_size and time.monotonic() < deadline:
        time.sleep(0.05)
    assert orphan.stat().st_size == 0  # emptied once stored
