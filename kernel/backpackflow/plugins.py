"""Loading plugins and the registry of what they register.

``build_registry()`` makes a pluggy PluginManager for project ``backpackflow``, loads the entry
points of group ``backpackflow`` (unless ``BACKPACKFLOW_DISABLE_PLUGIN_AUTOLOAD`` is set; names
in ``BACKPACKFLOW_DISABLE_PLUGINS``, comma-separated, are skipped), checks every hook
implementation against the specs (``check_pending``), then calls each plugin's ``register``
hooks with a registrar bound to that plugin, so every registration knows who made it.

Failures stay with the plugin that caused them: a plugin that fails to import (say its extra is
not installed) is listed as unavailable with the reason and the install command; a hook that
raises marks its plugin as broken; two plugins registering one name make that name unusable
with an error naming both. The kernel and the other plugins always load.
"""

from __future__ import annotations

import inspect
import json
import os
import sys
import traceback
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

import attrs
import pluggy
from importlib_metadata import EntryPoint, entry_points

from backpackflow import hookspecs
from backpackflow.errors import PluginError
from backpackflow.events import BackpackEvent, EventStreamer, Subscription

if TYPE_CHECKING:
    from backpackflow.sandbox import SandboxPolicy
    from backpackflow.secrets import SecretMasker

ENTRY_POINT_GROUP = "backpackflow"
DISABLE_AUTOLOAD_ENV = "BACKPACKFLOW_DISABLE_PLUGIN_AUTOLOAD"
DISABLE_PLUGINS_ENV = "BACKPACKFLOW_DISABLE_PLUGINS"


# ------------------------------------------------------------------------------- records


@runtime_checkable
class EventSink(Protocol):
    """What a sink factory returns: ``handle`` receives every event (it is subscribed to the
    run's EventStreamer); ``close`` flushes and returns a report (counts of events written,
    sent, retried, dropped ...). Neither may block the flow for long: buffer instead."""

    def handle(self, event: BackpackEvent) -> Any: ...

    def close(self) -> Mapping[str, Any]: ...


@attrs.frozen
class NodeType:
    name: str
    node_class: type
    params: type | None
    dependencies: tuple[str, ...]
    description: str
    plugin: str


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


_KINDS = {
    "node_types": "node type",
    "event_sinks": "event sink",
    "dependency_factories": "dependency factory",
    "run_stores": "run store",
    "executors": "executor",
    "tools": "tool",
    "condition_languages": "condition language",
    "examples": "example",
    "commands": "command",
}


