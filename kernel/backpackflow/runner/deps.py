"""The DependencyContainer: what nodes need but flow configs cannot hold (LLM clients, caches,
stores, event streamers), as instances or lazy factories built once on first use."""

from __future__ import annotations

import inspect
import threading
from collections.abc import Callable, Mapping
from types import MappingProxyType
from typing import TYPE_CHECKING, Annotated, Any

import attrs
import msgspec

from backpackflow.config import structure_params
from backpackflow.errors import ConfigError, PluginError
from backpackflow.events import EventStreamer
from backpackflow.plugins import DependencyFactory

if TYPE_CHECKING:  # annotations only: nothing here is needed at run time
    from backpackflow.config import DependencyConfig
    from backpackflow.plugins import Registry


class DependencyNotFound(ConfigError, KeyError):
    """A dependency name is not registered; the message lists what is."""

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else ""


#: Dependency types the kernel builds itself (plugins add theirs as dependency factories).


@attrs.frozen(kw_only=True)
class _EventStreamerOptions:
    """Options of the kernel's own ``EventStreamer`` dependency."""

    history_size: Annotated[int, msgspec.Meta(ge=0)] = 10_000


def _event_streamer(options: _EventStreamerOptions, container: DependencyContainer) -> Any:
    return EventStreamer(history_size=options.history_size)


#: The kernel's own dependency factories: the records plugins register (the same options
#: checks, schema and build path), looked up before the registry's.
BUILTIN_FACTORIES: Mapping[str, DependencyFactory] = MappingProxyType(
    {
        "EventStreamer": DependencyFactory(
            "EventStreamer",
            _event_streamer,
            _EventStreamerOptions,
            "the kernel's event bus (attach sinks with the flow's 'sinks' section)",
            "backpackflow",
        )
    }
)
BUILTIN_TYPES = tuple(BUILTIN_FACTORIES)


class DependencyContainer:
    """Named dependencies: ``register(name, instance)``, ``register_factory(name, factory)``
    (called once, lazily, with the container when the factory accepts an argument) and
    ``get(name)``."""

    def __init__(self) -> None:
        self._instances: dict[str, Any] = {}
        self._factories: dict[str, Callable[..., Any]] = {}
        self._lock = threading.RLock()
        self._building: list[str] = []  # factories being called (under the lock), in order

    def register(self, name: str, instance: Any) -> None:
        with self._lock:
            self._factories.pop(name, None)
            self._instances[name] = instance

    def register_factory(self, name: str, factory: Callable[..., Any]) -> None:
        if not callable(factory):
            raise TypeError(f"dependency {name!r}: factory must be callable")
        with self._lock:
            self._instances.pop(name, None)
            self._factories[name] = factory

    def has(self, name: str) -> bool:
        return name in self._instances or name in self._factories

    __contains__ = has

    def names(self) -> list[str]:
        return sorted({*self._instances, *self._factories})

    def get(self, name: str) -> Any:
        """The dependency ``name``, building it on first use if it was registered as a factory."""
        try:
            return self._instances[name]
        except KeyError:
            pass
        with self._lock:
            if name in self._instances:
                return self._instances[name]
            factory = self._factories.get(name)
            if factory is None:
                known = ", ".join(repr(n) for n in self.names()) or "none"
                raise DependencyNotFound(
                    f"dependency {name!r} is not registered (registered: {known}); register it "
                    "with deps.register(name, instance) or declare it in the flow's "
                    "'dependencies'"
                )
            if name in self._building:
                cycle = " -> ".join([*self._building[self._building.index(name) :], name])
                raise ConfigError(
                    f"dependency {name!r} needs itself while it is being built ({cycle}); "
                    "break the cycle between these factories"
                )
            self._building.append(name)
            try:
                instance = factory(self) if _takes_argument(factory) else factory()
            finally:
                self._building.pop()
            self._instances[name] = instance
            self._factories.pop(name, None)
            return instance

    def __repr__(self) -> str:
        return f"DependencyContainer({self.names()})"

    @classmethod
    def create_default(cls) -> DependencyContainer:
        """A container with an ``event_streamer`` (PRD-003's default container)."""
        container = cls()
        container.register("event_streamer", EventStreamer())
        return container

    def add_from_config(
        self,
        dependencies: Mapping[str, DependencyConfig],
        registry: Registry,
        *,
        path: str = "$.dependencies",
    ) -> None:
        """Register a lazy factory for each entry of a flow's ``dependencies`` section, unless a
        dependency of that name is already registered (what the caller gave wins)."""
        problems: list[str] = []
        for name, spec in dependencies.items():
            if self.has(name):
                continue
            where = f"{path}.{name}"
            factory = BUILTIN_FACTORIES.get(spec.type)
            if factory is None:
                try:
                    factory = registry.dependency_factory(spec.type)
                except PluginError as exc:
                    problems.append(f"{where}.type: {exc}")
                    continue
            options: Any = spec.config
            if factory.options is not None:
                try:
                    options = structure_params(
                        factory.options,
                        spec.config,
                        where=f"dependency {name!r}",
                        path=f"{where}.config",
                    )
                except ConfigError as exc:
                    problems.extend(exc.problems)
                    continue
            elif spec.config:
                problems.append(
                    f"{where}.config: dependency type {spec.type!r} takes no config, got "
                    f"{sorted(spec.config)}"
                )
                continue
            self.register_factory(name, _bind(factory.factory, options))
        if problems:
            raise ConfigError("; ".join(problems), problems)


def _bind(factory: Callable[..., Any], options: Any) -> Callable[[DependencyContainer], Any]:
    def build(container: DependencyContainer) -> Any:
        return factory(options, container)

    return build


def _takes_argument(factory: Callable[..., Any]) -> bool:
    try:
        params = inspect.signature(factory).parameters.values()
    except (TypeError, ValueError):
        return False
    return any(
        p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD, p.VAR_POSITIONAL) for p in params
    )
