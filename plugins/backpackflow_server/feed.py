"""The live feed a service process shares with the others (the ``live_feed`` setting).

A feed is made by the plugin registered for the setting's URL scheme (hook
``backpackflow_register_live_feeds``; ``backpackflow_redis`` serves ``redis://``). Through it:

* every event of a run executing here is published once the store has committed it (from the
  writer's acknowledgement), then an end marker with the run's stored summary, so any process
  streams the run live (:func:`backpackflow_server.streaming.run_stream`) and what a client saw
  is always in the database (a resume, or a gap in the feed, reads it there);
* a cancel asked of a process that does not run the run is sent to all of them; the process
  running it cancels at once when the message arrives, and also finds the request among the
  marks it checks every ``live_feed_check`` seconds and when a run starts (the bound when a
  message is missed: a reconnect, a run not started yet).

:class:`FeedLink` is the run manager's side of it; :class:`LiveFeed` and :class:`FeedTail`
are what a feed plugin provides.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Mapping, Sequence
from contextlib import AbstractAsyncContextManager
from typing import TYPE_CHECKING, Any, Protocol

from backpackflow import ConfigError, PluginError, RunControl
from backpackflow.plugins import Registry

if TYPE_CHECKING:  # type-only back reference: the manager owns its link
    from .runs import RunHandle, RunManager
    from .settings import Settings

log = logging.getLogger("backpackflow_server.feed")

#: What a run canceled through another process's API is told.
REMOTE_CANCEL_REASON = "canceled through the API"


class FeedTail(Protocol):
    """What a process has read of one run's feed (shared by its watchers)."""

    #: The highest event seq read; ``end``: ``(last seq, summary)`` of the latest end marker.
    top: int
    end: tuple[int, dict[str, Any]] | None

    def get(self, seq: int) -> str | None: ...
    async def changed(self, timeout: float) -> None: ...
    def wake(self) -> None: ...


class LiveFeed(Protocol):
    """What a live feed plugin's factory returns (``backpackflow_redis.RedisFeed`` fits).
    Every method is called on the service's event loop."""

    url: str
    stats: Mapping[str, int]

    def describe(self) -> str: ...
    async def start(self, on_control: Callable[[dict[str, Any]], None]) -> None: ...
    async def close(self, timeout: float = ...) -> None: ...
    def publish(self, run_id: str, events: Sequence[tuple[int, str]]) -> None: ...
    def publish_end(self, run_id: str, last_seq: int, summary: Mapping[str, Any]) -> None: ...
    def watch(self, run_id: str, after: int) -> AbstractAsyncContextManager[FeedTail]: ...
    async def request_cancel(self, run_id: str, reason: str) -> int: ...
    async def cancel_marks(self, run_ids: Sequence[str]) -> dict[str, str]: ...
    def provider_limits(
        self, rates: Mapping[str, Sequence[Any]], concurrency: Mapping[str, int], max_wait: float
    ) -> Any: ...
    def slot(self, name: str, cap: int) -> AbstractAsyncContextManager[None]: ...


def open_feed(registry: Registry, url: str) -> LiveFeed:
    """The live feed of ``url``, made by the plugin serving its scheme; a
    :class:`~backpackflow.ConfigError` naming the setting when none does."""
    try:
        feed_type = registry.live_feed_for_url(url)
    except PluginError as exc:
        raise ConfigError(f"live_feed: {exc}") from None
    feed: LiveFeed = feed_type.factory(url)
    return feed


def provider_limits(settings: Settings, feed: LiveFeed | None) -> Any:
    """The per-provider limits of the ``provider_rate_limits`` and ``provider_concurrency``
    settings (a ``backpackflow_llm.limits.ProviderLimits``, the ``llm_limits`` dependency of
    every run), shared by every process through the live feed when there is one; ``None``
    when no limit is set. A :class:`~backpackflow.ConfigError` names a wrong setting."""
    if not settings.provider_rate_limits and not settings.provider_concurrency:
        return None
    try:
        from backpackflow_llm.limits import ProviderLimits, parse_rates
    except ImportError as exc:
        raise ConfigError(
            f"provider_rate_limits / provider_concurrency need the llm and server extras "
            f"({exc}): pip install 'backpackflow[server,llm]'"
        ) from None
    rates = {}
    for provider, text in settings.provider_rate_limits.items():
        try:
            rates[provider] = parse_rates(text, f"provider_rate_limits.{provider}")
        except ValueError as exc:
            raise ConfigError(str(exc)) from None
    caps = dict(settings.provider_concurrency)
    wait = settings.provider_limit_wait
    if feed is None:
        return ProviderLimits(rates, caps, max_wait=wait)
    return feed.provider_limits(rates, caps, wait)


