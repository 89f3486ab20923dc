"""A database outage delays writes, it loses nothing (the real PostgreSQL, cut by a proxy).

The service reaches PostgreSQL through a loopback TCP proxy that the test cuts (every open
connection reset, new ones closed at once) and restores, so the shared server keeps running.
While the database is down the runs go on: their events reach the SSE subscribers live and
wait in the event writers; data endpoints answer 503 with Retry-After. Once it is back every
event delivered over SSE is stored, totals match the trace, and no run is left active.
"""

from __future__ import annotations

import os
import socket
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from server_kit import (
    GATES,
    LiveServer,
    StreamReader,
    create_workflow,
    echo,
    flow,
    gate,
    start_run,
    unique,
    wait_for,
)
from sqlalchemy.engine import make_url

#: Seconds the database stays unreachable: 30, longer than the service's flush timeout and
#: the pool's waits, so a run that ends during the outage is recorded only afterwards
#: (BACKPACKFLOW_TEST_OUTAGE_SECONDS=3 for a quicker local run).
OUTAGE_SECONDS = float(os.environ.get("BACKPACKFLOW_TEST_OUTAGE_SECONDS", "30"))


class TcpProxy:
    """Forwards 127.0.0.1:<port> to ``upstream``; :meth:`cut` resets every connection and
    refuses new ones (accepted and closed at once, as a server going away) until
    :meth:`restore`."""

    def __init__(self, upstream: tuple[str, int]) -> None:
        self.upstream = upstream
        self.down = False
        self._lock = threading.Lock()
        self._sockets: set[socket.socket] = set()
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = self._listener.getsockname()[1]
        self._closed = False
        threading.Thread(target=self._accept, daemon=True, name="tcp-proxy").start()

    def _accept(self) -> None:
        while not self._closed:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            if self.down:
                client.close()
                continue
            try:
                server = socket.create_connection(self.upstream, timeout=5)
            except OSError:
                client.close()
                continue
            server.settimeout(None)
            with self._lock:
                self._sockets |= {client, server}
            for source, target in ((client, server), (server, client)):
                threading.Thread(target=self._pump, args=(source, target), daemon=True).start()

    def _pump(self, source: socket.socket, target: socket.socket) -> None:
        try:
            while data := source.recv(65536):
                target.sendall(data)
        except OSError:
            pass
        finally:
            self._drop(source, target)

    def _drop(self, *sockets: socket.socket) -> None:
        for sock in sockets:
            with self._lock:
                self._sockets.discard(sock)
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            sock.close()

    def cut(self) -> None:
        self.down = True
        with self._lock:
            open_sockets = list(self._sockets)
        self._drop(*open_sockets)

    def restore(self) -> None:
        self.down = False

    def close(self) -> None:
        self._closed = True
        self.cut()
        self._listener.close()


@pytest.fixture
def proxied_postgres(postgres_databases: Callable[[], str]) -> Iterator[tuple[str, TcpProxy]]:
    """A new PostgreSQL database and its URL through a :class:`TcpProxy`."""
    url = make_url(postgres_databases())
    proxy = TcpProxy((url.host or "127.0.0.1", url.port or 5432))
    yield url.set(host="127.0.0.1", port=proxy.port).render_as_string(False), proxy
    proxy.close()


def test_events_streamed_during_an_outage_are_all_stored_afterwards(
    serve: Callable[..., LiveServer], proxied_postgres: tuple[str, TcpProxy], tmp_path: Path
) -> None:
    url, proxy = proxied_postgres
    server = serve(
        database_url=url,
        max_concurrent_runs=6,
        stream_buffer_events=10_000,
        spill_dir=tmp_path / "spill",
        outage_buffer_bytes=4096,  # small: most of what waits goes to the spill file
        flush_timeout=1.0,  # ended runs record their status before all events are stored
    )
    name = unique("outage")
    graph = flow(echo("before", log_lines=3), gate("wait", name), echo("during", log_lines=40))
    with server.client() as client:
        workflow_id = create_workflow(client, graph, name)
        runs = [start_run(client, workflow_id)["id"] for _ in range(6)]
        readers = [StreamReader(client, run_id) for run_id in runs]
        GATES.wait_until_waiting(name, count=len(runs))

        proxy.cut()
        GATES.open(name)  # the runs go on while the database is down
        answer = wait_for(
            lambda: (r := client.get(f"/api/runs/{runs[0]}")).status_code == 503 and r,
            10,
            "a 503 from the run endpoint",
        )
        assert answer.headers["Retry-After"].isdigit()
        assert "the database is unavailable" in answer.json()["detail"]
        assert client.get("/health").status_code == 503
        stats = server.app.state.service.manager.writers
        wait_for(lambda: any(w.stats.outage for w in stats), 10, "the writers to notice")
        time.sleep(OUTAGE_SECONDS)
        # past the small memory bound the events wait in the spill files
        assert sum(w.stats.spilled_bytes for w in stats) > 0
        # and the streams' buffers let those go: memory does not grow with the outage
        manager = server.app.state.service.manager
        handles = [manager.handle(run_id) for run_id in runs]
        assert all(h is not None and h.last_seq > 40 for h in handles)  # past the gate
        buffered = sum(h.buffered for h in handles if h is not None)
        assert buffered < sum(h.last_seq for h in handles if h is not None)
        assert client.get(f"/api/runs/{runs[0]}").status_code == 503
        proxy.restore()

        delivered = [reader.join(timeout=60 + OUTAGE_SECONDS) for reader in readers]
        wait_for(lambda: client.get("/health").json()["events_pending"] == 0, 30, "the writers")
        for run_id, (events, end) in zip(runs, delivered, strict=True):
            assert end is not None and end["status"] == "succeeded", end
            seqs = [e["seq"] for e in events]
            assert seqs == list(range(1, len(events) + 1))
            stored = client.get(f"/api/runs/{run_id}/trace", params={"limit": 1000}).json()
            assert [e["id"] for e in stored["items"]] == [e["id"] for e in events]
            run = client.get(f"/api/runs/{run_id}").json()
            assert run["status"] == "succeeded"
            assert (run["event_count"], run["last_seq"]) == (len(events), len(events))
            assert [s["status"] for s in run["steps"]] == ["succeeded"] * 3
        assert client.get("/api/runs", params={"status": "running"}).json() == []
        assert client.get("/api/runs", params={"status": "queued"}).json() == []
        health = client.get("/health").json()
        assert (health["events_pending"], health["events_failed"]) == (0, 0)
    writers = server.app.state.service.manager.writers
    assert sum(w.stats.retries for w in writers) > 0
    assert sum(w.stats.dropped for w in writers) == 0
