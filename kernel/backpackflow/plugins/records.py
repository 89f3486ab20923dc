"""What plugins register: one frozen record per registration, and the protocols the kernel
checks registered classes against (node classes and event sinks are duck-typed, so this layer
needs neither the runner nor the event bus)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # type-only back reference: a command's handler is given the registry
    from backpackflow.plugins.registry import Registry

from collections.abc import Callable, Mapping
from typing import Any, Protocol, runtime_checkable

import attrs

ENTRY_POINT_GROUP = "backpackflow"
DISABLE_AUTOLOAD_ENV = "BACKPACKFLOW_DISABLE_PLUGIN_AUTOLOAD"
DISABLE_PLUGINS_ENV = "BACKPACKFLOW_DISABLE_PLUGINS"

# ------------------------------------------------------------------------------- records


@runtime_checkable
class NodeClass(Protocol):
    """What a registered node type's class must provide (every subclass of
    :class:`~backpackflow.BaseNode` does): the lifecycle, the successors it is wired with, and
    the flows-as-data pair. Checked structurally, so the plugin host needs no runner."""

    def prep(self, backpack: Any) -> Any: ...

    def exec(self, prep_res: Any) -> Any: ...

    def post(self, backpack: Any, prep_res: Any, exec_res: Any) -> Any: ...

    def to_config(self, type_name: str | None = None) -> Any: ...

    @classmethod
    def from_config(cls, config: Any, deps: Any = None) -> Any: ...


@runtime_checkable
class EventSink(Protocol):
    """What a sink factory returns: ``handle`` receives every event (it is subscribed to the
    run's EventStreamer); ``close`` flushes and returns a report (counts of events written,
    sent, retried, dropped ...). Neither may block the flow for long: buffer instead."""

    def handle(self, event: Any) -> Any: ...  # a BackpackEvent

    def close(self) -> Mapping[str, Any]: ...


@attrs.frozen
class NodeType:
    """A registered node type. ``reads`` and ``writes`` are its data contract: the Backpack
    keys it reads and writes, each with a JSON Schema (a key may name params, ``"{source}"``;
    see :func:`backpackflow.config.resolve_key`)."""

    name: str
    node_class: type
    params: type | None
    dependencies: tuple[str, ...]
    description: str
    plugin: str
    reads: Mapping[str, Any] = attrs.field(factory=dict)
    writes: Mapping[str, Any] = attrs.field(factory=dict)


@attrs.frozen
class SinkType:
    name: str
    factory: Callable[..., EventSink]
    options: type | None
    shorthand: str | None
    description: str
    plugin: str


@attrs.frozen
class DependencyFactory:
    name: str
    factory: Callable[..., Any]
    options: type | None
    description: str
    plugin: str


@attrs.frozen
class RunStoreType:
    name: str
    factory: Callable[[str | None], Any]
    schemes: tuple[str, ...]
    description: str
    plugin: str


@attrs.frozen
class ExecutorType:
    name: str
    factory: Callable[..., Any]
    description: str
    plugin: str


@attrs.frozen
class LiveFeedType:
    """A registered live feed: ``factory(url)`` makes one for a URL of its ``schemes``."""

    name: str
    factory: Callable[[str], Any]
    schemes: tuple[str, ...]
    description: str
    plugin: str


@attrs.frozen
class Migration:
    from_version: str
    to_version: str
    migrate: Callable[[dict[str, Any]], dict[str, Any]]
    description: str
    plugin: str


@attrs.frozen
class ToolType:
    name: str
    function: Callable[..., Any]
    params: type | None
    description: str
    plugin: str


@attrs.frozen
class ConditionLanguage:
    name: str
    compile: Callable[[Any], Callable[[Mapping[str, Any]], Any]]
    source_type: type
    description: str
    plugin: str


@attrs.frozen
class Example:
    """An example flow a plugin ships: the folder holding its flow file and what it reads."""

    name: str
    folder: Path
    flow: str
    description: str
    plugin: str

    @property
    def flow_path(self) -> Path:
        return self.folder / self.flow


@attrs.frozen
class Command:
    name: str
    handler: Callable[[Any, Registry], int]
    help: str
    arguments: Callable[[Any], None] | None
    plugin: str


@attrs.define
class PluginInfo:
    """One plugin as ``backpackflow plugins`` lists it."""

    name: str
    status: str  # loaded | unavailable | disabled | broken
    module: str | None = None
    distribution: str | None = None
    version: str | None = None
    hooks: list[str] = attrs.field(factory=list)
    registered: dict[str, list[str]] = attrs.field(factory=dict)
    reason: str | None = None
    hint: str | None = None

    def to_json(self) -> dict[str, Any]:
        return attrs.asdict(self)
