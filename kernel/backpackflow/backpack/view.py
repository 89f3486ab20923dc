"""A node's view of the Backpack: the same API bound to one node's identity and permissions."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import TYPE_CHECKING, Any

from backpackflow.backpack.records import _C_NAMESPACE, _DELETED, BackpackItem, Commit, Reporter
from backpackflow.errors import AccessDenied
from backpackflow.events import StreamEventType

if TYPE_CHECKING:  # type-only back reference: a view is made by (and works through) a Backpack
    from backpackflow.backpack._backpack import Backpack


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
            raise self._bp._not_found(key, self.node_id)
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
            k for k, e in self._bp._current.items() if perms.check_read(k, e[_C_NAMESPACE]) is None
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


class MappedView(BackpackView):
    """A node's view whose reads of some names are reads of other keys: key mappings
    (``{name: key}``, from a flow's edges and nodes; see docs/dataflow.md).

    It shares the identity, the recorded reads and writes and the event reporter of the view
    it wraps, so the lifecycle's events (``prep_complete.reads``, ``node_end.writes``) see its
    accesses. A mapped read is a read of the Backpack key: its permissions and namespace apply
    (a mapping never lets a node read what it may not), it is recorded under the key, and its
    ``backpack_unpack`` event names the key and, as ``read_as``, the name the node used.
    Writes are not mapped: a node writes its own keys. ``origins`` (``{name: where the mapping
    is declared}``, e.g. ``$.edges[0].mappings``) only make errors clearer."""

    __slots__ = ("_mappings", "_origins")

    def __init__(
        self,
        view: BackpackView,
        mappings: Mapping[str, str],
        origins: Mapping[str, str] | None = None,
    ) -> None:
        self._bp = view._bp
        self.node_id = view.node_id
        self.node_name = view.node_name
        self.namespace = view.namespace
        self._reads = view._reads
        self._writes = view._writes
        self._emit = view._emit
        self._mappings = mappings
        self._origins = origins or {}

    @property
    def mappings(self) -> Mapping[str, str]:
        """``{name: Backpack key}``: what this node reads as ``name``."""
        return self._mappings

    def _mapped(self, name: str) -> str:
        where = self._origins.get(name)
        return f"mapped from {name!r}" + (f" by {where}" if where else "")

    def _read_mapped(self, name: str, key: str, default: Any, notify: bool = True) -> Any:
        """Read ``key`` as ``name``: recorded and reported (``notify``, as ``unpack`` does)
        or not (as ``peek``); a denial says which mapping asked."""
        report = None
        if notify:
            self._reads[key] = None
            if self._emit is not None:
                report = _Relabel(self._emit, name)
        try:
            return self._bp._read(
                key,
                default,
                self.node_id,
                self.node_name,
                self.namespace,
                notify,
                report,  # type: ignore[arg-type]
            )
        except AccessDenied as exc:
            raise AccessDenied(
                f"{exc} ({self._mapped(name)})",
                node_id=exc.node_id,
                key=exc.key,
                op=exc.op,
                rule=exc.rule,
            ) from None

    def unpack(self, key: str, default: Any = None) -> Any:
        source = self._mappings.get(key)
        if source is None:
            return super().unpack(key, default)
        return self._read_mapped(key, source, default)

    def unpack_required(self, key: str) -> Any:
        source = self._mappings.get(key)
        if source is None:
            return super().unpack_required(key)
        value = self._read_mapped(key, source, _DELETED)
        if value is _DELETED:
            exc = self._bp._not_found(source, self.node_id)
            exc.args = (f"{exc} ({self._mapped(key)})",)
            raise exc
        return value

    def peek(self, key: str, default: Any = None) -> Any:
        source = self._mappings.get(key)
        if source is None:
            return super().peek(key, default)
        return self._read_mapped(key, source, default, notify=False)

    def has(self, key: str) -> bool:
        return self._bp.has(self._mappings.get(key, key))

    __contains__ = has

    def keys(self) -> list[str]:
        """Current keys this node may read, and the mapped names whose key it may read."""
        keys = super().keys()
        present = set(keys)
        return keys + [n for n, k in self._mappings.items() if k in present and n not in present]

    def get_item(self, key: str) -> BackpackItem:
        return super().get_item(self._mappings.get(key, key))

    def get_version(self, key: str) -> int:
        return self._bp.get_version(self._mappings.get(key, key))

    def __repr__(self) -> str:
        return (
            f"MappedView(node_id={self.node_id!r}, namespace={self.namespace!r}, "
            f"mappings={dict(self._mappings)!r})"
        )


class _Relabel:
    """The reporter of one mapped read: its ``backpack_unpack`` event says ``read_as``."""

    __slots__ = ("_emit",)

    def __init__(self, emit: Reporter, name: str) -> None:
        def relabel(type: StreamEventType, payload: Any, timestamp: Any = None) -> Any:
            return emit(type, payload._replace(read_as=name))

        self._emit = relabel
