"""The registrars each ``backpackflow_register_*`` hook receives, bound to the plugin that
registers (so every registration knows who made it), and which hook gets which."""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

import attrs

from backpackflow.config import contract_schemas
from backpackflow.errors import PluginError
from backpackflow.plugins.records import (
    Command,
    ConditionLanguage,
    DependencyFactory,
    EventSink,
    Example,
    ExecutorType,
    LiveFeedType,
    Migration,
    NodeClass,
    NodeType,
    RunStoreType,
    SinkType,
    ToolType,
)
from backpackflow.plugins.registry import Registry


class _Registrar:
    def __init__(self, registry: Registry, plugin: str) -> None:
        self._registry = registry
        self._plugin = plugin


class NodeTypeRegistrar(_Registrar):
    def __call__(
        self,
        name: str,
        node_class: type,
        *,
        params: type | None = None,
        dependencies: Iterable[str] = (),
        description: str | None = None,
        reads: Mapping[str, Any] | None = None,
        writes: Mapping[str, Any] | None = None,
    ) -> None:
        """Register ``node_class`` as node type ``name``. ``reads`` / ``writes`` (default:
        the class's ``reads`` / ``writes`` attributes) are its data contract:
        ``{Backpack key: Python type or JSON Schema}``, a key may name params
        (``"{source}"``)."""
        if not (isinstance(node_class, type) and issubclass(node_class, NodeClass)):
            raise PluginError(
                f"plugin {self._plugin!r}: node type {name!r} must be a Node class, got "
                f"{node_class!r}"
            )
        declared = getattr(node_class, "Params", None)
        params = params if params is not None else declared
        if params is not None and not attrs.has(params):
            raise PluginError(
                f"plugin {self._plugin!r}: node type {name!r}: params must be an attrs class, "
                f"got {params!r}"
            )
        if declared is not None and params is not declared:
            raise PluginError(
                f"plugin {self._plugin!r}: node type {name!r}: params {params!r} differs from "
                f"{node_class.__name__}.Params ({declared.__name__})"
            )
        doc = description or (node_class.__doc__ or "").strip().split("\n")[0]
        contract = node_contract(node_class, reads, writes, f"plugin {self._plugin!r}: {name}")
        record = NodeType(
            name, node_class, params, tuple(dependencies), doc, self._plugin, *contract
        )
        self._registry._add("node_types", name, record, self._plugin)


def node_contract(
    node_class: type, reads: Any, writes: Any, where: str
) -> tuple[dict[str, Any], dict[str, Any]]:
    """The (reads, writes) JSON Schemas of a node type: those given, else its class's
    ``reads`` / ``writes``; a contract without a JSON Schema is a :class:`PluginError`."""
    try:
        return (
            contract_schemas(
                reads if reads is not None else getattr(node_class, "reads", None), "reads"
            ),
            contract_schemas(
                writes if writes is not None else getattr(node_class, "writes", None), "writes"
            ),
        )
    except TypeError as exc:
        raise PluginError(f"{where}: data contract: {exc}") from None


class EventSinkRegistrar(_Registrar):
    def __call__(
        self,
        name: str,
        factory: Callable[[Any], EventSink],
        *,
        options: type | None = None,
        shorthand: str | None = None,
        description: str | None = None,
    ) -> None:
        if options is not None and not attrs.has(options):
            raise PluginError(
                f"plugin {self._plugin!r}: sink {name!r}: options must be an attrs class"
            )
        record = SinkType(name, factory, options, shorthand, description or "", self._plugin)
        self._registry._add("event_sinks", name, record, self._plugin)


class DependencyFactoryRegistrar(_Registrar):
    def __call__(
        self,
        name: str,
        factory: Callable[..., Any],
        *,
        options: type | None = None,
        description: str | None = None,
    ) -> None:
        record = DependencyFactory(name, factory, options, description or "", self._plugin)
        self._registry._add("dependency_factories", name, record, self._plugin)


class RunStoreRegistrar(_Registrar):
    def __call__(
        self,
        name: str,
        factory: Callable[[str | None], Any],
        *,
        schemes: Iterable[str] = (),
        description: str | None = None,
    ) -> None:
        record = RunStoreType(name, factory, tuple(schemes), description or "", self._plugin)
        self._registry._add("run_stores", name, record, self._plugin)


