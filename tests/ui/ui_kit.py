"""What the web UI's browser tests share beside their fixtures (conftest.py): the
``backpackflow serve`` process (:class:`UiServer`) and Chromium's launch settings."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx

SCREENSHOTS_ENV = "BACKPACKFLOW_UI_SCREENSHOTS"
START_TIMEOUT = 60.0


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def cli(*argv: str) -> str:
    """Run ``backpackflow ARGV`` (this interpreter's) and return what it printed."""
    done = subprocess.run(
        [sys.executable, "-m", "backpackflow", *argv],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    if done.returncode != 0:
        raise AssertionError(f"backpackflow {' '.join(argv)} failed: {done.stderr}")
    return done.stdout


@dataclass
class UiServer:
    """A ``backpackflow serve`` process and what tests need to talk to it."""

    url: str
    database_url: str
    process: subprocess.Popen[str]
    log: Path
    tokens: dict[str, str] = field(default_factory=dict)

    def token(self, role: str = "admin") -> str:
        """An API token of ``role`` (made once per server and role)."""
        if role not in self.tokens:
            printed = cli(
                "tokens", "create", "--role", role, "--json", "--database", self.database_url
            )
            self.tokens[role] = json.loads(printed[: printed.rindex("}") + 1])["token"]
        return self.tokens[role]

    def client(self, role: str = "admin") -> httpx.Client:
        return httpx.Client(
            base_url=self.url,
            headers={"Authorization": f"Bearer {self.token(role)}"},
            timeout=30,
        )

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(10)


def start_server(
    database_url: str, folder: Path, args: tuple[str, ...], env: dict[str, str]
) -> UiServer:
    port = free_port()
    log = folder / "serve.log"
    files = folder / "files"
    files.mkdir(exist_ok=True)
    with log.open("w") as out:
        process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "backpackflow",
                "serve",
                "--port",
                str(port),
                "--database",
                database_url,
                "--files-dir",
                str(files),
                "--log-level",
                "warning",
                *args,
            ],
            stdout=out,
            stderr=subprocess.STDOUT,
            text=True,
            cwd=folder,
            env={**os.environ, "BACKPACKFLOW_WRITER_MAX_DELAY": "0.01", **env},
        )
    server = UiServer(f"http://127.0.0.1:{port}", database_url, process, log)
    deadline = time.monotonic() + START_TIMEOUT
    while True:
        if process.poll() is not None:
            raise AssertionError(f"backpackflow serve exited: {log.read_text()}")
        try:
            if httpx.get(f"{server.url}/health", timeout=2).status_code == 200:
                return server
        except httpx.TransportError:
            pass
        if time.monotonic() > deadline:
            server.stop()
            raise AssertionError(f"backpackflow serve did not start: {log.read_text()}")
        time.sleep(0.2)
