"""The plugin host (DESIGN §4): a pluggy PluginManager for project ``backpackflow``, entry
points of group ``backpackflow``, registry objects passed to every hook, ``check_pending``,
the environment switches, and clear errors that never stop the other plugins loading."""

from __future__ import annotations

import sys
import types
from decimal import Decimal

import attrs
import pluggy
import pytest

from backpackflow import (
    Backpack,
    BackpackFlowError,
    EventStreamer,
    Flow,
    Node,
    PluginError,
    hookimpl,
)
from backpackflow.events import attach_sinks, make_sink, parse_sink_spec
from backpackflow.plugins import (
    DISABLE_AUTOLOAD_ENV,
    DISABLE_PLUGINS_ENV,
    ENTRY_POINT_GROUP,
    PROJECT,
    EventSink,
    build_registry,
    get_registry,
    reset_registry,
)
from backpackflow.plugins.hookspecs import hook_names

# ------------------------------------------------------------------------------- helpers


def plugin(name, **hooks):
    """An in-test plugin module whose functions are hook implementations."""
    module = types.ModuleType(name)
    for hook, function in hooks.items():
        setattr(module, hook, hookimpl(function))
    return module


def registry_of(*plugins, **kw):
    return build_registry(plugins=plugins, autoload=False, **kw)


class SummarizeNode(Node):
    """Summarizes text with a model."""


@attrs.frozen
class SummarizeParams:
    max_words: int = 50


class TypedNode(Node):
    Params = SummarizeParams


class MemorySink:
    """An EventSink keeping what it handled."""

    def __init__(self, options):
        self.options = options
        self.events = []

    def handle(self, event):
        self.events.append(event)

    def close(self):
        return {"written": len(self.events)}


@attrs.frozen
class MemoryOptions:
    path: str = "-"
    limit: int = 10


pytestmark = pytest.mark.usefixtures("clean_plugin_environment")  # tests/kernel/conftest.py


GOOD_PLUGIN = """
from backpackflow import Node, hookimpl

class FetchNode(Node):
    '''Fetches a page.'''

@hookimpl
def backpackflow_register_node_types(register):
    register("fetch", FetchNode, dependencies=["http"])

@hookimpl
def backpackflow_register_tools(register):
    register("search", lambda arguments: [], description="web search")
"""


# ------------------------------------------------------------------------------- the manager


def test_plugin_manager_is_for_project_backpackflow():
    registry = registry_of()
    assert isinstance(registry.plugin_manager, pluggy.PluginManager)
    assert registry.plugin_manager.project_name == PROJECT == "backpackflow"
    assert ENTRY_POINT_GROUP == "backpackflow"
    specs = {name for name in dir(registry.plugin_manager.hook) if name.startswith("backpackflow_")}
    assert specs == set(hook_names())


def test_each_registry_is_fresh():
    one = registry_of(plugin("p", backpackflow_register_tools=lambda register: register("t", len)))
    two = registry_of()
    assert "t" in one.tools
    assert "t" not in two.tools


# ------------------------------------------------------------------------------- registrars


def test_node_types_registrar():
    def register_nodes(register):
        register("summarize", SummarizeNode, dependencies=["llm"])
        register("typed", TypedNode)
        register("typed-explicit", TypedNode, params=SummarizeParams, description="Typed.")

    registry = registry_of(plugin("nodes", backpackflow_register_node_types=register_nodes))
    summarize = registry.node_type("summarize")
    assert summarize.node_class is SummarizeNode
    assert summarize.dependencies == ("llm",)
    assert summarize.params is None
    assert summarize.description == "Summarizes text with a model."
    assert summarize.plugin == "nodes"
    assert registry.node_type("typed").params is SummarizeParams
    assert registry.node_type("typed-explicit").description == "Typed."
    assert registry.node_type_of(SummarizeNode) is summarize
    assert registry.node_type_of(Node) is None
    assert registry.plugins["nodes"].registered == {
        "node_types": ["summarize", "typed", "typed-explicit"]
    }


