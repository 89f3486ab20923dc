"""Real HTTP servers on 127.0.0.1 that speak the LLM wire formats: scripted replies, recorded
requests.

Each :class:`WireServer` (a :class:`loopback.ScriptedServer`) answers every request with the
next :class:`Reply` of its script (the last one repeats), so a test can say "429, then 200" or
"500 forever". Streams are sent as real chunked ``text/event-stream`` bodies; a reply can hang
(never answer) or cut the connection mid-stream. Nothing here reaches beyond the loopback
interface.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable, Coroutine, Iterator
from http.server import BaseHTTPRequestHandler
from typing import Any, TypeVar

import attrs
import pytest
from sdk_wire import check_sdk_request

from loopback import ScriptedServer, serving

T = TypeVar("T")


def run(coro: Coroutine[Any, Any, T]) -> T:
    """Run a coroutine to completion (pytest-asyncio is not a dependency)."""
    return asyncio.run(coro)


async def no_sleep(seconds: float) -> None:
    """An injectable ``sleep`` that records nothing and waits for nothing."""


class SleepRecorder:
    """An injectable ``sleep`` that records the delays it was asked for."""

    def __init__(self) -> None:
        self.delays: list[float] = []

    async def __call__(self, seconds: float) -> None:
        self.delays.append(seconds)


@attrs.define
class Reply:
    status: int = 200
    json: Any = None
    body: bytes | None = None
    headers: dict[str, str] = attrs.Factory(dict)
    events: list[str] | None = None
    content_type: str | None = None
    hang: bool = False
    cut: bool = False  # for events: drop the connection without ending the chunked body


@attrs.frozen
class Received:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


def openai_events(*chunks: dict[str, Any], done: bool = True) -> list[str]:
    events = [f"data: {json.dumps(c)}\n\n" for c in chunks]
    return [*events, "data: [DONE]\n\n"] if done else events


def anthropic_events(*events: dict[str, Any]) -> list[str]:
    return [f"event: {e['type']}\ndata: {json.dumps(e)}\n\n" for e in events]


class WireServer(ScriptedServer[Reply, Received]):
    def __init__(self, *script: Reply) -> None:
        super().__init__(script or [Reply()], _handler_for(self))


def _handler_for(server: WireServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: Any) -> None:
            pass

        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length)
            headers = {k.lower(): v for k, v in self.headers.items()}
            reply = server.next_reply(Received("POST", self.path, headers, body))
            if reply.hang:
                server.release.wait(timeout=30)
                self.close_connection = True
                return
            self.send_response(reply.status)
            for name, value in reply.headers.items():
                self.send_header(name, value)
            if reply.events is not None:
                self.send_header("Content-Type", reply.content_type or "text/event-stream")
                self.send_header("Transfer-Encoding", "chunked")
                self.end_headers()
                for event in reply.events:
                    data = event.encode()
                    self.wfile.write(f"{len(data):x}\r\n".encode() + data + b"\r\n")
                    self.wfile.flush()
                if reply.cut:
                    self.close_connection = True
                    return
                self.wfile.write(b"0\r\n\r\n")
                return
            data = reply.body if reply.body is not None else json.dumps(reply.json).encode()
            self.send_header("Content-Type", reply.content_type or "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

    return Handler


@pytest.fixture
def wire_server() -> Iterator[Callable[..., WireServer]]:
    """``wire_server(Reply(...), ...)`` starts a server playing that script; all are stopped
    (hanging handlers released) when the test ends. Then every chat request any of them
    received (OpenAI ``/chat/completions``, Anthropic ``/messages``) must be a value of the
    official SDK's request type: whatever a test sends, the providers' wire is checked."""
    servers: list[WireServer] = []

    def make(*script: Reply) -> WireServer:
        server = WireServer(*script)
        servers.append(server)
        return server

    yield from serving(make)
    for server in servers:
        for received in server.requests:
            check_sdk_request(received.path, received.json())
