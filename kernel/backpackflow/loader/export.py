"""Exporting flows back to config documents (a mixin of :class:`FlowLoader`): stable, so
``export(load(export(flow)))`` is identical to ``export(flow)``; ``${NAME}`` references are
exported as written and secrets never."""

from __future__ import annotations

import copy
import json
from collections.abc import Mapping
from typing import Any

from backpackflow.config import CURRENT_VERSION, FLOW_NODE_TYPE, unstructure
from backpackflow.errors import ConfigError
from backpackflow.loader.build import _Build
from backpackflow.loader.conditions import CompiledCondition
from backpackflow.runner import BaseNode, DefaultMaxSteps, Flow, Limits, iter_nodes


class _Export(_Build):
    """The export half of :class:`~backpackflow.FlowLoader`."""

    def export_flow(self, flow: Flow) -> dict[str, Any]:
        """The flow as a config document (JSON data) in the current version."""
        document: dict[str, Any] = {"version": CURRENT_VERSION}
        source = getattr(flow, "config_source", None)
        if isinstance(source, Mapping):
            for key in (
                "$schema",
                "name",
                "description",
                "namespace",
                "allow_cycles",
                "dependencies",
                "limits",
                "inputs",
                "outputs",
                "contracts",
                "sinks",
            ):
                if key in source:
                    document[key] = copy.deepcopy(source[key])
            loaded = getattr(flow, "config_loaded", None)
            if loaded is not None:  # changed in code since loading: export what the flow holds
                name, namespace, limits = loaded
                if flow.name != name:
                    document["name"] = flow.name
                if flow.namespace != namespace:
                    document["namespace"] = flow.namespace
                if flow.limits != limits:
                    document["limits"] = _limits_document(flow.limits)
                    if not document["limits"]:
                        del document["limits"]
        else:
            if flow.name != "Flow":
                document["name"] = flow.name
            if flow.namespace:
                document["namespace"] = flow.namespace
            limits = _limits_document(flow.limits)
            if limits:
                document["limits"] = limits
        document.update(self._export_graph(flow))
        if "namespace" in document and not document["namespace"]:
            del document["namespace"]
        return document

    def export_json(self, flow: Flow) -> str:
        """:meth:`export_flow` as text: the one stable form (sorted keys, 2-space indent)."""
        return (
            json.dumps(self.export_flow(flow), indent=2, sort_keys=True, ensure_ascii=False) + "\n"
        )

    def _export_graph(self, flow: Flow) -> dict[str, Any]:
        nodes = _ordered_nodes(flow)
        ids = {id(n): n.id for n in nodes}
        graph: dict[str, Any] = {}
        assert flow.start_node is not None
        if nodes[0] is not flow.start_node:  # the first node is the entry unless said otherwise
            graph["entry"] = flow.start_node.id
        if flow.parallel:
            graph["parallel"] = True
        graph["nodes"] = [self._export_node(n) for n in nodes]
        edges = []
        for node in nodes:
            for action, node_edges in node.successors.items():
                for edge in node_edges:
                    item: dict[str, Any] = {"from": node.id, "to": ids[id(edge.target)]}
                    if action != "default":
                        item["condition"] = action
                    if edge.when is not None:
                        if not isinstance(edge.when, CompiledCondition):
                            raise ConfigError(
                                f"edge {node.id!r} -> {edge.target.id!r}: its condition is Python "
                                "code and cannot be exported; write it as an expression string "
                                "or JSON Logic in the flow config"
                            )
                        item["when"] = copy.deepcopy(edge.when.source)
                    if edge.mappings:
                        item["mappings"] = dict(edge.mappings)
                    edges.append(item)
        graph["edges"] = edges
        return graph

    def _export_node(self, node: BaseNode) -> dict[str, Any]:
        if isinstance(node, Flow) and node.node_type in (None, FLOW_NODE_TYPE):
            item: dict[str, Any] = {"type": FLOW_NODE_TYPE, "id": node.id}
            if node.name != "Flow":
                item["name"] = node.name
            if node.namespace:
                item["namespace"] = node.namespace
            item["params"] = self._export_graph(node)
            return item
        document: dict[str, Any] = unstructure(node.to_config(self.type_name_of(node)))
        return document


def _ordered_nodes(flow: Flow) -> list[BaseNode]:
    """The flow's nodes in config order: every node the config had (reachable or not), then
    nodes added in code since, in graph order."""
    reachable = flow.nodes()
    loaded = getattr(flow, "config_nodes", None)
    if not loaded:
        return reachable
    ordered = list(loaded)
    listed = {id(n) for n in ordered}
    walked: set[int] = set()  # one walk over all roots: linear in the graph's size
    for root in [*loaded, *reachable]:
        for node in iter_nodes(root, walked):
            if id(node) not in listed:
                listed.add(id(node))
                ordered.append(node)
    return ordered


def _limits_document(limits: Limits) -> dict[str, Any]:
    document: dict[str, Any] = {}
    if not isinstance(limits.max_steps, DefaultMaxSteps):  # an explicit 1000 too
        document["max_steps"] = limits.max_steps
    if limits.timeout is not None:
        document["timeout"] = limits.timeout
    if limits.max_tokens is not None:
        document["max_tokens"] = limits.max_tokens
    if limits.max_cost is not None:
        # positional, as written and as the schema takes it: str() gives "1E-7" for 0.0000001
        document["max_cost"] = format(limits.max_cost, "f")
    return document