@pytest.mark.parametrize(
    ("args", "kwargs", "message"),
    [
        (("x", object), {}, "must be a Node class"),
        (("x", SummarizeNode), {"params": dict}, "must be an attrs class"),
        (("x", TypedNode), {"params": MemoryOptions}, "differs from TypedNode.Params"),
        (("", SummarizeNode), {}, "non-empty name"),
    ],
)
def test_bad_node_type_registrations_break_only_that_plugin(args, kwargs, message):
    def bad(register):
        register(*args, **kwargs)

    good = plugin(
        "good",
        backpackflow_register_node_types=lambda register: register("summarize", SummarizeNode),
    )
    registry = registry_of(plugin("bad", backpackflow_register_node_types=bad), good)
    info = registry.plugins["bad"]
    assert info.status == "broken"
    assert message in info.reason
    assert "'bad'" in info.reason or "bad" in registry.errors[0]
    assert registry.node_type("summarize").plugin == "good"
    assert registry.plugins["good"].status == "loaded"


def test_event_sinks_registrar_make_and_attach():
    def sinks(register):
        register("memory", MemorySink, options=MemoryOptions, shorthand="path")
        register("plain", MemorySink, description="no options")

    registry = registry_of(plugin("sinks", backpackflow_register_event_sinks=sinks))
    sink_type = registry.event_sink("memory")
    assert (sink_type.options, sink_type.shorthand, sink_type.plugin) == (
        MemoryOptions,
        "path",
        "sinks",
    )
    assert parse_sink_spec(registry, "memory:out.jsonl") == ("memory", {"path": "out.jsonl"})
    assert parse_sink_spec(registry, "plain") == ("plain", {})
    with pytest.raises(PluginError, match="shorthand"):
        parse_sink_spec(registry, "plain:x")
    sink = make_sink(registry, "memory", {"path": "out.jsonl", "limit": 3})
    assert isinstance(sink, EventSink)
    assert sink.options == MemoryOptions("out.jsonl", 3)
    with pytest.raises(PluginError):
        make_sink(registry, "plain", {"x": 1})
    with pytest.raises(BackpackFlowError, match=r"sink 'memory'.*limit"):
        make_sink(registry, "memory", {"limit": "three"})
    streamer = EventStreamer()
    subscriptions = attach_sinks(streamer, [sink])
    assert len(subscriptions) == 1
    Flow(Node()).execute_sync(Backpack(), events=streamer)
    assert sink.close() == {"written": 6}


def test_sink_options_must_be_attrs():
    registry = registry_of(
        plugin(
            "s",
            backpackflow_register_event_sinks=lambda register: register(
                "x", MemorySink, options=dict
            ),
        )
    )
    assert registry.plugins["s"].status == "broken"
    assert "attrs" in registry.plugins["s"].reason


def test_dependency_factories_registrar():
    def factory(options, container):
        return {"model": "offline"}

    registry = registry_of(
        plugin(
            "deps",
            backpackflow_register_dependency_factories=lambda register: register(
                "llm", factory, options=MemoryOptions, description="LLM client"
            ),
        )
    )
    record = registry.dependency_factory("llm")
    assert (record.factory, record.options, record.description, record.plugin) == (
        factory,
        MemoryOptions,
        "LLM client",
        "deps",
    )


def test_run_stores_registrar_and_lookup_by_url():
    def stores(register):
        register("sql", lambda url: ("sql", url), schemes=["sqlite", "postgresql"])
        register("memory", lambda url: "mem", schemes=("memory",))

    registry = registry_of(plugin("stores", backpackflow_register_run_stores=stores))
    assert registry.run_store("sql").schemes == ("sqlite", "postgresql")
    assert registry.run_store_for_url(None).name == "sql"  # default: SQLite
    assert registry.run_store_for_url("postgresql+psycopg://h/db").name == "sql"
    assert registry.run_store_for_url("memory://").name == "memory"
    with pytest.raises(PluginError, match="'redis'") as info:
        registry.run_store_for_url("redis://x")
    assert "memory, postgresql, sqlite" in str(info.value)


def test_live_feeds_registrar_and_lookup_by_url():
    def feeds(register):
        register("redis", lambda url: ("feed", url), schemes=("redis", "rediss"))

    registry = registry_of(plugin("feeds", backpackflow_register_live_feeds=feeds))
    record = registry.live_feed("redis")
    assert (record.schemes, record.plugin) == (("redis", "rediss"), "feeds")
    assert registry.live_feed_for_url("rediss://h:6380/1").factory("u") == ("feed", "u")
    with pytest.raises(PluginError, match="no live feed serves 'nats' URLs") as info:
        registry.live_feed_for_url("nats://x")
    assert "served: redis, rediss" in str(info.value)


