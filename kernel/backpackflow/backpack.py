"""The Backpack: git-like, access-controlled agent state.

Every ``pack``, ``append`` and ``delete`` is a commit. Storage is delta-based: a commit records
only what changed, and each key keeps a version index (commit sequence numbers in order), so the
state at any commit is rebuilt with one binary search per key.

Lists are stored as *bases* that appends extend in place; each version remembers the length it
saw, so an append costs only the appended items and a 500-turn chat history stays linear in what
was appended. A base is copied before extending only when another version (a fork) has already
extended it past the length this key's latest version saw.

Values are JSON data, copied in (validated) and copied out, so nothing outside can change what is
stored: every stored object is immutable in practice, and snapshots share them freely.
"""

from __future__ import annotations

import json
import operator
import threading
import time
from bisect import bisect_right
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import Any, NamedTuple, Union

import attrs

from backpackflow.access import Permissions
from backpackflow.errors import (
    AccessDenied,
    CommitEvicted,
    CommitNotFound,
    InvalidKey,
    InvalidValue,
    KeyNotFound,
)
from backpackflow.events import BackpackPackPayload, BackpackUnpackPayload, StreamEventType
from backpackflow.ids import new_id
from backpackflow.jsondata import ListPrefix, copy_in, copy_out, json_equal
from backpackflow.namespaces import compile_pattern, validate_namespace

FORMAT = "backpackflow.backpack"
FORMAT_VERSION = 1

OPS = ("pack", "append", "delete")

_DELETED: Any = type("_Deleted", (), {"__repr__": lambda self: "<deleted>"})()
_BASE_LOCK = threading.Lock()  # guards "check length, then extend" on list bases shared by forks
_new = tuple.__new__  # build named tuples without their Python-level __new__ on the hot path
_PACK = StreamEventType.BACKPACK_PACK
_UNPACK = StreamEventType.BACKPACK_UNPACK


class Commit(NamedTuple):
    """One change to the Backpack. ``seq`` counts from 1 within a Backpack's lineage.

    A named tuple: immutable, shared between forks and snapshots, and cheap to make on the hot
    path of every write.
    """

    commit_id: str
    seq: int
    parent_id: str | None
    timestamp: float
    node_id: str | None
    node_name: str | None
    namespace: str | None
    op: str
    key: str
    version: int
    tags: tuple[str, ...] = ()

    def to_json(self) -> dict[str, Any]:
        data = self._asdict()
        data["tags"] = list(self.tags)
        return data


@attrs.frozen(slots=True)
class BackpackItem:
    """A value with its metadata: who wrote it, where, when, which version."""

    key: str
    value: Any
    node_id: str | None
    node_name: str | None
    namespace: str | None
    timestamp: float
    version: int
    tags: tuple[str, ...]
    commit_id: str


class AccessRecord(NamedTuple):
    """One access seen by the Backpack, handed to its observers; denials are also kept.

    ``value`` is the stored object itself (for summaries): observers must never mutate it.
    A named tuple, because one is made for every observed access.
    """

    op: str  # "pack" | "append" | "delete" | "unpack"
    key: str
    node_id: str | None
    node_name: str | None
    namespace: str | None
    granted: bool
    reason: str | None
    found: bool
    commit: Commit | None
    value: Any
    timestamp: float

    def to_json(self) -> dict[str, Any]:
        return {
            "op": self.op,
            "key": self.key,
            "node_id": self.node_id,
            "node_name": self.node_name,
            "namespace": self.namespace,
            "granted": self.granted,
            "reason": self.reason,
            "found": self.found,
            "commit_id": self.commit.commit_id if self.commit else None,
            "timestamp": self.timestamp,
        }


@attrs.frozen(slots=True)
class Change:
    """A modified key in a :class:`Diff`."""

    old: Any
    new: Any


@attrs.frozen
class Diff:
    """What changed between two states: keys added, removed and modified (old and new values)."""

    added: dict[str, Any]
    removed: dict[str, Any]
    modified: dict[str, Change]

    def __bool__(self) -> bool:
        return bool(self.added or self.removed or self.modified)

    def apply(self, state: Mapping[str, Any]) -> dict[str, Any]:
        """Return ``state`` with this diff applied (a new dict; ``state`` is not changed)."""
        result = {k: copy_out(v) for k, v in state.items() if k not in self.removed}
        for key, value in self.added.items():
            result[key] = copy_out(value)
        for key, change in self.modified.items():
            result[key] = copy_out(change.new)
        return result

    def to_json(self) -> dict[str, Any]:
        return {
            "added": copy_out(self.added),
            "removed": copy_out(self.removed),
            "modified": {
                k: {"old": copy_out(c.old), "new": copy_out(c.new)}
                for k, c in self.modified.items()
            },
        }


# An entry is (commit, stored value or list base or _DELETED, list length or None, commit seq).
# The seq is repeated so that a key's log (a list of entries) is searched by seq in C.
_Entry = tuple[Commit, Any, int | None, int]
_entry_seq = operator.itemgetter(3)