class Registry:
    """Everything the loaded plugins registered, by kind and name, with lookups that fail with
    errors naming what is known and which plugin to install or disable."""

    def __init__(self, plugin_manager: pluggy.PluginManager) -> None:
        self.plugin_manager = plugin_manager
        self.plugins: dict[str, PluginInfo] = {}
        self.node_types: dict[str, NodeType] = {}
        self.event_sinks: dict[str, SinkType] = {}
        self.dependency_factories: dict[str, DependencyFactory] = {}
        self.run_stores: dict[str, RunStoreType] = {}
        self.executors: dict[str, ExecutorType] = {}
        self.tools: dict[str, ToolType] = {}
        self.condition_languages: dict[str, ConditionLanguage] = {}
        self.examples: dict[str, Example] = {}
        self.commands: dict[str, Command] = {}
        self.migrations: list[Migration] = []
        self.conflicts: dict[tuple[str, str], list[str]] = {}
        self.errors: list[str] = []
        self._candidates: dict[tuple[str, str], dict[str, Any]] = {}

    # -------------------------------------------------------------- adding

    def _add(self, kind: str, name: str, record: Any, plugin: str) -> None:
        if not isinstance(name, str) or not name:
            raise PluginError(f"plugin {plugin!r}: a {_KINDS[kind]} needs a non-empty name")
        self._candidates.setdefault((kind, name), {})[plugin] = record
        self._settle(kind, name)
        self.plugins[plugin].registered.setdefault(kind, []).append(name)

    def _settle(self, kind: str, name: str) -> None:
        """One candidate: usable. Several: a conflict naming them all. None: gone."""
        table: dict[str, Any] = getattr(self, kind)
        key = (kind, name)
        candidates = self._candidates.get(key, {})
        table.pop(name, None)
        self.conflicts.pop(key, None)
        if len(candidates) == 1:
            table[name] = next(iter(candidates.values()))
        elif candidates:
            self.conflicts[key] = list(candidates)

    def _withdraw(self, plugin: str) -> None:
        """Take back everything ``plugin`` registered (it broke half-way: none of it is
        trustworthy); names it had made conflicting become usable again."""
        for (kind, name), candidates in list(self._candidates.items()):
            if candidates.pop(plugin, None) is not None:
                self._settle(kind, name)
        self.migrations = [m for m in self.migrations if m.plugin != plugin]

    # -------------------------------------------------------------- looking up

    def _get(self, kind: str, name: str) -> Any:
        table: dict[str, Any] = getattr(self, kind)
        record = table.get(name)
        if record is not None:
            return record
        what = _KINDS[kind]
        owners = self.conflicts.get((kind, name))
        if owners:
            names = " and ".join(repr(p) for p in owners)
            raise PluginError(
                f"{what} {name!r} is registered by both plugin {names}; disable all but one "
                f"with {DISABLE_PLUGINS_ENV}={owners[-1]}"
            )
        known = ", ".join(repr(n) for n in sorted(table)) or "none"
        raise PluginError(f"unknown {what} {name!r} (known: {known}){self.unavailable_note()}")

    def unavailable_note(self) -> str:
        """``"; plugins that failed to load: server (pip install ...), ..."``, or ``""``: what
        to add to an error about something unknown, which may belong to one of them."""
        missing = [p for p in self.plugins.values() if p.status in ("unavailable", "broken")]
        if not missing:
            return ""
        return "; plugins that failed to load: " + ", ".join(
            f"{p.name} ({p.hint or p.reason})" for p in missing
        )

    def node_type(self, name: str) -> NodeType:
        return self._get("node_types", name)  # type: ignore[no-any-return]

    def event_sink(self, name: str) -> SinkType:
        return self._get("event_sinks", name)  # type: ignore[no-any-return]

    def dependency_factory(self, name: str) -> DependencyFactory:
        return self._get("dependency_factories", name)  # type: ignore[no-any-return]

    def executor(self, name: str) -> ExecutorType:
        return self._get("executors", name)  # type: ignore[no-any-return]

    def tool(self, name: str) -> ToolType:
        return self._get("tools", name)  # type: ignore[no-any-return]

    def condition_language(self, name: str) -> ConditionLanguage:
        return self._get("condition_languages", name)  # type: ignore[no-any-return]

    def example(self, name: str) -> Example:
        return self._get("examples", name)  # type: ignore[no-any-return]

    def run_store(self, name: str) -> RunStoreType:
        return self._get("run_stores", name)  # type: ignore[no-any-return]

    def run_store_for_url(self, url: str | None) -> RunStoreType:
        """The run store serving ``url``'s scheme (``None``: the default, SQLite)."""
        scheme = "sqlite" if url is None else url.split(":", 1)[0].split("+", 1)[0]
        for store in self.run_stores.values():
            if scheme in store.schemes:
                return store
        known = sorted({s for store in self.run_stores.values() for s in store.schemes})
        raise PluginError(
            f"no run store serves {scheme!r} URLs (served: {', '.join(known) or 'none'}); "
            "install the plugin's extra, e.g. pip install 'backpackflow[server,postgres]'"
        )

    def node_type_of(self, node_class: type) -> NodeType | None:
        """The registration of ``node_class`` (exactly that class), if any."""
        for node_type in self.node_types.values():
            if node_type.node_class is node_class:
                return node_type
        return None

    def migration_chain(self, from_version: str, to_version: str) -> list[Migration]:
        """The migrations leading from ``from_version`` to ``to_version`` (breadth-first)."""
        paths: dict[str, list[Migration]] = {from_version: []}
        frontier = [from_version]
        while frontier:
            version = frontier.pop(0)
            if version == to_version:
                return paths[version]
            for migration in self.migrations:
                if migration.from_version == version and migration.to_version not in paths:
                    paths[migration.to_version] = [*paths[version], migration]
                    frontier.append(migration.to_version)
        known = ", ".join(f"{m.from_version}->{m.to_version}" for m in self.migrations)
        raise PluginError(
            f"no migration leads from flow config version {from_version!r} to {to_version!r} "
            f"(known: {known or 'none'})"
        )

    def check(self) -> None:
        """Raise :class:`PluginError` listing every load problem (for strict callers and CI)."""
        problems = list(self.errors)
        for (kind, name), owners in self.conflicts.items():
            problems.append(f"{_KINDS[kind]} {name!r} is registered by plugins {', '.join(owners)}")
        if problems:
            raise PluginError("plugin problems:\n  " + "\n  ".join(problems))


