"""The static dataflow check: every Backpack key a node's contract reads is written, on every
path that reaches the node, by a flow input or an upstream node; where both sides declare a
JSON Schema, what is written is a type the reader accepts.

Which writes a node can count on: those of every node that surely ran before it. The entry
node runs first; a node surely runs (is *certain*) when a certain node leads to it by its only
action, ``default``, without a ``when`` condition (a node returning an action that has no edge
ends the flow, so nothing after it runs either). A node then waits for all its active
predecessors, so it can count on the writes of its certain predecessors (and what they could
count on), and on what every one of its predecessors provides, whichever of them led to it.
Loops (``allow_cycles``) are solved to a fixed point.

Key mappings (loader/mappings.py) change which key a read needs: a node reading ``name``
mapped to ``key`` needs ``key`` written upstream, of a type its contract accepts for ``name``.
A mapping of a name the node's type does not read (when its contract declares reads) is a
problem too: it would never be used.

Only keys that some node reads (at any level, directly or through a mapping) are tracked: the
others cannot make a problem, and tracking them made the check quadratic in the flow's length (a
3,000-node chain whose nodes each write a key of their own carried every earlier key through
every node).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import attrs

from backpackflow.config import (
    FLOW_NODE_TYPE,
    EdgeConfig,
    FlowConfig,
    NodeConfig,
    SubflowParams,
    resolve_key,
    unstructure_params,
)
from backpackflow.loader.mappings import MappedRead, level_mappings
from backpackflow.plugins import NodeType

#: key -> (who writes it: "input 'x'" / "node 'y'", its JSON Schema or None)
Available = dict[str, tuple[str, Any]]


@attrs.frozen
class NodeData:
    """One node's resolved contract: ``{key: JSON Schema}`` read and written;
    ``declares_reads``: its type names what it reads (else it may read anything)."""

    reads: dict[str, Any]
    writes: dict[str, Any]
    declares_reads: bool = False


def node_data(node: NodeConfig, node_type: NodeType | None) -> NodeData:
    """The keys ``node`` reads and writes: its type's contract with ``{param}`` keys filled."""
    if node_type is None or not (node_type.reads or node_type.writes):
        return NodeData({}, {})
    params = node.params
    if attrs.has(type(params)):
        params = unstructure_params(params)
    if not isinstance(params, Mapping):
        params = {}

    def resolve(declared: Mapping[str, Any]) -> dict[str, Any]:
        resolved = {}
        for template, schema in declared.items():
            key = resolve_key(template, params, node.id)
            if key is not None:
                resolved[key] = schema
        return resolved

    return NodeData(resolve(node_type.reads), resolve(node_type.writes), bool(node_type.reads))


def check_dataflow(
    config: FlowConfig, node_type: Callable[[str], NodeType | None], problems: list[str]
) -> None:
    """Add a problem (``$.path: ...``) for every read no input or upstream node provides and
    every written type its reader refuses."""
    found, read_anywhere = _contracts(config.nodes, config.edges, node_type, {}, set())
    tracked = {
        at: attrs.evolve(data, writes={k: v for k, v in data.writes.items() if k in read_anywhere})
        for at, data in found.items()
    }
    inputs: Available = {
        name: (f"flow input {name!r}", spec.schema)
        for name, spec in config.inputs.items()
        if name in read_anywhere
    }
    _check_level(
        config.nodes, config.edges, config.entry, inputs, tracked.__getitem__, "$", problems
    )


def _contracts(
    nodes: Sequence[NodeConfig],
    edges: Sequence[EdgeConfig],
    node_type: Callable[[str], NodeType | None],
    found: dict[int, NodeData],
    read_anywhere: set[str],
) -> tuple[dict[int, NodeData], set[str]]:
    """Every node's contract at every level, by ``id(node)`` (ids repeat across levels), and
    every key read anywhere: by a contract, a mapping, or a node whose type declares no reads
    (its mappings name the keys it needs)."""
    for node in nodes:
        read_anywhere.update(_keys(node.mappings))
        if node.type != FLOW_NODE_TYPE:
            data = found[id(node)] = node_data(node, node_type(node.type))
            read_anywhere.update(data.reads)
        elif isinstance(node.params, SubflowParams):
            sub = node.params
            _contracts(sub.nodes, sub.edges, node_type, found, read_anywhere)
    for edge in edges:
        read_anywhere.update(_keys(edge.mappings))
    return found, read_anywhere


