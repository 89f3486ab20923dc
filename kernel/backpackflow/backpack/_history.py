"""The Backpack's history: commits, snapshots at any commit, diffs and forks (a mixin of
:class:`~backpackflow.backpack.Backpack`, which owns the storage it reads)."""

from __future__ import annotations

from bisect import bisect_right
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, cast

from backpackflow.backpack._state import _State
from backpackflow.backpack.records import (
    _C_ID,
    _C_KEY,
    _C_NODE_ID,
    _C_OP,
    _C_SEQ,
    _DELETED,
    _E_LENGTH,
    _E_VALUE,
    Change,
    Commit,
    Diff,
    Snapshot,
    SnapshotRef,
    StateLike,
    _as_log,
    _commit,
    _commits,
    _Entry,
    _entry_raw,
    _entry_seq,
    _entry_value,
)
from backpackflow.errors import CommitEvicted, CommitNotFound
from backpackflow.ids import new_id
from backpackflow.jsondata import approx_size, copy_out, json_equal

if TYPE_CHECKING:  # type-only back reference: the class this mixin is part of
    from backpackflow.backpack._backpack import Backpack

_new = tuple.__new__  # build named tuples without their Python-level __new__


#: What one commit costs beyond its value: the record, its id, its log entry (CPython, roughly).
_COMMIT_BYTES = 400
#: What takes a dropped base's place in its log until the log's dead prefix is cut.
_EVICTED_ENTRY: _Entry = ("", 0, None, 0.0, None, None, None, "pack", "", 0, (), _DELETED, None)