# ------------------------------------------------------------------------------- registrars


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
    ) -> None:
        from backpackflow.node import BaseNode

        if not (isinstance(node_class, type) and issubclass(node_class, BaseNode)):
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
        record = NodeType(name, node_class, params, tuple(dependencies), doc, self._plugin)
        self._registry._add("node_types", name, record, self._plugin)


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
    "backpackflow_register_migrations": ("register", MigrationRegistrar),
    "backpackflow_register_tools": ("register", ToolRegistrar),
    "backpackflow_register_condition_languages": ("register", ConditionLanguageRegistrar),
    "backpackflow_register_examples": ("register", ExampleRegistrar),
    "backpackflow_register_commands": ("cli", CommandRegistrar),
}


# ------------------------------------------------------------------------------- loading


def _disabled_from_env() -> set[str]:
    return {n.strip() for n in os.environ.get(DISABLE_PLUGINS_ENV, "").split(",") if n.strip()}


def _install_hint(ep: EntryPoint, exc: BaseException) -> str | None:
    if not isinstance(exc, ImportError):
        return None  # a bug in the plugin, not something an install fixes
    dist = ep.dist.name if ep.dist is not None else "the plugin's distribution"
    own_package = ep.module.split(".")[0]
    if isinstance(exc, ModuleNotFoundError) and exc.name and exc.name.split(".")[0] == own_package:
        return f"the plugin's own module {exc.name!r} is missing: reinstall {dist}"
    if ep.extras:
        return f"pip install '{dist}[{','.join(ep.extras)}]'"
    if isinstance(exc, ModuleNotFoundError) and exc.name:
        return f"pip install {exc.name.split('.')[0]}  (the module {exc.name!r} is missing)"
    return None


def build_registry(
    *,
    plugins: Iterable[Any] = (),
    autoload: bool | None = None,
    disabled: Iterable[str] | None = None,
) -> Registry:
    """Load plugins and collect their registrations into a new :class:`Registry`.

    ``plugins`` are registered in addition to the entry points (tests pass their own);
    ``autoload=False`` skips entry points (default: on unless ``BACKPACKFLOW_DISABLE_PLUGIN_
    AUTOLOAD`` is set); ``disabled`` adds to ``BACKPACKFLOW_DISABLE_PLUGINS``.
    """
    pm = pluggy.PluginManager(hookspecs.PROJECT)
    pm.add_hookspecs(hookspecs)
    registry = Registry(pm)
    if autoload is None:
        autoload = not os.environ.get(DISABLE_AUTOLOAD_ENV)
    blocked = _disabled_from_env() | set(disabled or ())

    if autoload:
        for ep in sorted(entry_points(group=ENTRY_POINT_GROUP), key=lambda e: e.name):
            dist = ep.dist
            info = PluginInfo(
                ep.name,
                "loaded",
                module=ep.value,
                distribution=dist.name if dist is not None else None,
                version=dist.version if dist is not None else None,
            )
            first = registry.plugins.get(ep.name)
            if first is not None:
                # two entry points with one name: the first keeps it, this one is listed apart
                info.status = "broken"
                info.reason = (
                    f"the plugin name {ep.name!r} is already taken by "
                    f"{_origin(first)}; {_origin(info)} was not loaded"
                )
                registry.plugins[f"{ep.name} ({info.distribution or ep.value})"] = info
                registry.errors.append(f"plugin {ep.name!r}: {info.reason}")
                continue
            registry.plugins[ep.name] = info
            if ep.name in blocked:
                info.status, info.reason = "disabled", f"listed in {DISABLE_PLUGINS_ENV}"
                continue
            try:
                module = ep.load()
            except Exception as exc:  # noqa: BLE001 - one plugin must never break the others
                info.status = "unavailable"
                info.reason = f"{type(exc).__name__}: {exc}"
                info.hint = _install_hint(ep, exc)
                continue
            _register(pm, registry, module, info)

    for plugin in plugins:
        name = getattr(plugin, "__name__", None) or type(plugin).__name__
        if name in blocked:
            registry.plugins[name] = PluginInfo(
                name, "disabled", module=name, reason=f"listed in {DISABLE_PLUGINS_ENV}"
            )
            continue
        if pm.has_plugin(name):
            raise PluginError(f"a plugin named {name!r} is already registered")
        info = registry.plugins[name] = PluginInfo(name, "loaded", module=name)
        _register(pm, registry, plugin, info)

    _check_hooks(pm, registry)
    for plugin_name, info in registry.plugins.items():
        plugin = pm.get_plugin(plugin_name)
        if plugin is not None:
            info.hooks = sorted(caller.name for caller in pm.get_hookcallers(plugin) or ())
    _collect(pm, registry)
    _configure(pm, registry)
    return registry


