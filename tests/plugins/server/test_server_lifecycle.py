"""Start-up and shutdown, on SQLite and PostgreSQL: crash recovery (also after a real SIGKILL),
graceful shutdown, demo seeding, and the ``serve`` / ``db`` commands."""

from __future__ import annotations

import contextlib
import io
import json
import os
import signal
import socket
import subprocess
import sys
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
    gate,
    read_stream,
    start_run,
    unique,
    wait_for_status,
)

from backpackflow.ids import new_id
from backpackflow_server import Settings
from backpackflow_server.app import RECOVERY_REASON
from backpackflow_server.runs import SHUTDOWN_REASON
from backpackflow_store_sql import SqlRunStore, mask_url

KIT = Path(__file__).with_name("server_kit.py")


# ------------------------------------------------------------------------------ recovery


def test_runs_left_active_by_a_crash_are_failed_on_start(serve: Any, database_url: str) -> None:
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
        for run in (running, queued):
            recovered = client.get(f"/api/runs/{run['id']}").json()
            assert recovered["status"] == "failed"
            assert recovered["error_summary"] == RECOVERY_REASON
        events, end = read_stream(client, running["id"])
        assert [e["seq"] for e in events] == [1] and end["status"] == "failed"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def start_process(database_url: str, port: int) -> subprocess.Popen[str]:
    """``backpackflow serve`` in a process of its own (with the test node types)."""
    env = {
        **os.environ,
        "BACKPACKFLOW_WRITER_MAX_DELAY": "0.01",
        "BACKPACKFLOW_SSE_HEARTBEAT": "0.5",
        "BACKPACKFLOW_SHUTDOWN_GRACE": "0.5",
    }
    process = subprocess.Popen(
        [
            sys.executable,
            str(KIT),
            "serve",
            "--port",
            str(port),
            "--database",
            database_url,
            "--no-seed",
            "--log-level",
            "warning",
            "--local-dev",  # these tests are about crashes and signals, not tokens
        ],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    deadline = time.monotonic() + 30
    while True:
        try:
            if httpx.get(f"http://127.0.0.1:{port}/health", timeout=1).status_code == 200:
                return process
        except httpx.TransportError:
            pass
        if process.poll() is not None or time.monotonic() > deadline:
            process.kill()
            raise AssertionError(f"the service process did not start:\n{process.stdout.read()}")  # type: ignore[union-attr]
        time.sleep(0.05)


def test_a_killed_service_fails_its_runs_on_restart(serve: Any, database_url: str) -> None:
    port = free_port()
    process = start_process(database_url, port)
    try:
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=10) as client:
            workflow_id = create_workflow(client, flow(echo("a", log_lines=3), gate("g", "never")))
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
    with server.client() as client:
        recovered = client.get(f"/api/runs/{run['id']}").json()
        assert recovered["status"] == "failed"
        assert recovered["error_summary"] == RECOVERY_REASON
        assert recovered["event_count"] >= stored  # nothing stored before the crash is lost
        gate_step = next(s for s in recovered["steps"] if s["node_id"] == "g")
        assert (gate_step["status"], gate_step["error"]) == ("failed", RECOVERY_REASON)
        events, end = read_stream(client, run["id"])
        assert [e["seq"] for e in events] == list(range(1, recovered["event_count"] + 1))
        assert end["status"] == "failed"


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
    assert status == 0 and "empty (never upgraded) (needs upgrade to 0008)" in text
    status, text = run_cli("db", "upgrade", "--database", database_url)
    assert status == 0 and "upgraded empty -> 0008" in text
    status, text = run_cli("db", "upgrade", "--database", database_url)
    assert status == 0 and "already at 0008" in text
    status, text = run_cli("db", "current", "--database", database_url)
    assert status == 0 and "0008 (up to date)" in text
    assert text.startswith(mask_url(database_url))  # a password would be masked


def test_serve_refuses_bad_settings(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli_main(["serve", "--max-concurrent-runs", "0"]) == 2
    assert "max_concurrent_runs" in capsys.readouterr().err