class HistoryMixin(_State):
    def _evict_oldest(self) -> None:
        """Drop the oldest retained commit (``max_history``), in O(1) amortized.

        Eviction reads what the run wrote long ago, no longer in the CPU's caches: each object
        it touches is a cache miss (most of the 10% per step a bounded history cost at
        ``max_history=10_000`` over an unbounded one, bench/scaling.py's second table). So it
        touches only the evicted commit, its key's log and that log's base entry: the commit
        is compared with the base by identity (the history and the log hold the same entry),
        a dropped entry is replaced by a shared constant (never read: see below), and the
        lookup index is left alone unless built.
        """
        commits = self._commits
        first = self._commit_start
        commit = commits[first]  # the commit's entry (see _Entry)
        # only the key's log may keep it (as the key's base), so that its value goes with it
        commits[first] = _EVICTED_ENTRY
        first += 1
        if first > 1024 and first * 2 > len(commits):  # amortized: the prefix goes in one go
            del commits[:first]
            first = 0
        self._commit_start = first
        if self._by_id:  # built only by lookups (see _lookup): most Backpacks never have one
            self._by_id.pop(commit[_C_ID], None)
        self._evicted += 1
        key = commit[_C_KEY]
        log = self._logs[key]
        if isinstance(log, tuple):  # the key's only entry: it stays, as the key's base
            return
        start = self._log_starts.get(key, 0)
        if log[start] is not commit:  # drop the older base: this entry is the new base
            # nothing reads entries before the live part (every search starts at its start):
            # let go of the old base's value now, so the bound holds exactly (the slot goes
            # with the prefix, amortized below)
            log[start] = _EVICTED_ENTRY
            start += 1
            if start > 32 and start * 2 > len(log):
                del log[:start]
                start = 0
            if start:
                self._log_starts[key] = start
            else:
                del self._log_starts[key]

    # ------------------------------------------------------------------ history

    @property
    def id(self) -> str:
        """This Backpack's id (time-ordered, made on first use)."""
        if self._id is None:
            self._id = new_id()
        return self._id

    @property
    def head(self) -> Commit | None:
        """The latest commit."""
        return self._head

    @property
    def evicted_count(self) -> int:
        """How many commits ``max_history`` has dropped."""
        return self._evicted

    def get_history(
        self,
        *,
        key: str | None = None,
        node_id: str | None = None,
        limit: int | None = None,
    ) -> list[Commit]:
        """Retained commits, oldest first; filter by ``key`` / ``node_id``; ``limit`` keeps the
        newest ``limit``."""
        commits = self._commits[self._commit_start :]
        if key is not None:
            commits = [c for c in commits if c[_C_KEY] == key]
        if node_id is not None:
            commits = [c for c in commits if c[_C_NODE_ID] == node_id]
        if limit is not None:
            commits = commits[-limit:] if limit > 0 else []
        return _commits(commits)

    def get_key_history(self, key: str) -> list[Commit]:
        """The retained commits of one key, oldest first."""
        log = _as_log(self._logs.get(key))
        if not log:
            return []
        oldest = self._oldest_seq()  # a key with a log has a retained commit (max_history >= 1)
        return [_commit(e) for e in log[self._log_starts.get(key, 0) :] if e[_C_SEQ] >= oldest]

    def get_commit(self, commit_id: str) -> Commit:
        return _commit(self._commit_entry(commit_id))

    def _commit_entry(self, commit_id: str) -> _Entry:
        """The entry of retained commit ``commit_id``; raises CommitNotFound/CommitEvicted."""
        commit = self._lookup(commit_id)
        if commit is None:
            raise self._unknown_commit(commit_id)
        return commit

    def _lookup(self, commit_id: str) -> _Entry | None:
        """Find a retained commit by id, indexing commits made since the last lookup."""
        commit = self._by_id.get(commit_id)
        if commit is None and self._indexed_seq < self._seq:
            oldest = self._oldest_seq()
            start = self._commit_start + max(self._indexed_seq + 1 - oldest, 0)
            self._by_id.update((c[_C_ID], c) for c in self._commits[start:])
            self._indexed_seq = self._seq
            commit = self._by_id.get(commit_id)
        return commit

    def _unknown_commit(self, commit_id: str) -> CommitNotFound:
        retained = self._commits[self._commit_start :]
        if (
            self._evicted
            and isinstance(commit_id, str)
            and retained
            and self._first_commit_id is not None
            and self._first_commit_id <= commit_id < retained[0][_C_ID]
        ):
            return CommitEvicted(
                f"commit {commit_id!r} was evicted: this Backpack keeps the last "
                f"{self.max_history} commits (max_history) and has dropped {self._evicted}; "
                f"the oldest retained is {retained[0][_C_ID]!r} (seq {retained[0][_C_SEQ]})"
            )
        return CommitNotFound(
            f"commit {commit_id!r} is not in the history of Backpack {self.id!r} "
            f"({len(retained)} commits retained)"
        )

    def _state_at(self, seq: int) -> dict[str, _Entry]:
        if seq == self._seq:
            return dict(self._current)
        entries: dict[str, _Entry] = {}
        starts = self._log_starts
        for key, log in self._logs.items():
            if isinstance(log, tuple):
                entry = log
                if entry[_C_SEQ] > seq:
                    continue
            else:
                start = starts.get(key, 0) if starts else 0
                i = bisect_right(log, seq, start, key=_entry_seq) - 1
                if i < start:
                    continue
                entry = log[i]
            if entry[_E_VALUE] is not _DELETED:
                entries[key] = entry
        return entries

    def _oldest_seq(self) -> int:
        if self._commit_start < len(self._commits):
            return self._commits[self._commit_start][_C_SEQ]
        return self._seq + 1

    def get_snapshot_at_commit(self, commit_id: str) -> Snapshot:
        """The state right after ``commit_id``."""
        seq = self._commit_entry(commit_id)[_C_SEQ]
        return Snapshot(self._state_at(seq), commit_id, seq)

    def _delta_json(self, base: int, seq: int) -> dict[str, Any]:
        """:class:`StateDelta`'s JSON form: the keys that commits ``base + 1 .. seq`` changed,
        with their values at ``seq`` (the whole state when ``base`` is -1 or evicted). Costs
        O(commits in between · log versions), never O(state)."""
        oldest = self._oldest_seq()
        if self._evicted and seq < oldest:
            self._snapshot_at_seq(seq, f"at seq {seq}")  # raises CommitEvicted
        if base < 0 or base > seq or base + 1 < oldest:
            state = {k: _entry_value(e) for k, e in self._state_at(seq).items()}
            return {
                "$state": "delta",
                "seq": seq,
                "base_seq": None,
                "changed": state,
                "removed": [],
            }
        first = self._commit_start + base + 1 - oldest
        changed: dict[str, Any] = {}
        removed: list[str] = []
        for key in dict.fromkeys(c[_C_KEY] for c in self._commits[first : first + seq - base]):
            entry = self._entry_at(key, seq)
            if entry is None or entry[_E_VALUE] is _DELETED:
                removed.append(key)
            else:
                changed[key] = _entry_value(entry)
        return {
            "$state": "delta",
            "seq": seq,
            "base_seq": base,
            "changed": changed,
            "removed": removed,
        }

    def _entry_at(self, key: str, seq: int) -> _Entry | None:
        """The entry of ``key`` in force at ``seq`` (one binary search in its log)."""
        log = self._logs.get(key)
        if log is None:
            return None
        if isinstance(log, tuple):
            return log if log[_C_SEQ] <= seq else None
        start = self._log_starts.get(key, 0)
        i = bisect_right(log, seq, start, key=_entry_seq) - 1
        return log[i] if i >= start else None

    def approx_bytes(self) -> int:
        """An estimate of the bytes this Backpack keeps alive: its commits and every retained
        version of its values (what an event history referring to it holds, see
        ``EventStreamer(history_bytes=...)``). Measures only the commits made since the last
        call; versions ``max_history`` evicted since then are still counted."""
        seq = self._seq
        done = self._sized_seq
        if seq <= done:
            return self._sized_bytes
        oldest = self._oldest_seq()
        start = max(done + 1, oldest)
        first = self._commit_start + start - oldest
        total = self._sized_bytes
        logs = self._logs
        for commit in self._commits[first : first + seq - start + 1]:
            total += _COMMIT_BYTES
            key = commit[_C_KEY]
            log = logs.get(key)
            if log is commit:  # a key written once: most are
                entry: _Entry | None = log
            else:
                entry = self._entry_at(key, commit[_C_SEQ])
            if entry is None or entry is not commit or entry[_E_VALUE] is _DELETED:
                continue
            stored = entry[_E_VALUE]
            kind = type(stored)
            if kind is int or kind is float or kind is bool or stored is None:
                continue  # within the commit's figure
            if kind is str:
                total += 49 + len(stored)
            elif commit[_C_OP] == "append":  # only what it appended to its base is new
                before = self._entry_at(key, commit[_C_SEQ] - 1)
                begin = (
                    before[_E_LENGTH] if before is not None and before[_E_VALUE] is stored else 0
                )
                total += approx_size(stored[begin : entry[_E_LENGTH]])
            else:
                total += approx_size(stored)
        self._sized_seq, self._sized_bytes = seq, total
        return total

    def snapshot_ref(self) -> SnapshotRef:
        """A reference to the current state, resolved only when needed (see
        :class:`SnapshotRef`)."""
        return _new(SnapshotRef, (self, self._seq))

    def snapshot(self) -> Snapshot:
        """The current state as an immutable :class:`Snapshot` (cheap: no values are copied)."""
        head = self._head
        return Snapshot(dict(self._current), head[_C_ID] if head else None, self._seq)

    def _snapshot_at_seq(self, seq: int, what: str) -> Snapshot:
        if seq == 0:
            return Snapshot({}, None, 0)
        if self._evicted and seq < self._oldest_seq():
            raise CommitEvicted(
                f"the state {what} is at seq {seq}, which max_history={self.max_history} has "
                f"evicted (oldest retained seq: {self._oldest_seq()})"
            )
        commit = self._commits[self._commit_start + seq - self._oldest_seq()]
        return Snapshot(self._state_at(seq), commit[_C_ID], seq)

    def _marks_of(self, node_id: str) -> list[int]:
        """The seqs at which views were made for ``node_id``, oldest first (a new list)."""
        marks = self._all_marks_of(node_id)
        if self._evicted and marks:  # marks of evicted commits linger: skip them here
            oldest = self._oldest_seq()
            if marks[0] < oldest:
                return [m for m in marks if m >= oldest]
        return marks

    def _all_marks_of(self, node_id: str) -> list[int]:
        """Every recorded mark of ``node_id``, evicted ones included (a new list)."""
        marks = self._node_marks.get(node_id)
        if marks is None:
            return []
        return [marks] if isinstance(marks, int) else list(marks)

    def get_snapshot_before_node(self, node_id: str, *, occurrence: int = 0) -> Snapshot:
        """The state just before ``node_id`` ran (its first run; ``occurrence=-1`` for the latest).

        A node "runs" from when a view is made for it (the flow runner does this); for writes
        made with ``node_id=`` directly, it is the state before its first commit.
        """
        marks = self._marks_of(node_id)
        if marks:
            try:
                seq = marks[occurrence]
            except IndexError:
                raise CommitNotFound(
                    f"node {node_id!r} ran {len(marks)} time(s); occurrence {occurrence} "
                    "does not exist"
                ) from None
            return self._snapshot_at_seq(seq, f"before node {node_id!r}")
        evicted = self._all_marks_of(node_id)
        if evicted:  # it ran, but only before the oldest retained commit: CommitEvicted
            return self._snapshot_at_seq(evicted[-1], f"before node {node_id!r}")
        for commit in self._commits[self._commit_start :]:
            if commit[_C_NODE_ID] == node_id:
                return self._snapshot_at_seq(commit[_C_SEQ] - 1, f"before node {node_id!r}")
        raise CommitNotFound(
            f"node {node_id!r} has neither run nor written on Backpack {self.id!r}"
        )

    @staticmethod
    def diff(a: StateLike, b: StateLike) -> Diff:
        """What changed from state ``a`` to state ``b`` (Backpacks, Snapshots or mappings)."""
        ea, eb = _entries_of(a), _entries_of(b)
        if ea is not None and eb is not None:
            return _diff_entries(ea, eb)
        va, vb = _values_of(a), _values_of(b)
        added = {k: copy_out(v) for k, v in vb.items() if k not in va}
        removed = {k: copy_out(v) for k, v in va.items() if k not in vb}
        modified = {
            k: Change(copy_out(va[k]), copy_out(v))
            for k, v in vb.items()
            if k in va and not json_equal(va[k], v)
        }
        return Diff(added, removed, modified)

    def replay_from_commit(self, commit_id: str) -> Backpack:
        """A fork: a new Backpack whose state is as at ``commit_id`` and whose history is this
        one's up to that commit. Both go on independently."""
        commit = self._commit_entry(commit_id)
        seq = commit[_C_SEQ]
        fork = cast("Backpack", type(self)(strict=self.strict, max_history=self.max_history))  # type: ignore[call-arg]
        fork.forked_from = {"backpack_id": self.id, "commit_id": commit_id}
        with self._lock:
            end = self._commit_start + seq - self._oldest_seq() + 1
            fork._commits = self._commits[self._commit_start : end]
            fork._seq = seq
            fork._head = _commit(commit)
            fork._first_commit_id = self._first_commit_id
            fork._evicted = self._evicted
            for key, stored in self._logs.items():
                log = _as_log(stored)
                start = self._log_starts.get(key, 0)
                i = bisect_right(log, seq, start, key=_entry_seq)
                if i > start:
                    copy = fork._logs[key] = log[start:i]
                    last = copy[-1]
                    if last[_E_VALUE] is not _DELETED:
                        fork._current[key] = last
            fork._permissions = dict(self._permissions)
            fork._node_marks = {
                n: kept
                for n in self._node_marks
                if (kept := [m for m in self._marks_of(n) if m <= seq])
            }
        return fork


