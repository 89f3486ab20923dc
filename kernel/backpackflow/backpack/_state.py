"""The Backpack's storage: every attribute, declared and initialized in one place, so each part
of the class (:mod:`._history`, :mod:`._access`, :mod:`._backpack`) and the codec read and
write the same declared state."""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Callable, Iterable
from typing import Any

from backpackflow.backpack.access import Permissions
from backpackflow.backpack.records import (
    _DELETED,
    AccessRecord,
    Commit,
    Observer,
    _Entry,
    _log_with,
)


class _State:
    """The storage of a :class:`~backpackflow.Backpack` (its base class)."""

    def __init__(
        self,
        strict: bool,
        max_history: int | None,
        backpack_id: str | None,
        max_denials: int,
    ) -> None:
        self._id = backpack_id  # made on first use: most Backpacks never need theirs
        self.strict = strict
        self.max_history = max_history
        self.forked_from: dict[str, str] | None = None
        self._lock = threading.Lock()
        self._current: dict[str, _Entry] = {}
        # key -> its log: every retained entry, oldest first. A log may start with entries that
        # max_history dropped: _log_starts holds where such a log's live part starts (its
        # first entry there may predate the oldest retained commit: it is the key's base).
        # (a key written once has its one entry here instead of a list: most keys are, and a
        # list per key measurably slowed runs; _as_log reads either)
        self._logs: dict[str, _Entry | list[_Entry]] = {}
        self._log_starts: dict[str, int] = {}
        # every commit's entry (see _Entry), oldest first; a Commit is made when one is handed out
        self._commits: list[_Entry] = []
        self._commit_start = 0
        self._by_id: dict[str, _Entry] = {}  # built lazily by _lookup: writes far outnumber lookups
        self._indexed_seq = 0
        self._seq = 0
        self._head: Commit | None = None  # as handed out (only the head: see _Entry)
        self._first_commit_id: str | None = None
        self._evicted = 0
        # approx_bytes() measured the commits up to _sized_seq: _sized_bytes
        self._sized_seq = 0
        self._sized_bytes = 0
        self._permissions: dict[str, Permissions] = {}
        # node id -> the seqs at which views were made for it: an int for one (most nodes run
        # once per Backpack, and a list per node measurably slowed runs), else a list
        self._node_marks: dict[str, int | list[int]] = {}
        self._max_denials = max_denials
        self._denials: deque[AccessRecord] | None = None
        self._observers: list[Observer] = []
        #: Durable runs (see :mod:`backpackflow.runner.checkpoint`): called after every commit
        #: when set (the per-commit durability mode), and the node marks made since the
        #: checkpointer last took them (``None``: nobody is recording; the usual case).
        self._on_commit: Callable[[Commit], None] | None = None
        self._mark_journal: list[tuple[str, int]] | None = None

    def _restore(
        self,
        *,
        forked_from: dict[str, str] | None,
        first_commit_id: str | None,
        evicted: int,
        entries: Iterable[tuple[str, Commit, Any, int | None]],
        commits: list[Commit],
        seq: int,
        permissions: dict[str, Permissions],
        node_marks: dict[str, int | list[int]],
        denials: list[AccessRecord],
    ) -> None:
        """Fill a fresh Backpack's storage with what the codec read (see
        :func:`~backpackflow.backpack._codec.load_backpack`, which has checked it): the
        version indexes are rebuilt from ``entries`` (``(key, commit, stored, list length)``
        in commit order, the bases first); the history holds the same entries."""
        self.forked_from = forked_from
        self._first_commit_id = first_commit_id
        self._evicted = evicted
        by_seq: dict[int, _Entry] = {}
        for key, commit, stored, length in entries:
            entry: _Entry = (*commit, stored, length)
            by_seq[commit.seq] = entry
            self._logs[key] = _log_with(self._logs.get(key), entry)
            if stored is _DELETED:
                self._current.pop(key, None)
            else:
                self._current[key] = entry
        self._commits.extend(by_seq[c.seq] for c in commits)  # each has its entry
        self._seq = seq
        self._head = commits[-1] if commits else None
        self._permissions.update(permissions)
        self._node_marks = node_marks
        if denials:
            self._denials = deque(denials, maxlen=self._max_denials)
