"""Flows, nodes and a scripted HTTP server shared by the sink and inspect tests.

The server is a :class:`loopback.ScriptedServer` on 127.0.0.1: it answers each request with the
next step of its script (the last step repeats) and records every request (headers, exact body
bytes, arrival time). A step may hang (never answer until the test ends) or wait at a gate
before answering. Nothing here reaches beyond the loopback interface.
"""

from __future__ import annotations

import itertools
import json
import sys
import threading
import time
from collections.abc import Iterable
from decimal import Decimal
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any

import attrs

# tests/, for ``loopback`` (also in the writer processes that import only this folder)
sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from backpackflow import Backpack, EventStreamer, Flow, Node, current_run
from backpackflow.events import (
    CacheHitPayload,
    FallbackPayload,
    LLMResponsePayload,
    StreamEventType,
    attach_sinks,
)
from backpackflow.plugins import EventSink
from backpackflow.runner import Limits, RunResult
from loopback import ScriptedServer

# ------------------------------------------------------------------------------ nodes


class Step(Node):
    """Reads ``source``, writes ``target`` (the value with the node id appended)."""

    def __init__(self, source: str, target: str, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.source = source
        self.target = target

    def prep(self, backpack: Any) -> Any:
        return backpack.unpack(self.source)

    def exec(self, prep_res: Any) -> Any:
        return f"{prep_res}>{self.id}"

    def post(self, backpack: Any, prep_res: Any, exec_res: Any) -> Any:
        backpack.pack(self.target, exec_res)
        return None


class Fail(Node):
    """Fails in ``exec`` with ``ValueError(message)``."""

    def __init__(self, message: str = "boom", **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.message = message

    def prep(self, backpack: Any) -> Any:
        return {"question": backpack.unpack("q")}

    def exec(self, prep_res: Any) -> Any:
        raise ValueError(self.message)


class Flaky(Node):
    """Fails its first attempt, then answers (needs ``max_retries >= 2``)."""

    def prep(self, backpack: Any) -> Any:
        return "try me"

    def exec(self, prep_res: Any) -> Any:
        if self.cur_retry == 0:
            raise TimeoutError("first attempt times out")
        return "second time lucky"

    def post(self, backpack: Any, prep_res: Any, exec_res: Any) -> Any:
        backpack.pack("flaky", exec_res)
        return "done"


class FakeLLM(Node):
    """Reports an LLM call like the LLM node does: usage, ``llm_response``, a fallback and a
    cache hit, without any network."""

    def prep(self, backpack: Any) -> Any:
        return f"Summarize: {backpack.unpack('q')}"

    def exec(self, prep_res: Any) -> Any:
        run = current_run()
        run.emit(
            StreamEventType.FALLBACK,
            FallbackPayload("openai", "gpt-4o", "anthropic", "claude-haiku", "HTTP 503"),
        )
        usage = {"input_tokens": 120, "output_tokens": 45}
        run.emit(
            StreamEventType.LLM_RESPONSE,
            LLMResponsePayload(
                "anthropic", "claude-haiku", "a summary", usage, 321.0, "0.00123", True, "stop"
            ),
        )
        run.emit(StreamEventType.CACHE_HIT, CacheHitPayload("k1", "0.0005", usage))
        run.add_usage(input_tokens=120, output_tokens=45, cost=Decimal("0.00123"))
        return "a summary"

    def post(self, backpack: Any, prep_res: Any, exec_res: Any) -> Any:
        backpack.pack("summary", exec_res)
        return "summarized"


class Loop(Node):
    """Appends to ``items`` and loops back to itself ``times`` times."""

    def __init__(self, times: int, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.times = times

    def prep(self, backpack: Any) -> Any:
        return backpack.unpack("items", [])

    def exec(self, prep_res: Any) -> Any:
        return len(prep_res)

    def post(self, backpack: Any, prep_res: Any, exec_res: Any) -> Any:
        backpack.append("items", [exec_res])
        return "again" if exec_res + 1 < self.times else "stop"


class Writer(Node):
    """Packs ``values`` (a dict of key -> value) in post."""

    def __init__(self, values: dict[str, Any], **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.values = values

    def post(self, backpack: Any, prep_res: Any, exec_res: Any) -> Any:
        for key, value in self.values.items():
            backpack.pack(key, value)
        return None


# ------------------------------------------------------------------------------ flows


def chain(count: int = 5, *, namespace: str | None = None) -> Flow:
    """``count`` Step nodes in a line: n1 reads k0 writes k1, n2 reads k1 writes k2 ..."""
    nodes = [Step(f"k{i}", f"k{i + 1}", id=f"n{i + 1}") for i in range(count)]
    for a, b in itertools.pairwise(nodes):
        a >> b
    return Flow(nodes[0], namespace=namespace, name="chain")


def failing_flow() -> Flow:
    """first (Step, in namespace "research") -> llm (FakeLLM) -> broken (Fail)."""
    first = Step("q", "k1", id="first", namespace="research")
    llm = FakeLLM(id="llm")
    broken = Fail(id="broken")
    first >> llm
    llm - "summarized" >> broken
    return Flow(first, namespace="sales", name="failing")


def run_flow(
    flow: Flow,
    sinks: Iterable[EventSink],
    *,
    backpack: Backpack | None = None,
    limits: Limits | None = None,
    **values: Any,
) -> RunResult:
    """Run ``flow`` with ``sinks`` attached (not closed) on a Backpack holding ``values``."""
    if backpack is None:
        backpack = Backpack()
        for key, value in ({"k0": "start", "q": "question"} | values).items():
            backpack.pack(key, value)
    events = EventStreamer()
    attach_sinks(events, sinks)
    options: dict[str, Any] = {"events": events}
    if limits is not None:
        options["limits"] = limits
    return flow.execute_sync(backpack, **options)


def event_ids(result: RunResult) -> list[str]:
    return [e.id for e in result.events.get_events(run_id=result.run_id)]


def read_jsonl(path: Any) -> list[dict[str, Any]]:
    with open(path, encoding="utf-8") as f:
        return [json.loads(line) for line in f]


# ------------------------------------------------------------------------------ HTTP server


@attrs.define
class Reply:
    """One scripted answer: a status with headers, or ``hang`` (never answer), optionally
    after waiting for ``gate`` to open."""

    status: int = 200
    headers: dict[str, str] = attrs.Factory(dict)
    hang: bool = False
    gate: threading.Event | None = None


@attrs.define
class Request:
    path: str
    headers: dict[str, str]
    body: bytes
    at: float

    def json(self) -> Any:
        return json.loads(self.body)


class HookServer(ScriptedServer[Reply, Request]):
    """A scripted webhook endpoint (see the module docstring)."""

    def __init__(self, *script: Reply) -> None:
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: Any) -> None:
                pass

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length", "0"))
                body = self.rfile.read(length)
                reply = owner.next_reply(
                    Request(self.path, dict(self.headers.items()), body, time.monotonic())
                )
                if reply.gate is not None:
                    reply.gate.wait(10)
                if reply.hang:
                    owner.release.wait(30)
                    self.close_connection = True
                    return
                payload = b'{"ok":true}'
                self.send_response(reply.status)
                for name, value in reply.headers.items():
                    self.send_header(name, value)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

        super().__init__(script or [Reply()], Handler)

    @property
    def url(self) -> str:
        return f"{super().url}/hook"

    def events(self) -> list[dict[str, Any]]:
        """Every event received, in order (retried batches once, by batch id)."""
        seen: set[str] = set()
        out: list[dict[str, Any]] = []
        for request in self.requests:
            batch = request.headers.get("X-Backpackflow-Batch", "")
            if batch in seen:
                continue
            try:
                events = request.json()["events"]
            except (ValueError, KeyError):
                continue
            seen.add(batch)
            out.extend(events)
        return out
