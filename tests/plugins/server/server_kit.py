"""Test kit of the service tests: node types the test controls, a live server, an SSE reader.

The node types are registered by a plugin object passed to ``build_registry(plugins=[...])``:

- ``echo`` packs its message and can emit ``log_lines`` log events;
- ``gate`` waits (cancellably) until the test opens the gate it names;
- ``fail`` raises;
- ``llm_stub`` reports an ``llm_response`` with tokens and an exact cost;
- ``threaded`` emits log events from a worker thread (a blocking node);
- ``folder`` returns its flow's ``flow_dir`` (where relative file paths point);
- ``slow`` takes ``seconds`` (asyncio), logs, and appends its id to the Backpack's ``trail``;
- ``ask`` pauses the run for an answer (``current_run().interrupt``) and packs it.
"""

from __future__ import annotations

import asyncio
import itertools
import os
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import attrs
import httpx
import uvicorn

from backpackflow import AsyncNode, InterruptTimeout, Node, current_run, hookimpl
from backpackflow.events import LLMResponsePayload, StreamEventType
from backpackflow.plugins import Registry, build_registry
from backpackflow_server import Settings, create_app
from backpackflow_server.credentials import hash_token, new_token

# ------------------------------------------------------------------------------ node types


class Gates:
    """Named gates a ``gate`` node waits on; the test opens them from its own thread."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._gates: dict[str, threading.Event] = {}
        self.waiting: dict[str, int] = {}

    def get(self, name: str) -> threading.Event:
        with self._lock:
            return self._gates.setdefault(name, threading.Event())

    def open(self, name: str) -> None:
        self.get(name).set()

    def open_all(self) -> None:
        with self._lock:
            for gate in self._gates.values():
                gate.set()

    def wait_until_waiting(self, name: str, count: int = 1, timeout: float = 10.0) -> None:
        """Block until ``count`` gate nodes are waiting on ``name``."""
        deadline = time.monotonic() + timeout
        while self.waiting.get(name, 0) < count:
            if time.monotonic() > deadline:
                raise AssertionError(f"no {count} run(s) waiting at gate {name!r}")
            time.sleep(0.005)


GATES = Gates()


@attrs.frozen
class EchoParams:
    message: str = "hello"
    log_lines: int = 0


class EchoNode(Node):
    Params = EchoParams

    def exec(self, prep_res: Any) -> Any:
        run = current_run()
        for i in range(self.params.log_lines):
            run.log(f"{self.id} line {i}")
        return self.params.message

    def post(self, backpack: Any, prep_res: Any, exec_res: Any) -> Any:
        backpack.pack(f"echo_{self.id}", exec_res)
        return None


@attrs.frozen
class GateParams:
    gate: str


class GateNode(AsyncNode):
    """Waits for the named gate; polls so that cancellation interrupts it at once."""

    Params = GateParams

    async def exec_async(self, prep_res: Any) -> Any:
        name = self.params.gate
        gate = GATES.get(name)
        GATES.waiting[name] = GATES.waiting.get(name, 0) + 1
        try:
            while not gate.is_set():
                await asyncio.sleep(0.005)
        finally:
            GATES.waiting[name] -= 1
        return name


@attrs.frozen
class FailParams:
    message: str = "boom"


class FailNode(Node):
    Params = FailParams

    def exec(self, prep_res: Any) -> Any:
        raise RuntimeError(self.params.message)


@attrs.frozen
class LlmStubParams:
    input_tokens: int = 12
    output_tokens: int = 5
    cost: str = "0.000123"


class LlmStubNode(Node):
    Params = LlmStubParams

    def exec(self, prep_res: Any) -> Any:
        p = self.params
        run = current_run()
        run.emit(
            StreamEventType.LLM_RESPONSE,
            LLMResponsePayload(
                "stub",
                "stub-1",
                "an answer",
                {"input_tokens": p.input_tokens, "output_tokens": p.output_tokens},
                1.0,
                p.cost,
                True,
                "stop",
            ),
        )
        run.add_usage(input_tokens=p.input_tokens, output_tokens=p.output_tokens, cost=p.cost)
        return "an answer"


@attrs.frozen
class ThreadedParams:
    log_lines: int = 5


class ThreadedNode(Node):
    """A blocking node: its exec runs in a worker thread and emits from there."""

    Params = ThreadedParams

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(blocking=True, **kwargs)

    def exec(self, prep_res: Any) -> Any:
        run = current_run()
        for i in range(self.params.log_lines):
            run.log(f"from a thread {i}")
        return threading.current_thread().name


class FolderNode(Node):
    """Returns the folder its flow's relative paths point into (``flow_dir``), if any."""

    def exec(self, prep_res: Any) -> Any:
        deps = self.deps
        return str(deps.get("flow_dir")) if deps is not None and deps.has("flow_dir") else None


