"""The event history's byte budget: what the retained events keep alive, bounded in bytes.

The ring buffer bounds the number of events; their payloads may still keep much more alive:
through its state reference, a ``node_start`` keeps its run's whole Backpack alive, with every
version it keeps (10,000 events held ~330 Backpacks). :class:`ByteBudget` estimates the
history's bytes as a fixed :data:`EVENT_BYTES` per retained event plus, once each, the
Backpacks the retained ``node_start`` events refer to (their ``approx_bytes()``), and drops
the oldest events until the estimate is within the limit. Prompts and results carried by
events are within the per-event figure only: the values a run writes are counted in its
Backpack.

Measuring is not done per event (the runner's hot path): emitting notes each ``node_start``,
and every :data:`TICKS` of them (or :data:`TICKS` events emitted outside runs) a pass
measures the Backpacks they refer to and enforces the limit. Between two passes the history
may exceed its budget by what those events brought.

A run's nodes start one after another, so a pass sees its ``node_start`` events in groups
referring to one Backpack: it keeps one record per group (its newest event), not one per
event. A Backpack is counted while any of its groups is retained, i.e. until the group's
newest event leaves the history: exactly as long as one record per event would count it.
"""

from __future__ import annotations

from collections import deque
from typing import Any

from backpackflow.events.types import BackpackEvent

#: node_start events (or events emitted outside runs) between two passes.
TICKS = 64
#: The default budget of an EventStreamer's history.
DEFAULT_HISTORY_BYTES = 32 * 1024 * 1024
#: What one retained event is counted for, its payload's own data included (CPython, roughly:
#: the event and payload tuples, ids, a timestamp, small values).
EVENT_BYTES = 700


class ByteBudget:
    """The byte accounting of one event history (a ring buffer ``deque``)."""

    __slots__ = ("_owners", "_tracked", "limit", "owned", "starts", "ticks")

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.ticks = 0  # events emitted outside runs since the last pass
        self.starts: list[BackpackEvent] = []  # node_start events since the last pass
        self.owned = 0  # bytes of the Backpacks retained node_start events refer to
        # retained groups of node_start events that refer to one Backpack, oldest first:
        # (the group's newest event, id of its Backpack)
        self._tracked: deque[tuple[BackpackEvent, int]] = deque()
        # id(Backpack) -> [Backpack, retained groups referring to it, its bytes]
        self._owners: dict[int, list[Any]] = {}

    def estimate(self, ring: deque[BackpackEvent]) -> int:
        return len(ring) * EVENT_BYTES + self.owned

    def account(self, ring: deque[BackpackEvent]) -> None:
        """Count the Backpacks of the node_start events since the last pass, forget those of
        events the ring dropped by count, then drop the oldest events until the estimate is
        within the limit."""
        starts, self.starts, self.ticks = self.starts, [], 0
        tracked, owners = self._tracked, self._owners
        # events leave the ring oldest first: a tracked event older than the ring's oldest has
        # left it (timestamps order the ring's events unless the clock was set back: then an
        # owner is counted a little longer, never too short)
        oldest = ring[0][1] if ring else float("inf")
        while tracked and tracked[0][0][1] < oldest:
            self._release(tracked.popleft()[1])
        last: Any = None  # the Backpack of the current group
        newest: BackpackEvent | None = None  # the current group's newest event
        for event in starts:
            try:
                owner = event[8].state.backpack
            except AttributeError:  # a node_start emitted by hand, with some other payload
                continue
            if owner is last and newest is not None:  # the run's next node: measured already
                newest = event
                continue
            try:
                size = owner.approx_bytes()
            except AttributeError:
                continue
            if newest is not None:  # a group ends where another Backpack's begins
                tracked.append((newest, id(last)))
            last, newest = owner, event
            entry = owners.get(id(owner))
            if entry is None:
                owners[id(owner)] = [owner, 1, size]
                self.owned += size
            else:
                entry[1] += 1
                if size > entry[2]:
                    self.owned += size - entry[2]
                    entry[2] = size
        if newest is not None:
            tracked.append((newest, id(last)))
        while ring and len(ring) * EVENT_BYTES + self.owned > self.limit:
            event = ring.popleft()
            if tracked and tracked[0][0] is event:
                self._release(tracked.popleft()[1])

    def _release(self, ident: int) -> None:
        """The newest event of a group referring to Backpack ``ident`` left the history."""
        entry = self._owners[ident]
        entry[1] -= 1
        if entry[1] == 0:
            self.owned -= entry[2]
            del self._owners[ident]

    def clear(self) -> None:
        """The history was emptied."""
        self.starts.clear()
        self._tracked.clear()
        self._owners.clear()
        self.owned = 0
        self.ticks = 0
