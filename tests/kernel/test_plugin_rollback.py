"""A plugin that breaks half-way keeps none of its registrations."""

from __future__ import annotations

import pytest

from backpackflow import Node, hookimpl
from backpackflow.errors import PluginError
from backpackflow.plugins import build_registry


class Good(Node):
    pass


class HalfBroken:
    __name__ = "half_broken"

    @hookimpl
    def backpackflow_register_node_types(self, register):
        register("shared", Good)
        register("only_mine", Good)

    @hookimpl
    def backpackflow_register_tools(self, register):
        register("tool_a", lambda args, ctx: None)
        raise RuntimeError("the plugin's tool setup failed")


class Other:
    __name__ = "other"

    @hookimpl
    def backpackflow_register_node_types(self, register):
        register("shared", Good)


def test_a_broken_plugin_keeps_none_of_its_registrations():
    registry = build_registry(plugins=[HalfBroken(), Other()], autoload=False)
    assert registry.plugins["half_broken"].status == "broken"
    assert "tool setup failed" in registry.plugins["half_broken"].reason
    with pytest.raises(PluginError, match="unknown node type 'only_mine'"):
        registry.node_type("only_mine")
    with pytest.raises(PluginError, match="unknown tool 'tool_a'"):
        registry.tool("tool_a")
    # the name it had made conflicting belongs to the remaining plugin again
    assert registry.node_type("shared").plugin == "other"
    assert registry.conflicts == {}


def test_conflicts_name_every_plugin_and_clear_when_one_breaks():
    class Third(Other):
        __name__ = "third"

    registry = build_registry(plugins=[Other(), Third()], autoload=False)
    with pytest.raises(PluginError, match=r"registered by both plugin 'other' and 'third'"):
        registry.node_type("shared")
