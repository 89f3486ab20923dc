"""Scripted HTTP servers on 127.0.0.1, and an environment that keeps test requests there.

A :class:`LoopbackServer` runs ``http.server.ThreadingHTTPServer`` on port 0 in a daemon thread
with the request handler its subclass makes; ``stop`` sets ``release``, on which hanging
handlers wait. A :class:`ScriptedServer` also records every request and answers the n-th one
with the n-th step of its script (the last step repeats). The wire formats live with their
tests: the LLM APIs in ``tests/plugins/llm/llm_wire.py``, a GET page server in
``tests/plugins/nodes/nodes_support.py``, a webhook endpoint in
``tests/plugins/sinks/sinks_support.py``. Nothing here reaches beyond the loopback interface.
"""

from __future__ import annotations

import sys
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Generic, Self, TypeVar

import pytest

ReplyT = TypeVar("ReplyT")
RequestT = TypeVar("RequestT")
ServerT = TypeVar("ServerT", bound="LoopbackServer")

PROXY_VARIABLES = (
    "HTTP_PROXY",
    "HTTPS_PROXY",
    "ALL_PROXY",
    "http_proxy",
    "https_proxy",
    "all_proxy",
)
API_KEY_VARIABLES = ("OPENAI_API_KEY", "ANTHROPIC_API_KEY")


class LoopbackServer:
    """A real HTTP server on 127.0.0.1 (see the module docstring); also a context manager."""

    def __init__(self, handler: type[BaseHTTPRequestHandler]) -> None:
        self.release = threading.Event()  # set at stop: hanging handlers return
        self._httpd = _QuietServer(("127.0.0.1", 0), handler)
        self._thread = threading.Thread(
            target=self._httpd.serve_forever, kwargs={"poll_interval": 0.01}, daemon=True
        )

    @property
    def url(self) -> str:
        host, port = self._httpd.server_address[:2]
        return f"http://{host!s}:{port}"

    def start(self) -> Self:
        self._thread.start()
        return self

    def stop(self) -> None:
        self.release.set()
        self._httpd.shutdown()
        self._httpd.server_close()
        self._thread.join(timeout=5)

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


class ScriptedServer(LoopbackServer, Generic[ReplyT, RequestT]):
    """A server that records its requests and plays ``script`` (the last step repeats); its
    handler calls :meth:`next_reply` with each request."""

    def __init__(self, script: Iterable[ReplyT], handler: type[BaseHTTPRequestHandler]) -> None:
        super().__init__(handler)
        self.script = list(script)
        self.requests: list[RequestT] = []
        self.arrived = threading.Condition()

    def next_reply(self, request: RequestT) -> ReplyT:
        """Record ``request``; its step of the script."""
        with self.arrived:
            self.requests.append(request)
            self.arrived.notify_all()
            return self.script[min(len(self.requests), len(self.script)) - 1]

    @property
    def last(self) -> RequestT:
        return self.requests[-1]

    def wait_for(self, count: int, timeout: float = 5.0) -> bool:
        """Wait until ``count`` requests arrived."""
        deadline = time.monotonic() + timeout
        with self.arrived:
            while len(self.requests) < count:
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self.arrived.wait(left)
        return True


class RecordingServer(LoopbackServer):
    """Answers every GET and POST with a small JSON body (or a redirect to ``redirect``) and
    records each request as (path, headers with lower-case names, body): a service that a
    test checks was, or was not, reached."""

    ANSWER = b'{"secret": "internal-only-data"}'

    def __init__(self, redirect: str | None = None) -> None:
        super().__init__(_recording_handler(self))
        self.requests: list[tuple[str, dict[str, str], bytes]] = []
        self.redirect = redirect

    @property
    def port(self) -> int:
        return int(self.url.rsplit(":", 1)[1])


def _recording_handler(server: RecordingServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: Any) -> None:
            pass

        def _answer(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length) if length else b""
            headers = {k.lower(): v for k, v in self.headers.items()}
            server.requests.append((self.path, headers, body))
            if server.redirect:
                self.send_response(302)
                self.send_header("Location", server.redirect)
            else:
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(server.ANSWER)))
            self.end_headers()
            self.wfile.write(server.ANSWER)

        do_GET = _answer
        do_POST = _answer

    return Handler


class _QuietServer(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request: Any, client_address: Any) -> None:
        # A client that hangs up early (a test that got its error) is expected; anything else
        # is a bug in the fake server and must show.
        if not isinstance(sys.exc_info()[1], ConnectionError):
            super().handle_error(request, client_address)


def serving(make: Callable[..., ServerT]) -> Iterator[Callable[..., ServerT]]:
    """The body of a server fixture: yields ``start(*args)``, which starts ``make(*args)``;
    every server started is stopped (hanging handlers released) when the test ends."""
    servers: list[ServerT] = []

    def start(*args: Any) -> ServerT:
        server = make(*args).start()
        servers.append(server)
        return server

    try:
        yield start
    finally:
        for server in servers:
            server.stop()


def keep_requests_local(monkeypatch: pytest.MonkeyPatch) -> None:
    """No proxy from the developer's environment may route test requests off the machine."""
    for name in PROXY_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")


def drop_api_keys(monkeypatch: pytest.MonkeyPatch) -> None:
    """Tests never pick up a developer's real API keys from the environment."""
    for name in API_KEY_VARIABLES:
        monkeypatch.delenv(name, raising=False)
