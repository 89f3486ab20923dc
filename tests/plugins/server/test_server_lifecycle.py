"""Start-up and shutdown, on SQLite and PostgreSQL: crash recovery (also after a real SIGKILL),
graceful shutdown, demo seeding, and the ``serve`` / ``db`` commands."""

from __future__ import annotations

import contextlib
import gc
import io
import json
import signal
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
from server_kit import (
    GATES,
    LiveServer,
    cli_main,
    create_workflow,
    echo,
    flow,
    free_port,
    gate,
    read_stream,
    start_process,
    start_run,
    unique,
    wait_for,
    wait_for_status,
)
from sqlalchemy import text

from backpackflow.ids import new_id
from backpackflow_server import Settings
from backpackflow_server.durable import RERUN_REASON
from backpackflow_server.runs import RECOVERY_REASON, SHUTDOWN_REASON
from backpackflow_store_sql import SqlRunStore, mask_url

# ------------------------------------------------------------------------------ recovery


def test_runs_left_active_without_a_checkpoint_on_start(serve: Any, database_url: str) -> None:
    """A running run without a checkpoint cannot resume: failed, saying why; a queued one
    never started: it runs now."""
    store = SqlRunStore(database_url)
    store.upgrade()
    workflow = store.create_workflow("crashed", flow(echo("a")))
    running = store.create_run(workflow["id"], {})
    store.mark_running(running["id"])
    event = {
        "id": new_id(),
        "seq": 1,
        "timestamp": time.time(),
        "run_id": running["id"],
        "step": None,
        "node_id": None,
        "node_name": None,
        "namespace": None,
        "type": "run_start",
        "payload": {},
    }
    store.append_events(running["id"], [event])
    queued = store.create_run(workflow["id"], {})
    store.close()

    server: LiveServer = serve(database_url=database_url)
    with server.client() as client:
        recovered = client.get(f"/api/runs/{running['id']}").json()
        assert recovered["status"] == "failed"
        assert recovered["error_summary"] == (
            f"{RECOVERY_REASON}; cannot resume: it has no checkpoint to resume from"
        )
        events, end = read_stream(client, running["id"])
        assert [e["seq"] for e in events] == [1] and end["status"] == "failed"
        requeued = wait_for_status(client, queued["id"], "succeeded")
        assert requeued["error_summary"] is None


def test_recovery_leaves_runs_a_live_worker_holds(serve: Any, database_url: str) -> None:
    """A run whose lease a live process holds (a worker) is not taken over at start; once
    its lease is released, the next start goes on with it."""
    store = SqlRunStore(database_url)
    store.upgrade()
    workflow = store.create_workflow("held", flow(echo("a")))
    held = store.create_run(workflow["id"], {})
    lease = store.acquire_lease(held["id"], "worker-elsewhere", ttl=600)
    assert lease is not None
    store.close()

    server: LiveServer = serve(database_url=database_url)
    with server.client() as client:
        assert client.get(f"/api/runs/{held['id']}").json()["status"] == "queued"
    server.stop()
    with SqlRunStore(database_url) as store:
        assert store.get_lease(held["id"])["owner"] == "worker-elsewhere"
        store.release_lease(held["id"], lease.token)
    restarted: LiveServer = serve(database_url=database_url)
    with restarted.client() as client:
        assert wait_for_status(client, held["id"], "succeeded")["error_summary"] is None


