"""A background writer that batches trace events so a run never waits on the database.

The runner calls :meth:`EventWriter.put` for every event (constant time, never blocks); one
thread drains the queue, groups what arrived within ``max_delay`` (at most ``max_batch``
events) and stores it with one transaction (:meth:`SqlRunStore.append_many` when the store
has it: every run of the batch at once; else one :meth:`append_events` per run).

Checkpoint records of durable runs travel the same way (:meth:`EventWriter.put_checkpoint`):
queued in order with the run's events, stored in the transaction of the batch they fall in
(``append_many(..., checkpoints=...)``). A crash therefore leaves a prefix of both, consistent
with each other: a checkpoint position is stored only with every event emitted before it.

A database outage delays events, it does not lose them. Transient errors (lost connection,
lock, timeout) are retried with exponential backoff (tenacity) until the database answers;
meanwhile the writer keeps taking events off the queue into a backlog bounded in bytes
(``max_buffer_bytes``), then into a local spill file (``spill_path``, bounded by
``max_spill_bytes``), stored in order once the database is back. Only past both bounds is an
event dropped: counted, logged and handed to ``on_failure``. A batch refused for its content is
retried event by event so only the bad event is lost (counted, logged, reported alike). At
:meth:`close` with the database still down, what is left goes to the spill file, which the
next writer on the same file stores first. A writer holds its spill file's lock (``filelock``,
beside it) from start to close, so two writers, in one process or two sharing a folder, never
write or drain one file at once: the second gets :class:`SpillFileBusy`.
"""

from __future__ import annotations

import atexit
import functools
import json
import logging
import os
import queue
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol, Self

from filelock import FileLock
from filelock import Timeout as LockTimeout
from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeout
from tenacity import (
    RetryCallState,
    Retrying,
    retry_if_exception,
    stop_after_attempt,
    wait_exponential,
)

from .errors import DatabaseUnavailable, LeaseLost, SpillFileBusy, WriterClosed
from .store import EventDocument, event_field

log = logging.getLogger("backpackflow_store_sql.writer")

Event = EventDocument

#: Default bound of the events held in memory while the database is down.
DEFAULT_BUFFER_BYTES = 64 * 1024 * 1024
#: Default bound of the spill file.
DEFAULT_SPILL_BYTES = 1024 * 1024 * 1024
#: Seconds the interpreter's exit waits for a writer that was not closed.
_EXIT_TIMEOUT = 10.0


class EventSink(Protocol):
    """What the writer stores into: :class:`~backpackflow_store_sql.SqlRunStore` fits."""

    def append_events(
        self, run_id: str, events: Sequence[Event], *, checkpoint: Sequence[bytes] = ()
    ) -> None: ...


@dataclass(frozen=True)
class WriterStats:
    """Counters of an :class:`EventWriter` (events unless said otherwise).

    ``queued``: accepted by ``put`` so far; ``written``: stored; ``failed``: given up on
    (refused for their content, or dropped); ``dropped``: the part of ``failed`` dropped past
    the byte bounds during an outage; ``pending``: accepted but neither stored nor given up
    yet; ``batches``: transactions committed; ``retries``: attempts repeated after a transient
    error; ``backlog_bytes`` / ``spilled_bytes``: what waits for the database in memory and in
    the spill file; ``outage``: the database failed the last attempt.
    """

    queued: int
    written: int
    batches: int
    retries: int
    failed: int
    pending: int
    dropped: int = 0
    backlog_bytes: int = 0
    spilled_bytes: int = 0
    outage: bool = False


class CheckpointLines:
    """Checkpoint records of one run (encoded JSON, one document each) queued with its events.

    Stored after the events queued before them, in the same transaction as the events of their
    batch; counted as one item in the writer's stats; spilled during an outage like events."""

    __slots__ = ("lines",)

    def __init__(self, lines: Sequence[bytes]) -> None:
        self.lines = list(lines)

    @property
    def size(self) -> int:
        return sum(len(line) for line in self.lines)


#: What the writer queues: a trace event, or a run's checkpoint records.
Queued = Event | CheckpointLines
Item = tuple[str, Queued]
FailureHandler = Callable[[str, Sequence[Queued], BaseException], None]
#: Called with (run id, seq) when an event goes to the spill file during an outage.
SpillHandler = Callable[[str, int], None]


