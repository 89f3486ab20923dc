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

import threading
import time
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any

from backpackflow.backpack._access import AccessMixin
from backpackflow.backpack._history import _COMMIT_BYTES
from backpackflow.backpack._state import _State
from backpackflow.backpack.records import (
    _C_NAMESPACE,
    _C_VERSION,
    _DELETED,
    _KNOWN_KEYS,
    AccessRecord,
    BackpackItem,
    Commit,
    _check_key,
    _check_tags,
    _Entry,
    _entry_value,
    _item,
    _log_with,
)
from backpackflow.errors import InvalidSetting, InvalidValue, KeyNotFound
from backpackflow.events import BackpackPackPayload, BackpackUnpackPayload, StreamEventType
from backpackflow.ids import new_id
from backpackflow.jsondata import ListPrefix, copy_in
from backpackflow.namespaces import validate_namespace

if TYPE_CHECKING:  # type-only: the view is made by AccessMixin.view, passed back here
    from backpackflow.backpack.view import BackpackView

_BASE_LOCK = threading.Lock()  # guards "check length, then extend" on list bases shared by forks
_new = tuple.__new__  # build named tuples without their Python-level __new__ on the hot path
_now = time.time
_PACK = StreamEventType.BACKPACK_PACK
_UNPACK = StreamEventType.BACKPACK_UNPACK


def access_event(record: AccessRecord) -> tuple[StreamEventType, Any, float]:
    """The event an access becomes: ``(type, payload, timestamp)`` (a write's event carries its
    commit's time). The one definition of it: a run turns the accesses its Backpack's observers
    see into events with this; :meth:`Backpack._write` and :meth:`Backpack._read` build the same
    payloads inline for a node view's own accesses (the hot path), which
    tests/kernel/test_hot_path_parity.py checks against this function."""
    if record.op == "unpack":
        return (
            _UNPACK,
            BackpackUnpackPayload(record.key, record.granted, record.reason, record.found),
            record.timestamp,
        )
    commit = record.commit
    payload = BackpackPackPayload(
        record.key,
        record.op,
        record.value,
        commit.commit_id if commit else None,
        commit.version if commit else None,
        commit.tags if commit else (),
        record.granted,
        record.reason,
    )
    return _PACK, payload, record.timestamp


class Backpack(AccessMixin):
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
            raise InvalidSetting(
                f"Backpack(max_history=...) must be a positive int or None, got {max_history!r}"
            )
        _State.__init__(self, strict, max_history, backpack_id, max_denials)
        if initial:
            for key, value in initial.items():
                self.pack(key, value)

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
                if current[12] is None:  # its list length (see _Entry for the indexes)
                    raise InvalidValue(
                        f"append to key {key!r}: it holds {type(current[11]).__name__}, not a list"
                    )
                if namespace is None:
                    namespace = current[6]
                if tags is None:
                    tags = current[10]
            if tags is None:
                tags = ()
            if node_id is not None:
                perms = self._permissions.get(node_id)
                if perms is not None:
                    existing_ns = current[6] if current is not None else None
                    rule = perms.check_write(key, namespace, existing_ns, current is not None)
                    if rule is not None:
                        self._deny(op, key, node_id, node_name, namespace, rule)
                        return None
            if op == "append":
                if current is None:
                    length = len(stored)
                else:
                    base, seen = current[11], current[12]
                    with _BASE_LOCK:
                        if len(base) != seen:  # a fork extended this base: copy our part
                            base = base[:seen]
                        base.extend(stored)
                    stored, length = base, len(base)
            log = self._logs.get(key)
            if log is None:
                version = 1
            elif isinstance(log, tuple):  # the key's one entry so far
                version = log[9] + 1  # its version
            else:
                version = log[-1][9] + 1
            self._seq += 1
            head = self._head
            seq = self._seq
            # the caller gets a Commit; the Backpack keeps the commit and what it stored in one
            # plain tuple, which the collector stops tracking (see _Entry)
            fields = (
                new_id(),
                seq,
                head[0] if head else None,  # head.commit_id, without a generic lookup
                _now(),
                node_id,
                node_name,
                namespace,
                op,
                key,
                version,
                tags,
            )
            commit = _new(Commit, fields)  # _commit(entry), without slicing the entry
            # (concatenated: measured 2x faster than (*fields, stored, length) on 3.11)
            entry: _Entry = fields + (stored, length)  # noqa: RUF005
            # a key's first entry is its log (see _log_with), set here without a call
            self._logs[key] = entry if log is None else _log_with(log, entry)
            if stored is _DELETED:
                del self._current[key]
            else:
                self._current[key] = entry
            self._commits.append(entry)
            self._head = commit  # the head keeps the Commit: one, not one per commit
            if self._sized_seq == seq - 1 and self.max_history is None:
                # approx_bytes kept up to date for what it would count alike (a scalar, a
                # string, a delete): an event history measures every run's Backpack (see
                # HistoryMixin.approx_bytes; test_backpack_history.py checks they agree)
                t = type(stored)
                if t is int or t is float or t is bool or stored is None or stored is _DELETED:
                    self._sized_seq = seq
                    self._sized_bytes += _COMMIT_BYTES
                elif t is str:
                    self._sized_seq = seq
                    self._sized_bytes += _COMMIT_BYTES + 49 + len(stored)
            if self._first_commit_id is None:
                self._first_commit_id = fields[0]
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
            if report is not None:  # access_event(record), inlined: the hot path
                emit = report._emit  # a slot read, then a call (report._emit() is a slow lookup)
                emit(  # type: ignore[misc]
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
        hook = self._on_commit
        if hook is not None:  # a durable run writes its commits as they happen
            hook(commit)
        return commit

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
                rule = perms.check_read(key, entry[_C_NAMESPACE] if entry else None)
                if rule is not None:
                    self._deny("unpack", key, node_id, node_name, namespace, rule)
                    return default
        if notify:
            if report is not None:  # access_event(record), inlined: the hot path
                emit = report._emit  # a slot read, then a call (report._emit() is a slow lookup)
                emit(  # type: ignore[misc]
                    _UNPACK, _new(BackpackUnpackPayload, (key, True, None, entry is not None, None))
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
        value = entry[11]  # see _Entry for the indexes
        if entry[12] is None:
            t = type(value)
            if t is str or t is int or t is bool or t is float or value is None:
                return value
        return _entry_value(entry)

    def unpack_required(self, key: str, *, node_id: str | None = None) -> Any:
        """Like :meth:`unpack`, but a missing key raises :class:`KeyNotFound`."""
        value = self._read(key, _DELETED, node_id, None, None, True)
        if value is _DELETED:
            raise self._not_found(key, node_id)
        return value

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
            raise self._not_found(key, node_id)
        return _item(key, self._current[key])

    def get_version(self, key: str) -> int:
        """The version number of ``key`` (1 for the first write, +1 per pack/append/delete)."""
        entry = self._current.get(key)
        if entry is None:
            raise KeyNotFound(self._missing(key), key=key)
        return entry[_C_VERSION]

    def to_dict(self) -> dict[str, Any]:
        """The current state as a plain dict the caller owns."""
        return {k: _entry_value(e) for k, e in self._current.items()}

    def __repr__(self) -> str:
        return (
            f"Backpack(id={self.id!r}, keys={len(self._current)}, "
            f"commits={len(self._commits) - self._commit_start})"
        )