@attrs.frozen
class SlowParams:
    seconds: float = 0.1
    log_lines: int = 2


class SlowNode(AsyncNode):
    """A node that takes time (the crash tests kill the service while such nodes run); what it
    packs depends only on what ran before it, so a resumed run ends as an uninterrupted one."""

    Params = SlowParams

    async def exec_async(self, prep_res: Any) -> Any:
        run = current_run()
        for i in range(self.params.log_lines):
            run.log(f"{self.id} line {i}")
        await asyncio.sleep(self.params.seconds)
        return self.id

    async def post_async(self, backpack: Any, prep_res: Any, exec_res: Any) -> Any:
        trail = [*backpack.unpack("trail", []), exec_res]
        backpack.pack("trail", trail)
        backpack.pack(f"done_{self.id}", len(trail))
        return None


@attrs.frozen
class AskParams:
    prompt: str = "How many?"
    schema: dict[str, Any] = attrs.field(factory=lambda: {"type": "integer", "minimum": 1})
    timeout: float | None = None


class AskNode(Node):
    """Asks for an answer (``current_run().interrupt``): the run pauses until it gets one;
    packs it under ``answer_<id>``; a timeout takes the ``timeout`` action."""

    Params = AskParams

    def exec(self, prep_res: Any) -> Any:
        p = self.params
        try:
            return current_run().interrupt(p.prompt, p.schema, timeout=p.timeout)
        except InterruptTimeout:
            return None

    def post(self, backpack: Any, prep_res: Any, exec_res: Any) -> Any:
        backpack.pack(f"answer_{self.id}", exec_res)
        return "timeout" if exec_res is None else None


class ServerTestNodes:
    """The plugin registering the node types above."""

    __name__ = "server_test_nodes"

    @hookimpl
    def backpackflow_register_node_types(self, register: Any) -> None:
        register("echo", EchoNode)
        register("gate", GateNode)
        register("fail", FailNode)
        register("llm_stub", LlmStubNode)
        register("threaded", ThreadedNode)
        register("folder", FolderNode)


class DurableTestNodes:
    """The node types of the durable-run tests (``slow``, ``ask``), a plugin of their own: a
    registry without them keeps the flow schema within what schemathesis generates from (one
    more node type and it reports the workflow bodies as an unsupported schema)."""

    __name__ = "durable_test_nodes"

    @hookimpl
    def backpackflow_register_node_types(self, register: Any) -> None:
        register("slow", SlowNode)
        register("ask", AskNode)


def make_registry(*extra: Any, commands: bool = False, durable: bool = True) -> Registry:
    """Our node types (``durable``: with :class:`DurableTestNodes`), the SQL run store and the
    condition languages (and with ``commands`` the service's CLI commands, and the ``extra``
    plugins); no entry points."""
    import backpackflow_conditions.plugin
    import backpackflow_server.plugin
    import backpackflow_store_sql.plugin

    plugins: list[Any] = [
        ServerTestNodes(),
        *([DurableTestNodes()] if durable else []),
        backpackflow_store_sql.plugin,
        backpackflow_conditions.plugin,
    ]
    if commands:  # a service process: also the live feed and the llm node type
        import backpackflow_llm.plugin
        import backpackflow_nodes.plugin
        import backpackflow_redis.plugin

        plugins += [
            backpackflow_server.plugin,
            backpackflow_redis.plugin,
            backpackflow_llm.plugin,
            backpackflow_nodes.plugin,
        ]
    return build_registry(plugins=[*plugins, *extra], autoload=False)


def make_llm_registry(*extra: Any) -> Registry:
    """The test nodes with the real llm, router and tool nodes (the offline provider), the
    SQL run store, the condition languages and the ``extra`` plugins; no entry points."""
    import backpackflow_conditions.plugin
    import backpackflow_llm.plugin
    import backpackflow_nodes.plugin
    import backpackflow_store_sql.plugin

    plugins = [
        ServerTestNodes(),
        backpackflow_store_sql.plugin,
        backpackflow_conditions.plugin,
        backpackflow_llm.plugin,
        backpackflow_nodes.plugin,
        *extra,
    ]
    return build_registry(plugins=plugins, autoload=False)


