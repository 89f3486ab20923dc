"""Helpers of the node and end-to-end tests: flow documents, running a loaded flow and reading
its events as JSON, and small real HTTP servers on 127.0.0.1.

Everything runs through the public path a user takes: a JSON config loaded by
:class:`~backpackflow.loader.FlowLoader` with the installed plugins, executed by the kernel,
observed through the serialized events (what every sink sees).
"""

from __future__ import annotations

import copy
import itertools
import json
import sys
import time
from collections.abc import Callable, Mapping
from decimal import Decimal
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any

import attrs
import pytest

from loopback import LoopbackServer, drop_api_keys, keep_requests_local

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "llm"))

from llm_wire import wire_server as wire_server  # a fixture, for the conftests

import backpackflow.plugins.manager as plugin_manager
from backpackflow import Backpack
from backpackflow.config import CURRENT_VERSION
from backpackflow.events import EventStreamer
from backpackflow.loader import FlowLoader, prepare_inputs
from backpackflow.plugins import Registry, build_registry
from backpackflow.runner import DependencyContainer, Flow, RunResult

ROOT = Path(__file__).resolve().parents[3]
EXAMPLES = ROOT / "examples"
RESEARCH = EXAMPLES / "research" / "flow.json"
CSV_REPORT = EXAMPLES / "csv-report" / "flow.json"

_REGISTRY: Registry | None = None


def installed_registry() -> Registry:
    """A registry of the installed plugins (entry points), built once per test session."""
    global _REGISTRY
    if _REGISTRY is None:
        _REGISTRY = build_registry()
    return _REGISTRY


# ------------------------------------------------------------------------------- documents


def flow_doc(*nodes: Mapping[str, Any], edges: list[Mapping[str, Any]] | None = None, **top: Any):
    """A flow config document: the nodes in order, chained by default edges unless ``edges``
    is given."""
    if edges is None:
        edges = [{"from": a["id"], "to": b["id"]} for a, b in itertools.pairwise(nodes)]
    return {"version": CURRENT_VERSION, **top, "nodes": [dict(n) for n in nodes], "edges": edges}


def llm(node_id: str, prompt: str, *, inputs: Mapping[str, Any] | None = None, **params: Any):
    node: dict[str, Any] = {"type": "llm", "id": node_id, "params": {"prompt": prompt, **params}}
    if inputs:
        node["inputs"] = dict(inputs)
    return node


def tool(node_id: str, name: str, inputs: Mapping[str, Any] | None = None, **params: Any):
    node: dict[str, Any] = {"type": "tool", "id": node_id, "params": {"tool": name, **params}}
    if inputs:
        node["inputs"] = dict(inputs)
    return node


def router(node_id: str, rule: Any, *, inputs: Mapping[str, Any] | None = None, **params: Any):
    node: dict[str, Any] = {"type": "router", "id": node_id, "params": {"rule": rule, **params}}
    if inputs:
        node["inputs"] = dict(inputs)
    return node


def write_flow(path: Path, doc: Mapping[str, Any]) -> Path:
    path.write_text(json.dumps(doc, indent=2), encoding="utf-8")
    return path


#: A prompt the offline model summarizes in one sentence (an instruction, then the text).
SHORT_PROMPT = (
    "Summarize in 1 sentence:\n\n"
    "The harbor reopened on Monday after the storm. Ferries resumed their normal schedule. "
    "Fishing boats stayed in port until the swell dropped."
)


# ------------------------------------------------------------------------------- running


@attrs.define
class Ran:
    """One run of a loaded flow: its result and every event of it as JSON (as a sink gets it)."""

    flow: Flow
    result: RunResult
    events: list[dict[str, Any]]

    def of(self, type_: str, node_id: str | None = None) -> list[dict[str, Any]]:
        """Payloads of the events of ``type_`` (of ``node_id``), in order."""
        return [
            e["payload"]
            for e in self.events
            if e["type"] == type_ and (node_id is None or e["node_id"] == node_id)
        ]

    def one(self, type_: str, node_id: str | None = None) -> dict[str, Any]:
        found = self.of(type_, node_id)
        assert len(found) == 1, f"expected one {type_} event of {node_id}, got {len(found)}"
        return found[0]

    def types(self, node_id: str) -> list[str]:
        """The event types of one node, in order."""
        return [e["type"] for e in self.events if e["node_id"] == node_id]

    def ran(self) -> list[str]:
        """Ids of the nodes that started, in order."""
        return [e["node_id"] for e in self.events if e["type"] == "node_start"]

    @property
    def run_end(self) -> dict[str, Any]:
        return self.one("run_end")

    @property
    def error(self) -> str:
        assert self.result.error is not None, "the run did not fail"
        return str(self.result.error)

    def serialized(self) -> str:
        """Every event of the run as the text a file sink would write."""
        return "\n".join(json.dumps(e, ensure_ascii=False) for e in self.events)


def cached_openai(base_url: str) -> dict[str, Any]:
    """``dependencies`` of a flow whose ``primary`` provider is the OpenAI wire server at
    ``base_url`` (its key from ``$BPF_TEST_KEY``), behind an in-memory response cache."""
    return {
        "llm_cache": {"type": "memory_cache"},
        "primary": {
            "type": "openai",
            "config": {"base_url": base_url, "api_key": "${BPF_TEST_KEY}"},
        },
    }