def test_executors_registrar():
    registry = registry_of(
        plugin(
            "ex",
            backpackflow_register_executors=lambda register: register(
                "inline", dict, description="in process"
            ),
        )
    )
    assert registry.executor("inline").factory is dict
    assert registry.executor("inline").plugin == "ex"


def test_migrations_registrar_and_chains():
    def v1(config):
        return {**config, "version": "1.5"}

    def v15(config):
        return {**config, "version": "2.0.0"}

    def migrations(register):
        register("1", "1.5", v1)
        register("1.5", "2.0.0", v15, description="edges get conditions")

    registry = registry_of(plugin("mig", backpackflow_register_migrations=migrations))
    chain = registry.migration_chain("1", "2.0.0")
    assert [m.migrate for m in chain] == [v1, v15]
    config = {"version": "1"}
    for migration in chain:
        config = migration.migrate(config)
    assert config == {"version": "2.0.0"}
    assert registry.migration_chain("2.0.0", "2.0.0") == []
    assert registry.plugins["mig"].registered == {"migrations": ["1->1.5", "1.5->2.0.0"]}
    with pytest.raises(PluginError, match=r"no migration leads from .*'0\.9'"):
        registry.migration_chain("0.9", "2.0.0")


def test_two_migrations_from_one_version_name_the_first_plugin():
    first = plugin(
        "first", backpackflow_register_migrations=lambda register: register("1", "2", dict)
    )
    second = plugin(
        "second", backpackflow_register_migrations=lambda register: register("1", "3", dict)
    )
    registry = registry_of(first, second)
    broken = [p for p in registry.plugins.values() if p.status == "broken"]
    assert len(broken) == 1
    other = "first" if broken[0].name == "second" else "second"
    assert f"plugin {other!r}" in broken[0].reason


def test_tools_registrar():
    def search(arguments):
        """Search the web."""
        return []

    registry = registry_of(
        plugin(
            "tools",
            backpackflow_register_tools=lambda register: register(
                "search", search, params=MemoryOptions
            ),
        )
    )
    tool = registry.tool("search")
    assert (tool.function, tool.params, tool.description) == (
        search,
        MemoryOptions,
        "Search the web.",
    )


def test_condition_languages_registrar():
    def compile_expression(source):
        if "==" not in source:
            raise ValueError("expected 'name == value'")
        name, value = (s.strip() for s in source.split("=="))
        return lambda context: str(context.get(name)) == value

    registry = registry_of(
        plugin(
            "conds",
            backpackflow_register_condition_languages=lambda register: register(
                "simple", compile_expression, description="a == b"
            ),
        )
    )
    language = registry.condition_language("simple")
    assert language.source_type is str
    condition = language.compile("branch == deep")

    class Router(Node):
        def exec(self, prep_res):
            return {"branch": "deep"}

    trace = []

    class Mark(Node):
        def exec(self, prep_res):
            trace.append(self.id)

    router = Router()
    router.next(Mark(id="deep"), when=condition)
    router.next(Mark(id="shallow"), when=language.compile("branch == shallow"))
    Flow(router).run(Backpack())
    assert trace == ["deep"]


def test_commands_registrar():
    def handler(args, registry):
        return 0

    def commands(cli):
        cli.add("hello", handler, help="say hello", arguments=lambda parser: None)

    registry = registry_of(plugin("cmds", backpackflow_register_commands=commands))
    command = registry.commands["hello"]
    assert (command.handler, command.help, command.plugin) == (handler, "say hello", "cmds")


def test_configure_is_called_with_the_registry_and_is_historic():
    seen = []
    early = plugin("early", backpackflow_configure=lambda kernel: seen.append(("early", kernel)))
    registry = registry_of(early)
    assert seen == [("early", registry)]
    late = plugin("late", backpackflow_configure=lambda kernel: seen.append(("late", kernel)))
    registry.plugin_manager.register(late, name="late")
    assert seen[-1] == ("late", registry)


def test_hooks_may_leave_out_the_registry_argument():
    called = []
    registry = registry_of(
        plugin("lazy", backpackflow_register_node_types=lambda: called.append(1))
    )
    assert called == [1]
    assert registry.plugins["lazy"].status == "loaded"


# ------------------------------------------------------------------------------- lookups