def _split(items: Sequence[Queued]) -> tuple[list[Event], list[bytes]]:
    """A run's batch as (its events, its checkpoint records), each in queue order."""
    events: list[Event] = []
    lines: list[bytes] = []
    for item in items:
        if isinstance(item, CheckpointLines):
            lines.extend(item.lines)
        else:
            events.append(item)
    return events, lines


def event_seqs(items: Iterable[Queued]) -> list[int]:
    """The seqs of the events among ``items`` (what a run's stream buffer tracks)."""
    return [event_field(e, "seq") for e in items if not isinstance(e, CheckpointLines)]


class _Marker:
    def __init__(self, name: str) -> None:
        self.name = name


_FLUSH = _Marker("flush")  # write what has been collected now, without waiting for max_delay
_STOP = _Marker("stop")


class _Abandoned(Exception):
    """The writer was closed while the database was down: what is left is spilled."""


def is_transient(error: BaseException) -> bool:
    """Whether retrying the same transaction may succeed (lost connection, lock, timeout)."""
    if isinstance(error, DBAPIError) and error.connection_invalidated:
        return True
    return isinstance(
        error,
        OperationalError | InterfaceError | PoolTimeout | DatabaseUnavailable | ConnectionError,
    )


def _document(event: Event) -> Mapping[str, Any]:
    if isinstance(event, Mapping):
        return event
    return event.to_json()


def _size(event: Queued) -> int:
    """About how many bytes the event holds (its JSON text; a slot's is built once anyway)."""
    if isinstance(event, CheckpointLines):
        return event.size
    text = getattr(event, "text", None)
    if callable(text):
        return len(text())
    return len(json.dumps(_document(event), ensure_ascii=False, default=repr))