def _as_log(log: _Entry | list[_Entry] | None) -> list[_Entry]:
    """A key's log as a list of entries (a key written once keeps its one entry unwrapped)."""
    if log is None:
        return []
    return [log] if isinstance(log, tuple) else log


def _log_with(log: _Entry | list[_Entry] | None, entry: _Entry) -> _Entry | list[_Entry]:
    """A key's log with ``entry`` added last (a first entry stays unwrapped; see _as_log)."""
    if log is None:
        return entry
    if isinstance(log, tuple):
        return [log, entry]
    log.append(entry)
    return log


def _entry_value(entry: _Entry) -> Any:
    """A caller-owned copy of the value an entry holds."""
    value, length = entry[1], entry[2]
    if length is None:
        return copy_out(value)
    return [copy_out(v) for v in value[:length]]


def _entry_raw(entry: _Entry) -> Any:
    """The value an entry holds, without copying (read-only use)."""
    return entry[1] if entry[2] is None else entry[1][: entry[2]]


def _item(key: str, entry: _Entry) -> BackpackItem:
    c = entry[0]
    return BackpackItem(
        key,
        _entry_value(entry),
        c.node_id,
        c.node_name,
        c.namespace,
        c.timestamp,
        c.version,
        c.tags,
        c.commit_id,
    )


class Snapshot(Mapping[str, Any]):
    """An immutable view of the state at one commit. Values are copied out on access, so making a
    snapshot is cheap and holding one keeps only references to stored data."""

    __slots__ = ("_entries", "commit_id", "seq")

    def __init__(self, entries: dict[str, _Entry], commit_id: str | None, seq: int) -> None:
        self._entries = entries
        self.commit_id = commit_id
        self.seq = seq

    def __getitem__(self, key: str) -> Any:
        try:
            return _entry_value(self._entries[key])
        except KeyError:
            raise KeyNotFound(
                f"key {key!r} is not in the snapshot at commit {self.commit_id!r}"
            ) from None

    def __iter__(self) -> Iterator[str]:
        return iter(self._entries)

    def __len__(self) -> int:
        return len(self._entries)

    def __contains__(self, key: object) -> bool:
        return key in self._entries

    def __repr__(self) -> str:
        return f"Snapshot(commit_id={self.commit_id!r}, seq={self.seq}, keys={list(self)!r})"

    def get_item(self, key: str) -> BackpackItem:
        """The value and metadata of ``key`` as they were at this snapshot."""
        if key not in self._entries:
            raise KeyNotFound(f"key {key!r} is not in the snapshot at commit {self.commit_id!r}")
        return _item(key, self._entries[key])

    def to_dict(self) -> dict[str, Any]:
        """All values as a plain dict the caller owns."""
        return {k: _entry_value(e) for k, e in self._entries.items()}


class SnapshotRef(NamedTuple):
    """A reference to the state of a Backpack at one commit (``seq``), resolved on demand.

    Taking one costs nothing (events take one at every node start); :meth:`resolve` rebuilds
    the :class:`Snapshot` through the version indexes. History is append-only, so the state a
    reference names never changes; only ``max_history`` eviction can make it unavailable,
    which :meth:`resolve` reports as :class:`CommitEvicted` and :meth:`to_json` as a marker.
    """

    backpack: Backpack
    seq: int

    def resolve(self) -> Snapshot:
        return self.backpack._snapshot_at_seq(self.seq, f"at seq {self.seq}")

    def to_dict(self) -> dict[str, Any]:
        return self.resolve().to_dict()

    def to_json(self) -> Any:
        try:
            return self.resolve().to_dict()
        except CommitEvicted as exc:
            return {"$evicted": True, "seq": self.seq, "reason": str(exc)}

    def __repr__(self) -> str:
        return f"SnapshotRef(backpack={self.backpack._id!r}, seq={self.seq})"


Observer = Callable[[AccessRecord], None]
#: How a node view reports its accesses as events: ``emit(type, payload, timestamp=None)``
#: (a pack's event carries its commit's time), e.g. :meth:`backpackflow.events.Emitter.emit`.
Reporter = Callable[..., Any]

StateLike = Union["Backpack", Snapshot, Mapping[str, Any]]


_KNOWN_KEYS: dict[str, None] = {}  # keys already found valid: most runs write the same keys


def _check_key(key: Any) -> str:
    if type(key) is str and key in _KNOWN_KEYS:
        return key
    if type(key) is not str or not key or key.strip() != key or "*" in key:
        if not isinstance(key, str):
            raise InvalidKey(f"a Backpack key must be a string, got {type(key).__name__}")
        raise InvalidKey(
            f"invalid Backpack key {key!r}: keys are non-empty strings without surrounding "
            "white space or '*'"
        )
    if len(_KNOWN_KEYS) > 100_000:
        _KNOWN_KEYS.clear()
    _KNOWN_KEYS[key] = None
    return key