def test_unknown_names_list_the_known_ones_and_failed_plugins():
    good = plugin(
        "good",
        backpackflow_register_node_types=lambda register: register("summarize", SummarizeNode),
    )

    def broken(register):
        raise ImportError("needs the 'openai' extra")

    registry = registry_of(good, plugin("llm", backpackflow_register_node_types=broken))
    with pytest.raises(PluginError) as info:
        registry.node_type("llm")
    message = str(info.value)
    assert "unknown node type 'llm'" in message
    assert "'summarize'" in message
    assert "llm" in message and "openai" in message
    with pytest.raises(PluginError, match=r"unknown tool 'x' \(known: none\)"):
        registry.tool("x")


# ------------------------------------------------------------------------------- conflicts


def test_two_plugins_registering_one_name_is_an_error_naming_both():
    def nodes_a(register):
        register("summarize", SummarizeNode)
        register("only-a", SummarizeNode)

    def nodes_b(register):
        register("summarize", TypedNode)

    registry = registry_of(
        plugin("alpha", backpackflow_register_node_types=nodes_a),
        plugin("beta", backpackflow_register_node_types=nodes_b),
    )
    with pytest.raises(PluginError) as info:
        registry.node_type("summarize")
    message = str(info.value)
    assert "'alpha'" in message and "'beta'" in message
    assert DISABLE_PLUGINS_ENV in message
    assert registry.node_type("only-a").plugin == "alpha"  # the rest stays usable
    assert set(registry.conflicts[("node_types", "summarize")]) == {"alpha", "beta"}
    with pytest.raises(PluginError, match=r"summarize.*(alpha.*beta|beta.*alpha)"):
        registry.check()


def test_a_third_plugin_joins_the_conflict():
    plugins = [
        plugin(name, backpackflow_register_tools=lambda register: register("search", len))
        for name in ("one", "two", "three")
    ]
    registry = registry_of(*plugins)
    assert sorted(registry.conflicts[("tools", "search")]) == ["one", "three", "two"]
    assert "search" not in registry.tools


def test_conflicts_are_per_kind():
    registry = registry_of(
        plugin("a", backpackflow_register_tools=lambda register: register("x", len)),
        plugin("b", backpackflow_register_executors=lambda register: register("x", dict)),
    )
    assert registry.conflicts == {}
    registry.check()


def test_two_plugin_objects_with_one_name_are_refused():
    with pytest.raises(PluginError, match="'twin'"):
        registry_of(plugin("twin"), plugin("twin"))


# ------------------------------------------------------------------------------- failures


def test_a_plugin_whose_hook_raises_is_broken_and_the_others_load():
    def explode(register):
        raise RuntimeError("database unreachable")

    good = plugin("good", backpackflow_register_tools=lambda register: register("search", len))
    registry = registry_of(plugin("bad", backpackflow_register_tools=explode), good)
    assert registry.plugins["bad"].status == "broken"
    assert "backpackflow_register_tools" in registry.plugins["bad"].reason
    assert "database unreachable" in registry.plugins["bad"].reason
    assert registry.tool("search").plugin == "good"
    assert any("database unreachable" in e for e in registry.errors)
    with pytest.raises(PluginError, match="database unreachable"):
        registry.check()


def test_a_plugin_implementing_an_unknown_hook_is_reported_and_the_others_load():
    typo = plugin("typo", backpackflow_register_node_type=lambda register: None)
    good = plugin("good", backpackflow_register_tools=lambda register: register("search", len))
    registry = registry_of(typo, good)
    assert registry.plugins["typo"].status == "broken"
    assert "backpackflow_register_node_type" in registry.plugins["typo"].reason
    assert registry.plugins["good"].status == "loaded"
    assert registry.tool("search").plugin == "good"
    assert any("typo" in e for e in registry.errors)
    assert registry.plugin_manager.get_plugin("typo") is None


def test_a_hook_with_wrong_arguments_is_reported_and_the_others_load():
    wrong = plugin("wrong", backpackflow_register_node_types=lambda registry: None)
    good = plugin("good", backpackflow_register_tools=lambda register: register("search", len))
    registry = registry_of(wrong, good)
    assert registry.plugins["wrong"].status == "broken"
    assert "registry" in registry.plugins["wrong"].reason
    assert registry.tool("search").plugin == "good"


