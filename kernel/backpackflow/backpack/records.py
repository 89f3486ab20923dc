"""The Backpack's records: commits, items, access records, diffs and snapshots (immutable
values the Backpack hands out), and the log entries they are read from."""

from __future__ import annotations

import operator
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import TYPE_CHECKING, Any, Final, NamedTuple, Union

import attrs

from backpackflow.errors import CommitEvicted, InvalidKey, InvalidValue, KeyNotFound
from backpackflow.jsondata import copy_out

if TYPE_CHECKING:  # type-only back references: the Backpack and its view build these records
    from backpackflow.backpack._backpack import Backpack

FORMAT = "backpackflow.backpack"
FORMAT_VERSION = 1

OPS = ("pack", "append", "delete")

_new_tuple = tuple.__new__  # build named tuples without their Python-level __new__

_DELETED: Any = type("_Deleted", (), {"__repr__": lambda self: "<deleted>"})()


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


#: A log entry: one commit as the Backpack stores it, a plain tuple of :class:`Commit`'s fields
#: in its order (``_C_*`` name the indexes), then what the commit stored (``_E_VALUE``: the
#: value, a list base, or _DELETED) and the list's length then (``_E_LENGTH``, ``None`` for any
#: other value). A key's log (a list of entries) is searched by seq (``_entry_seq``) in C.
#:
#: One plain tuple per commit, for CPython's garbage collector: it stops tracking an exact tuple
#: whose items are all untracked (strings, numbers, ``None``, a tuple of strings: a commit's
#: fields always are, and so is a scalar value), never a tuple subclass such as Commit. Kept as
#: a Commit plus an entry, every commit of a long run stayed tracked and counted towards the
#: next collection, and each full collection traversed them all (a 100,000-node chain ran 1.7x
#: slower per node than a 10-node flow, nearly all of it in the collector). Commits are made from
#: entries when handed out (:func:`_commit`, :func:`_commits`).
_Entry = tuple[
    str,
    int,
    str | None,
    float,
    str | None,
    str | None,
    str | None,
    str,
    str,
    int,
    tuple[str, ...],
    Any,
    int | None,
]
_C_ID: Final = 0
_C_SEQ: Final = 1
_C_PARENT: Final = 2
_C_TIME: Final = 3
_C_NODE_ID: Final = 4
_C_NODE_NAME: Final = 5
_C_NAMESPACE: Final = 6
_C_OP: Final = 7
_C_KEY: Final = 8
_C_VERSION: Final = 9
_C_TAGS: Final = 10
_E_VALUE: Final = 11
_E_LENGTH: Final = 12
_entry_seq = operator.itemgetter(_C_SEQ)


def _commit(entry: _Entry) -> Commit:
    """The commit an entry records, as the :class:`Commit` handed out."""
    return _new_tuple(Commit, entry[:_E_VALUE])


def _commits(entries: Iterable[_Entry]) -> list[Commit]:
    """The commits entries record, as :class:`Commit` objects, in order."""
    return [_new_tuple(Commit, e[:_E_VALUE]) for e in entries]


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
    value, length = entry[_E_VALUE], entry[_E_LENGTH]
    if length is None:
        return copy_out(value)
    return [copy_out(v) for v in value[:length]]


def _entry_raw(entry: _Entry) -> Any:
    """The value an entry holds, without copying (read-only use)."""
    value, length = entry[_E_VALUE], entry[_E_LENGTH]
    return value if length is None else value[:length]


def _item(key: str, entry: _Entry) -> BackpackItem:
    return BackpackItem(
        key,
        _entry_value(entry),
        entry[_C_NODE_ID],
        entry[_C_NODE_NAME],
        entry[_C_NAMESPACE],
        entry[_C_TIME],
        entry[_C_VERSION],
        entry[_C_TAGS],
        entry[_C_ID],
    )


class Snapshot(Mapping[str, Any]):
    """An immutable view of the state at one commit. Values are copied out on access, so making a
    snapshot is cheap and holding one keeps only references to stored data."""

    __slots__ = ("_entries", "commit_id", "seq")
    #: Secret masking keeps it lazy (see backpackflow.policy.secrets).
    lazy_json = True

    def __init__(self, entries: dict[str, _Entry], commit_id: str | None, seq: int) -> None:
        self._entries = entries
        self.commit_id = commit_id
        self.seq = seq

    def __getitem__(self, key: str) -> Any:
        try:
            return _entry_value(self._entries[key])
        except KeyError:
            raise KeyNotFound(
                f"key {key!r} is not in the snapshot at commit {self.commit_id!r}", key=key
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
            raise KeyNotFound(
                f"key {key!r} is not in the snapshot at commit {self.commit_id!r}", key=key
            )
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
        return _unless_evicted(self.to_dict, self.seq)

    def __repr__(self) -> str:
        return f"SnapshotRef(backpack={self.backpack._id!r}, seq={self.seq})"


def _unless_evicted(serialize: Callable[[], Any], seq: int) -> Any:
    """``serialize()``, or the marker of a state that ``max_history`` evicted."""
    try:
        return serialize()
    except CommitEvicted as exc:
        return {"$evicted": True, "seq": seq, "reason": str(exc)}


class StateDelta(NamedTuple):
    """The state of a Backpack at ``seq`` told as what changed since ``base`` (an earlier
    seq of the same Backpack; ``-1``: since nothing, i.e. the whole state), resolved on demand.

    ``node_start`` events carry one: in process it is a reference like :class:`SnapshotRef`
    (:meth:`resolve` gives the whole state); serialized, it holds only the keys the commits
    between ``base`` and ``seq`` changed, so a run's events cost O(what was written) instead of
    a full copy of the state per node. Its JSON form::

        {"$state": "delta", "seq": 7, "base_seq": 4,
         "changed": {"answer": "..."}, "removed": ["draft"]}

    The state at ``seq`` is the state at ``base_seq`` (the previous ``node_start`` of the run)
    with ``changed`` set and ``removed`` deleted; ``base_seq`` ``null`` means ``changed`` is the
    whole state (the first node of a run, or when ``max_history`` evicted the commits after
    ``base``). A state that is itself evicted serializes as SnapshotRef's ``$evicted`` marker.
    """

    backpack: Backpack
    seq: int
    base: int

    def resolve(self) -> Snapshot:
        return SnapshotRef(self.backpack, self.seq).resolve()

    def to_dict(self) -> dict[str, Any]:
        return self.resolve().to_dict()

    def to_json(self) -> Any:
        return _unless_evicted(lambda: self.backpack._delta_json(self.base, self.seq), self.seq)

    def __repr__(self) -> str:
        return f"StateDelta(backpack={self.backpack._id!r}, seq={self.seq}, base={self.base})"


#: Secret masking keeps them lazy (see backpackflow.policy.secrets); a named tuple takes no
#: class attribute in its body.
SnapshotRef.lazy_json = True  # type: ignore[attr-defined]
StateDelta.lazy_json = True  # type: ignore[attr-defined]


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
