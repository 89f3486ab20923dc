"""DependencyContainer (PRD-003): instances and lazy factories built once, a clear error listing
what is registered, factories contributed by plugins and configured from a flow's
``dependencies`` section."""

from __future__ import annotations

import threading
import time

import attrs
import pytest

from backpackflow import BackpackFlowError, ConfigError, EventStreamer, hookimpl
from backpackflow.config import DependencyConfig
from backpackflow.plugins import build_registry
from backpackflow.runner import DependencyContainer, DependencyNotFound


def test_register_and_get_an_instance():
    deps = DependencyContainer()
    client = object()
    deps.register("llm", client)
    assert deps.get("llm") is client
    assert deps.has("llm") and "llm" in deps
    assert deps.names() == ["llm"]


def test_a_factory_is_lazy_and_built_once():
    calls = []
    deps = DependencyContainer()
    deps.register_factory("cache", lambda: calls.append(1) or {"hits": 0})
    assert calls == []  # nothing built at registration
    assert deps.has("cache")
    first = deps.get("cache")
    assert deps.get("cache") is first
    assert calls == [1]


def test_a_factory_may_take_the_container_to_build_on_other_dependencies():
    deps = DependencyContainer()
    deps.register("config", {"model": "m"})
    deps.register_factory("llm", lambda container: ("client", container.get("config")["model"]))
    assert deps.get("llm") == ("client", "m")


def test_factories_are_built_once_under_concurrency():
    calls = []
    barrier = threading.Barrier(8)

    def slow_factory():
        calls.append(1)
        time.sleep(0.02)
        return object()

    deps = DependencyContainer()
    deps.register_factory("slow", slow_factory)
    results = []

    def worker():
        barrier.wait()
        results.append(deps.get("slow"))

    threads = [threading.Thread(target=worker) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(calls) == 1
    assert len({id(r) for r in results}) == 1


def test_an_unknown_name_is_a_clear_error_listing_what_is_registered():
    deps = DependencyContainer()
    deps.register("llm", object())
    deps.register_factory("cache", dict)
    with pytest.raises(DependencyNotFound) as info:
        deps.get("db")
    message = str(info.value)
    assert "'db'" in message and "'cache', 'llm'" in message
    assert "deps.register" in message
    # the project's error, and the built-in callers may expect
    assert isinstance(info.value, ConfigError) and isinstance(info.value, BackpackFlowError)
    assert isinstance(info.value, KeyError)
    with pytest.raises(DependencyNotFound, match="registered: none"):
        DependencyContainer().get("x")


def test_registering_again_replaces_an_instance_or_a_factory():
    deps = DependencyContainer()
    deps.register_factory("x", lambda: "from factory")
    deps.register("x", "instance")
    assert deps.get("x") == "instance"
    deps.register_factory("x", lambda: "new factory")
    assert deps.get("x") == "new factory"


def test_a_failing_factory_is_not_cached_and_may_be_retried():
    attempts = []

    def flaky():
        attempts.append(1)
        if len(attempts) == 1:
            raise ConnectionError("down")
        return "up"

    deps = DependencyContainer()
    deps.register_factory("svc", flaky)
    with pytest.raises(ConnectionError):
        deps.get("svc")
    assert deps.get("svc") == "up"


def test_a_factory_cycle_is_a_clear_error_not_a_recursion_error():
    deps = DependencyContainer()
    deps.register_factory("a", lambda c: c.get("b"))
    deps.register_factory("b", lambda c: c.get("a"))
    with pytest.raises(ConfigError) as info:
        deps.get("a")
    assert "a -> b -> a" in str(info.value)
    # the container is still usable afterwards
    deps.register("b", "plain")
    assert deps.get("a") == "plain"


def test_a_non_callable_factory_is_refused():
    with pytest.raises(TypeError, match="'x'"):
        DependencyContainer().register_factory("x", "not callable")


def test_create_default_has_an_event_streamer():
    deps = DependencyContainer.create_default()
    assert isinstance(deps.get("event_streamer"), EventStreamer)


# ------------------------------------------------------------------------------- from config


@attrs.frozen
class VectorOptions:
    dimensions: int = 3
    metric: str = "cosine"


class VectorStore:
    def __init__(self, options: VectorOptions, container: DependencyContainer) -> None:
        self.options = options
        self.container = container


built: list[str] = []


class Factories:
    __name__ = "dep_factories"

    @hookimpl
    def backpackflow_register_dependency_factories(self, register):
        register("vector", VectorStore, options=VectorOptions, description="a vector store")
        register("clock", lambda options, container: built.append("clock") or time.monotonic)


@pytest.fixture
def registry():
    built.clear()
    return build_registry(plugins=[Factories()], autoload=False)


def test_plugin_factories_are_configured_from_the_dependencies_section(registry):
    deps = DependencyContainer()
    deps.add_from_config(
        {
            "store": DependencyConfig(type="vector", config={"dimensions": 8}),
            "clock": DependencyConfig(type="clock"),
            "events": DependencyConfig(type="EventStreamer", config={"history_size": 10}),
        },
        registry,
    )
    assert deps.names() == ["clock", "events", "store"]
    assert built == []  # lazily: nothing is built before a node needs it
    store = deps.get("store")
    assert isinstance(store, VectorStore)
    assert store.options == VectorOptions(dimensions=8)
    assert store.container is deps
    assert deps.get("clock") is time.monotonic and built == ["clock"]
    deps.get("clock")
    assert built == ["clock"]
    assert isinstance(deps.get("events"), EventStreamer)


def test_what_is_already_registered_wins(registry):
    deps = DependencyContainer()
    mine = object()
    deps.register("store", mine)
    deps.add_from_config({"store": DependencyConfig(type="vector")}, registry)
    assert deps.get("store") is mine


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        (DependencyConfig(type="nope"), "$.dependencies.x.type: unknown dependency factory 'nope'"),
        (
            DependencyConfig(type="vector", config={"dimensions": "8"}),
            "$.dependencies.x.config.dimensions",
        ),
        (DependencyConfig(type="vector", config={"size": 8}), "$.dependencies.x.config"),
        (DependencyConfig(type="clock", config={"tz": "UTC"}), "takes no config"),
        (DependencyConfig(type="EventStreamer", config={"sinks": []}), "$.dependencies.x.config"),
        (
            DependencyConfig(type="EventStreamer", config={"history_size": -1}),
            "$.dependencies.x.config.history_size",
        ),
    ],
)
def test_bad_dependency_config_is_a_config_error_with_its_path(registry, spec, expected):
    with pytest.raises(ConfigError) as info:
        DependencyContainer().add_from_config({"x": spec}, registry)
    assert expected in str(info.value)


def test_every_bad_dependency_is_reported_together(registry):
    with pytest.raises(ConfigError) as info:
        DependencyContainer().add_from_config(
            {
                "a": DependencyConfig(type="nope"),
                "b": DependencyConfig(type="vector", config={"metric": 1}),
            },
            registry,
        )
    assert len(info.value.problems) == 2
