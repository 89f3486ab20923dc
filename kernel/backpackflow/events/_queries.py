"""What :class:`~backpackflow.EventStreamer` answers about what it saw: the history filtered,
stats, and the history as JSON (its base class; the bus records, this reads)."""

from __future__ import annotations

import asyncio
import json
from collections import deque
from collections.abc import Iterable
from concurrent.futures import Future
from typing import Any

from backpackflow.events._retention import ByteBudget
from backpackflow.events.types import BackpackEvent, StreamEventType, Subscription
from backpackflow.namespaces import compile_pattern


class _HistoryQueries:
    """The queries of the event bus over the state its ``__init__`` sets up."""

    history_size: int
    history_bytes: int | None
    _history: deque[BackpackEvent]
    _budget: ByteBudget | None
    _subs: list[Subscription]
    _counts: dict[str, int]
    _nodes: set[str]
    _namespaces: set[str]
    _runs: int
    _handler_errors: int
    _pending: set[asyncio.Future[Any] | Future[Any]]

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
            "unique_namespaces": len(self._namespaces),
            "runs": self._runs,
            "subscribers": len(self._subs),
            "handler_errors": self._handler_errors,
            "pending_async_handlers": len(self._pending),
            "history_size": self.history_size,
            "in_history": len(self._history),
            "history_bytes": self.history_bytes,
            # the retained events' count, and their Backpacks as of the last pass
            "history_bytes_estimate": (
                None if self._budget is None else self._budget.estimate(self._history)
            ),
        }

    def clear_history(self) -> None:
        self._history.clear()
        if self._budget is not None:
            self._budget.clear()

    def to_json(self, **filters: Any) -> list[dict[str, Any]]:
        """The history (filtered like :meth:`get_events`) as JSON data."""
        return [e.to_json() for e in self.get_events(**filters)]

    def to_json_str(self, **filters: Any) -> str:
        return json.dumps(self.to_json(**filters), ensure_ascii=False, default=repr)


def _check_type(value: str) -> str:
    try:
        return StreamEventType(value)
    except ValueError:
        known = ", ".join(t.value for t in StreamEventType)
        raise ValueError(f"unknown event type {value!r}; known types: {known}") from None
