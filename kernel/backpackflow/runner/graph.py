"""What the scheduler knows of a flow's graph: node order and reachability (for joins), ids,
and which edges an action selects (``when`` conditions included)."""

from __future__ import annotations

import warnings
import weakref
from collections.abc import Iterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from backpackflow.errors import FlowError
from backpackflow.events import LogPayload, StreamEventType
from backpackflow.namespaces import join
from backpackflow.runner.base import BaseNode, default_node_id, iter_nodes

if TYPE_CHECKING:  # type-only back references: a graph is compiled from (and for) a Flow
    from backpackflow.runner.flow import Flow
    from backpackflow.runner.run import Run


class _Graph:
    """What the scheduler needs of a flow's graph, computed once per change of that graph.

    Compiling is linear in nodes + edges (one breadth-first walk; ids assigned in one pass).
    Each node remembers the flows compiled with it (``BaseNode._watchers``), so new edges on a
    node invalidate those flows only, never every flow of the process.

    Joins ask whether an active node can still reach a pending one (:meth:`can_reach`). The
    answer comes from a topological order where the graph has one (a node never reaches one
    ordered before it) and otherwise from the target's ancestors, found by an iterative search
    on first need and kept; a long chain never pays for all-pairs reachability, which would be
    quadratic in time and memory."""

    __slots__ = ("_ancestors", "_order", "_predecessors", "needs_loop", "nodes", "steps")

    def __init__(self, flow: Flow) -> None:
        start = flow.start_node
        if start is None:
            raise FlowError(
                f"flow {flow.id!r} has no start node: use Flow(start) or flow.start(node)"
            )
        self.nodes = list(iter_nodes(start))
        self._ancestors: dict[int, set[int]] = {}
        self._predecessors: dict[int, list[BaseNode]] | None = None
        self._order: dict[int, int] | bool | None = False  # False: not computed yet
        _assign_ids(flow, self.nodes)
        needs_loop = flow.parallel or flow.is_async
        steps = 0
        me = weakref.ref(flow)  # one shared reference object (no callback): cheap to store
        for node in self.nodes:
            watchers = node._watchers
            if watchers is None:
                node._watchers = [me]
            elif me not in watchers:
                watchers.append(me)
            if not needs_loop:
                needs_loop = node._needs_loop()
            steps += node._steps_per_run()
        self.needs_loop = needs_loop
        #: Node executions of one pass through the graph (nested flows' nodes included).
        self.steps = steps

    def can_reach(self, source: BaseNode, target: BaseNode) -> bool:
        """Whether ``source`` leads to ``target`` through edges."""
        order = self._topological_order()
        if order is not None and order[id(source)] >= order[id(target)]:
            return False
        return id(source) in self._ancestors_of(target)

    def _topological_order(self) -> dict[int, int] | None:
        """Node id → position in a topological order (Kahn's algorithm), ``None`` if the graph
        has a cycle."""
        if self._order is False:
            incoming = {id(n): 0 for n in self.nodes}
            for node in self.nodes:
                for edges in node.successors.values():
                    for edge in edges:
                        incoming[id(edge.target)] += 1
            ready = [n for n in self.nodes if incoming[id(n)] == 0]
            order: dict[int, int] = {}
            while ready:
                node = ready.pop()
                order[id(node)] = len(order)
                for edges in node.successors.values():
                    for edge in edges:
                        incoming[id(edge.target)] -= 1
                        if incoming[id(edge.target)] == 0:
                            ready.append(edge.target)
            self._order = order if len(order) == len(self.nodes) else None
        return self._order  # type: ignore[return-value]

    def _ancestors_of(self, node: BaseNode) -> set[int]:
        """Ids of every node that leads to ``node`` (iterative search backwards, cached)."""
        found = self._ancestors.get(id(node))
        if found is not None:
            return found
        predecessors = self._predecessors
        if predecessors is None:
            predecessors = self._predecessors = {id(n): [] for n in self.nodes}
            for other in self.nodes:
                for edges in other.successors.values():
                    for edge in edges:
                        predecessors[id(edge.target)].append(other)
        found = set()
        stack = list(predecessors.get(id(node), ()))
        while stack:
            other = stack.pop()
            if id(other) not in found:
                found.add(id(other))
                stack.extend(predecessors.get(id(other), ()))
        self._ancestors[id(node)] = found
        return found