def load(
    source: Any,
    *,
    deps: DependencyContainer | None = None,
    registry: Registry | None = None,
    environ: Mapping[str, str] | None = None,
) -> Flow:
    # the process-wide registry: install_plugins() may have added a test's plugins to it
    loader = FlowLoader(registry if registry is not None else plugin_manager.get_registry())
    if isinstance(source, Mapping):
        source = copy.deepcopy(dict(source))
    return loader.load_flow(source, deps, environ=environ)


def execute(
    flow: Flow, *, inputs: Mapping[str, Any] | None = None, backpack: Backpack | None = None
) -> Ran:
    events = EventStreamer()
    result = flow.execute_sync(
        backpack if backpack is not None else Backpack(),
        inputs=prepare_inputs(flow, inputs),
        events=events,
    )
    return Ran(flow, result, events.to_json(run_id=result.run_id))


def run_flow(
    source: Any,
    *,
    inputs: Mapping[str, Any] | None = None,
    backpack: Backpack | None = None,
    deps: DependencyContainer | None = None,
    registry: Registry | None = None,
) -> Ran:
    """Load ``source`` (a document, a path or JSON text) and run it once."""
    return execute(load(source, deps=deps, registry=registry), inputs=inputs, backpack=backpack)


def costs(ran: Ran) -> list[Decimal]:
    """The exact cost of every ``llm_response`` of a run."""
    return [Decimal(p["cost"]) for p in ran.of("llm_response")]


def price(tokens: int, per_million: str) -> Decimal:
    """Cost of ``tokens`` at a per-million price, computed here independently of the plugin."""
    return Decimal(tokens) * Decimal(per_million) / Decimal(1_000_000)


# ------------------------------------------------------------------------------- wire bodies


def openai_completion(
    text: str,
    *,
    model: str = "gpt-4o-mini-2024-07-18",
    prompt_tokens: int = 12,
    completion_tokens: int = 5,
    cached_tokens: int | None = None,
    reasoning_tokens: int | None = None,
    finish_reason: str = "stop",
) -> dict[str, Any]:
    usage: dict[str, Any] = {
        "prompt_tokens": prompt_tokens,
        "completion_tokens": completion_tokens,
        "total_tokens": prompt_tokens + completion_tokens,
    }
    if cached_tokens is not None:
        usage["prompt_tokens_details"] = {"cached_tokens": cached_tokens}
    if reasoning_tokens is not None:
        usage["completion_tokens_details"] = {"reasoning_tokens": reasoning_tokens}
    return {
        "id": "chatcmpl-1",
        "object": "chat.completion",
        "model": model,
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": text},
                "finish_reason": finish_reason,
            }
        ],
        "usage": usage,
    }


def anthropic_message(
    text: str,
    *,
    model: str = "claude-3-5-haiku-20241022",
    input_tokens: int = 14,
    output_tokens: int = 6,
) -> dict[str, Any]:
    return {
        "id": "msg_1",
        "type": "message",
        "role": "assistant",
        "model": model,
        "content": [{"type": "text", "text": text}],
        "stop_reason": "end_turn",
        "stop_sequence": None,
        "usage": {"input_tokens": input_tokens, "output_tokens": output_tokens},
    }


OPENAI_500 = {"error": {"message": "The server had an error", "type": "server_error"}}


# ------------------------------------------------------------------------------- a GET server


@attrs.define
class Page:
    """What :class:`PageServer` answers on one path."""

    status: int = 200
    body: bytes = b"hello from the page server"
    content_type: str = "text/plain; charset=utf-8"
    headers: dict[str, str] = attrs.Factory(dict)
    delay: float = 0.0


class PageServer(LoopbackServer):
    """A real HTTP server on 127.0.0.1 answering GETs from a dict of paths (404 otherwise)."""

    def __init__(self, pages: Mapping[str, Page]) -> None:
        super().__init__(_page_handler(self))
        self.pages = dict(pages)
        self.hits: list[str] = []
        self.headers: list[dict[str, str]] = []  # of each request, names in lower case


def _page_handler(server: PageServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: Any) -> None:
            pass

        def do_GET(self) -> None:
            server.hits.append(self.path)
            server.headers.append({k.lower(): v for k, v in self.headers.items()})
            page = server.pages.get(self.path, Page(404, b"not found"))
            if page.delay:
                time.sleep(page.delay)
            self.send_response(page.status)
            for name, value in page.headers.items():
                self.send_header(name, value)
            self.send_header("Content-Type", page.content_type)
            self.send_header("Content-Length", str(len(page.body)))
            self.end_headers()
            try:
                self.wfile.write(page.body)
            except ConnectionError:
                pass

    return Handler


# ------------------------------------------------------------------------------- fixtures
# (imported by the conftest of tests/plugins/nodes and of tests/e2e)


@pytest.fixture(autouse=True)
def _isolated_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """No real API keys, no proxies (requests stay on 127.0.0.1), and a scratch working
    directory so nothing is written into the repository."""
    drop_api_keys(monkeypatch)
    keep_requests_local(monkeypatch)
    monkeypatch.chdir(tmp_path)


@pytest.fixture
def install_plugins(monkeypatch: pytest.MonkeyPatch) -> Callable[..., Registry]:
    """``install_plugins(module, ...)`` makes the process-wide registry the installed plugins
    plus ``module`` (as if its distribution were installed); restored after the test."""

    def install(*plugins: Any) -> Registry:
        registry = build_registry(plugins=plugins)
        monkeypatch.setattr(plugin_manager, "_default", registry)
        return registry

    return install