def test_a_killed_service_resumes_its_run_on_restart(serve: Any, database_url: str) -> None:
    """The node in flight at a SIGKILL keeps its stored events (its step failed, saying why)
    and runs again as a new step; the trace goes on after the last stored event."""
    name = unique("killed")
    port = free_port()
    process = start_process(database_url, port)
    try:
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=10) as client:
            workflow_id = create_workflow(client, flow(echo("a", log_lines=3), gate("g", name)))
            run = start_run(client, workflow_id)
            wait_for_status(client, run["id"], "running")
            stored = 0
            while stored < 8:  # run_start, the echo node's events, the gate's node_start ...
                stored = client.get(f"/api/runs/{run['id']}").json()["event_count"]
                time.sleep(0.01)
    finally:
        process.send_signal(signal.SIGKILL)
        process.wait(10)
        assert process.stdout is not None
        process.stdout.close()

    server: LiveServer = serve(database_url=database_url)
    GATES.wait_until_waiting(name)  # the gate node runs again, in this process
    GATES.open(name)
    with server.client() as client:
        resumed = wait_for_status(client, run["id"], "succeeded")
        assert resumed["event_count"] > stored  # nothing stored before the crash is lost
        steps = [(s["step"], s["node_id"], s["status"], s["error"]) for s in resumed["steps"]]
        assert steps == [
            (1, "a", "succeeded", None),
            (2, "g", "failed", RERUN_REASON),
            (3, "g", "succeeded", None),
        ]
        events, end = read_stream(client, run["id"])
        assert [e["seq"] for e in events] == list(range(1, resumed["event_count"] + 1))
        assert len({e["id"] for e in events}) == len(events)
        assert end["status"] == "succeeded"
        (log,) = [e for e in events if e["type"] == "log" and e["payload"].get("data")]
        assert log["payload"]["data"]["resumed"] is True
        assert log["payload"]["data"]["rerun"] == "g"


def test_sigint_stops_the_service_gracefully(database_url: str) -> None:
    port = free_port()
    process = start_process(database_url, port)
    try:
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=10) as client:
            workflow_id = create_workflow(client, flow(echo("a"), gate("g", "never")))
            run = start_run(client, workflow_id)
            wait_for_status(client, run["id"], "running")
            with client.stream("GET", f"/api/runs/{run['id']}/stream") as response:
                lines = response.iter_lines()
                next(lines)
                process.send_signal(signal.SIGINT)
                started = time.monotonic()
                for _ in lines:  # the server ends the stream cleanly on shutdown
                    pass
                assert time.monotonic() - started < 4
        assert process.wait(20) == 0
    finally:
        if process.poll() is None:
            process.kill()
        assert process.stdout is not None
        process.stdout.close()
    with SqlRunStore(database_url) as store:
        stopped = store.get_run(run["id"])
        assert (stopped["status"], stopped["error_summary"]) == ("canceled", SHUTDOWN_REASON)
        trace = store.get_trace(run["id"], limit=1000)
        assert [e["seq"] for e in trace] == list(range(1, stopped["last_seq"] + 1))
        assert trace[-1]["type"] == "run_end" and trace[-1]["payload"]["status"] == "canceled"


# ------------------------------------------------------------------------------ shutdown


def test_the_heap_at_start_up_is_frozen_while_serving_and_given_back(
    serve: Any, tmp_path: Path
) -> None:
    """The start-up heap is out of the collector's sight while the service runs (a full
    collection would walk it) and given back at shutdown, so that a process starting one app
    after another can still collect the earlier ones."""
    server: LiveServer = serve(database_url=f"sqlite:///{tmp_path / 'gc.db'}")
    with server.client() as client:
        assert client.get("/health").status_code == 200
    assert gc.get_freeze_count() > 0
    server.stop()
    assert gc.get_freeze_count() == 0


def test_shutdown_lets_runs_finish_within_the_grace_period(serve: Any, database_url: str) -> None:
    server: LiveServer = serve(
        database_url=database_url, max_concurrent_runs=2, shutdown_grace=10.0
    )
    names = [unique("finish"), unique("stuck")]
    with server.client() as client:
        runs = [start_run(client, create_workflow(client, flow(gate("g", n)))) for n in names]
        for name in names:
            GATES.wait_until_waiting(name)
        queued = start_run(client, create_workflow(client, flow(echo("a"))))
    manager = server.app.state.service.manager

    def open_gates_once_shutting_down() -> None:
        while manager._accepting:
            time.sleep(0.01)
        time.sleep(0.2)
        GATES.open(names[0])
        time.sleep(0.5)
        GATES.open(names[1])

    threading.Thread(target=open_gates_once_shutting_down).start()
    started = time.monotonic()
    server.stop()
    assert time.monotonic() - started < 8
    with SqlRunStore(database_url) as store:
        assert store.get_run(runs[0]["id"])["status"] == "succeeded"
        assert store.get_run(runs[1]["id"])["status"] == "succeeded"
        never = store.get_run(queued["id"])
        assert (never["status"], never["error_summary"]) == ("canceled", SHUTDOWN_REASON)
        assert never["event_count"] == 0


