"""Key mappings of one graph level: which name each node reads as which Backpack key.

A mapping ``{name: key}`` sits on an edge (``{"from": "search", "to": "analyze", "mappings":
{...}}``) or on a node (``"mappings": {...}``); either way it belongs to the node that reads:
the edge's target, whichever edge led to it (a node waiting for several predecessors runs once,
so "the edge that led here" is not one edge). The mappings of a node and of its incoming edges
add up; one name mapped to two different keys is an error naming both places.
"""

from __future__ import annotations

from collections.abc import Sequence

import attrs

from backpackflow.config import FLOW_NODE_TYPE, EdgeConfig, NodeConfig


@attrs.frozen
class MappedRead:
    """What a node reads as one name: the Backpack ``key``, declared at ``where`` (the
    mapping's JSON path), on the edge ``edge`` (``(from, to)``) or on the node (``None``)."""

    key: str
    where: str
    edge: tuple[str, str] | None = None

    def declared(self) -> str:
        """Where the mapping is, for messages: ``the edge 'a' -> 'b'`` or ``its node``."""
        if self.edge is None:
            return f"{self.where} (on the node)"
        return f"{self.where} (on the edge {self.edge[0]!r} -> {self.edge[1]!r})"


def level_mappings(
    nodes: Sequence[NodeConfig], edges: Sequence[EdgeConfig], path: str, problems: list[str]
) -> dict[str, dict[str, MappedRead]]:
    """``{node id: {name: MappedRead}}`` for one graph level (``path``: the level's JSON path,
    ``$`` or a nested flow's ``$.nodes[i].params``), adding a problem for a name mapped onto
    itself, a mapping into a nested flow node and a name mapped to two keys."""
    index = {n.id: n for n in nodes}
    mapped: dict[str, dict[str, MappedRead]] = {}

    def add(node_id: str, name: str, read: MappedRead) -> None:
        if name == read.key:
            problems.append(
                f"{read.where}: maps {name!r} onto itself; leave it out (a node reads its own "
                "keys unless mapped)"
            )
            return
        known = mapped.setdefault(node_id, {})
        other = known.get(name)
        if other is None:
            known[name] = read
        elif other.key != read.key:
            problems.append(
                f"{read.where}: node {node_id!r} reads {name!r} as key {read.key!r} here, but as "
                f"key {other.key!r} by {other.declared()}; a name is read as one key"
            )

    for i, node in enumerate(nodes):
        if node.type == FLOW_NODE_TYPE:
            continue  # the graph checks say a nested flow node takes no mappings
        for name, key in node.mappings.items():
            add(node.id, name, MappedRead(key, f"{path}.nodes[{i}].mappings.{name}"))
    for i, edge in enumerate(edges):
        if not edge.mappings:
            continue
        target = index.get(edge.to)
        if target is None:
            continue  # an unknown node id: the graph checks report it
        where = f"{path}.edges[{i}].mappings"
        if target.type == FLOW_NODE_TYPE:
            problems.append(
                f"{where}: the edge {edge.from_!r} -> {edge.to!r} leads into a nested flow, "
                "which reads nothing itself; map the keys on the edges or nodes inside it"
            )
            continue
        for name, key in edge.mappings.items():
            add(edge.to, name, MappedRead(key, f"{where}.{name}", (edge.from_, edge.to)))
    return mapped
