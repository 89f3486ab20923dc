"""A background writer that batches trace events so a run never waits on the database.

The runner calls :meth:`EventWriter.put` for every event (constant time, never blocks); one
thread drains the queue, groups what arrived within ``max_delay`` (at most ``max_batch``
events) by run and stores each group with one :meth:`SqlRunStore.append_events` transaction.
Nothing is dropped silently: transient database errors are retried with exponential backoff,
a batch refused for its content is retried event by event so only the bad event is lost, and
whatever finally could not be stored is counted, logged and handed to ``on_failure``.
"""

from __future__ import annotations

import atexit
import logging
import queue
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Protocol, Self

from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeout

from .errors import DatabaseUnavailable, WriterClosed
from .store import EventDocument, event_field

log = logging.getLogger("backpackflow_store_sql.writer")

Event = EventDocument
FailureHandler = Callable[[str, Sequence[Event], BaseException], None]


class EventSink(Protocol):
    """What the writer stores into: :class:`~backpackflow_store_sql.SqlRunStore` fits."""

    def append_events(self, run_id: str, events: Sequence[Event]) -> None: ...


@dataclass(frozen=True)
class WriterStats:
    """Counters of an :class:`EventWriter` (events unless said otherwise).

    ``queued``: accepted by ``put`` so far; ``written``: stored; ``failed``: given up on;
    ``pending``: accepted but neither stored nor given up yet; ``batches``: transactions
    committed; ``retries``: attempts repeated after a transient error.
    """

    queued: int
    written: int
    batches: int
    retries: int
    failed: int
    pending: int


class _Marker:
    def __init__(self, name: str) -> None:
        self.name = name


_FLUSH = _Marker("flush")  # write what has been collected now, without waiting for max_delay
_STOP = _Marker("stop")


def is_transient(error: BaseException) -> bool:
    """Whether retrying the same transaction may succeed (lost connection, lock, timeout)."""
    if isinstance(error, DBAPIError) and error.connection_invalidated:
        return True
    return isinstance(
        error,
        OperationalError | InterfaceError | PoolTimeout | DatabaseUnavailable | ConnectionError,
    )