def test_a_configure_hook_that_raises_is_reported_and_the_others_load():
    seen = []

    def explode(kernel):
        raise RuntimeError("cannot configure")

    registry = registry_of(
        plugin("bad", backpackflow_configure=explode),
        plugin("good", backpackflow_configure=lambda kernel: seen.append(kernel)),
    )
    assert registry.plugins["bad"].status == "broken"
    assert "cannot configure" in registry.plugins["bad"].reason
    assert seen == [registry]
    assert registry.plugins["good"].status == "loaded"


def test_plugin_info_lists_hooks_and_registrations():
    def nodes(register):
        register("summarize", SummarizeNode)

    def tools(register):
        register("search", len)
        register("fetch", len)

    registry = registry_of(
        plugin("multi", backpackflow_register_node_types=nodes, backpackflow_register_tools=tools)
    )
    info = registry.plugins["multi"]
    assert info.status == "loaded"
    assert info.hooks == ["backpackflow_register_node_types", "backpackflow_register_tools"]
    assert info.registered == {"node_types": ["summarize"], "tools": ["search", "fetch"]}
    assert info.to_json()["registered"] == info.registered


def test_plugins_may_be_objects_with_hookimpl_methods():
    class Bundle:
        @hookimpl
        def backpackflow_register_tools(self, register):
            register("calc", lambda arguments: Decimal(1))

    registry = registry_of(Bundle())
    assert registry.tool("calc").plugin == "Bundle"


# ------------------------------------------------------------------------------- entry points


def test_entry_point_plugins_load_with_distribution_and_version(site):
    site.module("bpf_fake_good", GOOD_PLUGIN)
    site.dist("fake-nodes", "1.2.3", {"fake_nodes": "bpf_fake_good"})
    registry = build_registry()
    info = registry.plugins["fake_nodes"]
    assert info.status == "loaded"
    assert (info.distribution, info.version, info.module) == (
        "fake-nodes",
        "1.2.3",
        "bpf_fake_good",
    )
    assert info.hooks == ["backpackflow_register_node_types", "backpackflow_register_tools"]
    assert info.registered == {"node_types": ["fetch"], "tools": ["search"]}
    assert registry.node_type("fetch").plugin == "fake_nodes"
    assert registry.node_type("fetch").dependencies == ("http",)


def test_a_plugin_whose_extra_is_missing_is_unavailable_with_the_install_hint(site):
    site.module("bpf_fake_good", GOOD_PLUGIN)
    site.module("bpf_fake_needs_extra", "import bpf_fake_not_installed_sdk\n")
    site.dist(
        "fake-nodes",
        "1.2.3",
        {"fake_nodes": "bpf_fake_good", "fancy": "bpf_fake_needs_extra [fancy,fast]"},
    )
    registry = build_registry()
    info = registry.plugins["fancy"]
    assert info.status == "unavailable"
    assert "ModuleNotFoundError" in info.reason
    assert "bpf_fake_not_installed_sdk" in info.reason
    assert info.hint == "pip install 'fake-nodes[fancy,fast]'"
    assert info.distribution == "fake-nodes"
    assert registry.plugins["fake_nodes"].status == "loaded"
    with pytest.raises(PluginError, match=r"fancy \(pip install 'fake-nodes\[fancy,fast\]'\)"):
        registry.node_type("fancy-node")


def test_a_plugin_failing_to_import_without_extras(site):
    site.module("bpf_fake_missing_dep", "import bpf_fake_dep_module.sub\n")
    site.module("bpf_fake_raises", "raise RuntimeError('broken at import')\n")
    site.module("bpf_fake_good", GOOD_PLUGIN)
    site.dist(
        "fake-misc",
        "0.1",
        {
            "missing_dep": "bpf_fake_missing_dep",
            "raises": "bpf_fake_raises",
            "good": "bpf_fake_good",
            "no_such_module": "bpf_fake_nowhere",
        },
    )
    registry = build_registry()
    missing = registry.plugins["missing_dep"]
    assert missing.status == "unavailable"
    assert missing.hint.startswith("pip install bpf_fake_dep_module")
    raises = registry.plugins["raises"]
    assert raises.status == "unavailable"
    assert "RuntimeError: broken at import" in raises.reason
    assert registry.plugins["no_such_module"].status == "unavailable"
    assert registry.plugins["good"].status == "loaded"