# ------------------------------------------------------------------------------ flows


def flow(*nodes: dict[str, Any], **extra: Any) -> dict[str, Any]:
    """A linear flow config of ``nodes`` (edges from each to the next)."""
    edges = [{"from": a["id"], "to": b["id"]} for a, b in itertools.pairwise(nodes)]
    return {"version": "2.0.0", "nodes": list(nodes), "edges": edges, **extra}


def echo(node_id: str, message: str = "hi", log_lines: int = 0) -> dict[str, Any]:
    return {
        "type": "echo",
        "id": node_id,
        "params": {"message": message, "log_lines": log_lines},
    }


def gate(node_id: str, name: str) -> dict[str, Any]:
    return {"type": "gate", "id": node_id, "params": {"gate": name}}


def unique(prefix: str) -> str:
    """A gate or workflow name of this test alone (tests share a server and the gates)."""
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


# ------------------------------------------------------------------------------ live server

#: Settings of the test servers: small buffers (streams exercise the database path), short
#: heartbeats, quick batches, no demo seeding.
TEST_SETTINGS: dict[str, Any] = {
    "max_concurrent_runs": 4,
    "stream_buffer_events": 4,
    "sse_heartbeat": 0.25,
    "writer_max_delay": 0.01,
    "shutdown_grace": 2.0,
    "seed": False,
    # the variable test_a_workflow_needing_an_unset_variable... reads (the service lets flows
    # read only the variables its operator lists)
    "flow_env_allowlist": ["BPF_SERVER_TEST_SECRET"],
}


class LiveServer:
    """The app served by uvicorn on 127.0.0.1 (a free port) in a background thread.

    Unless it runs in local-dev mode, starting it creates an admin token, which
    :meth:`client` sends; :meth:`token` makes more (of any role).
    """

    def __init__(self, settings: Settings, registry: Registry) -> None:
        self.settings = settings
        self.admin_token: str | None = None
        self.app = create_app(settings, registry)
        config = uvicorn.Config(
            self.app,
            host="127.0.0.1",
            port=0,
            log_level="warning",
            lifespan="on",
            timeout_graceful_shutdown=5,
        )
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, name="uvicorn", daemon=True)
        self.url = ""

    def start(self) -> LiveServer:
        self.thread.start()
        deadline = time.monotonic() + 30
        while not self.server.started:
            if not self.thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("the service did not start (see the log above)")
            time.sleep(0.01)
        port = self.server.servers[0].sockets[0].getsockname()[1]
        self.url = f"http://127.0.0.1:{port}"
        if self.settings.auth == "tokens":
            self.admin_token = self.token("admin")
        return self

    def token(self, role: str, **options: Any) -> str:
        """A new API token of ``role`` in the server's store (``name``, ``expires_at``)."""
        secret = new_token()
        self.app.state.service.store.create_token(
            options.pop("name", unique(role)), role, hash_token(secret), hint="test", **options
        )
        return secret

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(30)
        assert not self.thread.is_alive(), "the service did not stop"

    def client(self, **options: Any) -> httpx.Client:
        """A client of the server, authenticated as admin unless ``token`` says otherwise
        (``token=None``: no credentials)."""
        token = options.pop("token", self.admin_token)
        headers = dict(options.pop("headers", {}))
        if token is not None:
            headers.setdefault("Authorization", f"Bearer {token}")
        return httpx.Client(
            base_url=self.url, timeout=options.pop("timeout", 20.0), headers=headers, **options
        )

    def __enter__(self) -> LiveServer:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()


# ------------------------------------------------------------------------------ SSE


@dataclass
class SSEMessage:
    event: str = "message"
    data: str = ""
    id: str | None = None
    retry: int | None = None
    comments: list[str] = field(default_factory=list)

    def json(self) -> Any:
        import json

        return json.loads(self.data)


def sse_messages(response: httpx.Response, *, comments: bool = False) -> Iterator[SSEMessage]:
    """Parse an ``text/event-stream`` response into messages (the WHATWG algorithm, minus
    the parts the service never sends). With ``comments``, comment-only blocks are yielded
    as messages with ``event == "comment"``."""
    message = SSEMessage()
    has_fields = False
    for line in response.iter_lines():
        if line == "":
            if has_fields:
                yield message
            elif comments and message.comments:
                message.event = "comment"
                yield message
            message, has_fields = SSEMessage(), False
            continue
        if line.startswith(":"):
            message.comments.append(line[1:].strip())
            continue
        name, _, value = line.partition(":")
        value = value.removeprefix(" ")
        if name == "event":
            message.event, has_fields = value, True
        elif name == "data":
            message.data = f"{message.data}\n{value}" if has_fields and message.data else value
            has_fields = True
        elif name == "id":
            message.id, has_fields = value, True
        elif name == "retry":
            message.retry = int(value)
            has_fields = True