def _check_tags(tags: Iterable[str] | None, key: str) -> tuple[str, ...]:
    if tags is None:
        return ()
    if isinstance(tags, str):
        raise InvalidValue(f"key {key!r}: tags must be a list of strings, got the string {tags!r}")
    tags = tuple(tags)
    for tag in tags:
        if type(tag) is not str:
            raise InvalidValue(f"key {key!r}: tags must be strings, got {type(tag).__name__}")
    return tags


class Backpack:
    """Versioned, access-controlled key/value state shared by the nodes of a flow.

    ``strict`` (default ``True``) makes a denied access raise :class:`AccessDenied`; otherwise the
    access does nothing, reads return the default, and the denial is recorded. ``max_history``
    bounds the number of retained commits (``None``: keep all); snapshots stay correct for every
    retained commit.
    """

    def __init__(
        self,
        initial: Mapping[str, Any] | None = None,
        *,
        strict: bool = True,
        max_history: int | None = None,
        backpack_id: str | None = None,
        max_denials: int = 10_000,
    ) -> None:
        if max_history is not None and (type(max_history) is not int or max_history < 1):
            raise ValueError(f"max_history must be a positive int or None, got {max_history!r}")
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
        self._commits: list[Commit] = []
        self._commit_start = 0
        self._by_id: dict[str, Commit] = {}  # built lazily by _lookup: writes far outnumber lookups
        self._indexed_seq = 0
        self._seq = 0
        self._head: Commit | None = None
        self._first_commit_id: str | None = None
        self._evicted = 0
        self._permissions: dict[str, Permissions] = {}
        # node id -> the seqs at which views were made for it: an int for one (most nodes run
        # once per Backpack, and a list per node measurably slowed runs), else a list
        self._node_marks: dict[str, int | list[int]] = {}
        self._max_denials = max_denials
        self._denials: deque[AccessRecord] | None = None
        self._observers: list[Observer] = []
        if initial:
            for key, value in initial.items():
                self.pack(key, value)

    # ------------------------------------------------------------------ observers

    def add_observer(self, observer: Observer) -> Callable[[], None]:
        """Call ``observer(record)`` after every access; returns a function that removes it."""
        self._observers.append(observer)

        def remove() -> None:
            if observer in self._observers:
                self._observers.remove(observer)

        return remove

    def _notify(self, record: AccessRecord) -> None:
        for observer in self._observers:
            observer(record)

    # ------------------------------------------------------------------ core storage

    def pack(
        self,
        key: str,
        value: Any,
        *,
        node_id: str | None = None,
        node_name: str | None = None,
        namespace: str | None = None,
        tags: Iterable[str] = (),
    ) -> Commit | None:
        """Store a copy of ``value`` under ``key``. Returns the commit (``None`` if denied in
        graceful mode)."""
        if namespace is not None:
            validate_namespace(namespace, where=f"pack of key {key!r}")
        return self._pack(key, value, node_id, node_name, namespace, tags)

    def _pack(
        self,
        key: str,
        value: Any,
        node_id: str | None,
        node_name: str | None,
        namespace: str | None,
        tags: Iterable[str],
        report: BackpackView | None = None,
    ) -> Commit | None:
        """:meth:`pack` after the namespace is known to be valid."""
        # _check_key's fast path, inlined (``__class__`` measured cheaper than type() here); the
        # class test keeps unhashable keys and str subclasses out of the _KNOWN_KEYS lookup
        if key.__class__ is not str or key not in _KNOWN_KEYS:
            _check_key(key)
        tag_tuple = _check_tags(tags, key) if tags else ()
        t = type(value)
        if t is str or t is int or t is bool or value is None:  # immutable scalars: no copy
            stored, length = value, None
        else:
            stored = copy_in(value, f"key {key!r}")
            length = len(stored) if type(stored) is list else None
        return self._write(
            "pack", key, stored, length, node_id, node_name, namespace, tag_tuple, report
        )

    def append(
        self,
        key: str,
        items: Iterable[Any],
        *,
        node_id: str | None = None,
        node_name: str | None = None,
        namespace: str | None = None,
        tags: Iterable[str] | None = None,
    ) -> Commit | None:
        """Append ``items`` to the list under ``key`` (created if missing). Only the appended
        items are stored. The item keeps its namespace and tags unless new ones are given.
        Appending nothing makes no commit and returns ``None``."""
        if namespace is not None:
            validate_namespace(namespace, where=f"append to key {key!r}")
        return self._append(key, items, node_id, node_name, namespace, tags)

    def _append(
        self,
        key: str,
        items: Iterable[Any],
        node_id: str | None,
        node_name: str | None,
        namespace: str | None,
        tags: Iterable[str] | None,
        report: BackpackView | None = None,
    ) -> Commit | None:
        _check_key(key)
        if isinstance(items, (str, bytes, dict)) or not isinstance(items, Iterable):
            raise InvalidValue(
                f"append to key {key!r}: items must be a list of values, got {type(items).__name__}"
            )
        new_items = copy_in(list(items), f"append to key {key!r}")
        if not new_items:
            return None
        tag_tuple = None if tags is None else _check_tags(tags, key)
        return self._write(
            "append", key, new_items, None, node_id, node_name, namespace, tag_tuple, report
        )

    def delete(
        self,
        key: str,
        *,
        node_id: str | None = None,
        node_name: str | None = None,
        namespace: str | None = None,
    ) -> Commit | None:
        """Remove ``key``. Returns the commit, or ``None`` when the key was absent (or the delete
        was denied in graceful mode)."""
        if namespace is not None:
            validate_namespace(namespace, where=f"delete of key {key!r}")
        return self._delete(key, node_id, node_name, namespace)

    def _delete(
        self,
        key: str,
        node_id: str | None,
        node_name: str | None,
        namespace: str | None,
        report: BackpackView | None = None,
    ) -> Commit | None:
        _check_key(key)
        if key not in self._current:
            return None
        return self._write("delete", key, _DELETED, None, node_id, node_name, namespace, (), report)

    def _write(
        self,
        op: str,
        key: str,
        stored: Any,
        length: int | None,
        node_id: str | None,
        node_name: str | None,
        namespace: str | None,
        tags: tuple[str, ...] | None,
        report: BackpackView | None = None,
    ) -> Commit | None:
        """Commit one change. Who hears of it: ``report`` (a node view reporting its own
        accesses) if given, else the Backpack's observers."""
        written = stored  # what this op wrote: the value, or the appended items
        lock = self._lock  # acquire/release measured 2x cheaper than 'with' here
        lock.acquire()
        try:
            current = self._current.get(key)
            if op == "append" and current is not None:
                if current[2] is None:
                    raise InvalidValue(
                        f"append to key {key!r}: it holds {type(current[1]).__name__}, not a list"
                    )
                if namespace is None:
                    namespace = current[0].namespace
                if tags is None:
                    tags = current[0].tags
            if tags is None:
                tags = ()
            if node_id is not None:
                perms = self._permissions.get(node_id)
                if perms is not None:
                    existing_ns = current[0].namespace if current is not None else None
                    rule = perms.check_write(key, namespace, existing_ns, current is not None)
                    if rule is not None:
                        self._deny(op, key, node_id, node_name, namespace, rule)
                        return None
            if op == "append":
                if current is None:
                    length = len(stored)
                else:
                    base, seen = current[1], current[2]
                    with _BASE_LOCK:
                        if len(base) != seen:  # a fork extended this base: copy our part
                            base = base[:seen]
                        base.extend(stored)
                    stored, length = base, len(base)
            log = self._logs.get(key)
            if log is None:
                version = 1
            elif isinstance(log, tuple):  # the key's one entry so far
                version = log[0].version + 1
            else:
                version = log[-1][0].version + 1
            self._seq += 1
            head = self._head
            seq = self._seq
            commit = _new(
                Commit,
                (
                    new_id(),
                    seq,
                    head.commit_id if head else None,
                    time.time(),
                    node_id,
                    node_name,
                    namespace,
                    op,
                    key,
                    version,
                    tags,
                ),
            )
            entry: _Entry = (commit, stored, length, seq)
            self._logs[key] = _log_with(log, entry)
            if stored is _DELETED:
                del self._current[key]
            else:
                self._current[key] = entry
            self._commits.append(commit)
            self._head = commit
            if self._first_commit_id is None:
                self._first_commit_id = commit.commit_id
            if self.max_history is not None and (
                len(self._commits) - self._commit_start > self.max_history
            ):
                self._evict_oldest()
        finally:
            lock.release()
        if report is not None or self._observers:
            if written is _DELETED:
                written = None
            elif written is stored and length is not None:
                # a new list base (a pack's, or the append that made the key): later appends
                # extend it in place, so report only the part this op wrote
                written = ListPrefix(stored, length)
            if report is not None:
                report._emit(  # type: ignore[misc]
                    _PACK,
                    _new(
                        BackpackPackPayload,
                        (key, op, written, commit[0], commit[9], commit[10], True, None),
                    ),
                    commit[3],  # the event is stamped with its commit's time
                )
            else:
                self._notify(
                    AccessRecord(
                        op,
                        key,
                        node_id,
                        node_name,
                        namespace,
                        True,
                        None,
                        True,
                        commit,
                        written,
                        commit.timestamp,
                    )
                )
        return commit

    def _evict_oldest(self) -> None:
        commit = self._commits[self._commit_start]
        self._commit_start += 1
        self._by_id.pop(commit.commit_id, None)
        self._evicted += 1
        key = commit.key
        log = self._logs[key]
        if isinstance(log, tuple):  # the key's only entry: it stays, as the key's base
            return
        start = self._log_starts.get(key, 0)
        if log[start][3] != commit.seq:  # drop the older base: this entry is the new base
            start += 1
        if start > 32 and start * 2 > len(log):
            del log[:start]
            start = 0
        if start:
            self._log_starts[key] = start
        else:
            self._log_starts.pop(key, None)
        if self._commit_start > 1024 and self._commit_start * 2 > len(self._commits):
            del self._commits[: self._commit_start]
            self._commit_start = 0

    def unpack(self, key: str, default: Any = None, *, node_id: str | None = None) -> Any:
        """A copy of the value under ``key``, or ``default`` when it is absent (or when the read
        is denied in graceful mode)."""
        return self._read(key, default, node_id, None, None, True)

    def _read(
        self,
        key: str,
        default: Any,
        node_id: str | None,
        node_name: str | None,
        namespace: str | None,
        notify: bool,
        report: BackpackView | None = None,
    ) -> Any:
        """Read one key. Who hears of it (when ``notify``): ``report`` (a node view reporting
        its own accesses) if given, else the Backpack's observers."""
        entry = self._current.get(key)
        if node_id is not None:
            perms = self._permissions.get(node_id)
            if perms is not None:
                rule = perms.check_read(key, entry[0].namespace if entry else None)
                if rule is not None:
                    self._deny("unpack", key, node_id, node_name, namespace, rule)
                    return default
        if notify:
            if report is not None:
                report._emit(  # type: ignore[misc]
                    _UNPACK, _new(BackpackUnpackPayload, (key, True, None, entry is not None))
                )
            elif self._observers:
                self._notify(
                    AccessRecord(
                        "unpack",
                        key,
                        node_id,
                        node_name,
                        namespace,
                        True,
                        None,
                        entry is not None,
                        None,
                        None,
                        time.time(),
                    )
                )
        if entry is None:
            return default
        value = entry[1]
        if entry[2] is None:
            t = type(value)
            if t is str or t is int or t is bool or t is float or value is None:
                return value
        return _entry_value(entry)

    def unpack_required(self, key: str, *, node_id: str | None = None) -> Any:
        """Like :meth:`unpack`, but a missing key raises :class:`KeyNotFound`."""
        value = self._read(key, _DELETED, node_id, None, None, True)
        if value is _DELETED:
            raise KeyNotFound(self._missing(key))
        return value

    def _missing(self, key: str) -> str:
        keys = list(self._current)
        shown = ", ".join(repr(k) for k in keys[:20]) + (" ..." if len(keys) > 20 else "")
        return f"key {key!r} is not in the Backpack (keys: {shown or 'none'})"

    def peek(self, key: str, default: Any = None, *, node_id: str | None = None) -> Any:
        """Read without recording the access (no observer call); permissions still apply."""
        return self._read(key, default, node_id, None, None, False)

    def has(self, key: str) -> bool:
        return key in self._current

    __contains__ = has

    def __len__(self) -> int:
        return len(self._current)

    def keys(self) -> list[str]:
        return list(self._current)

    def get_item(self, key: str, *, node_id: str | None = None) -> BackpackItem:
        """The value of ``key`` with its metadata. Raises :class:`KeyNotFound` if absent."""
        value = self._read(key, _DELETED, node_id, None, None, False)
        if value is _DELETED:
            raise KeyNotFound(self._missing(key))
        return _item(key, self._current[key])

    def get_version(self, key: str) -> int:
        """The version number of ``key`` (1 for the first write, +1 per pack/append/delete)."""
        entry = self._current.get(key)
        if entry is None:
            raise KeyNotFound(self._missing(key))
        return entry[0].version

    def to_dict(self) -> dict[str, Any]:
        """The current state as a plain dict the caller owns."""
        return {k: _entry_value(e) for k, e in self._current.items()}

    def __repr__(self) -> str:
        return (
            f"Backpack(id={self.id!r}, keys={len(self._current)}, "
            f"commits={len(self._commits) - self._commit_start})"
        )

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
        self, *, key: str | None = None, node_id: str | None = None, limit: int | None = None
    ) -> list[Commit]:
        """Retained commits, oldest first; filter by ``key`` / ``node_id``; ``limit`` keeps the
        newest ``limit``."""
        commits = self._commits[self._commit_start :]
        if key is not None:
            commits = [c for c in commits if c.key == key]
        if node_id is not None:
            commits = [c for c in commits if c.node_id == node_id]
        if limit is not None:
            commits = commits[-limit:] if limit > 0 else []
        return commits

    def get_key_history(self, key: str) -> list[Commit]:
        """The retained commits of one key, oldest first."""
        log = _as_log(self._logs.get(key))
        if not log:
            return []
        oldest = self._commits[self._commit_start].seq if self._commits[self._commit_start :] else 0
        return [e[0] for e in log[self._log_starts.get(key, 0) :] if e[0].seq >= oldest]

    def get_commit(self, commit_id: str) -> Commit:
        commit = self._lookup(commit_id)
        if commit is None:
            raise self._unknown_commit(commit_id)
        return commit

    def _lookup(self, commit_id: str) -> Commit | None:
        """Find a retained commit by id, indexing commits made since the last lookup."""
        commit = self._by_id.get(commit_id)
        if commit is None and self._indexed_seq < self._seq:
            oldest = self._oldest_seq()
            start = self._commit_start + max(self._indexed_seq + 1 - oldest, 0)
            self._by_id.update((c.commit_id, c) for c in self._commits[start:])
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
            and self._first_commit_id <= commit_id < retained[0].commit_id
        ):
            return CommitEvicted(
                f"commit {commit_id!r} was evicted: this Backpack keeps the last "
                f"{self.max_history} commits (max_history) and has dropped {self._evicted}; "
                f"the oldest retained is {retained[0].commit_id!r} (seq {retained[0].seq})"
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
                if entry[3] > seq:
                    continue
            else:
                start = starts.get(key, 0) if starts else 0
                i = bisect_right(log, seq, start, key=_entry_seq) - 1
                if i < start:
                    continue
                entry = log[i]
            if entry[1] is not _DELETED:
                entries[key] = entry
        return entries

    def _oldest_seq(self) -> int:
        if self._commit_start < len(self._commits):
            return self._commits[self._commit_start].seq
        return self._seq + 1

    def get_snapshot_at_commit(self, commit_id: str) -> Snapshot:
        """The state right after ``commit_id``."""
        commit = self.get_commit(commit_id)
        return Snapshot(self._state_at(commit.seq), commit.commit_id, commit.seq)

    def snapshot_ref(self) -> SnapshotRef:
        """A reference to the current state, resolved only when needed (see
        :class:`SnapshotRef`)."""
        return _new(SnapshotRef, (self, self._seq))

    def snapshot(self) -> Snapshot:
        """The current state as an immutable :class:`Snapshot` (cheap: no values are copied)."""
        head = self._head
        return Snapshot(dict(self._current), head.commit_id if head else None, self._seq)

    def _snapshot_at_seq(self, seq: int, what: str) -> Snapshot:
        if seq == 0:
            return Snapshot({}, None, 0)
        if self._evicted and seq < self._oldest_seq():
            raise CommitEvicted(
                f"the state {what} is at seq {seq}, which max_history={self.max_history} has "
                f"evicted (oldest retained seq: {self._oldest_seq()})"
            )
        commit = self._commits[self._commit_start + seq - self._oldest_seq()]
        return Snapshot(self._state_at(seq), commit.commit_id, seq)

    def _marks_of(self, node_id: str) -> list[int]:
        """The seqs at which views were made for ``node_id``, oldest first (a new list)."""
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
        for commit in self._commits[self._commit_start :]:
            if commit.node_id == node_id:
                return self._snapshot_at_seq(commit.seq - 1, f"before node {node_id!r}")
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
        commit = self.get_commit(commit_id)
        seq = commit.seq
        fork = Backpack(strict=self.strict, max_history=self.max_history)
        fork.forked_from = {"backpack_id": self.id, "commit_id": commit_id}
        with self._lock:
            end = self._commit_start + seq - self._oldest_seq() + 1
            fork._commits = self._commits[self._commit_start : end]
            fork._seq = seq
            fork._head = commit
            fork._first_commit_id = self._first_commit_id
            fork._evicted = self._evicted
            for key, stored in self._logs.items():
                log = _as_log(stored)
                start = self._log_starts.get(key, 0)
                i = bisect_right(log, seq, start, key=_entry_seq)
                if i > start:
                    copy = fork._logs[key] = log[start:i]
                    last = copy[-1]
                    if last[1] is not _DELETED:
                        fork._current[key] = last
            fork._permissions = dict(self._permissions)
            fork._node_marks = {
                n: kept
                for n in self._node_marks
                if (kept := [m for m in self._marks_of(n) if m <= seq])
            }
        return fork

    # ------------------------------------------------------------------ access control

    def register_permissions(
        self,
        node_id: str,
        *,
        read: Iterable[str] | None = None,
        write: Iterable[str] | None = None,
        namespace_read: Iterable[str] | None = None,
        namespace_write: Iterable[str] | None = None,
        deny: Iterable[str] | None = None,
        namespace_deny: Iterable[str] | None = None,
    ) -> Permissions:
        """Restrict what ``node_id`` may read and write (see :mod:`backpackflow.access`)."""
        perms = Permissions(
            read=read,
            write=write,
            namespace_read=namespace_read,
            namespace_write=namespace_write,
            deny=deny,
            namespace_deny=namespace_deny,
        )
        self._permissions[node_id] = perms
        return perms

    def get_permissions(self, node_id: str) -> Permissions | None:
        return self._permissions.get(node_id)

    def clear_permissions(self, node_id: str) -> None:
        self._permissions.pop(node_id, None)

    def get_access_denials(self, *, node_id: str | None = None) -> list[AccessRecord]:
        """Denied accesses, oldest first (the newest ``max_denials`` are kept)."""
        return [d for d in self._denials or () if node_id is None or d.node_id == node_id]

    def _deny(
        self,
        op: str,
        key: str,
        node_id: str,
        node_name: str | None,
        namespace: str | None,
        rule: str,
    ) -> None:
        record = AccessRecord(
            op,
            key,
            node_id,
            node_name,
            namespace,
            False,
            rule,
            key in self._current,
            None,
            None,
            time.time(),
        )
        if self._denials is None:
            self._denials = deque(maxlen=self._max_denials)
        self._denials.append(record)
        if self._observers:
            self._notify(record)
        if self.strict:
            verb = "read" if op == "unpack" else op
            raise AccessDenied(
                f"node {node_id!r} may not {verb} key {key!r}: {rule}",
                node_id=node_id,
                key=key,
                op=op,
                rule=rule,
            )
        return None

    # ------------------------------------------------------------------ namespaces

    def get_items_by_namespace(
        self, pattern: str, *, node_id: str | None = None
    ) -> list[BackpackItem]:
        """Current items whose namespace matches ``pattern`` (``sales.*``, ``*.chat``, ``a.**``).

        With ``node_id``, items that node may not read are left out.
        """
        match = compile_pattern(pattern)
        perms = self._permissions.get(node_id) if node_id is not None else None
        items = []
        for key, entry in self._current.items():
            ns = entry[0].namespace
            if ns is None or not match(ns):
                continue
            if perms is not None and perms.check_read(key, ns) is not None:
                continue
            items.append(_item(key, entry))
        return items

    def get_namespaces(self) -> list[str]:
        """The distinct namespaces of current items, sorted."""
        return sorted({e[0].namespace for e in self._current.values() if e[0].namespace})

    # ------------------------------------------------------------------ views

    def view(
        self,
        *,
        node_id: str,
        node_name: str | None = None,
        namespace: str | None = None,
    ) -> BackpackView:
        """The object a node works through: it stamps the node's identity on every write,
        enforces its permissions and records its reads and writes. Making a view marks the point
        :meth:`get_snapshot_before_node` returns."""
        if namespace is not None:
            validate_namespace(namespace, where=f"node {node_id!r}")
        return self._view(node_id, node_name, namespace)

    def _view(
        self,
        node_id: str,
        node_name: str | None,
        namespace: str | None,
        emit: Reporter | None = None,
    ) -> BackpackView:
        """:meth:`view` without re-validating ``namespace`` (the runner composes valid ones);
        ``emit``: see :meth:`BackpackView.report_to`."""
        marks = self._node_marks.get(node_id)
        if marks is None:
            self._node_marks[node_id] = self._seq
        else:
            if isinstance(marks, int):
                marks = self._node_marks[node_id] = [marks]
            if self._evicted and marks[0] < self._oldest_seq():
                oldest = self._oldest_seq()
                marks[:] = [m for m in marks if m >= oldest]
            marks.append(self._seq)
        return BackpackView(self, node_id, node_name, namespace, emit)

    # ------------------------------------------------------------------ serialization

    def to_json(self) -> dict[str, Any]:
        """Everything (items via history, full history, permissions, marks, denials) as JSON
        data. ``Backpack.from_json(bp.to_json())`` is an exact copy."""
        oldest = self._oldest_seq()
        base = []
        starts = self._log_starts
        for key, stored in self._logs.items():
            log = _as_log(stored)
            start = starts.get(key, 0)
            entry = log[start] if start < len(log) else None
            if entry is not None and entry[0].seq < oldest:
                item = {"commit": entry[0].to_json(), "deleted": entry[1] is _DELETED}
                if entry[1] is not _DELETED:
                    item["value"] = _entry_value(entry)
                base.append(item)
        commits = []
        for commit in self._commits[self._commit_start :]:
            data = commit.to_json()
            log = _as_log(self._logs[commit.key])
            start = starts.get(commit.key, 0)
            i = bisect_right(log, commit.seq, start, key=_entry_seq) - 1
            entry = log[i]
            if commit.op == "pack":
                data["value"] = _entry_value(entry)
            elif commit.op == "append":
                prev = log[i - 1] if i > start else None
                seen = prev[2] if prev is not None and prev[2] is not None else 0
                assert entry[2] is not None
                data["items"] = [copy_out(v) for v in entry[1][seen : entry[2]]]
            commits.append(data)
        return {
            "format": FORMAT,
            "format_version": FORMAT_VERSION,
            "id": self.id,
            "strict": self.strict,
            "max_history": self.max_history,
            "forked_from": dict(self.forked_from) if self.forked_from else None,
            "seq": self._seq,
            "first_commit_id": self._first_commit_id,
            "evicted": self._evicted,
            "base": base,
            "commits": commits,
            "permissions": {n: p.to_json() for n, p in self._permissions.items()},
            "node_marks": {n: self._marks_of(n) for n in self._node_marks},
            "denials": [d.to_json() for d in self._denials or ()],
        }

    def to_json_str(self, **dumps_kwargs: Any) -> str:
        return json.dumps(self.to_json(), **dumps_kwargs)

    @classmethod
    def from_json(cls, data: Mapping[str, Any] | str | bytes) -> Backpack:
        """Rebuild a Backpack from :meth:`to_json` output (a dict or a JSON string)."""
        from backpackflow._backpack_json import load_backpack

        return load_backpack(cls, data)


def _entries_of(state: StateLike) -> dict[str, _Entry] | None:
    if isinstance(state, Backpack):
        return state._current
    if isinstance(state, Snapshot):
        return state._entries
    return None


def _values_of(state: StateLike) -> Mapping[str, Any]:
    if isinstance(state, Backpack):
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


class BackpackView:
    """A node's handle on the Backpack: same reading and writing API, bound to one identity.

    Every write is stamped with the node's id, name and namespace; the node's permissions apply;
    ``reads`` and ``writes`` list the keys it touched, in first-touch order. Views are plain
    objects, so concurrent nodes (asyncio tasks or threads) never share an identity.
    """

    __slots__ = (
        "_bp",
        "_emit",
        "_reads",
        "_writes",
        "namespace",
        "node_id",
        "node_name",
    )

    def __init__(
        self,
        backpack: Backpack,
        node_id: str,
        node_name: str | None,
        namespace: str | None,
        emit: Reporter | None = None,
    ) -> None:
        self._bp = backpack
        self.node_id = node_id
        self.node_name = node_name
        self.namespace = namespace
        self._reads: dict[str, None] = {}
        self._writes: dict[str, None] = {}
        # set (here or by report_to): the view reports its own accesses through it
        self._emit = emit

    def report_to(self, emit: Callable[[StreamEventType, Any], None]) -> None:
        """Emit this view's granted accesses as ``backpack_pack`` / ``backpack_unpack`` events
        through ``emit(type, payload)`` instead of telling the Backpack's observers (the runner
        binds each node's view to that node's events this way). Denials still go to the
        observers."""
        self._emit = lambda type, payload, timestamp=None: emit(type, payload)

    @property
    def reads(self) -> list[str]:
        """Keys this node unpacked, in first-read order."""
        return list(self._reads)

    @property
    def writes(self) -> list[str]:
        """Keys this node packed, appended or deleted, in first-write order."""
        return list(self._writes)

    @property
    def backpack_id(self) -> str:
        return self._bp.id

    def pack(self, key: str, value: Any, *, tags: Iterable[str] = ()) -> Commit | None:
        commit = self._bp._pack(
            key,
            value,
            self.node_id,
            self.node_name,
            self.namespace,
            tags,
            None if self._emit is None else self,
        )
        if commit is not None:
            self._writes[key] = None
        return commit

    def append(
        self, key: str, items: Iterable[Any], *, tags: Iterable[str] | None = None
    ) -> Commit | None:
        commit = self._bp._append(
            key,
            items,
            self.node_id,
            self.node_name,
            self.namespace,
            tags,
            None if self._emit is None else self,
        )
        if commit is not None:
            self._writes[key] = None
        return commit

    def delete(self, key: str) -> Commit | None:
        commit = self._bp._delete(
            key, self.node_id, self.node_name, self.namespace, None if self._emit is None else self
        )
        if commit is not None:
            self._writes[key] = None
        return commit

    def unpack(self, key: str, default: Any = None) -> Any:
        self._reads[key] = None
        return self._bp._read(
            key,
            default,
            self.node_id,
            self.node_name,
            self.namespace,
            True,
            None if self._emit is None else self,
        )

    def unpack_required(self, key: str) -> Any:
        self._reads[key] = None
        value = self._bp._read(
            key,
            _DELETED,
            self.node_id,
            self.node_name,
            self.namespace,
            True,
            None if self._emit is None else self,
        )
        if value is _DELETED:
            raise KeyNotFound(f"node {self.node_id!r}: {self._bp._missing(key)}")
        return value

    def peek(self, key: str, default: Any = None) -> Any:
        return self._bp._read(key, default, self.node_id, self.node_name, self.namespace, False)

    def has(self, key: str) -> bool:
        return self._bp.has(key)

    __contains__ = has

    def keys(self) -> list[str]:
        """Current keys this node may read."""
        perms = self._bp._permissions.get(self.node_id)
        if perms is None:
            return self._bp.keys()
        return [
            k for k, e in self._bp._current.items() if perms.check_read(k, e[0].namespace) is None
        ]

    def get_item(self, key: str) -> BackpackItem:
        self._reads[key] = None
        return self._bp.get_item(key, node_id=self.node_id)

    def get_version(self, key: str) -> int:
        return self._bp.get_version(key)

    def get_items_by_namespace(self, pattern: str) -> list[BackpackItem]:
        items = self._bp.get_items_by_namespace(pattern, node_id=self.node_id)
        for item in items:
            self._reads[item.key] = None
        return items

    def get_namespaces(self) -> list[str]:
        return self._bp.get_namespaces()

    def __repr__(self) -> str:
        return f"BackpackView(node_id={self.node_id!r}, namespace={self.namespace!r})"
