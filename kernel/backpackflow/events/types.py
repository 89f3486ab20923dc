"""Typed lifecycle telemetry: the event envelope, event types and payloads, and Subscription
(the bus itself is in :mod:`backpackflow.events.bus`).

Events and payloads are immutable named tuples rather than attrs classes: an event is made for
every lifecycle step and Backpack access, and a named tuple is created ~3.5x faster than a frozen
attrs instance, which is most of the per-event cost. They are still typed, frozen records.

Heavy payload parts are lazy: ``state`` fields hold a :class:`~backpackflow.backpack.Snapshot`
(references to immutable stored data), and values are summarized or copied only when an event is
serialized with :meth:`BackpackEvent.to_json`.
"""

from __future__ import annotations

import enum
import json
import logging
import traceback
import weakref
from collections.abc import Callable
from contextvars import ContextVar
from typing import TYPE_CHECKING, Any, NamedTuple

from backpackflow.ids import new_id
from backpackflow.jsondata import summarize, to_jsonable
from backpackflow.namespaces import compile_pattern

if TYPE_CHECKING:  # type-only back reference: a Subscription belongs to an EventStreamer
    from backpackflow.events.bus import EventStreamer


log = logging.getLogger("backpackflow.events")


class StreamEventType(enum.StrEnum):
    """Every event type. Values are the wire names used in JSON and by sinks."""

    # node lifecycle (automatic)
    NODE_START = "node_start"
    PREP_COMPLETE = "prep_complete"
    EXEC_COMPLETE = "exec_complete"
    NODE_END = "node_end"
    ERROR = "error"
    # Backpack operations (automatic)
    BACKPACK_PACK = "backpack_pack"
    BACKPACK_UNPACK = "backpack_unpack"
    # emitted by nodes
    STREAM_CHUNK = "stream_chunk"
    TOOL_CALL = "tool_call"
    CUSTOM = "custom"
    # runs and LLM work
    RUN_START = "run_start"
    RUN_END = "run_end"
    LLM_REQUEST = "llm_request"
    LLM_RESPONSE = "llm_response"
    TOOL_REQUEST = "tool_request"
    TOOL_RESPONSE = "tool_response"
    RETRY = "retry"
    FALLBACK = "fallback"
    CACHE_HIT = "cache_hit"
    GUARDRAIL = "guardrail"
    LOG = "log"


def _payload_json(payload: Any) -> Any:
    """A payload as JSON data: its own ``to_json()`` if it has one, named-tuple fields through
    :func:`to_jsonable` (which materializes lazy snapshots), anything else summarized."""
    to_json = getattr(payload, "to_json", None)
    if callable(to_json):
        # through to_jsonable: a custom payload's to_json() may raise or return non-JSON
        return to_jsonable(payload)
    as_dict = getattr(payload, "_asdict", None)
    if callable(as_dict):
        return {k: to_jsonable(v) for k, v in as_dict().items()}
    return to_jsonable(payload)


# ---------------------------------------------------------------------------- payloads


class RunStartPayload(NamedTuple):
    flow_name: str
    inputs: Any
    limits: Any


class RunEndPayload(NamedTuple):
    status: str  # succeeded | failed | canceled
    duration_ms: float
    node_count: int
    error: str | None = None
    error_type: str | None = None
    action: str | None = None
    totals: Any = None


class NodeStartPayload(NamedTuple):
    node_name: str
    node_type: str
    params: Any
    state: Any  # a StateDelta: the whole state in process, what changed when serialized


class PrepCompletePayload(NamedTuple):
    prep_result: Any
    reads: list[str]


class ExecCompletePayload(NamedTuple):
    exec_result: Any
    attempts: int
    duration_ms: float


class NodeEndPayload(NamedTuple):
    action: str | None
    writes: list[str]
    duration_ms: float