class ExecutorRegistrar(_Registrar):
    def __call__(
        self, name: str, factory: Callable[..., Any], *, description: str | None = None
    ) -> None:
        record = ExecutorType(name, factory, description or "", self._plugin)
        self._registry._add("executors", name, record, self._plugin)


class LiveFeedRegistrar(_Registrar):
    def __call__(
        self,
        name: str,
        factory: Callable[[str], Any],
        *,
        schemes: Iterable[str] = (),
        description: str | None = None,
    ) -> None:
        record = LiveFeedType(name, factory, tuple(schemes), description or "", self._plugin)
        self._registry._add("live_feeds", name, record, self._plugin)


class MigrationRegistrar(_Registrar):
    def __call__(
        self,
        from_version: str,
        to_version: str,
        migrate: Callable[[dict[str, Any]], dict[str, Any]],
        *,
        description: str | None = None,
    ) -> None:
        for existing in self._registry.migrations:
            if existing.from_version == from_version:
                raise PluginError(
                    f"plugin {self._plugin!r}: a migration from version {from_version!r} is "
                    f"already registered by plugin {existing.plugin!r}"
                )
        self._registry.migrations.append(
            Migration(from_version, to_version, migrate, description or "", self._plugin)
        )
        info = self._registry.plugins[self._plugin]
        info.registered.setdefault("migrations", []).append(f"{from_version}->{to_version}")


class ToolRegistrar(_Registrar):
    def __call__(
        self,
        name: str,
        function: Callable[..., Any],
        *,
        params: type | None = None,
        description: str | None = None,
    ) -> None:
        doc = description or (function.__doc__ or "").strip().split("\n")[0]
        self._registry._add(
            "tools", name, ToolType(name, function, params, doc, self._plugin), self._plugin
        )


class ConditionLanguageRegistrar(_Registrar):
    def __call__(
        self,
        name: str,
        compile: Callable[[Any], Callable[[Mapping[str, Any]], Any]],
        *,
        source_type: type = str,
        description: str | None = None,
    ) -> None:
        record = ConditionLanguage(name, compile, source_type, description or "", self._plugin)
        self._registry._add("condition_languages", name, record, self._plugin)


class ExampleRegistrar(_Registrar):
    def __call__(
        self,
        name: str,
        folder: str | os.PathLike[str],
        *,
        flow: str = "flow.json",
        description: str | None = None,
    ) -> None:
        path = Path(folder)
        if not (path / flow).is_file():
            raise PluginError(
                f"plugin {self._plugin!r}: example {name!r}: no flow file {flow!r} in {path}"
            )
        doc = description if description is not None else _flow_description(path / flow)
        record = Example(name, path, flow, doc, self._plugin)
        self._registry._add("examples", name, record, self._plugin)


def _flow_description(path: Path) -> str:
    """A flow file's own ``description`` (else ''): what ``backpackflow examples list`` shows."""
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return ""
    description = document.get("description") if isinstance(document, dict) else None
    return description if isinstance(description, str) else ""


class CommandRegistrar(_Registrar):
    def add(
        self,
        name: str,
        handler: Callable[[Any, Registry], int],
        *,
        help: str,
        arguments: Callable[[Any], None] | None = None,
    ) -> None:
        self._registry._add(
            "commands", name, Command(name, handler, help, arguments, self._plugin), self._plugin
        )


_HOOKS: dict[str, tuple[str, type[_Registrar]]] = {
    "backpackflow_register_node_types": ("register", NodeTypeRegistrar),
    "backpackflow_register_event_sinks": ("register", EventSinkRegistrar),
    "backpackflow_register_dependency_factories": ("register", DependencyFactoryRegistrar),
    "backpackflow_register_run_stores": ("register", RunStoreRegistrar),
    "backpackflow_register_executors": ("register", ExecutorRegistrar),
    "backpackflow_register_live_feeds": ("register", LiveFeedRegistrar),
    "backpackflow_register_migrations": ("register", MigrationRegistrar),
    "backpackflow_register_tools": ("register", ToolRegistrar),
    "backpackflow_register_condition_languages": ("register", ConditionLanguageRegistrar),
    "backpackflow_register_examples": ("register", ExampleRegistrar),
    "backpackflow_register_commands": ("cli", CommandRegistrar),
}
