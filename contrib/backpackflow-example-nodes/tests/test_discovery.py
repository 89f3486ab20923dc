"""The package is found through its entry point alone: no import, no registration call."""

from __future__ import annotations

import json
from importlib.metadata import entry_points

import pytest
from backpackflow.loader import FlowLoader
from backpackflow.plugins import Registry, build_registry

from backpackflow_example_nodes import (
    ExtractKeywordsNode,
    ExtractKeywordsParams,
    KeywordRouterNode,
    KeywordRouterParams,
    StopwordsOptions,
    TextStatsNode,
    TextStatsParams,
    build_stopwords,
)
from helpers import FLOWS, cli

PLUGIN = "example_nodes"
NODE_TYPES = {
    "text_stats": (TextStatsNode, TextStatsParams, ()),
    "keyword_router": (KeywordRouterNode, KeywordRouterParams, ()),
    "extract_keywords": (ExtractKeywordsNode, ExtractKeywordsParams, ("stopwords",)),
}


def test_the_distribution_declares_its_entry_point() -> None:
    (ep,) = [ep for ep in entry_points(group="backpackflow") if ep.name == PLUGIN]
    assert ep.value == "backpackflow_example_nodes.plugin:plugin"
    assert ep.dist is not None and ep.dist.name == "backpackflow-example-nodes"


def test_build_registry_loads_the_plugin(registry: Registry) -> None:
    info = registry.plugins[PLUGIN]
    assert info.status == "loaded", info.reason
    assert info.distribution == "backpackflow-example-nodes"
    assert info.version == "0.1.0"
    assert info.hooks == [
        "backpackflow_register_dependency_factories",
        "backpackflow_register_node_types",
    ]
    assert info.registered == {
        "node_types": ["text_stats", "keyword_router", "extract_keywords"],
        "dependency_factories": ["stopwords"],
    }


@pytest.mark.parametrize("name", sorted(NODE_TYPES))
def test_node_types_are_registered_with_params_and_dependencies(
    registry: Registry, name: str
) -> None:
    node_class, params, dependencies = NODE_TYPES[name]
    node_type = registry.node_type(name)
    assert node_type.plugin == PLUGIN
    assert node_type.node_class is node_class
    assert node_type.params is params
    assert node_type.dependencies == dependencies
    assert node_type.description == (node_class.__doc__ or "").strip().splitlines()[0]
    assert registry.node_type_of(node_class) is node_type


def test_the_dependency_factory_is_registered(registry: Registry) -> None:
    factory = registry.dependency_factory("stopwords")
    assert factory.plugin == PLUGIN
    assert factory.factory is build_stopwords
    assert factory.options is StopwordsOptions
    assert factory.description


def test_no_conflicts_and_no_errors_from_this_plugin(registry: Registry) -> None:
    ours = {*NODE_TYPES, "stopwords"}
    assert not [key for key in registry.conflicts if key[1] in ours]
    assert not [error for error in registry.errors if PLUGIN in error]


def test_plugins_command_lists_the_plugin() -> None:
    result = cli("plugins")
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    start = lines.index(f"{PLUGIN}  [loaded]  backpackflow-example-nodes 0.1.0")
    block = lines[start + 1 : start + 4]
    assert "    node types: text_stats, keyword_router, extract_keywords" in block
    assert "    dependency factories: stopwords" in block


def test_plugins_command_json() -> None:
    result = cli("plugins", "--json")
    assert result.returncode == 0, result.stderr
    (info,) = [p for p in json.loads(result.stdout)["plugins"] if p["name"] == PLUGIN]
    assert info["status"] == "loaded"
    assert info["registered"]["node_types"] == ["text_stats", "keyword_router", "extract_keywords"]


def test_a_disabled_plugin_provides_nothing() -> None:
    registry = build_registry(disabled=[PLUGIN])
    assert registry.plugins[PLUGIN].status == "disabled"
    assert "text_stats" not in registry.node_types
    report = FlowLoader(registry).validate(FLOWS / "triage.json")
    assert report.errors[0].startswith("$.nodes[0].type: unknown node type 'text_stats'")


def test_a_disabled_plugin_fails_validation_on_the_command_line() -> None:
    result = cli(
        "validate", str(FLOWS / "triage.json"), env={"BACKPACKFLOW_DISABLE_PLUGINS": PLUGIN}
    )
    assert result.returncode == 1
    assert "$.nodes[0].type" in result.stderr