class ErrorPayload(NamedTuple):
    phase: str  # prep | exec | post
    error: str
    error_type: str
    stack: str | None
    state: Any  # a SnapshotRef to the state at the time of the error


class BackpackPackPayload(NamedTuple):
    key: str
    op: str  # pack | append | delete
    value: Any  # the stored value, read-only; serialized as a short summary
    commit_id: str | None
    version: int | None
    tags: tuple[str, ...]
    access_granted: bool
    reason: str | None

    @property
    def value_summary(self) -> str | None:
        return None if self.op == "delete" else summarize(self.value)

    def to_json(self) -> dict[str, Any]:
        return {
            "key": self.key,
            "op": self.op,
            "value_summary": self.value_summary if self.access_granted else None,
            "commit_id": self.commit_id,
            "version": self.version,
            "tags": list(self.tags),
            "access_granted": self.access_granted,
            "reason": self.reason,
        }


class BackpackUnpackPayload(NamedTuple):
    key: str
    access_granted: bool
    reason: str | None
    found: bool
    #: The name the node read ``key`` as, through a key mapping (``None``: read as ``key``).
    read_as: str | None = None

    def to_json(self) -> dict[str, Any]:
        data: dict[str, Any] = {
            "key": self.key,
            "access_granted": self.access_granted,
            "reason": self.reason,
            "found": self.found,
        }
        if self.read_as is not None:  # a mapped read; a plain read's event stays as it was
            data["read_as"] = self.read_as
        return data


class StreamChunkPayload(NamedTuple):
    text: str
    chunk_index: int


class ToolCallPayload(NamedTuple):
    tool: str
    arguments: Any
    call_id: str | None = None  # the model's id of the call (tool_call events)

    def to_json(self) -> dict[str, Any]:
        data = {"tool": self.tool, "arguments": to_jsonable(self.arguments)}
        if self.call_id is not None:  # a model's call; a tool node's request has none
            data["call_id"] = self.call_id
        return data


class ToolResponsePayload(NamedTuple):
    tool: str
    result: Any
    duration_ms: float
    error: str | None = None
    call_id: str | None = None  # the model's id of the call it answers (agent nodes)

    def to_json(self) -> dict[str, Any]:
        data = {
            "tool": self.tool,
            "result": to_jsonable(self.result),
            "duration_ms": self.duration_ms,
            "error": self.error,
        }
        if self.call_id is not None:
            data["call_id"] = self.call_id
        return data


class LLMRequestPayload(NamedTuple):
    provider: str
    model: str
    messages: Any
    params: Any


class LLMResponsePayload(NamedTuple):
    provider: str
    model: str
    text: str
    usage: Any
    latency_ms: float
    cost: str  # exact decimal, as a string
    cost_known: bool
    finish_reason: str | None
    refusal: str | None = None  # the model refused: its words (then ``text`` is "")

    def to_json(self) -> dict[str, Any]:
        data = {
            "provider": self.provider,
            "model": self.model,
            "text": self.text,
            "usage": to_jsonable(self.usage),
            "latency_ms": self.latency_ms,
            "cost": self.cost,
            "cost_known": self.cost_known,
            "finish_reason": self.finish_reason,
        }
        if self.refusal is not None:  # shown only when the model refused
            data["refusal"] = self.refusal
        return data


class RetryPayload(NamedTuple):
    error: str
    error_type: str
    attempt: int
    delay_s: float
    phase: str = "exec"
    provider: str | None = None
    model: str | None = None


class FallbackPayload(NamedTuple):
    from_provider: str
    from_model: str
    to_provider: str
    to_model: str
    reason: str


class CacheHitPayload(NamedTuple):
    cache_key: str
    cost_saved: str  # exact decimal, as a string
    usage: Any


class GuardrailPayload(NamedTuple):
    limit: str
    value: Any
    maximum: Any
    message: str


class LogPayload(NamedTuple):
    level: str
    message: str
    data: Any = None