class NodeTypeCaps:
    """The ``node_type_concurrency`` caps: at most N nodes of a type executing at once in
    all the service's runs (with a live feed, in all its processes), held by each run through
    :meth:`~backpackflow.RunControl.gate_nodes`."""

    def __init__(self, caps: Mapping[str, int], feed: LiveFeed | None) -> None:
        self.caps = dict(caps)
        self._feed = feed
        self._semaphores: dict[str, asyncio.Semaphore] = {}

    def gate(self, node_type: str) -> AbstractAsyncContextManager[Any]:
        cap = self.caps[node_type]
        if self._feed is not None:
            return self._feed.slot(f"node:{node_type}", cap)
        semaphore = self._semaphores.get(node_type)
        if semaphore is None:
            semaphore = self._semaphores[node_type] = asyncio.Semaphore(cap)
        return semaphore

    def apply(self, control: RunControl) -> None:
        control.gate_nodes(self.caps, self.gate)


class FeedLink:
    """The run manager's use of the feed: publish stored events and ends, act on control
    messages, check cancel marks."""

    def __init__(self, feed: LiveFeed, manager: RunManager) -> None:
        self.feed = feed
        self._manager = manager
        self._sweeper: asyncio.Task[None] | None = None
        self._checks: set[asyncio.Task[None]] = set()

    async def start(self) -> None:
        try:
            await self.feed.start(self._on_control)
        except ConnectionError as exc:
            raise ConfigError(f"live_feed: {exc}") from None
        self._sweeper = asyncio.create_task(self._sweep_loop(), name="backpackflow cancel sweep")
        log.info("live feed: %s", self.feed.describe())

    async def close(self, timeout: float) -> None:
        for task in (self._sweeper, *self._checks):
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task
        await self.feed.close(timeout)

    # ------------------------------------------------------------------ publishing

    def stored(self, handle: RunHandle, seqs: Sequence[int]) -> None:
        """The writer stored these events of a run executing here: publish them (those still
        in memory; an event spilled during an outage is read from the store)."""
        events = []
        for seq in seqs:
            slot = handle.get(seq)
            if slot is not None:
                events.append((seq, slot.text()))
        self.feed.publish(handle.run_id, events)

    def ended(self, handle: RunHandle, summary: Mapping[str, Any]) -> None:
        """The run's final (or paused) status is stored: its feed ends after its last event."""
        self.feed.publish_end(handle.run_id, handle.last_seq, summary)

    # ------------------------------------------------------------------ control

    async def request_cancel(self, run_id: str) -> None:
        await self.feed.request_cancel(run_id, REMOTE_CANCEL_REASON)

    def started(self, handle: RunHandle) -> None:
        """A run starts here: a cancel may have been asked before any process held it."""
        task = asyncio.create_task(self._check([handle.run_id]))
        self._checks.add(task)
        task.add_done_callback(self._checks.discard)

    def _on_control(self, message: dict[str, Any]) -> None:
        op = message.get("op")
        if op == "cancel":
            run_id, reason = message.get("run_id"), message.get("reason")
            handle = self._manager.handle(run_id) if isinstance(run_id, str) else None
            if handle is not None:
                self._manager.cancel_here(handle, str(reason or REMOTE_CANCEL_REASON))
        elif op == "resync":  # messages may have been missed while (re)connecting
            self.started_all()

    def started_all(self) -> None:
        run_ids = self._manager.run_ids()
        if run_ids:
            task = asyncio.create_task(self._check(run_ids))
            self._checks.add(task)
            task.add_done_callback(self._checks.discard)

    async def _check(self, run_ids: Sequence[str]) -> None:
        try:
            marks = await self.feed.cancel_marks(run_ids)
        except Exception as exc:  # noqa: BLE001 - Redis down: the next sweep tries again
            log.debug("live feed: cannot read cancel marks (%s)", exc)
            return
        for run_id, reason in marks.items():
            handle = self._manager.handle(run_id)
            if handle is not None:
                self._manager.cancel_here(handle, reason)

    async def _sweep_loop(self) -> None:
        interval = self._manager.settings.live_feed_check
        while True:
            await asyncio.sleep(interval)
            run_ids = self._manager.run_ids()
            if run_ids:
                await self._check(run_ids)
