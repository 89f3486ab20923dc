"""The event history's byte budget: what the retained events keep alive, bounded in bytes.

The ring buffer bounds the number of events; their payloads may still keep much more alive:
values written, results, and through lazy state references (a ``node_start``'s state, an
``error``'s snapshot) whole Backpacks with every version they keep. :class:`ByteBudget`
estimates those bytes and evicts the oldest events until the estimate is within the budget.

Estimating costs time proportional to the data, so it is not done per event: emitting counts
ticks (the bus one per event, the runner's hot path one per ``node_start``), and every
:data:`TICKS` ticks the events appended since the last pass are measured (each object once
per pass, see :func:`backpackflow.jsondata.approx_size`) and the budget enforced. Between two
passes the history may exceed its budget by what those ticks brought.

An object in a payload that has an ``approx_bytes()`` method (a Backpack, which SnapshotRef
and StateDelta refer to) is counted by it, once while any retained event refers to it, at the
largest size measured; any other object that is no JSON data counts as a small one.
"""

from __future__ import annotations

from collections import deque
from typing import Any

from backpackflow.events.types import BackpackEvent
from backpackflow.jsondata import approx_size

#: Ticks between two passes (see the module docstring).
TICKS = 64
#: The default budget of an EventStreamer's history.
DEFAULT_HISTORY_BYTES = 32 * 1024 * 1024


class ByteBudget:
    """The byte accounting of one event history (a ring buffer ``deque``)."""

    __slots__ = ("_charges", "_owners", "limit", "ticks", "total")

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.ticks = 0
        self.total = 0  # estimated bytes kept alive by the accounted events still retained
        # (event, its own bytes, ids of the objects it retains), in the ring's order
        self._charges: deque[tuple[BackpackEvent, int, tuple[int, ...]]] = deque()
        # id(object) -> [object, events referring to it, its bytes]
        self._owners: dict[int, list[Any]] = {}

    def account(self, ring: deque[BackpackEvent]) -> None:
        """Measure the events appended to ``ring`` since the last pass, then evict the oldest
        events until the estimate is within the limit."""
        self.ticks = 0
        charges = self._charges
        # forget the events the ring dropped by count since the last pass
        first = ring[0] if ring else None
        while charges and charges[0][0] is not first:
            self._release(charges.popleft())
        last = charges[-1][0] if charges else None
        new: list[BackpackEvent] = []
        for event in reversed(ring):
            if event is last:
                break
            new.append(event)
        for event in reversed(new):
            found: list[tuple[Any, int]] = []

            def other(obj: Any, found: list[tuple[Any, int]] = found) -> int:
                measure = getattr(obj, "approx_bytes", None)
                if measure is not None:
                    found.append((obj, measure()))
                return 64  # the object itself, counted as a small one

            # what one event keeps alive (an object it refers to twice counts once)
            size = approx_size(event, set(), other)
            owners = self._owners
            for owner, owner_size in found:
                entry = owners.get(id(owner))
                if entry is None:
                    owners[id(owner)] = [owner, 1, owner_size]
                    self.total += owner_size
                else:
                    entry[1] += 1
                    if owner_size > entry[2]:
                        self.total += owner_size - entry[2]
                        entry[2] = owner_size
            charges.append((event, size, tuple(id(owner) for owner, _ in found)))
            self.total += size
        while self.total > self.limit and ring:
            ring.popleft()
            self._release(charges.popleft())

    def _release(self, charge: tuple[BackpackEvent, int, tuple[int, ...]]) -> None:
        """An accounted event left the history."""
        self.total -= charge[1]
        for ident in charge[2]:
            entry = self._owners[ident]
            entry[1] -= 1
            if entry[1] == 0:
                self.total -= entry[2]
                del self._owners[ident]

    def clear(self) -> None:
        """The history was emptied."""
        self._charges.clear()
        self._owners.clear()
        self.total = 0
        self.ticks = 0
