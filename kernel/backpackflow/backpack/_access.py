"""The Backpack's access control, namespace queries, node views and JSON form (a mixin of
:class:`~backpackflow.backpack.Backpack`)."""

from __future__ import annotations

import json
import time
from bisect import bisect_left
from collections import deque
from collections.abc import Callable, Iterable, Mapping
from typing import TYPE_CHECKING, Any, cast

from backpackflow.backpack._codec import dump_backpack, load_backpack
from backpackflow.backpack._history import HistoryMixin
from backpackflow.backpack.access import Permissions
from backpackflow.backpack.records import (
    _C_NAMESPACE,
    AccessRecord,
    BackpackItem,
    Observer,
    Reporter,
    _item,
)
from backpackflow.backpack.view import BackpackView
from backpackflow.errors import AccessDenied, KeyNotFound, ReadDenied
from backpackflow.namespaces import compile_pattern, validate_namespace

if TYPE_CHECKING:  # type-only back reference: the class this mixin is part of
    from backpackflow.backpack._backpack import Backpack


def _drop_evicted_marks(marks: list[int], oldest: int) -> None:
    """Forget the marks ``max_history`` has evicted, in amortized O(1) per view: the dead
    prefix is cut once it is the larger half (until then :meth:`HistoryMixin._marks_of` skips
    it), so a node that runs at every step never pays O(max_history) per step."""
    dead = bisect_left(marks, oldest)
    if dead * 2 > len(marks):
        del marks[:dead]


class AccessMixin(HistoryMixin):
    def _missing(self, key: str) -> str:
        keys = list(self._current)
        shown = ", ".join(repr(k) for k in keys[:20]) + (" ..." if len(keys) > 20 else "")
        return f"key {key!r} is not in the Backpack (keys: {shown or 'none'})"

    def _not_found(self, key: str, node_id: str | None) -> KeyNotFound:
        """The error of a required read that found nothing: the key is absent, or (graceful
        mode) ``node_id`` may not read it, which :class:`ReadDenied` says."""
        perms = self._permissions.get(node_id) if node_id is not None else None
        if perms is not None and node_id is not None:
            entry = self._current.get(key)
            rule = perms.check_read(key, entry[_C_NAMESPACE] if entry else None)
            if rule is not None:
                return ReadDenied(
                    f"node {node_id!r} may not read key {key!r}: {rule} (the read was denied "
                    "and recorded; a strict Backpack raises AccessDenied instead)",
                    key=key,
                    node_id=node_id,
                    rule=rule,
                )
        where = f"node {node_id!r}: " if node_id is not None else ""
        return KeyNotFound(where + self._missing(key), key=key, node_id=node_id)

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
        """Restrict what ``node_id`` may read and write (see
        :mod:`backpackflow.backpack.access`)."""
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
            ns = entry[_C_NAMESPACE]
            if ns is None or not match(ns):
                continue
            if perms is not None and perms.check_read(key, ns) is not None:
                continue
            items.append(_item(key, entry))
        return items

    def get_namespaces(self) -> list[str]:
        """The distinct namespaces of current items, sorted."""
        return sorted({e[_C_NAMESPACE] for e in self._current.values() if e[_C_NAMESPACE]})

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
            elif self._evicted and marks and marks[0] < self._oldest_seq():
                _drop_evicted_marks(marks, self._oldest_seq())
            marks.append(self._seq)
        journal = self._mark_journal
        if journal is not None:  # a durable run records its marks (see runner.checkpoint)
            journal.append((node_id, self._seq))
        # self is the Backpack; no cast(): it is a function call per node
        return BackpackView(self, node_id, node_name, namespace, emit)  # type: ignore[arg-type]

    # ------------------------------------------------------------------ serialization

    def to_json(self) -> dict[str, Any]:
        """Everything (items via history, full history, permissions, marks, denials) as JSON
        data. ``Backpack.from_json(bp.to_json())`` is an exact copy (both directions are in
        :mod:`backpackflow.backpack._codec`)."""
        return dump_backpack(self)

    def to_json_str(self, **dumps_kwargs: Any) -> str:
        return json.dumps(self.to_json(), **dumps_kwargs)

    @classmethod
    def from_json(cls, data: Mapping[str, Any] | str | bytes, *, validate: bool = True) -> Backpack:
        """Rebuild a Backpack from :meth:`to_json` output (a dict or a JSON string).

        ``validate=False`` skips the JSON Schema check for a document this library wrote
        itself (a checkpoint's): ten times faster; a damaged document is still refused with
        :class:`~backpackflow.SerializationError` naming its JSON path."""
        return load_backpack(cast("type[Backpack]", cls), data, validate=validate)
