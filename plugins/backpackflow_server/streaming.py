"""The SSE stream of one run: every trace event exactly once, in seq order, then ``end``.

A client names the last event it has (``Last-Event-ID`` or ``?after=``, default 0) and the
stream continues from the next seq. The cursor only ever moves to ``cursor + 1``, so nothing is
skipped and nothing repeats. Where event ``cursor + 1`` comes from:

* the run's in-memory buffer, if the run executes in this process and still holds it (every
  event not yet stored is there, but for those the writer moved to its spill file during a
  database outage: the stream waits until the writer has stored them, then reads them from
  the database), or if the run ended here lately (see ``RunManager.stream_handle``: a stream
  opened just after a short run ended is sent from memory too);
* otherwise the database (``get_trace(after_seq=cursor)``): an event that left the buffer was
  stored first, so the database has it.

When the run is done (its events stored, its status final) the stream sends what is left,
then ``event: end`` with the run summary, and closes. A run this process does not execute
(finished, or executed by another service process sharing the database) is read from the
database alone, polling while it is still active; with a live feed (the ``live_feed``
setting, see :mod:`.feed`) an active run's events come from the feed instead, as the process
running it stores them: events older than the feed holds, and any gap in it, are read from
the database, which has every event the feed carries. Heartbeats are sse-starlette's pings
(comment lines); a client disconnect only stops this generator, never the run. When the server
shuts down, sse-starlette sets the response's shutdown event and the stream ends cleanly (no
``end``: the run goes on elsewhere or is recovered, and the client resumes with Last-Event-ID).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import AsyncGenerator, AsyncIterator, Callable
from typing import Any, Protocol

import anyio
from sse_starlette import ServerSentEvent
from starlette.concurrency import run_in_threadpool

from backpackflow_store_sql.store import FINAL_STATUSES
from backpackflow_store_sql.writer import is_transient

from .feed import LiveFeed
from .runs import RunHandle, RunManager

log = logging.getLogger("backpackflow_server.streaming")

#: Events read from the database per query, and sent per network write at most; a chunk
#: holds events up to about _CHUNK_BYTES (counted in characters) per network write.
PAGE = 500
_CHUNK_BYTES = 64 * 1024


def _trace(seq: int, text: str) -> str:
    """One ``trace`` message, framed as sse-starlette's ``ServerSentEvent(text, event="trace",
    id=str(seq)).encode()`` frames it (a parity test holds them equal), without its regular
    expression splitting every message into lines: ``text`` is JSON from :func:`json.dumps`,
    which escapes every CR and LF, so it is one ``data:`` line. A text that is not one line
    (none of ours: a live feed's, say) is framed by sse-starlette. Messages of a chunk are
    joined as text and encoded once (:func:`_encoded`)."""
    if "\n" in text or "\r" in text:
        return ServerSentEvent(text, event="trace", id=str(seq)).encode().decode()
    return f"id: {seq}\r\nevent: trace\r\ndata: {text}\r\n\r\n"


def _take(text_of: Callable[[int], str | None], cursor: int) -> tuple[list[str], int]:
    """The trace messages of the events after ``cursor`` that ``text_of(seq)`` has, in order,
    up to one chunk (``_CHUNK_BYTES`` characters: its bytes are at most four times as many);
    and the new cursor. The one loop of the memory and the live-feed paths."""
    chunk: list[str] = []
    size = 0
    while size < _CHUNK_BYTES:
        text = text_of(cursor + 1)
        if text is None:
            break
        message = _trace(cursor + 1, text)
        chunk.append(message)
        size += len(message)
        cursor += 1
    return chunk, cursor


def _encoded(messages: list[str]) -> bytes:
    return "".join(messages).encode()


def _end(summary: dict[str, Any]) -> bytes:
    return ServerSentEvent(_dumps(summary), event="end").encode()


def _dumps(event: dict[str, Any]) -> str:
    return json.dumps(event, ensure_ascii=False, separators=(",", ":"))


class _Waker(Protocol):
    def wake(self) -> None: ...


class _Stop:
    """Set when the server shuts down; wakes the handle (or feed tail) the stream waits on."""

    def __init__(self) -> None:
        self.requested = False
        self.handle: _Waker | None = None

    async def watch(self, shutdown: anyio.Event) -> None:
        await shutdown.wait()
        self.requested = True
        if self.handle is not None:
            self.handle.wake()


async def run_stream(
    manager: RunManager,
    run_id: str,
    after: int,
    *,
    retry_ms: int,
    poll_interval: float,
    shutdown: anyio.Event,
) -> AsyncIterator[bytes]:
    """The SSE body: bytes of one or more SSE messages per item (fewer, larger writes)."""
    stop = _Stop()
    watcher = asyncio.ensure_future(stop.watch(shutdown))
    try:
        yield ServerSentEvent(retry=retry_ms).encode()
        cursor = after
        handle = manager.stream_handle(run_id)
        if handle is None:
            source = (
                _from_database(manager, run_id, cursor, poll_interval, stop)
                if manager.feed is None
                else _from_feed(manager, manager.feed.feed, run_id, cursor, stop)
            )
            async with contextlib.aclosing(source):  # a feed's watch ends with it
                async for chunk in source:
                    if isinstance(chunk, int):  # the run turned out to execute here: switch
                        cursor = chunk
                        handle = manager.handle(run_id)
                        break
                    yield chunk
                else:
                    return
        assert handle is not None
        stop.handle = handle
        async for chunk in _from_handle(manager, handle, cursor, stop):
            yield chunk
    finally:
        watcher.cancel()


async def _from_handle(
    manager: RunManager, handle: RunHandle, cursor: int, stop: _Stop
) -> AsyncIterator[bytes]:
    store = manager.store
    while not stop.requested:
        if cursor + 1 < handle.low:  # no longer in memory, hence stored
            page = await run_in_threadpool(
                store.get_trace, handle.run_id, after_seq=cursor, limit=PAGE
            )
            chunk: list[str] = []
            for item in page:
                if item["seq"] != cursor + 1 or cursor + 1 >= handle.low:
                    break
                chunk.append(_trace(item["seq"], _dumps(item)))
                cursor += 1
            if chunk:
                yield _encoded(chunk)
            else:  # cannot happen (the buffer keeps what is not stored); never spin on it
                log.error(
                    "run %s: events %d..%d are neither in memory nor in the database",
                    handle.run_id,
                    cursor + 1,
                    handle.low - 1,
                )
                cursor = handle.low - 1
            continue
        chunk, cursor = _take(handle.text, cursor)
        if chunk:
            yield _encoded(chunk)
            continue
        if cursor + 1 <= handle.last_seq:  # emitted, not in memory: spilled during an outage
            if handle.lost_for_good(cursor + 1):
                cursor += 1  # given up on after it was spilled: neither place has it
                continue
            for item in await _stored_page(store, handle.run_id, cursor):
                if item["seq"] != cursor + 1 or handle.get(cursor + 1) is not None:
                    break
                chunk.append(_trace(item["seq"], _dumps(item)))
                cursor += 1
            if chunk:
                yield _encoded(chunk)
                continue
            # not stored yet (or the database is still down): until the writer stores it
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(handle.changed(), manager.settings.poll_interval)
            continue
        if handle.finished:
            later = handle.next_seq_after(cursor)
            if later is not None:  # an event the writer lost: step over the gap
                cursor = later - 1
                continue
            assert handle.summary is not None
            yield _end(handle.summary)
            return
        await handle.changed()


async def _stored_page(store: Any, run_id: str, cursor: int) -> list[dict[str, Any]]:
    """The stored events after ``cursor``; none while the database is unavailable."""
    try:
        page: list[dict[str, Any]] = await run_in_threadpool(
            store.get_trace, run_id, after_seq=cursor, limit=PAGE
        )
    except Exception as exc:
        if not is_transient(exc):
            raise
        return []
    return page


async def _from_database(
    manager: RunManager, run_id: str, cursor: int, poll_interval: float, stop: _Stop
) -> AsyncGenerator[bytes | int, None]:
    """Stream a run from the database; yields the cursor (an int) if the run shows up in
    this process's manager meanwhile (it was being created when the client connected)."""
    store = manager.store
    final: dict[str, Any] | None = None
    while not stop.requested:
        page = await run_in_threadpool(store.get_trace, run_id, after_seq=cursor, limit=PAGE)
        if page:
            chunk = [_trace(item["seq"], _dumps(item)) for item in page]
            cursor = page[-1]["seq"]
            yield _encoded(chunk)
        if len(page) == PAGE:
            continue
        if final is not None:  # the run was final before this read: nothing can follow
            yield _end(final)
            return
        if manager.handle(run_id) is not None:
            yield cursor
            return
        run = await run_in_threadpool(store.get_run, run_id)
        if run["status"] in FINAL_STATUSES or run["status"] == "paused":  # nothing executes
            run.pop("steps", None)
            final = run  # read once more: events stored since the read above are there now
            continue
        await asyncio.sleep(poll_interval)


async def _from_feed(
    manager: RunManager, feed: LiveFeed, run_id: str, cursor: int, stop: _Stop
) -> AsyncGenerator[bytes | int, None]:
    """Stream a run another process executes from the live feed; yields the cursor (an int)
    if the run shows up in this process's manager meanwhile, as :func:`_from_database` does.

    The feed carries only stored events, so every gap in it (events older than the stream
    keeps, a publish lost while Redis was down, events the writer gave up on) is read from
    the database. The database is also read when the feed brings nothing for
    ``live_feed_check`` seconds: the run may be finished (a finished run's feed may have
    expired), paused, or its process may have died; then the rest is read from the database
    as without a feed.
    """
    store = manager.store
    check_every = manager.settings.live_feed_check
    async with feed.watch(run_id, cursor) as tail:
        stop.handle = tail
        checked = float("-inf")  # read the database first: the run may be over
        loop = asyncio.get_running_loop()
        while not stop.requested:
            if manager.handle(run_id) is not None:
                yield cursor
                return
            chunk, cursor = _take(tail.get, cursor)
            if chunk:
                yield _encoded(chunk)
                continue
            end = tail.end
            if end is not None and (end[0] < cursor or tail.top > end[0]):
                end = None  # an end before the cursor, or a pause the run went on from
            if end is not None and end[0] == cursor:
                yield _end(end[1])
                return
            due = loop.time() - checked >= check_every
            if tail.top > cursor or end is not None or due:  # a gap, or time to look
                page = await _stored_page(store, run_id, cursor)
                if end is not None:
                    page = [item for item in page if item["seq"] <= end[0]]
                if page:
                    chunk = [_trace(item["seq"], _dumps(item)) for item in page]
                    cursor = page[-1]["seq"]
                    yield _encoded(chunk)
                    continue
                if end is not None:  # events the writer gave up on: neither place has them
                    cursor = end[0]
                    continue
                if tail.top > cursor and not due:  # not readable yet (an outage): wait
                    await tail.changed(manager.settings.poll_interval)
                    continue
            if due:
                checked = loop.time()
                run = await run_in_threadpool(store.get_run, run_id)
                if run["status"] in FINAL_STATUSES or run["status"] == "paused":
                    async for rest in _from_database(
                        manager, run_id, cursor, manager.settings.poll_interval, stop
                    ):
                        yield rest
                    return
            await tail.changed(max(check_every - (loop.time() - checked), 0.0))