def _origin(info: PluginInfo) -> str:
    """Where a plugin comes from, for error messages: its distribution, else its module."""
    if info.distribution:
        return f"distribution {info.distribution} {info.version or ''}".rstrip()
    return f"module {info.module}"


def _register(pm: pluggy.PluginManager, registry: Registry, plugin: Any, info: PluginInfo) -> None:
    """Register one plugin; a plugin pluggy refuses (a hook implementation whose arguments the
    spec does not have, a module already registered under another name) is reported broken."""
    try:
        pm.register(plugin, name=info.name)
    except (pluggy.PluginValidationError, ValueError) as exc:
        other = pm.get_name(plugin)
        info.status = "broken"
        info.reason = (
            f"the same module is already loaded as plugin {other!r}"
            if other is not None and other != info.name
            else str(exc)
        )
        registry.errors.append(f"plugin {info.name!r}: {info.reason}")


def _configure(pm: pluggy.PluginManager, registry: Registry) -> None:
    """Call the historic ``backpackflow_configure`` hook with each loaded plugin isolated: one
    that raises is reported broken and the others are still configured."""
    caller = pm.hook.backpackflow_configure
    for impl in caller.get_hookimpls():
        # pluggy stops at the first implementation that raises: wrap each one (pluggy calls
        # ``impl.function``; the attribute is typed Final but is a plain attribute)
        setattr(impl, "function", _isolated(impl.function, impl.plugin_name, registry))  # noqa: B010
    caller.call_historic(kwargs={"kernel": registry})


def _isolated(function: Callable[..., Any], plugin: str, registry: Registry) -> Callable[..., Any]:
    def call(*args: Any) -> Any:
        info = registry.plugins.get(plugin)
        if info is not None and info.status != "loaded":
            return None  # a broken plugin is not configured
        try:
            return function(*args)
        except Exception as exc:  # noqa: BLE001 - a broken plugin is reported, not fatal
            _hook_raised(registry, plugin, "backpackflow_configure", exc)
            return None

    return call


def _check_hooks(pm: pluggy.PluginManager, registry: Registry) -> None:
    """``check_pending`` one plugin at a time: a plugin implementing an unknown hook (a typo,
    or a hook of a newer backpackflow) is unregistered and reported, the others stay."""
    while True:
        try:
            pm.check_pending()
            return
        except pluggy.PluginValidationError as exc:
            name = pm.get_name(exc.plugin) or repr(exc.plugin)
            pm.unregister(exc.plugin)
            info = registry.plugins.setdefault(name, PluginInfo(name, "broken"))
            info.status, info.reason = "broken", str(exc)
            registry.errors.append(f"plugin {name!r}: {exc}")


def _collect(pm: pluggy.PluginManager, registry: Registry) -> None:
    for hook_name, (argname, registrar_class) in _HOOKS.items():
        caller = getattr(pm.hook, hook_name)
        for impl in caller.get_hookimpls():
            info = registry.plugins.get(impl.plugin_name)
            if info is None or info.status != "loaded":
                continue
            registrar = registrar_class(registry, impl.plugin_name)
            kwargs = {argname: registrar} if argname in impl.argnames else {}
            try:
                impl.function(**kwargs)
            except Exception as exc:  # noqa: BLE001 - a broken plugin is reported, not fatal
                _hook_raised(registry, impl.plugin_name, hook_name, exc)
                registry._withdraw(impl.plugin_name)