def test_an_entry_point_plugin_with_a_bad_hook_signature_does_not_break_loading(site):
    site.module(
        "bpf_fake_bad_signature",
        """
        from backpackflow import hookimpl

        @hookimpl
        def backpackflow_register_tools(registry):
            pass
        """,
    )
    site.module("bpf_fake_good", GOOD_PLUGIN)
    site.dist("fake-misc", "0.1", {"bad_sig": "bpf_fake_bad_signature", "good": "bpf_fake_good"})
    registry = build_registry()
    assert registry.plugins["bad_sig"].status == "broken"
    assert "registry" in registry.plugins["bad_sig"].reason
    assert registry.plugins["good"].status == "loaded"


def test_two_entry_points_with_one_name_is_an_error_naming_both_distributions(site):
    site.module("bpf_fake_good", GOOD_PLUGIN)
    site.module(
        "bpf_fake_other",
        """
        from backpackflow import Node, hookimpl

        @hookimpl
        def backpackflow_register_executors(register):
            register("pool", dict)
        """,
    )
    site.dist("dist-one", "1.0", {"shared_name": "bpf_fake_good"})
    site.dist("dist-two", "2.0", {"shared_name": "bpf_fake_other"})
    registry = build_registry()
    loaded = [p for p in registry.plugins.values() if p.status == "loaded"]
    broken = [p for p in registry.plugins.values() if p.status == "broken"]
    assert len(loaded) == 1 and len(broken) == 1
    # the plugin that loaded keeps everything it registered
    assert loaded[0].registered
    problem = " ".join(registry.errors)
    assert "shared_name" in problem
    assert "dist-one" in problem and "dist-two" in problem
    with pytest.raises(PluginError):
        registry.check()


def test_one_module_under_two_entry_point_names_does_not_break_loading(site):
    site.module("bpf_fake_good", GOOD_PLUGIN)
    site.dist("dist-one", "1.0", {"first": "bpf_fake_good", "second": "bpf_fake_good"})
    registry = build_registry()
    assert registry.plugins["first"].status == "loaded"
    assert registry.plugins["second"].status == "broken"
    assert "first" in registry.plugins["second"].reason
    assert registry.node_type("fetch").plugin == "first"


def test_disable_plugin_autoload(site, monkeypatch):
    site.module("bpf_fake_good", GOOD_PLUGIN)
    site.dist("fake-nodes", "1.0", {"fake_nodes": "bpf_fake_good"})
    monkeypatch.setenv(DISABLE_AUTOLOAD_ENV, "1")
    extra = plugin("explicit", backpackflow_register_tools=lambda register: register("t", len))
    registry = build_registry(plugins=[extra])
    assert "fake_nodes" not in registry.plugins
    assert "bpf_fake_good" not in sys.modules
    assert registry.tool("t").plugin == "explicit"  # explicit plugins still load
    assert "fake_nodes" in build_registry(autoload=True).plugins  # the argument wins


def test_disable_plugins_by_name(site, monkeypatch):
    site.module("bpf_fake_good", GOOD_PLUGIN)
    site.module("bpf_fake_never_imported", "raise AssertionError('must not be imported')\n")
    site.dist(
        "fake-nodes",
        "1.0",
        {"fake_nodes": "bpf_fake_good", "blocked": "bpf_fake_never_imported"},
    )
    monkeypatch.setenv(DISABLE_PLUGINS_ENV, " blocked , explicit")
    extra = plugin("explicit", backpackflow_register_tools=lambda register: register("t", len))
    registry = build_registry(plugins=[extra])
    assert registry.plugins["blocked"].status == "disabled"
    assert DISABLE_PLUGINS_ENV in registry.plugins["blocked"].reason
    assert registry.plugins["explicit"].status == "disabled"
    assert "t" not in registry.tools
    assert registry.plugins["fake_nodes"].status == "loaded"
    registry = build_registry(disabled=["fake_nodes"])
    assert registry.plugins["fake_nodes"].status == "disabled"
    assert "fetch" not in registry.node_types


def test_process_wide_registry_is_cached_until_reset(site):
    site.module("bpf_fake_good", GOOD_PLUGIN)
    site.dist("fake-nodes", "1.0", {"fake_nodes": "bpf_fake_good"})
    first = get_registry()
    assert get_registry() is first
    assert "fake_nodes" in first.plugins
    reset_registry()
    assert get_registry() is not first
