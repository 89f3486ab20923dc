"""The event bus: :class:`EventStreamer` and its hot-path twin :class:`Emitter`.

:meth:`Emitter.emit` copies the dispatch part of :meth:`EventStreamer.emit` (one call per event
instead of two on the runner's hot path); the two live here side by side, and
tests/kernel/test_events.py checks they record and deliver the same.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import inspect
import itertools
import logging
import threading
import time
from collections import OrderedDict, deque
from collections.abc import Awaitable, Callable, Iterable, Iterator
from concurrent.futures import Future
from typing import Any

from backpackflow.errors import InvalidSetting
from backpackflow.events._queries import _check_type, _HistoryQueries
from backpackflow.events._retention import DEFAULT_HISTORY_BYTES, TICKS, ByteBudget
from backpackflow.events.types import (
    BackpackEvent,
    Handler,
    StreamEventType,
    Subscription,
    on_private_loop,
)
from backpackflow.ids import new_id

log = logging.getLogger("backpackflow.events")

_NODE_START = StreamEventType.NODE_START
_RUN_START = StreamEventType.RUN_START
#: Run ids a streamer remembers to count a run started again (resumed) once: ``get_stats()``'s
#: ``runs`` counts such a run again only when more runs than this started in between.
RECENT_RUNS = 10_000
_outside_counter = itertools.count(1)


def _next_outside_seq() -> int:
    """Sequence numbers of events emitted outside runs: process-wide, so their ids never
    collide whichever streamer they went through."""
    return next(_outside_counter)


class EventStreamer(_HistoryQueries):
    """The event bus: synchronous emission, isolated handlers, pattern subscriptions, history.

    * ``subscribe(pattern, handler)``: ``pattern`` is ``"*"`` (everything), a node id, a namespace
      or a namespace pattern (``sales.*``, ``*.chat``, ``sales.**``).
    * ``on(event_type, handler)``: by type (one or several), optionally with a pattern.
    * Handlers run synchronously in emission order. A handler returning an awaitable is
      scheduled (on the running loop, or on a background loop when there is none), never
      awaited by the emitter; ``drain()`` / ``wait_idle()`` wait for them.
    * A handler that raises is counted and logged once; the flow and the other handlers go on.
    * History: a ring buffer of at most ``history_size`` events (0 turns it off) keeping an
      estimated ``history_bytes`` at most (default 32 MiB; ``None``: no byte bound): a fixed
      figure per event plus the Backpacks their ``node_start`` states keep alive, estimated
      every 64 nodes, the oldest events dropped to fit (see
      :mod:`backpackflow.events._retention`).
    """

    def __init__(
        self, *, history_size: int = 10_000, history_bytes: int | None = DEFAULT_HISTORY_BYTES
    ) -> None:
        if type(history_size) is not int or history_size < 0:
            raise InvalidSetting(
                f"EventStreamer(history_size=...) must be an int >= 0, got {history_size!r}"
            )
        if history_bytes is not None and (type(history_bytes) is not int or history_bytes < 0):
            raise InvalidSetting(
                "EventStreamer(history_bytes=...) must be an int >= 0 or None, got "
                f"{history_bytes!r}"
            )
        self.id = new_id()
        self.history_size = history_size
        self.history_bytes = history_bytes
        # maxlen 0 (history off) drops what is appended: emitting appends unconditionally
        self._history: deque[BackpackEvent] = deque(maxlen=history_size)
        self._budget = (
            None if history_bytes is None or history_size == 0 else ByteBudget(history_bytes)
        )
        self._subs: list[Subscription] = []
        self._route: dict[
            tuple[str | None, str | None, str], tuple[tuple[Handler, Subscription], ...]
        ] = {}
        # every type counted from 0, so emitting adds with no lookup default (get_stats shows
        # the types seen)
        self._counts: dict[str, int] = dict.fromkeys(StreamEventType, 0)
        self._nodes: set[str] = set()  # ids of nodes that started (node_start events)
        self._namespaces: set[str] = set()  # namespaces of the nodes and runs that started
        self._runs = 0  # runs that started (run_start events; a run started again once)
        # the ids of the latest runs that started, so a run started again (resumed) is not
        # counted twice: the latest RECENT_RUNS only, or a long-lived streamer (the service's
        # one for every run) would keep every run id it ever saw
        self._recent_runs: OrderedDict[str, None] = OrderedDict()
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

    def _run_started(self, run_id: str) -> None:
        """Count a run_start of ``run_id`` unless it is one of the latest runs (started again)."""
        recent = self._recent_runs
        if run_id in recent:
            return
        recent[run_id] = None
        self._runs += 1
        if len(recent) > RECENT_RUNS:
            recent.popitem(last=False)

    def emit(self, event: BackpackEvent) -> None:
        """Record ``event`` and hand it to every matching subscriber, synchronously.

        :meth:`Emitter.emit` is this method inlined after building the event: keep the two
        alike (tests/kernel/test_events.py checks they record and deliver the same)."""
        _, _, run_id, _, node_id, _, namespace, type_, _, _ = event
        counts = self._counts
        counts[type_] = counts.get(type_, 0) + 1
        if type_ is _NODE_START:
            if node_id is not None:
                self._nodes.add(node_id)
            if namespace is not None:
                self._namespaces.add(namespace)
        elif type_ is _RUN_START:
            if run_id is not None:
                self._run_started(run_id)
            if namespace is not None:
                self._namespaces.add(namespace)
        self._history.append(event)
        budget = self._budget
        if budget is not None:
            if type_ is _NODE_START:
                budget.starts.append(event)
            budget.ticks += 1
            if budget.ticks >= TICKS or len(budget.starts) >= TICKS:
                budget.account(self._history)
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
        parent_step: int | None = None,
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
            parent_step,
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
        "parent_step",
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
        parent_step: int | None = None,
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
        self.parent_step = parent_step

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
                self.parent_step,
            ),
        )
        # EventStreamer.emit from here on
        counts = stream._counts
        try:
            counts[type] += 1
        except KeyError:  # a type string that is no StreamEventType: counted all the same
            counts[type] = 1
        if type is _NODE_START:
            if node_id is not None:
                stream._nodes.add(node_id)
            if self.namespace is not None:
                stream._namespaces.add(self.namespace)
            budget = stream._budget  # noted per node here, not per event (the hot path)
            if budget is not None:
                starts = budget.starts
                starts.append(event)
                if len(starts) >= TICKS:
                    budget.account(stream._history)
        elif type is _RUN_START:
            if self.run_id is not None:
                stream._run_started(self.run_id)
            if self.namespace is not None:
                stream._namespaces.add(self.namespace)
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


async def _as_coroutine(awaitable: Awaitable[Any]) -> Any:
    return await awaitable
