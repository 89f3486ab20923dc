"""The live feed on Redis: every run's stored events in a Redis Stream of its own, and a
control channel, so any service process streams and cancels any run.

Events: a run's stream ``<prefix>:run:<run_id>`` holds each event under the stream id
``<seq>-0`` and, when the run ends (or pauses), an end marker ``<last seq>-1`` carrying the run's
summary. Stream ids are the event seqs, so a reader resumes exactly where a client's
``Last-Event-ID`` says: ``XREAD`` from ``<seq>-0`` returns what follows event ``seq``. Only
events the store has committed are published (the service calls :meth:`RedisFeed.publish`
from the writer's acknowledgement), so whatever a client saw through the feed is in the
database too: a reader that finds a gap (the stream trimmed by ``MAXLEN``, or a publish
dropped while Redis was down) reads it from the store. Streams are capped at ``maxlen``
entries (approximately: ``MAXLEN ~``) and expire ``end_ttl`` seconds after their run ends
(``idle_ttl`` after their last event, should the process running it die).

Reading: one task per process reads every watched run's stream with one blocking ``XREAD``
on one connection, however many SSE clients watch; each run read has a :class:`FeedTail`
that its clients share. A new watch wakes the blocked read by adding to this process's wake
stream (read in the same ``XREAD`` from its last id, so no wake-up can be missed).

Control: cancel requests are published on ``<prefix>:control`` (pub/sub: delivered at once to
every process connected) and kept as ``<prefix>:cancel:<run_id>`` marks for a day, which the
process running the run also checks periodically and when a run starts (a message sent while
it was reconnecting is not lost).

Publishing never blocks a run: :meth:`RedisFeed.publish` appends to an in-memory outbox
(bounded) that one task sends in pipelines. When Redis is unavailable the outbox's entries are
dropped (counted in ``stats``): the store has them, and readers fall back to it.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
import uuid
from collections import deque
from collections.abc import AsyncIterator, Callable, Iterable, Mapping, Sequence
from typing import Any

import redis.asyncio as aioredis
from redis.exceptions import RedisError, ResponseError

log = logging.getLogger("backpackflow_redis.feed")

_EVENT = b"e"
_END = b"end"
#: Seconds between warnings about an unavailable Redis (one per kind of failure).
_WARN_EVERY = 30.0


def _parse_id(raw: bytes | str) -> tuple[int, int]:
    text = raw.decode() if isinstance(raw, bytes) else raw
    first, _, second = text.partition("-")
    return int(first), int(second or 0)


class FeedTail:
    """What this process has read of one run's stream, shared by every SSE client watching
    the run here. Only the event loop touches it."""

    def __init__(self, run_id: str, after: int, keep: int) -> None:
        self.run_id = run_id
        #: ``XREAD`` continues after this id (an end marker right after ``after`` included).
        self.last_id = f"{after}-0"
        #: The highest event seq read (0: none yet).
        self.top = 0
        #: ``(last seq, summary)`` of the latest end marker read, if any.
        self.end: tuple[int, dict[str, Any]] | None = None
        self.watchers = 0
        self._keep = max(keep, 1)
        self._events: dict[int, str] = {}
        self._order: deque[int] = deque()
        self._changed: asyncio.Event | None = None

    def add(self, entries: Iterable[tuple[Any, Mapping[bytes, bytes]]]) -> None:
        for raw_id, fields in entries:
            seq, part = _parse_id(raw_id)
            self.last_id = raw_id.decode() if isinstance(raw_id, bytes) else str(raw_id)
            if part == 0 and _EVENT in fields:
                self._events[seq] = fields[_EVENT].decode()
                self._order.append(seq)
                self.top = max(self.top, seq)
                while len(self._order) > self._keep:
                    self._events.pop(self._order.popleft(), None)
            elif _END in fields:
                try:
                    self.end = (seq, json.loads(fields[_END]))
                except ValueError:
                    log.error("run %s: a damaged end marker in its feed", self.run_id)
        self.wake()

    def get(self, seq: int) -> str | None:
        """Event ``seq``'s JSON text, if the tail holds it."""
        return self._events.get(seq)

    async def changed(self, timeout: float) -> None:
        """Wait until new entries are read (or :meth:`wake`), at most ``timeout`` seconds."""
        if self._changed is None:
            self._changed = asyncio.Event()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._changed.wait(), timeout)

    def wake(self) -> None:
        waiter = self._changed
        if waiter is not None:
            self._changed = None
            waiter.set()