def read_stream(
    client: httpx.Client,
    run_id: str,
    *,
    headers: dict[str, str] | None = None,
    params: dict[str, Any] | None = None,
    stop_after: int | None = None,
) -> tuple[list[dict[str, Any]], dict[str, Any] | None]:
    """Read a run's stream: (trace events, the ``end`` summary or ``None`` if stopped early
    after ``stop_after`` trace events, disconnecting)."""
    events: list[dict[str, Any]] = []
    with client.stream(
        "GET", f"/api/runs/{run_id}/stream", headers=headers, params=params
    ) as response:
        assert response.status_code == 200, response.read()
        assert response.headers["content-type"].startswith("text/event-stream")
        for message in sse_messages(response):
            if message.event == "trace":
                event = message.json()
                assert message.id == str(event["seq"])
                events.append(event)
                if stop_after is not None and len(events) >= stop_after:
                    return events, None
            elif message.event == "end":
                return events, message.json()
    raise AssertionError("the stream closed without an end event")


class StreamReader:
    """Reads a run's stream (:func:`read_stream`) in a thread, with a client of its own, while
    the test goes on; :meth:`join` gives (trace events, the ``end`` summary)."""

    def __init__(self, client: httpx.Client, run_id: str, **options: Any) -> None:
        self._base_url = str(client.base_url)
        self._headers = client.headers  # its credentials
        self._run_id = run_id
        self._options = options
        self._result: tuple[list[dict[str, Any]], dict[str, Any] | None] | None = None
        self._thread = threading.Thread(target=self._read)
        self._thread.start()

    def _read(self) -> None:
        with httpx.Client(base_url=self._base_url, headers=self._headers, timeout=20) as own:
            self._result = read_stream(own, self._run_id, **self._options)

    def join(self, timeout: float = 20) -> tuple[list[dict[str, Any]], dict[str, Any] | None]:
        self._thread.join(timeout)
        assert self._result is not None, "the stream was not read to its end"
        return self._result


def wait_for(condition: Callable[[], Any], timeout: float, what: str) -> Any:
    """Poll ``condition()`` until it is truthy (returns it), failing after ``timeout`` s."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


def wait_for_status(
    client: httpx.Client, run_id: str, *statuses: str, timeout: float = 15.0
) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        run = client.get(f"/api/runs/{run_id}").json()
        if run["status"] in statuses:
            return run
        if time.monotonic() > deadline:
            raise AssertionError(f"run {run_id} is {run['status']}, not {statuses}")
        time.sleep(0.01)


def start_run(client: httpx.Client, workflow_id: str, **inputs: Any) -> dict[str, Any]:
    response = client.post(f"/api/workflows/{workflow_id}/runs", json={"input_vars": inputs})
    assert response.status_code == 202, response.text
    return response.json()


def create_workflow(client: httpx.Client, graph: dict[str, Any], name: str = "wf") -> str:
    response = client.post("/api/workflows", json={"name": name, "graph_json": graph})
    assert response.status_code == 201, response.text
    return str(response.json()["id"])


# ------------------------------------------------------------------------------ CLI


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def start_process(
    database_url: str, port: int, env: dict[str, str] | None = None
) -> subprocess.Popen[str]:
    """``backpackflow serve`` in a process of its own (with the test node types); ``env``:
    more environment variables (settings)."""
    env = {
        **os.environ,
        "BACKPACKFLOW_WRITER_MAX_DELAY": "0.01",
        "BACKPACKFLOW_SSE_HEARTBEAT": "0.5",
        "BACKPACKFLOW_SHUTDOWN_GRACE": "0.5",
        **(env or {}),
    }
    process = subprocess.Popen(
        [
            sys.executable,
            __file__,
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


def cli_main(argv: list[str]) -> int:
    """``backpackflow`` with the test registry (the service commands and our node types)."""
    from backpackflow.cli import build_parser

    registry = make_registry(commands=True)
    args = build_parser(registry).parse_args(argv)
    return int(args._handler(args, registry))


if __name__ == "__main__":  # a service process for the crash and signal tests
    import sys

    raise SystemExit(cli_main(sys.argv[1:]))