# ---------------------------------------------------------------------------- the envelope


_OUTSIDE_RUNS = new_id()  # the id prefix of events emitted outside any run


class BackpackEvent(NamedTuple):
    """One event. ``seq`` is monotonic per run; ``step`` is the node execution it belongs to
    (1-based within the run; ``None`` for run-level events). ``id`` is ``"<run_id>.<seq>"``:
    unique, ordered within a run, and derived rather than stored (events are the hot path).

    ``parent_step`` is set on the events of a **nested step**: work a node does as steps of
    its own inside its execution (each tool call of an ``agent`` node). Such a step has its
    own ``step`` number, from the run's step numbers, and ``parent_step`` names the node
    execution it belongs to; nested steps of one parent are siblings (they may overlap in
    time). Its ``node_id`` and ``namespace`` are the parent node's, its ``node_name`` says
    what the step is (the tool's name). Everywhere else ``parent_step`` is ``None`` and left
    out of the JSON form, so traces without nested steps read as before."""

    seq: int
    timestamp: float
    run_id: str | None
    step: int | None
    node_id: str | None
    node_name: str | None
    namespace: str | None
    type: StreamEventType
    payload: Any
    parent_step: int | None = None

    @property
    def id(self) -> str:
        return f"{self.run_id or _OUTSIDE_RUNS}.{self.seq}"

    def to_json(self) -> dict[str, Any]:
        """The event as JSON data (lazy payload parts are materialized here); ``parent_step``
        only when set."""
        data = {
            "id": self.id,
            "seq": self.seq,
            "timestamp": self.timestamp,
            "run_id": self.run_id,
            "step": self.step,
            "node_id": self.node_id,
            "node_name": self.node_name,
            "namespace": self.namespace,
            "type": str(self.type),
            "payload": _payload_json(self.payload),
        }
        if self.parent_step is not None:
            data["parent_step"] = self.parent_step
        return data

    def to_json_str(self) -> str:
        return json.dumps(self.to_json(), ensure_ascii=False, default=repr)


def exception_text(exc: BaseException) -> tuple[str, str, str]:
    """(message, type name, formatted stack) of an exception, for error payloads."""
    stack = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
    return str(exc) or type(exc).__name__, type(exc).__name__, stack


Handler = Callable[[BackpackEvent], Any]

#: True while a synchronous entry point (``flow.run``, ``execute_sync``) drives a run on an event
#: loop of its own: that loop ends with the run, so async handlers go to the background loop
#: instead, where they finish (``wait_idle()``) rather than being canceled with it.
on_private_loop: ContextVar[bool] = ContextVar("backpackflow_private_loop", default=False)


class Subscription:
    """A handle on one subscriber; ``unsubscribe()`` (or ``cancel()``) removes it."""

    __slots__ = ("_streamer", "errors", "handler", "matcher", "pattern", "types")

    def __init__(
        self,
        streamer: EventStreamer,
        pattern: str,
        handler: Handler,
        types: frozenset[str] | None,
    ) -> None:
        # weak: a subscription must not keep its streamer (and so a run's whole history)
        # in a reference cycle that only the cyclic GC could free
        self._streamer = weakref.ref(streamer)
        self.pattern = pattern
        self.handler = handler
        self.types = types
        self.errors = 0
        self.matcher = None if pattern == "*" else compile_pattern(pattern)

    def matches(self, node_id: str | None, namespace: str | None, type_: str) -> bool:
        if self.types is not None and type_ not in self.types:
            return False
        if self.matcher is None:
            return True
        if node_id is not None and node_id == self.pattern:
            return True
        return namespace is not None and self.matcher(namespace)

    def unsubscribe(self) -> None:
        streamer = self._streamer()
        if streamer is not None:
            streamer.unsubscribe(self)

    cancel = unsubscribe

    def __repr__(self) -> str:
        return f"Subscription(pattern={self.pattern!r}, types={self.types})"