def test_shutdown_cancels_what_outlives_the_grace_period(serve: Any, database_url: str) -> None:
    server: LiveServer = serve(database_url=database_url, shutdown_grace=0.2)
    name = unique("slow")
    with server.client() as client:
        run = start_run(client, create_workflow(client, flow(echo("a"), gate("g", name))))
        GATES.wait_until_waiting(name)
    server.stop()
    with SqlRunStore(database_url) as store:
        stopped = store.get_run(run["id"])
        assert (stopped["status"], stopped["error_summary"]) == ("canceled", SHUTDOWN_REASON)
        trace = store.get_trace(run["id"], limit=1000)
        assert [e["seq"] for e in trace] == list(range(1, stopped["last_seq"] + 1))
        assert trace[-1]["payload"]["status"] == "canceled"
    assert store.list_runs(status="running") == []


# ------------------------------------------------------------------------------ seeding


def write_seeds(directory: Path) -> None:
    directory.mkdir()
    (directory / "a_research.json").write_text(
        json.dumps({**flow(echo("fetch"), echo("summarize")), "name": "Research"})
    )
    (directory / "reports").mkdir()  # a flow in a folder of its own, with its data
    report = flow({"type": "folder", "id": "where"}, description="reads its folder")
    (directory / "reports" / "flow.json").write_text(json.dumps(report))
    (directory / "c_broken.json").write_text("{ not json")
    (directory / "d_invalid.json").write_text(json.dumps({"version": "2.0.0", "nodes": []}))
    (directory / "notes.txt").write_text("not a flow")


def folder_of_run(client: httpx.Client, workflow_id: str) -> Any:
    run = start_run(client, workflow_id)
    wait_for_status(client, run["id"], "succeeded")
    items = client.get(f"/api/runs/{run['id']}/trace", params={"limit": 1000}).json()["items"]
    return next(e for e in items if e["type"] == "exec_complete")["payload"]["exec_result"]