def _entries_of(state: StateLike) -> dict[str, _Entry] | None:
    if isinstance(state, HistoryMixin):  # a Backpack (the one class this mixin is part of)
        return state._current
    if isinstance(state, Snapshot):
        return state._entries
    return None


def _values_of(state: StateLike) -> Mapping[str, Any]:
    if isinstance(state, HistoryMixin):  # a Backpack (the one class this mixin is part of)
        return {k: _entry_raw(e) for k, e in state._current.items()}
    if isinstance(state, Snapshot):
        return {k: _entry_raw(e) for k, e in state._entries.items()}
    if isinstance(state, Mapping):
        return state
    raise TypeError(f"diff takes Backpacks, Snapshots or mappings, got {type(state).__name__}")


def _diff_entries(a: dict[str, _Entry], b: dict[str, _Entry]) -> Diff:
    added: dict[str, Any] = {}
    removed: dict[str, Any] = {}
    modified: dict[str, Change] = {}
    for key, eb in b.items():
        ea = a.get(key)
        if ea is None:
            added[key] = _entry_value(eb)
        elif ea is not eb:
            old, new = _entry_raw(ea), _entry_raw(eb)
            if not json_equal(old, new):
                modified[key] = Change(copy_out(old), copy_out(new))
    for key, ea in a.items():
        if key not in b:
            removed[key] = _entry_value(ea)
    return Diff(added, removed, modified)