def _hook_raised(registry: Registry, plugin: str, hook_name: str, exc: Exception) -> None:
    """Report ``plugin`` broken because its hook raised ``exc`` (with the traceback on stderr
    when ``BACKPACKFLOW_DEBUG`` is set); call it from the ``except`` block."""
    reason = f"{hook_name} raised {type(exc).__name__}: {exc}"
    info = registry.plugins.get(plugin)
    if info is not None:
        info.status, info.reason = "broken", reason
    registry.errors.append(f"plugin {plugin!r}: {reason}")
    if os.environ.get("BACKPACKFLOW_DEBUG"):
        traceback.print_exc(file=sys.stderr)


_default: Registry | None = None


def get_registry() -> Registry:
    """The process-wide registry of installed plugins, loaded on first use."""
    global _default
    if _default is None:
        _default = build_registry()
    return _default


def reset_registry() -> None:
    """Forget the process-wide registry (the next :func:`get_registry` reloads plugins)."""
    global _default
    _default = None


# ------------------------------------------------------------------------------- sinks


def make_sink(
    registry: Registry,
    name: str,
    options: Mapping[str, Any] | None = None,
    *,
    policy: SandboxPolicy | None = None,
    secrets: SecretMasker | None = None,
) -> EventSink:
    """Build the sink ``name`` with ``options`` (checked against its options class).

    ``policy``: the sandbox policy the sink must obey when a flow the operator does not trust
    declared it (where a webhook may post, where a file may be written); it is passed to sink
    factories that take a ``policy`` keyword, and a sink whose factory takes none cannot be
    built under a restrictive policy. Option values whose names say they are secrets
    (``secret``, ``token``, an ``Authorization`` header) are added to ``secrets``."""
    from backpackflow.config import structure_params
    from backpackflow.secrets import collect_named_secrets

    sink_type = registry.event_sink(name)
    if secrets is not None and options:
        collect_named_secrets(options, secrets)
    extra: dict[str, Any] = {}
    if policy is not None and not policy.trusted:
        if not _takes_keyword(sink_type.factory, "policy"):
            raise PluginError(
                f"sink {name!r} (plugin {sink_type.plugin!r}) cannot run under a sandbox "
                "policy: its factory takes no 'policy' keyword"
            )
        extra["policy"] = policy
    if sink_type.options is None:
        if options:
            raise PluginError(f"sink {name!r} takes no options, got {sorted(options)}")
        return sink_type.factory(None, **extra)
    structured: Any = structure_params(
        sink_type.options, dict(options or {}), where=f"sink {name!r}"
    )
    return sink_type.factory(structured, **extra)


def _takes_keyword(factory: Callable[..., Any], name: str) -> bool:
    try:
        parameters = inspect.signature(factory).parameters.values()
    except (TypeError, ValueError):
        return False
    return any(
        (p.name == name and p.kind in (p.KEYWORD_ONLY, p.POSITIONAL_OR_KEYWORD))
        or p.kind is p.VAR_KEYWORD
        for p in parameters
    )


def parse_sink_spec(registry: Registry, spec: str) -> tuple[str, dict[str, Any]]:
    """``"file:run.jsonl"`` → ``("file", {"path": "run.jsonl"})`` (the sink's shorthand
    option); ``"console"`` → ``("console", {})``."""
    name, _, value = spec.partition(":")
    sink_type = registry.event_sink(name)
    if not value:
        return name, {}
    if sink_type.shorthand is None:
        raise PluginError(f"sink {name!r} takes no 'name:VALUE' shorthand; got {spec!r}")
    return name, {sink_type.shorthand: value}


def attach_sinks(streamer: EventStreamer, sinks: Iterable[EventSink]) -> list[Subscription]:
    """Subscribe every sink to every event of ``streamer``."""
    return [streamer.subscribe("*", sink.handle) for sink in sinks]