def test_seeding_happens_once(
    serve: Any, database_url: str, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    seeds = tmp_path / "seeds"
    write_seeds(seeds)
    files = tmp_path / "files"
    server: LiveServer = serve(
        database_url=database_url, seed=True, seed_dir=seeds, files_dir=files
    )
    with server.client() as client:
        workflows = {w["name"]: w for w in client.get("/api/workflows").json()}
        assert sorted(workflows) == ["Research", "reports"]
        assert workflows["Research"]["description"] == "demo workflow seeded from a_research.json"
        assert workflows["reports"]["description"] == "reads its folder"
        run = start_run(client, workflows["Research"]["id"])
        wait_for_status(client, run["id"], "succeeded")
        # a demo workflow reads in its own folder; any other workflow in files_dir
        assert folder_of_run(client, workflows["reports"]["id"]) == str(seeds / "reports")
        other = create_workflow(client, flow({"type": "folder", "id": "mine"}))
        assert folder_of_run(client, other) == str(files.resolve())
    assert "not seeding" in caplog.text and "c_broken.json" in caplog.text
    assert "d_invalid.json" in caplog.text
    server.stop()

    again: LiveServer = serve(database_url=database_url, seed=True, seed_dir=seeds)
    with again.client() as client:
        workflows = client.get("/api/workflows").json()
        assert len(workflows) == 3  # a restart seeds nothing
        reports = next(w for w in workflows if w["name"] == "reports")
        assert folder_of_run(client, reports["id"]) == str(seeds / "reports")
        for workflow in workflows:
            client.delete(f"/api/workflows/{workflow['id']}")
    again.stop()

    third: LiveServer = serve(database_url=database_url, seed=True, seed_dir=seeds)
    with third.client() as client:
        assert client.get("/api/workflows").json() == []  # deleted demos stay deleted


def test_seed_directory_settings(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    assert Settings().resolved_files_dir() == Path.cwd() / ".backpackflow" / "files"
    assert Settings(files_dir=tmp_path).resolved_files_dir() == tmp_path
    monkeypatch.setenv("BACKPACKFLOW_DATABASE_URL", "sqlite:///from-env.db")
    monkeypatch.setenv("BACKPACKFLOW_MAX_CONCURRENT_RUNS", "3")
    settings = Settings()
    assert (settings.database_url, settings.max_concurrent_runs) == ("sqlite:///from-env.db", 3)
    monkeypatch.setenv("BACKPACKFLOW_MAX_CONCURRENT_RUNS", "0")
    with pytest.raises(ValueError, match="max_concurrent_runs"):
        Settings()


# ------------------------------------------------------------------------------ commands


def run_cli(*argv: str) -> tuple[int, str]:
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        status = cli_main(list(argv))
    return status, out.getvalue()


def test_db_commands(database_url: str) -> None:
    status, text = run_cli("db", "current", "--database", database_url)
    assert status == 0 and "empty (never upgraded) (needs upgrade to 0011)" in text
    status, text = run_cli("db", "upgrade", "--database", database_url)
    assert status == 0 and "upgraded empty -> 0011" in text
    status, text = run_cli("db", "upgrade", "--database", database_url)
    assert status == 0 and "already at 0011" in text
    status, text = run_cli("db", "current", "--database", database_url)
    assert status == 0 and "0011 (up to date)" in text
    assert text.startswith(mask_url(database_url))  # a password would be masked


def test_serve_refuses_bad_settings(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli_main(["serve", "--max-concurrent-runs", "0"]) == 2
    assert "max_concurrent_runs" in capsys.readouterr().err


def test_runs_that_cannot_resume_are_failed_saying_why(serve: Any, database_url: str) -> None:
    """After a SIGKILL: a run whose workflow's flow changed, one whose workflow was deleted and
    one whose checkpoint is damaged cannot resume; each is failed with the reason."""
    port = free_port()
    process = start_process(database_url, port)
    names = {kind: unique(kind) for kind in ("changed", "deleted", "damaged")}
    try:
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=10) as client:
            workflows = {
                kind: create_workflow(client, flow(echo("a", log_lines=3), gate("g", name)), kind)
                for kind, name in names.items()
            }
            runs = {kind: start_run(client, w)["id"] for kind, w in workflows.items()}
            for run_id in runs.values():  # the gate's step stored: so is every record before
                wait_for(
                    lambda run_id=run_id: any(
                        s["node_id"] == "g"
                        for s in client.get(f"/api/runs/{run_id}").json()["steps"]
                    ),
                    30,
                    "the gate to be reached",
                )
    finally:
        process.send_signal(signal.SIGKILL)
        process.wait(10)
        assert process.stdout is not None
        process.stdout.close()
    with SqlRunStore(database_url) as store:
        store.update_workflow(
            workflows["changed"], graph_json=flow(echo("a", log_lines=3), echo("g"))
        )
        store.delete_workflow(workflows["deleted"])
        assert store.records(runs["damaged"]) is not None
        with store.engine.begin() as connection:
            connection.execute(
                text("UPDATE run_checkpoints SET record = '{' WHERE run_id = :run_id"),
                {"run_id": runs["damaged"]},
            )

    server: LiveServer = serve(database_url=database_url)
    with server.client() as client:
        reasons = {}
        for kind, run_id in runs.items():
            run = client.get(f"/api/runs/{run_id}").json()
            assert run["status"] == "failed", (kind, run)
            assert run["error_summary"].startswith(f"{RECOVERY_REASON}; cannot resume: ")
            reasons[kind] = run["error_summary"]
            gate_steps = [s for s in run["steps"] if s["node_id"] == "g"]
            assert [s["status"] for s in gate_steps] == ["failed"]
        assert "flow changed since the run was checkpointed" in reasons["changed"]
        assert "its workflow was deleted" in reasons["deleted"]
        assert "its checkpoint is damaged" in reasons["damaged"]
