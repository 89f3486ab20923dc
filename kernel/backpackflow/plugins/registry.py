"""The registry of what the loaded plugins registered (built by :mod:`.manager`)."""

from __future__ import annotations

from typing import Any

import pluggy

from backpackflow.errors import PluginError
from backpackflow.plugins.records import (
    DISABLE_PLUGINS_ENV,
    Command,
    ConditionLanguage,
    DependencyFactory,
    Example,
    ExecutorType,
    LiveFeedType,
    Migration,
    NodeType,
    PluginInfo,
    RunStoreType,
    SinkType,
    ToolType,
)

_KINDS = {
    "node_types": "node type",
    "event_sinks": "event sink",
    "dependency_factories": "dependency factory",
    "run_stores": "run store",
    "executors": "executor",
    "live_feeds": "live feed",
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
        self.live_feeds: dict[str, LiveFeedType] = {}
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

    def live_feed(self, name: str) -> LiveFeedType:
        return self._get("live_feeds", name)  # type: ignore[no-any-return]

    def live_feed_for_url(self, url: str) -> LiveFeedType:
        """The live feed serving ``url``'s scheme (``redis://host:6379/0`` ...)."""
        scheme = url.split(":", 1)[0].split("+", 1)[0]
        for feed in self.live_feeds.values():
            if scheme in feed.schemes:
                return feed
        known = sorted({s for feed in self.live_feeds.values() for s in feed.schemes})
        raise PluginError(
            f"no live feed serves {scheme!r} URLs (served: {', '.join(known) or 'none'}); "
            f"install the plugin's extra, e.g. pip install 'backpackflow[redis]'"
            f"{self.unavailable_note()}"
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
