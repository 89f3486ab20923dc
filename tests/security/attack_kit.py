"""What the security tests attack with: the service tests' live server and node types, a few
node types of their own, and raw requests.

The service tests' kit (``tests/plugins/server/server_kit.py``: live server, test node types,
SSE reader) is reused, not copied: its folder is put on ``sys.path`` here.
"""

from __future__ import annotations

import sys
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import attrs
import httpx

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "plugins" / "server"))

from server_kit import (
    GATES,
    TEST_SETTINGS,
    LiveServer,
    ServerTestNodes,
    create_workflow,
    echo,
    flow,
    gate,
    read_stream,
    start_run,
    unique,
    wait_for_status,
)

from backpackflow import Node, current_run, hookimpl

#: A server folder a failing node names in its error (it does not exist).
SERVER_FILES = Path(__file__).resolve().parent / "no-such-folder" / "private"

__all__ = [
    "GATES",
    "SERVER_FILES",
    "TEST_SETTINGS",
    "LiveServer",
    "SecurityTestNodes",
    "ServerTestNodes",
    "create_workflow",
    "echo",
    "flow",
    "gate",
    "in_thread",
    "raw",
    "read_stream",
    "start_run",
    "unique",
    "wait_for_status",
]

# ------------------------------------------------------------------------------ node types


class PoisonNode(Node):
    """Emits and returns text neither database can hold: U+0000 and a lone surrogate."""

    def exec(self, prep_res: Any) -> Any:
        current_run().log("nul \x00 and surrogate \ud800", data={"key\x00": ["\udfff"]})
        return "out \x00 \ud800"

    def post(self, backpack: Any, prep_res: Any, exec_res: Any) -> Any:
        backpack.pack("poison", exec_res)
        return None


@attrs.frozen
class SlowBuildParams:
    gate: str


class SlowBuildNode(Node):
    """Blocks while its flow is built (validated or loaded) until the test opens its gate: CPU
    work of a request, made as long as a test needs."""

    Params = SlowBuildParams

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        name = self.params.gate
        GATES.waiting[name] = GATES.waiting.get(name, 0) + 1
        try:
            if not GATES.get(name).wait(30):
                raise RuntimeError(f"gate {name!r} was never opened")
        finally:
            GATES.waiting[name] -= 1


class LeakyNode(Node):
    """Fails as real code does: an OSError naming an absolute path of the server."""

    def exec(self, prep_res: Any) -> Any:
        return (SERVER_FILES / "app.env").read_text()


class BrokenBuildNode(Node):
    """A node type whose own code fails while building, with a server path in its message."""

    def __init__(self, **kwargs: Any) -> None:
        raise OSError(f"cannot open {Path(__file__).resolve()}: the node type is broken")


class SecurityTestNodes:
    __name__ = "security_test_nodes"

    @hookimpl
    def backpackflow_register_node_types(self, register: Any) -> None:
        register("poison", PoisonNode)
        register("slow_build", SlowBuildNode)
        register("broken_build", BrokenBuildNode)
        register("leaky", LeakyNode)


def raw(
    server: LiveServer,
    method: str,
    path: str,
    *,
    body: bytes | None = None,
    headers: dict[str, str] | None = None,
    token: str | None = None,
) -> httpx.Response:
    """One request with exactly these body bytes and headers (``Host`` included if given)."""
    sent = dict(headers or {})
    if token is not None:
        sent["Authorization"] = f"Bearer {token}"
    with httpx.Client(base_url=server.url, timeout=30) as client:
        return client.request(method, path, content=body, headers=sent)


def in_thread(function: Callable[[], Any]) -> Callable[[float], Any]:
    """Run ``function`` in a thread now; the returned ``join(timeout)`` gives its result."""
    result: dict[str, Any] = {}

    def target() -> None:
        try:
            result["value"] = function()
        except BaseException as exc:  # noqa: BLE001 - handed to the test by join
            result["error"] = exc

    thread = threading.Thread(target=target)
    thread.start()

    def join(timeout: float) -> Any:
        thread.join(timeout)
        assert not thread.is_alive(), "the request did not finish"
        if "error" in result:
            raise result["error"]
        return result["value"]

    return join