def _keys(mappings: Mapping[str, Any]) -> list[str]:
    """The Backpack keys a mapping reads (a value that is not a string: the mapping checks
    report it)."""
    return [key for key in mappings.values() if isinstance(key, str)]


def _check_level(
    nodes: Sequence[NodeConfig],
    edges: Sequence[EdgeConfig],
    entry: str | None,
    initial: Available,
    contract: Callable[[int], NodeData],
    path: str,
    problems: list[str],
) -> Available:
    """Check one graph level; returns what is surely available when it ends."""
    if not nodes:
        return dict(initial)
    index = {n.id: i for i, n in enumerate(nodes)}
    start = entry if entry in index else nodes[0].id
    preds: dict[str, list[str]] = {n.id: [] for n in nodes}
    succs: dict[str, list[EdgeConfig]] = {n.id: [] for n in nodes}
    for edge in edges:
        if edge.from_ in index and edge.to in index:
            preds[edge.to].append(edge.from_)
            succs[edge.from_].append(edge)
    certain = _certain(start, succs)
    reachable = _reachable(start, succs)
    data: dict[str, NodeData] = {}
    for n in nodes:
        if n.type != FLOW_NODE_TYPE:
            data[n.id] = contract(id(n))
    # must-analysis to a fixed point: None is "everything" (not computed yet)
    avail_in: dict[str, Available | None] = {n.id: None for n in nodes}
    avail_in[start] = dict(initial)
    avail_out: dict[str, Available | None] = {n.id: None for n in nodes}
    order = [n.id for n in nodes if n.id in reachable]
    for _ in range(len(order) + 2):
        changed = False
        for node_id in order:
            if node_id != start:
                avail_in[node_id] = _meet(
                    [avail_out[p] for p in preds[node_id] if p in reachable],
                    [avail_out[p] for p in preds[node_id] if p in certain],
                )
            before = avail_in[node_id]
            node = nodes[index[node_id]]
            if before is None:
                out = None
            elif node.type == FLOW_NODE_TYPE:  # what its inner graph surely leaves
                out = _inner(node, before, contract, f"{path}.nodes[{index[node_id]}]", [])
            else:
                out = _after(node, before, data)
            if out != avail_out[node_id]:
                avail_out[node_id], changed = out, True
        if not changed:
            break
    mapped = level_mappings(nodes, edges, path, [])  # its own problems: the graph checks'
    for node_id in order:
        node = nodes[index[node_id]]
        where = f"{path}.nodes[{index[node_id]}]"
        available = avail_in[node_id] or {}
        if node.type == FLOW_NODE_TYPE:
            _inner(node, available, contract, where, problems)
            continue
        reads = data[node_id].reads
        renamed = mapped.get(node_id, {})
        for key, schema in reads.items():
            read = renamed.get(key)
            _check_read(node, where, key, read, schema, available, nodes, data, problems)
        for name, read in renamed.items():
            if name in reads:
                continue
            if data[node_id].declares_reads:
                problems.append(
                    f"{read.where}: node {node.id!r} ({node.type}) reads no key {name!r} (it "
                    f"reads: {', '.join(repr(k) for k in reads) or 'none'}), so the mapping "
                    "would never be used"
                )
            else:  # a type that does not say what it reads: the mapped key must still exist
                _check_read(node, where, name, read, None, available, nodes, data, problems)
    ends = [avail_out[n] for n in order if not succs[n]]
    return _meet(ends, []) or {}


def _inner(
    node: NodeConfig,
    available: Available,
    contract: Callable[[int], NodeData],
    where: str,
    problems: list[str],
) -> Available:
    """Check a nested flow's graph; returns what it surely leaves in the Backpack."""
    sub = node.params
    if not isinstance(sub, SubflowParams):
        return dict(available)
    return _check_level(
        sub.nodes, sub.edges, sub.entry, available, contract, f"{where}.params", problems
    )


def _after(node: NodeConfig, before: Available, data: Mapping[str, NodeData]) -> Available:
    after = dict(before)
    for key, schema in data[node.id].writes.items():
        after[key] = (f"node {node.id!r}", schema)
    return after


