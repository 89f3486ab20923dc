"""Typed lifecycle telemetry: the event envelope, event types and payloads, and the EventStreamer.

Events and payloads are immutable named tuples rather than attrs classes: an event is made for
every lifecycle step and Backpack access, and a named tuple is created ~3.5x faster than a frozen
attrs instance, which is most of the per-event cost. They are still typed, frozen records.

Heavy payload parts are lazy: ``state`` fields hold a :class:`~backpackflow.backpack.Snapshot`
(references to immutable stored data), and values are summarized or copied only when an event is
serialized with :meth:`BackpackEvent.to_json`.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import enum
import inspect
import itertools
import json
import logging
import math
import threading
import time
import traceback
import weakref
from collections import deque
from collections.abc import Awaitable, Callable, Iterable, Iterator, Mapping
from concurrent.futures import Future
from contextvars import ContextVar
from typing import Any, NamedTuple

import attrs

from backpackflow.ids import new_id
from backpackflow.jsondata import summarize
from backpackflow.namespaces import compile_pattern

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


# ---------------------------------------------------------------------------- JSON conversion


def to_jsonable(value: Any, *, limit: int = 100_000) -> Any:
    """Turn any value into JSON data for serialization, never raising.

    JSON data passes through (tuples become lists); objects with ``to_json()`` are asked;
    snapshots are materialized; attrs instances become dicts; anything else is summarized as
    ``{"$type": ..., "$repr": ...}`` so a sink can always write the event.
    """
    try:
        return _jsonable(value, limit, 0)
    except Exception as exc:  # noqa: BLE001 - serialization of telemetry must never fail
        return {"$type": type(value).__qualname__, "$error": f"{type(exc).__name__}: {exc}"}


def _jsonable(value: Any, limit: int, depth: int) -> Any:
    t = type(value)
    if t is str or t is int or t is bool or value is None:
        return value
    if t is float:
        return value if math.isfinite(value) else repr(value)
    if depth > 50:
        return {"$type": t.__qualname__, "$repr": "<nested too deeply>"}
    if t is dict or (isinstance(value, Mapping) and not hasattr(value, "to_json")):
        return {str(k): _jsonable(v, limit, depth + 1) for k, v in value.items()}
    if t is list or t is tuple or t is set or t is frozenset or t is deque:
        return [_jsonable(v, limit, depth + 1) for v in value]
    to_json = getattr(value, "to_json", None)
    if callable(to_json):
        return _jsonable(to_json(), limit, depth + 1)
    if isinstance(value, enum.Enum):
        return _jsonable(value.value, limit, depth + 1)
    if isinstance(value, str):
        return "" + value
    if isinstance(value, int):
        return int(value)
    if isinstance(value, float):
        return _jsonable(float(value), limit, depth)
    if hasattr(type(value), "__attrs_attrs__"):
        return _jsonable(attrs.asdict(value, recurse=False), limit, depth + 1)
    if isinstance(value, BaseException):
        return {"$type": t.__qualname__, "$repr": str(value)[:limit]}
    if isinstance(value, (bytes, bytearray)):
        return {"$type": t.__qualname__, "$repr": summarize(bytes(value)[:200].hex(), 400)}
    text = repr(value)
    return {"$type": f"{t.__module__}.{t.__qualname__}", "$repr": text[:limit]}


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
    state: Any  # a SnapshotRef: resolved only when serialized


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


class StreamChunkPayload(NamedTuple):
    text: str
    chunk_index: int


class ToolCallPayload(NamedTuple):
    tool: str
    arguments: Any


class ToolResponsePayload(NamedTuple):
    tool: str
    result: Any
    duration_ms: float
    error: str | None = None


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
    unique, ordered within a run, and derived rather than stored (events are the hot path)."""

    seq: int
    timestamp: float
    run_id: str | None
    step: int | None
    node_id: str | None
    node_name: str | None
    namespace: str | None
    type: StreamEventType
    payload: Any

    @property
    def id(self) -> str:
        return f"{self.run_id or _OUTSIDE_RUNS}.{self.seq}"

    def to_json(self) -> dict[str, Any]:
        """The event as JSON data (lazy payload parts are materialized here)."""
        return {
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

    def to_json_str(self) -> str:
        return json.dumps(self.to_json(), ensure_ascii=False, default=repr)


def exception_text(exc: BaseException) -> tuple[str, str, str]:
    """(message, type name, formatted stack) of an exception, for error payloads."""
    stack = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
    return str(exc) or type(exc).__name__, type(exc).__name__, stack


# ---------------------------------------------------------------------------- EventStreamer

_NODE_START = StreamEventType.NODE_START
_outside_counter = itertools.count(1)


def _next_outside_seq() -> int:
    """Sequence numbers of events emitted outside runs: process-wide, so their ids never
    collide whichever streamer they went through."""
    return next(_outside_counter)


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


class EventStreamer:
    """The event bus: synchronous emission, isolated handlers, pattern subscriptions, history.

    * ``subscribe(pattern, handler)``: ``pattern`` is ``"*"`` (everything), a node id, a namespace
      or a namespace pattern (``sales.*``, ``*.chat``, ``sales.**``).
    * ``on(event_type, handler)``: by type (one or several), optionally with a pattern.
    * Handlers run synchronously in emission order. A handler returning an awaitable is
      scheduled (on the running loop, or on a background loop when there is none), never
      awaited by the emitter; ``drain()`` / ``wait_idle()`` wait for them.
    * A handler that raises is counted and logged once; the flow and the other handlers go on.
    * History: a ring buffer of ``history_size`` events (0 turns it off).
    """

    def __init__(self, *, history_size: int = 10_000) -> None:
        if type(history_size) is not int or history_size < 0:
            raise ValueError(f"history_size must be an int >= 0, got {history_size!r}")
        self.id = new_id()
        self.history_size = history_size
        # maxlen 0 (history off) drops what is appended: emitting appends unconditionally
        self._history: deque[BackpackEvent] = deque(maxlen=history_size)
        self._subs: list[Subscription] = []
        self._route: dict[
            tuple[str | None, str | None, str], tuple[tuple[Handler, Subscription], ...]
        ] = {}
        # every type counted from 0, so emitting adds with no lookup default (get_stats shows
        # the types seen)
        self._counts: dict[str, int] = dict.fromkeys(StreamEventType, 0)
        self._nodes: set[str] = set()
        self._handler_errors = 0
        self._pending: set[asyncio.Future[Any] | Future[Any]] = set()
        self._bg_loop: asyncio.AbstractEventLoop | None = None
        self._bg_lock = threading.Lock()
        self._seq = 0  # for events emitted outside a run
        #: Set when every subscriber takes every event: then no per-event routing is needed.
        self._broadcast: tuple[tuple[Handler, Subscription], ...] | None = None

    # -------------------------------------------------------------- subscribing

    def subscribe(
        self,
        pattern: str | Handler = "*",
        handler: Handler | None = None,
        *,
        types: Iterable[str] | str | None = None,
    ) -> Subscription:
        """Call ``handler(event)`` for every event matching ``pattern`` (and ``types``)."""
        if handler is None and callable(pattern):
            handler, pattern = pattern, "*"
        if not callable(handler):
            raise TypeError(f"handler must be callable, got {type(handler).__name__}")
        if not isinstance(pattern, str):
            raise TypeError(f"pattern must be a string, got {type(pattern).__name__}")
        if isinstance(types, str):
            types = (types,)
        type_set = None if types is None else frozenset(_check_type(t) for t in types)
        sub = Subscription(self, pattern, handler, type_set)
        self._subs.append(sub)
        self._rebuild_routes()
        return sub

    def on(
        self,
        event_type: str | Iterable[str],
        handler: Handler,
        *,
        pattern: str = "*",
    ) -> Subscription:
        """Subscribe ``handler`` to one event type (or several)."""
        types = (event_type,) if isinstance(event_type, str) else tuple(event_type)
        return self.subscribe(pattern, handler, types=types)

    def unsubscribe(self, subscription: Subscription) -> None:
        if subscription in self._subs:
            self._subs.remove(subscription)
            self._rebuild_routes()

    def _rebuild_routes(self) -> None:
        """Forget cached routes; when every subscriber takes everything, route by broadcast."""
        self._route.clear()
        if all(s.matcher is None and s.types is None for s in self._subs):  # none: ()
            self._broadcast = tuple((s.handler, s) for s in self._subs)
        else:
            self._broadcast = None

    @property
    def subscriber_count(self) -> int:
        return len(self._subs)

    # -------------------------------------------------------------- emitting

    def next_seq(self) -> int:
        """A sequence number for events emitted outside a run."""
        self._seq += 1
        return self._seq

    def emit(self, event: BackpackEvent) -> None:
        """Record ``event`` and hand it to every matching subscriber, synchronously.

        :meth:`Emitter.emit` is this method inlined after building the event: keep the two
        alike (tests/kernel/test_events.py checks they record and deliver the same)."""
        _, _, _, _, node_id, _, namespace, type_, _ = event
        counts = self._counts
        counts[type_] = counts.get(type_, 0) + 1
        if type_ is _NODE_START and node_id is not None:
            self._nodes.add(node_id)
        self._history.append(event)
        route = self._broadcast
        if route is None:
            route = self._route_of(node_id, namespace, type_)
        for handler, sub in route:
            try:
                result = handler(event)
            except Exception as exc:  # noqa: BLE001 - one subscriber never breaks the flow
                self._handler_failed(sub, exc)
                continue
            if result is not None:
                self._maybe_schedule(sub, result)

    def _route_of(
        self, node_id: str | None, namespace: str | None, type_: str
    ) -> tuple[tuple[Handler, Subscription], ...]:
        """The subscribers an event goes to, when not every subscriber takes everything."""
        key = (node_id, namespace, type_)
        route = self._route.get(key)
        if route is None:
            route = tuple(
                (s.handler, s) for s in self._subs if s.matches(node_id, namespace, type_)
            )
            if len(self._route) > 50_000:
                self._route.clear()
            self._route[key] = route
        return route

    def _maybe_schedule(self, sub: Subscription, result: Any) -> None:
        """A handler returned something: schedule it if it is awaitable."""
        if inspect.isawaitable(result):
            self._schedule(sub, result)

    def emit_event(
        self,
        type: StreamEventType | str,
        payload: Any = None,
        *,
        run_id: str | None = None,
        node_id: str | None = None,
        node_name: str | None = None,
        namespace: str | None = None,
        step: int | None = None,
    ) -> BackpackEvent:
        """Build and emit an event outside a flow run (inside one, use ``current_run().emit``)."""
        event = BackpackEvent(
            _next_outside_seq() if run_id is None else self.next_seq(),
            time.time(),
            run_id,
            step,
            node_id,
            node_name,
            namespace,
            StreamEventType(type),
            payload,
        )
        self.emit(event)
        return event

    def _handler_failed(self, sub: Subscription, exc: BaseException) -> None:
        self._handler_errors += 1
        sub.errors += 1
        if sub.errors == 1:
            log.error(
                "event handler %r (pattern %r) raised; it stays subscribed, later errors are "
                "counted in get_stats()['handler_errors']",
                sub.handler,
                sub.pattern,
                exc_info=exc,
            )

    def _schedule(self, sub: Subscription, awaitable: Awaitable[Any]) -> None:
        loop = None
        if not on_private_loop.get():
            try:
                loop = asyncio.get_running_loop()
            except RuntimeError:
                pass
        if loop is not None:
            future: asyncio.Future[Any] | Future[Any] = asyncio.ensure_future(awaitable)
        else:
            future = asyncio.run_coroutine_threadsafe(_as_coroutine(awaitable), self._loop())
        self._pending.add(future)

        def done(f: asyncio.Future[Any] | Future[Any]) -> None:
            self._pending.discard(f)
            if f.cancelled():
                return
            exc = f.exception()
            if exc is not None:
                self._handler_failed(sub, exc)

        future.add_done_callback(done)

    def _loop(self) -> asyncio.AbstractEventLoop:
        with self._bg_lock:
            if self._bg_loop is None or self._bg_loop.is_closed():
                loop = asyncio.new_event_loop()
                thread = threading.Thread(
                    target=loop.run_forever, name="backpackflow-events", daemon=True
                )
                thread.start()
                self._bg_loop = loop
            return self._bg_loop

    async def drain(self, timeout: float | None = None) -> None:
        """Wait until every scheduled async handler has finished."""
        deadline = None if timeout is None else asyncio.get_running_loop().time() + timeout
        while self._pending:
            pending = [
                asyncio.wrap_future(f) if isinstance(f, Future) else f for f in list(self._pending)
            ]
            remaining = None if deadline is None else deadline - asyncio.get_running_loop().time()
            if remaining is not None and remaining <= 0:
                return
            await asyncio.wait(pending, timeout=remaining)

    def wait_idle(self, timeout: float | None = 10.0) -> bool:
        """Block until async handlers scheduled outside a loop have finished; True when idle."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while self._pending:
            futures = [f for f in list(self._pending) if isinstance(f, Future)]
            if not futures:
                return False  # only loop-bound tasks remain: use drain() inside that loop
            remaining = None if deadline is None else deadline - time.monotonic()
            if remaining is not None and remaining <= 0:
                return False
            concurrent.futures.wait(futures, timeout=remaining)
        return True

    def close(self) -> None:
        """Stop the background loop used for async handlers outside an event loop."""
        with self._bg_lock:
            if self._bg_loop is not None and not self._bg_loop.is_closed():
                self._bg_loop.call_soon_threadsafe(self._bg_loop.stop)
            self._bg_loop = None

    # -------------------------------------------------------------- history and stats

    def get_events(
        self,
        *,
        run_id: str | None = None,
        node_id: str | None = None,
        namespace: str | None = None,
        type: StreamEventType | str | Iterable[str] | None = None,
        limit: int | None = None,
    ) -> list[BackpackEvent]:
        """Events in the history matching every given filter, oldest first. ``namespace`` may
        be a pattern; ``limit`` keeps the newest."""
        match = compile_pattern(namespace) if namespace is not None else None
        if type is None:
            types = None
        elif isinstance(type, str):
            types = {_check_type(type)}
        else:
            types = {_check_type(t) for t in type}
        events = [
            e
            for e in self._history
            if (run_id is None or e.run_id == run_id)
            and (node_id is None or e.node_id == node_id)
            and (types is None or e.type in types)
            and (match is None or (e.namespace is not None and match(e.namespace)))
        ]
        if limit is not None:
            events = events[-limit:] if limit > 0 else []
        return events

    def get_node_events(self, node_id: str) -> list[BackpackEvent]:
        return self.get_events(node_id=node_id)

    def get_namespace_events(self, pattern: str) -> list[BackpackEvent]:
        return self.get_events(namespace=pattern)

    def get_stats(self) -> dict[str, Any]:
        return {
            "total_events": sum(self._counts.values()),
            "by_type": {t: n for t, n in self._counts.items() if n},
            "unique_nodes": len(self._nodes),
            "subscribers": len(self._subs),
            "handler_errors": self._handler_errors,
            "pending_async_handlers": len(self._pending),
            "history_size": self.history_size,
            "in_history": len(self._history),
        }

    def clear_history(self) -> None:
        self._history.clear()

    def to_json(self, **filters: Any) -> list[dict[str, Any]]:
        """The history (filtered like :meth:`get_events`) as JSON data."""
        return [e.to_json() for e in self.get_events(**filters)]

    def to_json_str(self, **filters: Any) -> str:
        return json.dumps(self.to_json(**filters), ensure_ascii=False, default=repr)


class Emitter:
    """Emits events of one origin (run, step, node, namespace) into an :class:`EventStreamer`.

    :meth:`emit` builds the event and dispatches it in one call: every lifecycle and Backpack
    event of a node goes through here, so this is the runner's hot path, and it inlines
    :meth:`EventStreamer.emit` rather than calling it. ``home`` binds the emitter to one thread:
    an event emitted from another thread is handed to ``away(emitter, type, payload, timestamp)``
    instead (a run hands such events to its event-loop thread).
    """

    __slots__ = (
        "_away",
        "_counter",
        "_home",
        "_stream",
        "namespace",
        "node_id",
        "node_name",
        "run_id",
        "step",
    )

    def __init__(
        self,
        stream: EventStreamer,
        counter: Iterator[int],
        run_id: str | None,
        step: int | None,
        node_id: str | None,
        node_name: str | None,
        namespace: str | None,
        home: int | None = None,
        away: Callable[[Emitter, StreamEventType, Any, float], None] | None = None,
    ) -> None:
        self._stream = stream
        self._counter = counter
        self.run_id = run_id
        self.step = step
        self.node_id = node_id
        self.node_name = node_name
        self.namespace = namespace
        self._home = home
        self._away = away

    def emit(self, type: StreamEventType, payload: Any, timestamp: float | None = None) -> float:
        """Emit an event of this origin (see the class docstring for other threads), stamped
        with ``timestamp`` (default: now). Returns the time stamped, so that callers measure
        durations on the events' own clock."""
        if timestamp is None:
            timestamp = _now()
        home = self._home
        if home is not None and _thread_id() != home:
            self._away(self, type, payload, timestamp)  # type: ignore[misc]
            return timestamp
        stream = self._stream
        node_id = self.node_id
        event = _make(
            BackpackEvent,
            (
                next(self._counter),
                timestamp,
                self.run_id,
                self.step,
                node_id,
                self.node_name,
                self.namespace,
                type,
                payload,
            ),
        )
        # EventStreamer.emit from here on
        counts = stream._counts
        try:
            counts[type] += 1
        except KeyError:  # a type string that is no StreamEventType: counted all the same
            counts[type] = 1
        if type is _NODE_START and node_id is not None:
            stream._nodes.add(node_id)
        stream._history.append(event)
        route = stream._broadcast
        if route is None:
            route = stream._route_of(node_id, self.namespace, type)
        for handler, sub in route:
            try:
                result = handler(event)
            except Exception as exc:  # noqa: BLE001 - one subscriber never breaks the flow
                stream._handler_failed(sub, exc)
                continue
            if result is not None:
                stream._maybe_schedule(sub, result)
        return timestamp

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(node_id={self.node_id!r}, step={self.step}, "
            f"run_id={self.run_id!r})"
        )


_make = tuple.__new__  # BackpackEvent(...) without its Python-level __new__: the hot path
_thread_id = threading.get_ident
_now = time.time


def _check_type(value: str) -> str:
    try:
        return StreamEventType(value)
    except ValueError:
        known = ", ".join(t.value for t in StreamEventType)
        raise ValueError(f"unknown event type {value!r}; known types: {known}") from None


async def _as_coroutine(awaitable: Awaitable[Any]) -> Any:
    return await awaitable