class EventWriter:
    """Queue trace events and store them in batches from a background thread.

    ``max_retries`` transient failures in a row (waiting ``backoff`` seconds, doubling up to
    ``max_backoff``) make the writer give up on a batch. Events handed to :meth:`put` must not
    be mutated afterwards: they are stored later, from another thread. Objects with a
    ``to_json()`` (the kernel's immutable ``BackpackEvent``) are serialized in the writer
    thread, so the run does not pay for it.
    """

    def __init__(
        self,
        store: EventSink,
        *,
        max_batch: int = 200,
        max_delay: float = 0.05,
        max_retries: int = 8,
        backoff: float = 0.05,
        max_backoff: float = 5.0,
        on_failure: FailureHandler | None = None,
        name: str = "backpackflow-event-writer",
    ) -> None:
        if max_batch < 1 or max_delay < 0 or max_retries < 0 or backoff < 0:
            raise ValueError("max_batch must be >= 1; max_delay, max_retries, backoff >= 0")
        self._store = store
        self._max_batch = max_batch
        self._max_delay = max_delay
        self._max_retries = max_retries
        self._backoff = backoff
        self._max_backoff = max_backoff
        self._on_failure = on_failure
        self._queue: queue.SimpleQueue[tuple[str, Event] | _Marker] = queue.SimpleQueue()
        self._lock = threading.Condition()
        self._closed = False
        self._queued = self._done = self._written = 0
        self._batches = self._retries = self._failed = 0
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()
        # The thread is a daemon so a forgotten close() cannot hang the interpreter; this hook
        # still stores what is queued when the interpreter exits normally.
        atexit.register(self.close)

    # ----------------------------------------------------------------------- caller side

    def put(self, run_id: str, event: Event) -> None:
        """Queue one event of ``run_id`` for storage; returns at once."""
        with self._lock:
            if self._closed:
                raise WriterClosed(
                    f"event writer closed; event {event_field(event, 'id')!r} not queued"
                )
            self._queued += 1
            self._queue.put((run_id, event))

    def flush(self, timeout: float | None = None) -> bool:
        """Wait until every event queued so far is stored (or given up on).

        Returns ``False`` if ``timeout`` seconds passed first.
        """
        with self._lock:
            target = self._queued
            if self._done >= target:
                return True
            self._queue.put(_FLUSH)
            return self._lock.wait_for(lambda: self._done >= target, timeout)

    def close(self, timeout: float | None = None) -> bool:
        """Store everything queued, then stop the thread; ``False`` if ``timeout`` ran out."""
        with self._lock:
            if not self._closed:
                self._closed = True
                self._queue.put(_STOP)
        atexit.unregister(self.close)
        if threading.current_thread() is not self._thread:
            self._thread.join(timeout)
        return not self._thread.is_alive()

    @property
    def stats(self) -> WriterStats:
        """A consistent snapshot of the counters."""
        with self._lock:
            return WriterStats(
                queued=self._queued,
                written=self._written,
                batches=self._batches,
                retries=self._retries,
                failed=self._failed,
                pending=self._queued - self._done,
            )

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # ----------------------------------------------------------------------- writer thread

    def _run(self) -> None:
        stopping = False
        while not stopping:
            first = self._queue.get()
            if first is _STOP:
                break
            batch = [] if isinstance(first, _Marker) else [first]
            deadline = time.monotonic() + self._max_delay
            while batch and len(batch) < self._max_batch:
                try:
                    item = self._queue.get(timeout=max(deadline - time.monotonic(), 0.0))
                except queue.Empty:
                    break
                if isinstance(item, _Marker):
                    stopping = item is _STOP
                    break
                batch.append(item)
            if batch:
                self._write(batch)

    def _write(self, batch: list[tuple[str, Event]]) -> None:
        groups: dict[str, list[Event]] = {}
        for run_id, event in batch:
            groups.setdefault(run_id, []).append(event)
        for run_id, events in groups.items():
            error = self._append(run_id, events)
            if error is not None and len(events) > 1 and not is_transient(error):
                log.warning(
                    "run %s: a batch of %d events was refused (%s); storing them one by one",
                    run_id,
                    len(events),
                    error,
                )
                for event in events:
                    single = self._append(run_id, [event])
                    if single is not None:
                        self._give_up(run_id, [event], single)
            elif error is not None:
                self._give_up(run_id, events, error)
            with self._lock:
                self._done += len(events)
                self._lock.notify_all()

    def _append(self, run_id: str, events: list[Event]) -> BaseException | None:
        """Store one group, retrying transient errors; the final error, or ``None``."""
        attempt = 0
        while True:
            try:
                self._store.append_events(run_id, events)
            except Exception as exc:  # noqa: BLE001 - the writer thread must outlive any error
                if not is_transient(exc) or attempt >= self._max_retries:
                    return exc
                delay = min(self._backoff * 2**attempt, self._max_backoff)
                attempt += 1
                with self._lock:
                    self._retries += 1
                log.warning(
                    "run %s: storing %d events failed (%s); retry %d/%d in %.2fs",
                    run_id,
                    len(events),
                    exc,
                    attempt,
                    self._max_retries,
                    delay,
                )
                time.sleep(delay)
            else:
                with self._lock:
                    self._written += len(events)
                    self._batches += 1
                return None

    def _give_up(self, run_id: str, events: list[Event], error: BaseException) -> None:
        with self._lock:
            self._failed += len(events)
        seqs = [event_field(e, "seq") for e in events]
        log.error(
            "run %s: could not store %d trace events (seq %s): %s",
            run_id,
            len(events),
            seqs if len(seqs) <= 10 else f"{seqs[0]}..{seqs[-1]}",
            error,
            exc_info=error,
        )
        if self._on_failure is not None:
            try:
                self._on_failure(run_id, events, error)
            except Exception:
                log.exception("the EventWriter on_failure handler raised")