class RedisFeed:
    """The live feed of a service process on one Redis server (see the module docstring)."""

    def __init__(
        self,
        url: str,
        *,
        prefix: str = "backpackflow",
        maxlen: int = 10_000,
        end_ttl: float = 600.0,
        idle_ttl: float = 86_400.0,
        keep: int = 2_000,
        block: float = 5.0,
        max_pending: int = 100_000,
        cancel_ttl: float = 86_400.0,
    ) -> None:
        self.url = url
        self.prefix = prefix
        self.maxlen = maxlen
        self.end_ttl = end_ttl
        self.idle_ttl = idle_ttl
        self.keep = keep
        self.block = block
        self.max_pending = max_pending
        self.cancel_ttl = cancel_ttl
        self.instance = uuid.uuid4().hex
        #: Counters: events and end markers sent, dropped (Redis unavailable or the outbox
        #: full), refused (an id at or below the stream's top: published before).
        self.stats = {"published": 0, "dropped": 0, "refused": 0}
        self._redis: aioredis.Redis | None = None
        self._reader: aioredis.Redis | None = None
        self._outbox: deque[tuple[str, str, Any]] = deque()
        self._pending = 0
        self._outbox_ready = asyncio.Event()
        self._tails: dict[str, FeedTail] = {}
        self._wake_key = f"{prefix}:feed:wake:{self.instance}"
        self._wake_id = "0-0"
        self._tasks: list[asyncio.Task[None]] = []
        self._on_control: Callable[[dict[str, Any]], None] = lambda message: None
        self._warned: dict[str, float] = {}
        self._closing = False
        self._slots: Any = None

    # ------------------------------------------------------------------ keys

    def stream_key(self, run_id: str) -> str:
        return f"{self.prefix}:run:{run_id}"

    def _cancel_key(self, run_id: str) -> str:
        return f"{self.prefix}:cancel:{run_id}"

    @property
    def _channel(self) -> str:
        return f"{self.prefix}:control"

    def describe(self) -> str:
        """The feed's address without credentials (for logs)."""
        from redis.asyncio.connection import parse_url

        try:
            options = parse_url(self.url)
        except ValueError:
            return "redis"
        where = options.get("path") or f"{options.get('host')}:{options.get('port', 6379)}"
        return f"redis {where} db {options.get('db', 0)}"

    # ------------------------------------------------------------------ lifecycle

    async def start(self, on_control: Callable[[dict[str, Any]], None]) -> None:
        """Connect (a :class:`ConnectionError` naming the server when Redis cannot be
        reached: a service told to share runs must not start as if alone), then read the
        watched streams and the control channel in background tasks. ``on_control`` gets
        every control message (``{"op": "cancel", "run_id", "reason"}``) and
        ``{"op": "resync"}`` after each (re)subscription, when messages may have been missed."""
        self._on_control = on_control
        self._redis = aioredis.Redis.from_url(
            self.url, socket_timeout=5.0, socket_connect_timeout=3.0
        )
        self._reader = aioredis.Redis.from_url(
            self.url,
            socket_timeout=self.block + 10.0,
            socket_connect_timeout=3.0,
            single_connection_client=True,
            client_name=f"{self.prefix}-feed-reader-{self.instance}",
        )
        try:
            await self._redis.ping()
            self._wake_id = (await self._wake()) or "0-0"
        except (RedisError, OSError) as exc:
            await self._close_clients()
            raise ConnectionError(f"live feed: cannot reach {self.describe()}: {exc}") from None
        self._tasks = [
            asyncio.create_task(self._publish_loop(), name="backpackflow feed publisher"),
            asyncio.create_task(self._read_loop(), name="backpackflow feed reader"),
            asyncio.create_task(self._control_loop(), name="backpackflow feed control"),
        ]

    async def close(self, timeout: float = 5.0) -> None:
        """Send what the outbox holds (within ``timeout``), then stop and disconnect."""
        self._closing = True
        self._outbox_ready.set()
        if self._tasks:
            publisher, reader, control = self._tasks
            control.cancel()
            # the reader is woken, not canceled: redis-py lets a canceled blocking XREAD run
            # to its end to keep the connection consistent
            with contextlib.suppress(RedisError, OSError):
                await self._wake()
            try:
                await asyncio.wait_for(publisher, timeout)
            except TimeoutError:
                log.warning("live feed: %d event(s) unsent at shutdown", self._pending)
            for task in (reader, control):
                try:
                    await asyncio.wait_for(task, self.block + 1.0)
                except (TimeoutError, asyncio.CancelledError):
                    pass
                except Exception:  # a loop's failure is logged, and the feed still closes
                    log.exception("live feed: %s failed", task.get_name())
        self._tasks = []
        await self._close_clients()

    async def _close_clients(self) -> None:
        for client in (self._redis, self._reader):
            if client is not None:
                with contextlib.suppress(RedisError, OSError):
                    await client.aclose()
        self._redis = self._reader = None

    def _warn(self, kind: str, message: str, *args: Any) -> None:
        now = time.monotonic()
        if now - self._warned.get(kind, -_WARN_EVERY) >= _WARN_EVERY:
            self._warned[kind] = now
            log.warning(message, *args)

    # ------------------------------------------------------------------ publishing

    def publish(self, run_id: str, events: Sequence[tuple[int, str]]) -> None:
        """Send stored events ``(seq, JSON text)`` of a run, in seq order; never blocks."""
        if not events:
            return
        if self._pending + len(events) > self.max_pending:
            self.stats["dropped"] += len(events)
            self._warn("full", "live feed: the outbox is full; events are read from the store")
            return
        self._outbox.append(("events", run_id, events))
        self._pending += len(events)
        self._outbox_ready.set()

    def publish_end(self, run_id: str, last_seq: int, summary: Mapping[str, Any]) -> None:
        """Mark the run's end (or pause) after event ``last_seq``, with its stored summary;
        its stream then expires ``end_ttl`` seconds later."""
        text = json.dumps(summary, ensure_ascii=False, separators=(",", ":"), default=str)
        self._outbox.append(("end", run_id, (last_seq, text)))
        self._pending += 1
        self._outbox_ready.set()

    async def _publish_loop(self) -> None:
        while True:
            if not self._outbox:
                if self._closing:
                    return
                await self._outbox_ready.wait()
                self._outbox_ready.clear()
                continue
            await self._send(self._take(500))

    def _take(self, limit: int) -> list[tuple[str, str, Any]]:
        batch: list[tuple[str, str, Any]] = []
        count = 0
        while self._outbox and count < limit:
            item = self._outbox.popleft()
            size = len(item[2]) if item[0] == "events" else 1
            self._pending -= size
            count += size
            batch.append(item)
        return batch

    async def _send(self, batch: list[tuple[str, str, Any]]) -> None:
        client = self._redis
        assert client is not None
        pipe = client.pipeline(transaction=False)
        sent = 0
        for kind, run_id, payload in batch:
            key = self.stream_key(run_id)
            if kind == "events":
                for seq, text in payload:
                    pipe.xadd(
                        key, {_EVENT: text}, id=f"{seq}-0", maxlen=self.maxlen, approximate=True
                    )
                    sent += 1
                pipe.expire(key, int(self.idle_ttl))
            else:
                last_seq, text = payload
                pipe.xadd(
                    key, {_END: text}, id=f"{last_seq}-1", maxlen=self.maxlen, approximate=True
                )
                pipe.expire(key, int(self.end_ttl))
                sent += 1
        try:
            results = await pipe.execute(raise_on_error=False)
        except (RedisError, OSError) as exc:
            self.stats["dropped"] += sent
            self._warn("publish", "live feed: cannot publish to %s (%s)", self.describe(), exc)
            await asyncio.sleep(0.5)
            return
        for result in results:
            if isinstance(result, ResponseError):
                self.stats["refused"] += 1
            elif isinstance(result, bytes):
                self.stats["published"] += 1

    # ------------------------------------------------------------------ reading

    @contextlib.asynccontextmanager
    async def watch(self, run_id: str, after: int) -> AsyncIterator[FeedTail]:
        """The tail of run ``run_id``'s stream, read from after event ``after`` on (a tail
        this process already reads is shared: its clients read what it lacks from the
        store)."""
        tail = self._tails.get(run_id)
        if tail is None:
            tail = self._tails[run_id] = FeedTail(run_id, after, self.keep)
            with contextlib.suppress(RedisError, OSError):
                await self._wake()
        tail.watchers += 1
        try:
            yield tail
        finally:
            tail.watchers -= 1
            if tail.watchers == 0 and self._tails.get(run_id) is tail:
                del self._tails[run_id]

    async def _wake(self) -> str | None:
        """Add to this process's wake stream: the blocked ``XREAD`` returns and reads the
        watched streams anew. Returns the new entry's id."""
        client = self._redis
        if client is None:
            return None
        entry = await client.xadd(self._wake_key, {b"w": b"1"}, maxlen=8, approximate=False)
        await client.expire(self._wake_key, int(self.idle_ttl))
        return entry.decode() if isinstance(entry, bytes) else str(entry)

    async def _read_loop(self) -> None:
        reader = self._reader
        assert reader is not None
        pause = 0.1
        while True:
            streams: dict[str, str] = {self._wake_key: self._wake_id}
            for run_id, tail in self._tails.items():
                streams[self.stream_key(run_id)] = tail.last_id
            try:
                response: Any = await reader.xread(
                    streams,  # type: ignore[arg-type]
                    count=1000,
                    block=int(self.block * 1000),
                )
            except (RedisError, OSError) as exc:
                self._warn("read", "live feed: cannot read from %s (%s)", self.describe(), exc)
                await asyncio.sleep(pause)
                pause = min(pause * 2, 2.0)
                continue
            pause = 0.1
            if self._closing:
                return
            items = response.items() if isinstance(response, dict) else (response or ())
            for raw_key, entries in items:  # [key, [(id, fields), ...]] per stream read
                key = raw_key.decode() if isinstance(raw_key, bytes) else str(raw_key)
                if key == self._wake_key:
                    if entries:
                        last = entries[-1][0]
                        self._wake_id = last.decode() if isinstance(last, bytes) else str(last)
                    continue
                watched = self._tails.get(key.removeprefix(f"{self.prefix}:run:"))
                if watched is not None:
                    watched.add(entries)

    # ------------------------------------------------------------------ shared limits

    def provider_limits(
        self, rates: Mapping[str, Sequence[Any]], concurrency: Mapping[str, int], max_wait: float
    ) -> Any:
        """Per-provider rate limits and concurrency caps every process of the service shares
        (:func:`backpackflow_redis.limits.shared_provider_limits`); after :meth:`start`."""
        from backpackflow_redis.limits import shared_provider_limits

        assert self._redis is not None, "start the feed first"
        return shared_provider_limits(
            self._redis, self.prefix, rates, concurrency, max_wait=max_wait
        )

    def slot(self, name: str, cap: int) -> contextlib.AbstractAsyncContextManager[None]:
        """One of ``cap`` slots named ``name`` shared by every process (a Redis lease held
        during the block; see :class:`backpackflow_redis.limits.RedisSlots`)."""
        from backpackflow_redis.limits import RedisSlots

        if self._slots is None:
            assert self._redis is not None, "start the feed first"
            self._slots = RedisSlots(self._redis, self.prefix)
        slots: RedisSlots = self._slots
        return slots.slot(name, cap)

    # ------------------------------------------------------------------ control

    async def request_cancel(self, run_id: str, reason: str) -> int:
        """Ask whichever process runs ``run_id`` to cancel it: a mark it finds when it
        checks, and a message now. Returns how many processes got the message."""
        client = self._redis
        assert client is not None
        message = json.dumps({"op": "cancel", "run_id": run_id, "reason": reason})
        pipe = client.pipeline(transaction=False)
        pipe.set(self._cancel_key(run_id), reason, ex=int(self.cancel_ttl))
        pipe.publish(self._channel, message)
        _, receivers = await pipe.execute()
        return int(receivers)

    async def cancel_marks(self, run_ids: Sequence[str]) -> dict[str, str]:
        """The cancel requests marked for these runs (run id → reason)."""
        client = self._redis
        if not run_ids or client is None:
            return {}
        values = await client.mget([self._cancel_key(run_id) for run_id in run_ids])
        return {
            run_id: value.decode() if isinstance(value, bytes) else str(value)
            for run_id, value in zip(run_ids, values, strict=True)
            if value is not None
        }

    def _control(self, message: dict[str, Any]) -> None:
        try:
            self._on_control(message)
        except Exception:  # one bad message must not stop the control channel
            log.exception("live feed: handling control message %r failed", message.get("op"))

    async def _control_loop(self) -> None:
        client = self._redis
        assert client is not None
        pause = 0.1
        while True:
            pubsub = client.pubsub(ignore_subscribe_messages=True)
            try:
                await pubsub.subscribe(self._channel)
                self._control({"op": "resync"})
                pause = 0.1
                while True:
                    message = await pubsub.get_message(
                        ignore_subscribe_messages=True, timeout=self.block
                    )
                    if message is None or message.get("type") != "message":
                        continue
                    try:
                        data = json.loads(message["data"])
                    except ValueError:
                        log.warning("live feed: a damaged control message was ignored")
                        continue
                    if isinstance(data, dict):
                        self._control(data)
            except (RedisError, OSError) as exc:
                self._warn("control", "live feed: control channel lost (%s); reconnecting", exc)
            finally:
                with contextlib.suppress(RedisError, OSError):
                    await pubsub.aclose()
            await asyncio.sleep(pause)
            pause = min(pause * 2, 2.0)