class _SpillFile:
    """Events written to a local JSON Lines file while the database is down, read back in order.

    Only the writer thread touches it. Lines are ``{"run_id": ..., "event": {...}}``; the file
    is emptied once everything in it is stored. Its lock (``<path>.lock``) is held from here to
    :meth:`close`: a lock a process held dies with it, so a crashed writer's file is free to the
    next one, while a live writer's is never shared.
    """

    def __init__(self, path: Path, limit: int) -> None:
        self.path = path
        self.limit = limit
        self.size = self.count = self._read_at = 0
        self._file: Any = None
        path.parent.mkdir(parents=True, exist_ok=True)
        # not thread-local: taken here, released by the writer thread when it stops
        self._lock = FileLock(f"{path}.lock", timeout=0, thread_local=False)
        try:
            self._lock.acquire()
        except LockTimeout:
            raise SpillFileBusy(
                f"spill file {path} is in use by another event writer (its lock {path}.lock "
                "is held); give each writer a spill file of its own"
            ) from None
        if path.exists():  # left by a writer that was closed during an outage
            self._open()
            self.size = path.stat().st_size
            self.count = self._count_lines() if self.size else 0

    def _open(self) -> None:
        """Made when first needed: no file at all unless the database was down."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._file = open(self.path, "a+b")  # noqa: SIM115 - held open by the writer thread
        self._file.seek(0, os.SEEK_END)

    def _count_lines(self) -> int:
        self._file.seek(0)
        count = sum(1 for line in self._file if line.strip())
        self._file.seek(0, os.SEEK_END)
        return count

    @property
    def unread(self) -> int:
        return self.count

    def add(self, items: Iterable[Item]) -> tuple[int, list[Item]]:
        """Append what fits under the bound; returns (bytes written, items that did not fit)."""
        written, rejected = 0, []
        if self._file is None:
            self._open()
        self._file.seek(0, os.SEEK_END)
        for run_id, event in items:
            record: dict[str, Any] = {"run_id": run_id}
            if isinstance(event, CheckpointLines):
                record["checkpoint"] = [line.decode() for line in event.lines]
            else:
                record["event"] = _document(event)
            line = json.dumps(record, ensure_ascii=False, default=repr).encode(
                "utf-8", "surrogatepass"
            )
            if self.size + len(line) + 1 > self.limit:
                rejected.append((run_id, event))
                continue
            self._file.write(line + b"\n")
            self.size += len(line) + 1
            written += len(line) + 1
            self.count += 1
        self._file.flush()
        return written, rejected

    def take(self, limit: int) -> list[Item]:
        """Up to ``limit`` events, oldest first; the file empties once all are read."""
        self._file.seek(self._read_at)
        items: list[Item] = []
        while len(items) < limit:
            line = self._file.readline()
            if not line:
                break
            self._read_at = self._file.tell()
            if not line.strip():
                continue
            try:
                record = json.loads(line.decode("utf-8", "surrogatepass"))
                if "checkpoint" in record:
                    lines = [str(text).encode() for text in record["checkpoint"]]
                    items.append((str(record["run_id"]), CheckpointLines(lines)))
                else:
                    items.append((str(record["run_id"]), record["event"]))
            except (ValueError, KeyError, TypeError) as exc:  # a torn last line of a crash
                log.error("spill file %s: unreadable line skipped (%s)", self.path, exc)
            self.count -= 1
        if self._read_at >= self.size:
            self._file.truncate(0)
            self.size = self._read_at = self.count = 0
        self._file.seek(0, os.SEEK_END)
        return items

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
        self._lock.release()


class EventWriter:
    """Queue trace events and store them in batches from a background thread.

    ``max_retries``: transient failures in a row after which a batch is given up on; ``None``
    (the default) retries until the database answers, waiting ``backoff`` seconds, doubling
    up to ``max_backoff``. ``max_buffer_bytes``: what may wait in memory during an outage;
    beyond it events go to ``spill_path`` (up to ``max_spill_bytes``), and without a spill file
    or past its bound they are dropped, counted and logged. ``on_spilled(run_id, seq)`` hears
    of each event written to the spill file, so a caller that keeps events in memory until
    they are stored (the service, for its streams) can let them go too. Events handed to
    :meth:`put` must not be mutated afterwards: they are stored later, from another thread.
    Objects with a
    ``to_json()`` (the kernel's immutable ``BackpackEvent``) are serialized in the writer
    thread, so the run does not pay for it.
    """

    def __init__(
        self,
        store: EventSink,
        *,
        max_batch: int = 200,
        max_delay: float = 0.05,
        max_retries: int | None = None,
        backoff: float = 0.05,
        max_backoff: float = 5.0,
        max_buffer_bytes: int = DEFAULT_BUFFER_BYTES,
        spill_path: str | Path | None = None,
        max_spill_bytes: int = DEFAULT_SPILL_BYTES,
        on_failure: FailureHandler | None = None,
        on_spilled: SpillHandler | None = None,
        name: str = "backpackflow-event-writer",
    ) -> None:
        if max_batch < 1 or max_delay < 0 or backoff < 0 or max_buffer_bytes < 0:
            raise ValueError("max_batch must be >= 1; max_delay, backoff, max_buffer_bytes >= 0")
        if max_retries is not None and max_retries < 0:
            raise ValueError("max_retries must be >= 0 (or None: retry until the database answers)")
        self._store = store
        self._append_many: Callable[..., None] | None = getattr(store, "append_many", None)
        self._max_batch = max_batch
        self._max_delay = max_delay
        self._max_buffer = max_buffer_bytes
        self._on_failure = on_failure
        self._on_spilled = on_spilled
        self._queue: queue.SimpleQueue[Item | _Marker] = queue.SimpleQueue()
        self._lock = threading.Condition()
        #: Set to end the wait for a batch to fill (a full batch, a flush, a close).
        self._hurry = threading.Event()
        self._closed = False
        self._abandon_at: float | None = None  # close(timeout) with the database down
        self._queued = self._done = self._written = 0
        self._batches = self._retries = self._failed = self._dropped = 0
        self._backlog: deque[tuple[str, Queued, int]] = deque()  # taken off the queue, unstored
        self._backlog_bytes = 0
        self._outage = False
        self._stopping = False
        self._spill = None if spill_path is None else _SpillFile(Path(spill_path), max_spill_bytes)
        if self._spill is not None and self._spill.unread:
            log.warning(
                "spill file %s holds %d events a previous writer could not store; storing them",
                self._spill.path,
                self._spill.unread,
            )
            self._queued += self._spill.unread
        self._retrying = Retrying(
            retry=retry_if_exception(is_transient),
            wait=wait_exponential(multiplier=backoff, max=max_backoff) if backoff else _no_wait,
            stop=self._stop_condition(max_retries),
            sleep=self._wait_for_database,
            before_sleep=self._note_retry,
            reraise=True,
        )
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()
        # The thread is a daemon so a forgotten close() cannot hang the interpreter; this hook
        # still stores what is queued when the interpreter exits normally (or spills it, if
        # the database is down).
        atexit.register(self.close, _EXIT_TIMEOUT)

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
            if self._queue.qsize() >= self._max_batch:
                self._hurry.set()

    def put_checkpoint(self, run_id: str, lines: Sequence[bytes]) -> None:
        """Queue checkpoint records of ``run_id`` (encoded) after its events queued so far."""
        with self._lock:
            if self._closed:
                raise WriterClosed(f"event writer closed; checkpoint of run {run_id!r} not queued")
            self._queued += 1
            self._queue.put((run_id, CheckpointLines(lines)))

    def flush(self, timeout: float | None = None) -> bool:
        """Wait until every event queued so far is stored (or given up on).

        Returns ``False`` if ``timeout`` seconds passed first.
        """
        with self._lock:
            target = self._queued
            if self._done >= target:
                return True
            self._queue.put(_FLUSH)
            self._hurry.set()
            return self._lock.wait_for(lambda: self._done >= target, timeout)

    def close(self, timeout: float | None = None) -> bool:
        """Store everything queued, then stop the thread; ``False`` if ``timeout`` ran out.

        If the database is still down when ``timeout`` runs out, the events left go to the
        spill file (the next writer on it stores them) or, without one, are given up on.
        """
        with self._lock:
            if not self._closed:
                self._closed = True
                self._queue.put(_STOP)
                self._hurry.set()
            if timeout is not None:
                self._abandon_at = time.monotonic() + timeout
        atexit.unregister(self.close)
        if threading.current_thread() is not self._thread:
            self._thread.join(timeout)
            if self._thread.is_alive() and timeout is not None:
                self._thread.join(min(timeout, 5.0))  # the time to spill what is left
        return not self._thread.is_alive()

    @property
    def spill_path(self) -> Path | None:
        """The spill file this writer holds (``None``: it has none)."""
        return None if self._spill is None else self._spill.path

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
                dropped=self._dropped,
                backlog_bytes=self._backlog_bytes,
                spilled_bytes=0 if self._spill is None else self._spill.size,
                outage=self._outage,
            )

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # ----------------------------------------------------------------------- writer thread

    def _run(self) -> None:
        try:
            while True:
                batch = self._next_batch()
                if batch is None:
                    break
                try:
                    self._write(batch)
                except _Abandoned:
                    self._abandon(batch)
                    break
        finally:
            if self._spill is not None:
                self._spill.close()

    def _next_batch(self) -> list[Item] | None:
        """What to store next: the backlog of an outage first, then the spill file, then the
        queue (waiting up to ``max_delay`` to fill a batch); ``None``: stopped, all done."""
        if self._backlog:
            batch: list[Item] = []
            while self._backlog and len(batch) < self._max_batch:
                run_id, event, size = self._backlog.popleft()
                self._backlog_bytes -= size
                batch.append((run_id, event))
            return batch
        if self._spill is not None and self._spill.unread:
            return self._spill.take(self._max_batch)
        while not self._stopping:
            first = self._queue.get()
            if first is _STOP:
                self._stopping = True
                break
            batch = [] if isinstance(first, _Marker) else [first]
            if batch:
                self._fill(batch)
                return batch
        # stopping: whatever is still queued (put() refuses new events by now)
        rest = self._drain_queue()
        for run_id, event in rest[self._max_batch :]:  # waits in the backlog, unsized
            self._backlog.append((run_id, event, 0))
        return rest[: self._max_batch] if rest else None

    def _fill(self, batch: list[Item]) -> None:
        """Add to ``batch`` what the queue brings within ``max_delay``, up to ``max_batch``.

        One wait, then one drain: taking each event as it arrives would wake this thread once
        per event, and each wake-up takes the GIL from the event loop that emits them.
        ``put`` (once a batch is waiting), ``flush`` and ``close`` end the wait early; the
        drain goes past flush markers, so runs ending together share one transaction."""
        if self._queue.qsize() + len(batch) < self._max_batch:
            self._hurry.wait(self._max_delay)
        # a flush or close that set it before this line has its marker on the queue already
        self._hurry.clear()
        while len(batch) < self._max_batch:
            try:
                item = self._queue.get_nowait()
            except queue.Empty:
                return
            if item is _STOP:
                self._stopping = True
                return
            if isinstance(item, _Marker):  # a flush: what was queued before it is in the
                continue  # batch; what came after joins it (one transaction for many runs)
            batch.append(item)
        if not self._queue.empty():  # full, and more waits (a flush among it, maybe): the
            self._hurry.set()  # next batch goes at once

    def _drain_queue(self) -> list[Item]:
        """Everything on the queue now (after the stop marker), in order."""
        items: list[Item] = []
        while True:
            try:
                item = self._queue.get_nowait()
            except queue.Empty:
                break
            if not isinstance(item, _Marker):
                items.append(item)
        return items

    def _write(self, batch: list[Item]) -> None:
        groups: dict[str, list[Queued]] = {}
        for run_id, event in batch:
            groups.setdefault(run_id, []).append(event)
        append_many = self._append_many
        if append_many is not None and len(groups) > 1:
            events: dict[str, list[Event]] = {}
            checkpoints: dict[str, list[bytes]] = {}
            for run_id, items in groups.items():
                events[run_id], lines = _split(items)
                if lines:
                    checkpoints[run_id] = lines
            if checkpoints:
                call = functools.partial(append_many, events, checkpoints=checkpoints)
            else:
                call = functools.partial(append_many, events)
            error = self._attempt(call, len(batch), "")
            if error is None:
                self._stored(groups)
                return
            # refused for its content (or given up on): store run by run to find the culprit
        for run_id, items in groups.items():
            self._write_run(run_id, items)

    def _append(self, run_id: str, items: Sequence[Queued]) -> Callable[[], None]:
        """The store call writing one run's items in one transaction."""
        events, lines = _split(items)
        if lines:
            return functools.partial(self._store.append_events, run_id, events, checkpoint=lines)
        return functools.partial(self._store.append_events, run_id, events)

    def _write_run(self, run_id: str, events: list[Queued]) -> None:
        error = self._attempt(self._append(run_id, events), len(events), f"run {run_id}: ")
        if error is None:
            self._stored({run_id: events})
            return
        # a stale fencing token refuses the run's every write: nothing to find one by one
        if len(events) > 1 and not is_transient(error) and not isinstance(error, LeaseLost):
            log.warning(
                "run %s: a batch of %d events was refused (%s); storing them one by one",
                run_id,
                len(events),
                error,
            )
            for event in events:
                single = self._attempt(self._append(run_id, [event]), 1, f"run {run_id}: ")
                if single is None:
                    self._stored({run_id: [event]})
                else:
                    self._give_up(run_id, [event], single)
        else:
            self._give_up(run_id, events, error)

    def _attempt(self, call: Callable[[], None], count: int, where: str) -> BaseException | None:
        """``call()``, retried while the database is unavailable; its final error or ``None``."""
        self._context = (where, count)
        try:
            self._retrying(call)
        except _Abandoned:
            raise
        except Exception as exc:  # noqa: BLE001 - the writer thread must outlive any error
            return exc
        if self._outage:
            log.warning("the database answers again; storing the events that waited")
            with self._lock:
                self._outage = False
        return None

    def _stored(self, groups: Mapping[str, list[Queued]]) -> None:
        count = sum(len(events) for events in groups.values())
        with self._lock:
            self._written += count
            self._done += count
            self._batches += 1
            self._lock.notify_all()

    # ----------------------------------------------------------------------- outages

    def _stop_condition(self, max_retries: int | None) -> Callable[[RetryCallState], bool]:
        limit = None if max_retries is None else stop_after_attempt(max_retries + 1)

        def stop(state: RetryCallState) -> bool:
            return limit is not None and bool(limit(state))

        return stop

    def _note_retry(self, state: RetryCallState) -> None:
        where, count = self._context
        error = state.outcome.exception() if state.outcome is not None else None
        delay = sleep_before_retry(state)
        with self._lock:
            self._retries += 1
            first = not self._outage
            self._outage = True
        level = logging.WARNING if first or state.attempt_number % 10 == 0 else logging.DEBUG
        log.log(
            level,
            "%sstoring %d events failed (%s); retry %d in %.2fs (%d bytes waiting in memory, "
            "%d in the spill file)",
            where,
            count,
            " ".join(str(error).split())[:300],
            state.attempt_number,
            delay,
            self._backlog_bytes,
            0 if self._spill is None else self._spill.size,
        )

    def _wait_for_database(self, seconds: float) -> None:
        """tenacity's sleep: wait ``seconds``, taking events off the queue meanwhile so their
        bytes are counted against the bounds (and spilled or dropped past them)."""
        deadline = time.monotonic() + seconds
        while True:
            abandon_at = self._abandon_at
            if abandon_at is not None and time.monotonic() >= abandon_at:
                raise _Abandoned
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return
            try:
                item = self._queue.get(timeout=min(remaining, 0.1))
            except queue.Empty:
                continue
            if item is _STOP:
                self._stopping = True
            elif not isinstance(item, _Marker):
                self._hold(*item)

    def _hold(self, run_id: str, event: Queued) -> None:
        """Keep an event taken off the queue during an outage: memory, spill file or drop."""
        size = _size(event)
        if self._backlog_bytes + size <= self._max_buffer and not (
            self._spill is not None and self._spill.unread
        ):  # (once events are spilled, later ones follow them there: the order is kept)
            self._backlog.append((run_id, event, size))
            with self._lock:
                self._backlog_bytes += size
            return
        if self._spill is not None:
            try:
                _, rejected = self._spill.add([(run_id, event)])
            except OSError as exc:  # a full disk: as full as the bound
                log.error("cannot write the spill file %s: %s", self._spill.path, exc)
                rejected = [(run_id, event)]
            if not rejected:
                self._spilled(run_id, event)
                return
        self._drop(run_id, event)

    def _spilled(self, run_id: str, event: Queued) -> None:
        """Tell ``on_spilled`` that an event now waits on disk, not in memory."""
        if self._on_spilled is None or isinstance(event, CheckpointLines):
            return
        try:
            self._on_spilled(run_id, event_field(event, "seq"))
        except Exception:
            log.exception("the EventWriter on_spilled handler raised")

    def _drop(self, run_id: str, event: Queued) -> None:
        with self._lock:
            self._dropped += 1
            first = self._dropped == 1 or self._dropped % 1000 == 0
        if first:
            log.error(
                "the database is down and the event buffer is full (%d bytes in memory%s): "
                "dropping events (%d so far); raise max_buffer_bytes or max_spill_bytes",
                self._max_buffer,
                "" if self._spill is None else f", {self._spill.limit} in {self._spill.path}",
                self._dropped,
            )
        error = DatabaseUnavailable("the database was down and the outage buffer full")
        self._give_up(run_id, [event], error, logged=True)

    def _abandon(self, batch: list[Item]) -> None:
        """Closed with the database down: spill (or give up on) the batch and what is left."""
        left = [*batch, *((r, e) for r, e, _ in self._backlog), *self._drain_queue()]
        self._backlog.clear()
        self._backlog_bytes = 0
        if self._spill is not None:
            already = self._spill.unread  # spilled earlier in the outage: they stay there
            _, rejected = self._spill.add(left)
            log.warning(
                "closing with the database down: %d events kept in %s for the next start",
                len(left) - len(rejected),
                self._spill.path,
            )
            with self._lock:  # not lost, but no longer this writer's to store
                self._done += already + len(left) - len(rejected)
                self._lock.notify_all()
            left = rejected
        for run_id, event in left:
            self._drop(run_id, event)

    def _give_up(
        self,
        run_id: str,
        events: list[Queued],
        error: BaseException,
        *,
        logged: bool = False,
    ) -> None:
        with self._lock:
            self._failed += len(events)
            self._done += len(events)
            self._lock.notify_all()
        seqs = event_seqs(events)
        if len(seqs) < len(events):
            log.error(
                "run %s: checkpoint records were not stored (%s): the run can resume only "
                "from an earlier position, or not at all",
                run_id,
                error,
            )
        if not logged:
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


def _no_wait(_state: RetryCallState) -> float:
    return 0.0


def sleep_before_retry(state: RetryCallState) -> float:
    """Seconds tenacity waits before the next attempt (in ``before_sleep``; tenacity 8 and 9)."""
    action = state.next_action
    return 0.0 if action is None else float(action.sleep)