def _meet(
    alternatives: Sequence[Available | None], certain: Sequence[Available | None]
) -> Available | None:
    """What is available whichever alternative led here, plus what the certain ones give."""
    known = [a for a in alternatives if a is not None]
    if not known and alternatives:
        return None
    common: Available = {}
    if known:
        common = {k: v for k, v in known[0].items() if all(k in a for a in known[1:])}
    for sure in certain:
        if sure is not None:
            common.update(sure)
    return common


def _check_read(
    node: NodeConfig,
    where: str,
    name: str,
    read: MappedRead | None,
    schema: Any,
    available: Available,
    nodes: Sequence[NodeConfig],
    data: Mapping[str, NodeData],
    problems: list[str],
) -> None:
    """Check that what ``node`` reads as ``name`` (the key ``read`` maps it to, else ``name``)
    is available, of a type ``schema`` accepts."""
    key = name if read is None else read.key
    if read is None:
        reads = f"reads key {key!r}"
    else:
        where = read.where
        by = "its mapping" if read.edge is None else "the mapping on the edge"
        if read.edge is not None:
            by += f" {read.edge[0]!r} -> {read.edge[1]!r}"
        reads = f"reads {name!r} as key {key!r} ({by})"
    if key not in available:
        writers = [n.id for n in nodes if n.id in data and key in data[n.id].writes]
        if writers:
            names = ", ".join(repr(w) for w in writers)
            why = f"node(s) {names} write it, but not on every path that reaches {node.id!r}"
        else:
            why = "no flow input and no node writes it"
        problems.append(f"{where}: node {node.id!r} ({node.type}) {reads}; {why}")
        return
    writer, written = available[key]
    if written is None or schema is None:
        return
    wrote, accepts = _json_types(written), _json_types(schema)
    if wrote is None or accepts is None or wrote <= accepts:
        return
    expects = " as" if read is None else ", expecting"
    problems.append(
        f"{where}: node {node.id!r} ({node.type}) {reads}{expects} "
        f"{_shown(accepts)}, but {writer} writes {_shown(wrote)}"
    )


_ALL = frozenset({"null", "boolean", "object", "array", "number", "string", "integer"})


def _json_types(schema: Any) -> frozenset[str] | None:
    """The JSON types a schema allows (``integer`` counted in ``number``); ``None``: not
    known from the schema's top level (then no type is compared)."""
    if schema is True or schema == {}:
        return _ALL
    if not isinstance(schema, Mapping):
        return None
    kind = schema.get("type")
    if isinstance(kind, str):
        kind = [kind]
    if isinstance(kind, list):
        types = set(kind)
        if "number" in types:
            types.add("integer")
        return frozenset(types)
    options = schema.get("anyOf") or schema.get("oneOf")
    if isinstance(options, list):
        found: set[str] = set()
        for option in options:
            sub = _json_types(option)
            if sub is None:
                return None
            found |= sub
        return frozenset(found)
    ref = schema.get("$ref")
    defs = schema.get("$defs")
    if isinstance(ref, str) and isinstance(defs, Mapping) and ref.startswith("#/$defs/"):
        target = defs.get(ref[len("#/$defs/") :])
        return _json_types(target) if target is not None else None
    if set(schema) <= {"description", "title", "$comment", "default", "examples"}:
        return _ALL
    return None


def _shown(types: frozenset[str]) -> str:
    if types == _ALL:
        return "any JSON value"
    return " or ".join(sorted(types - {"integer"} if "number" in types else types))


def _certain(start: str, succs: Mapping[str, list[EdgeConfig]]) -> set[str]:
    certain = {start}
    queue = [start]
    while queue:
        edges = succs[queue.pop()]
        if edges and all(e.condition == "default" and e.when is None for e in edges):
            for edge in edges:
                if edge.to not in certain:
                    certain.add(edge.to)
                    queue.append(edge.to)
    return certain


def _reachable(start: str, succs: Mapping[str, list[EdgeConfig]]) -> set[str]:
    seen = {start}
    queue = [start]
    while queue:
        for edge in succs[queue.pop()]:
            if edge.to not in seen:
                seen.add(edge.to)
                queue.append(edge.to)
    return seen
