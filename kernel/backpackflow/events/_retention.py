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
The budget keeps no reference to the events and Backpacks it counts (their timestamps and ids
only): a Backpack is freed when the history's last event referring to it leaves, as with no
byte bound.
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
        # (the timestamp and id of the group's newest event, its Backpack's record). Neither
        # the event nor the Backpack is referenced: a Backpack is freed when the history's
        # last event referring to it leaves, as without a byte bound (holding it until the
        # next pass freed it then, its memory gone cold: measured ~9% of a node's time)
        self._tracked: deque[tuple[float, int, list[int]]] = deque()
        # id(Backpack) -> its record [retained groups referring to it, its bytes, the id]
        self._owners: dict[int, list[int]] = {}

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
        # owner is counted a little longer, never too short). Groups that left are forgotten
        # before new ones are counted, so a Backpack freed since has no record left that a new
        # Backpack given its id could be taken for (with such timestamps it may: the new one is
        # then counted at the larger of the two sizes until its own groups leave, never less)
        oldest = ring[0][1] if ring else float("inf")
        while tracked and tracked[0][0] < oldest:
            self._release(tracked.popleft()[2])
        last: Any = None  # the Backpack of the current group
        newest: BackpackEvent | None = None  # the current group's newest event
        record: list[int] = []  # the record of the current group's Backpack
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
                tracked.append((newest[1], id(newest), record))
            last, newest = owner, event
            key = id(owner)
            found = owners.get(key)
            if found is None:
                owners[key] = record = [1, size, key]
                self.owned += size
            else:
                record = found
                record[0] += 1
                if size > record[1]:
                    self.owned += size - record[1]
                    record[1] = size
        if newest is not None:
            tracked.append((newest[1], id(newest), record))
        while ring and len(ring) * EVENT_BYTES + self.owned > self.limit:
            event = ring.popleft()
            if tracked and tracked[0][1] == id(event):  # event is alive: its id is its own
                self._release(tracked.popleft()[2])

    def _release(self, record: list[int]) -> None:
        """The newest event of a group referring to the Backpack of ``record`` left the
        history."""
        record[0] -= 1
        if record[0] == 0:
            self.owned -= record[1]
            del self._owners[record[2]]

    def clear(self) -> None:
        """The history was emptied."""
        self.starts.clear()
        self._tracked.clear()
        self._owners.clear()
        self.owned = 0
        self.ticks = 0