def _assign_ids(flow: Flow, nodes: Sequence[BaseNode]) -> None:
    """Node ids are unique within a flow (each nested flow is a scope of its own): explicit
    duplicates are an error; generated ids get a numeric suffix, in graph order."""
    taken: dict[str, BaseNode] = {}
    for node in nodes:
        if node._auto_id:
            continue
        other = taken.get(node.id)
        if other is not None and other is not node:
            raise FlowError(
                f"flow {flow.id!r}: two different nodes have the id {node.id!r} "
                f"({type(other).__name__} and {type(node).__name__}); give each a unique id"
            )
        taken[node.id] = node
    for node in nodes:
        if not node._auto_id:
            continue
        base = default_node_id(type(node))
        candidate, n = base, 1
        while candidate in taken:
            n += 1
            candidate = f"{base}-{n}"
        node.id = candidate
        taken[candidate] = node


class _ConditionContext(Mapping[str, Any]):
    """What an edge condition sees: ``action``, ``output`` (the node's exec result, whose keys
    are also top-level names when it is a dict, e.g. a router's ``branch``), ``inputs`` (run
    inputs), ``state`` (the Backpack, read-only) and ``node`` (``node.<id>.output``)."""

    __slots__ = ("_data",)

    def __init__(self, run: Run, action: Any, output: Any) -> None:
        data: dict[str, Any] = dict(output) if isinstance(output, Mapping) else {}
        data.update(
            action=action if action is not None else "default",
            output=output,
            inputs=run.inputs,
            state=run.backpack.snapshot(),
            node={k: {"output": v} for k, v in run.outputs.items()},
        )
        self._data = data

    def __getitem__(self, key: str) -> Any:
        return self._data[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._data)

    def __len__(self) -> int:
        return len(self._data)


class FlowEndsWarning(UserWarning):
    """A flow ended because its last node returned an action no edge is labelled with (as
    PocketFlow warns); end a flow on purpose with ``node - "action" >> None``."""


def _follow(
    run: Run, node: BaseNode, action: Any, output: Any, namespace: str | None
) -> Sequence[BaseNode]:
    key = "default" if action is None else action
    if not isinstance(key, str):
        raise FlowError(
            f"node {node.id!r} returned {action!r} from post(); an action must be a string or None"
        )
    edges = node.successors.get(key)
    if not edges:
        if edges is None and node.successors:  # [] is an explicit end (node - "end" >> None)
            message = (
                f"flow ends after node {node.id!r}: it returned action {key!r}, which has no "
                f"edge (edges: {sorted(node.successors)})"
            )
            # as PocketFlow warns ("Flow ends: ... not found"), and in the trace
            warnings.warn(message, FlowEndsWarning, stacklevel=2)
            run.emit(
                StreamEventType.LOG,
                LogPayload("warning", message),
                frame=run.node_frame(node.id, node.name, join(namespace, node.namespace), None),
            )
        return ()
    if len(edges) == 1 and edges[0].when is None:
        return (edges[0].target,)
    context = None
    targets = []
    for edge in edges:
        if edge.when is not None:
            if context is None:
                context = _ConditionContext(run, action, output)
            try:
                ok = edge.when(context)
            except Exception as exc:
                raise FlowError(
                    f"edge {node.id!r} -> {edge.target.id!r} (action {key!r}): its condition "
                    f"{getattr(edge.when, 'source', edge.when)!r} failed: {exc}"
                ) from exc
            if not isinstance(ok, bool) and getattr(edge.when, "language", None) == "cel":
                source = getattr(edge.when, "source", edge.when)
                raise FlowError(
                    f"edge {node.id!r} -> {edge.target.id!r}: its condition {source!r} gave "
                    f"{ok!r}; an edge condition must be true or false (compare it: e.g. "
                    "branch == 'deep')"
                )
            if not ok:
                continue
        targets.append(edge.target)
    return targets


def _pick(graph: _Graph, pending: Sequence[BaseNode], running: Sequence[BaseNode]) -> int:
    """Index of the first pending node that nothing else can still reach (else the first, so
    that mutually reachable pending nodes cannot deadlock)."""
    for i, node in enumerate(pending):
        if _runnable(graph, node, pending, running):
            return i
    return 0


def _runnable(
    graph: _Graph, node: BaseNode, pending: Sequence[BaseNode], running: Sequence[BaseNode]
) -> bool:
    """True when no other pending or running node can still reach ``node``."""
    for others in (pending, running):
        for other in others:
            if other is not node and graph.can_reach(other, node):
                return False
    return True
