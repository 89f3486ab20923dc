"""Test kit of the flow-sandbox attacks: a real ``backpackflow serve`` process, and ways to read
everything a client can see of a run.

The service runs as an operator would run it: the installed command, its own environment (the
secrets an attacker is after live there), its own working directory, a real socket, SQLite or
PostgreSQL, every first-party plugin loaded from its entry point. Its sandbox is configured with
``serve`` options. A flow is submitted over HTTP like an attacker's would be.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import httpx

#: What the server's environment holds that no flow may read (not on the allowlist).
SERVER_SECRET = "srv-secret-4c0ffee9d2"
#: What the operator allowlists for flows: it may be used, and is masked wherever it shows up.
CANARY = "canary-b7e19a5d3f"
_READY = re.compile(r"Uvicorn running on http://127\.0\.0\.1:(\d+)")


class ServiceProcess:
    """``backpackflow serve`` on 127.0.0.1 (a port the system picks) in a child process."""

    def __init__(self, workdir: Path, database_url: str, *options: str) -> None:
        self.workdir = workdir
        self.log_path = workdir / "service.log"
        env = {
            key: value
            for key, value in os.environ.items()
            if not key.startswith("BACKPACKFLOW_")
            and key not in ("OPENAI_API_KEY", "ANTHROPIC_API_KEY")
        }
        env.update(
            BPF_SERVER_SECRET=SERVER_SECRET,
            DATABASE_URL=f"postgresql://admin:{SERVER_SECRET}@db.internal/prod",
            BPF_CANARY=CANARY,
            NO_PROXY="127.0.0.1,localhost",
            PYTHONUNBUFFERED="1",
            # these attacks are on what flows can do, not on who may submit them: the service
            # stays open to loopback clients (local-dev access) and takes chains of 3,000
            # nodes (the service edge's node limit is tested with the edge); a service without
            # these settings ignores them
            BACKPACKFLOW_AUTH="local-dev",
            BACKPACKFLOW_MAX_FLOW_NODES="5000",
        )
        for name in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy"):
            env.pop(name, None)
        self.command = [
            sys.executable,
            "-m",
            "backpackflow",
            "serve",
            "--host",
            "127.0.0.1",
            "--port",
            "0",
            "--database",
            database_url,
            "--no-seed",
            "--log-level",
            "info",
            *options,
        ]
        self.env = env
        self.process: subprocess.Popen[bytes] | None = None
        self.url = ""

    def start(self, timeout: float = 60.0) -> ServiceProcess:
        log = self.log_path.open("wb")
        self.process = subprocess.Popen(
            self.command, cwd=self.workdir, env=self.env, stdout=log, stderr=subprocess.STDOUT
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            found = _READY.search(self.log())
            if found:
                self.url = f"http://127.0.0.1:{found.group(1)}"
                return self
            if self.process.poll() is not None:
                break
            time.sleep(0.05)
        self.stop()
        raise RuntimeError(f"the service did not start:\n{self.log()}")

    def log(self) -> str:
        try:
            return self.log_path.read_text(encoding="utf-8", errors="replace")
        except FileNotFoundError:
            return ""

    def stop(self) -> None:
        process = self.process
        if process is None or process.poll() is not None:
            return
        process.send_signal(signal.SIGINT)
        try:
            process.wait(30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(10)

    @property
    def port(self) -> int:
        return int(self.url.rsplit(":", 1)[1])

    def client(self) -> httpx.Client:
        return httpx.Client(base_url=self.url, timeout=30.0, trust_env=False)


# ------------------------------------------------------------------------------ API calls


def create(client: httpx.Client, graph: dict[str, Any], name: str = "attack") -> httpx.Response:
    return client.post("/api/workflows", json={"name": name, "graph_json": graph})


def created(client: httpx.Client, graph: dict[str, Any], name: str = "attack") -> str:
    response = create(client, graph, name)
    assert response.status_code == 201, response.text
    return str(response.json()["id"])


def run_to_end(
    client: httpx.Client, workflow_id: str, timeout: float = 60.0, **inputs: Any
) -> dict[str, Any]:
    """Start a run and wait until it has ended; its detail (status, error_summary, steps)."""
    response = client.post(f"/api/workflows/{workflow_id}/runs", json={"input_vars": inputs})
    assert response.status_code == 202, response.text
    run_id = response.json()["id"]
    deadline = time.monotonic() + timeout
    while True:
        run = client.get(f"/api/runs/{run_id}").json()
        if run["status"] in ("succeeded", "failed", "canceled"):
            return dict(run)
        assert time.monotonic() < deadline, f"run {run_id} still {run['status']}"
        time.sleep(0.05)


def everything_about(client: httpx.Client, run_id: str) -> str:
    """Every byte an API client can read about a run: its detail, every stored trace event
    (all pages) and its SSE stream (raw frames, replayed from the start)."""
    parts = [client.get(f"/api/runs/{run_id}").text]
    after = 0
    while True:
        page = client.get(f"/api/runs/{run_id}/trace", params={"after": after, "limit": 1000})
        assert page.status_code == 200, page.text
        parts.append(page.text)
        body = page.json()
        if not body["has_more"]:
            break
        after = body["next_after"]
    parts.append(stream_text(client, run_id))
    return "\n".join(parts)


def stream_text(client: httpx.Client, run_id: str) -> str:
    """The raw text of a run's SSE stream, replayed from its start up to its ``end`` event."""
    lines: list[str] = []
    ended = False
    with client.stream("GET", f"/api/runs/{run_id}/stream") as response:
        assert response.status_code == 200
        for line in response.iter_lines():
            lines.append(line)
            ended = ended or line.startswith("event: end")
            if ended and line == "":  # the end of the end message
                break
    assert ended, "the stream closed without an end event"
    return "\n".join(lines)


def trace_events(client: httpx.Client, run_id: str) -> list[dict[str, Any]]:
    page = client.get(f"/api/runs/{run_id}/trace", params={"limit": 1000}).json()
    return list(page["items"])


class HealthProbe:
    """Polls ``/health`` every 50 ms in a thread; ``worst`` is the slowest answer (seconds)."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.times: list[float] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._poll, daemon=True)

    def __enter__(self) -> HealthProbe:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(30)

    def _poll(self) -> None:
        with httpx.Client(base_url=self.url, timeout=30.0, trust_env=False) as client:
            while not self._stop.is_set():
                started = time.perf_counter()
                assert client.get("/health").status_code == 200
                self.times.append(time.perf_counter() - started)
                self._stop.wait(0.05)

    @property
    def worst(self) -> float:
        return max(self.times)


def jsonl_text(folder: Path) -> str:
    """Every line every file sink wrote below ``folder``."""
    return "\n".join(p.read_text(encoding="utf-8") for p in sorted(folder.rglob("*.jsonl")))


def as_json(text: str) -> Any:
    return json.loads(text)
