"""Checking a structured flow config before anything is built: the graph (duplicate and
unknown ids, entry, cycles, unreachable nodes, conditions), node params and dependencies, and
the options of the dependencies and sinks it declares (a mixin of :class:`FlowLoader`)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import attrs

from backpackflow.config import (
    FLOW_NODE_TYPE,
    KEY_RULE,
    EdgeConfig,
    FlowConfig,
    NodeConfig,
    SubflowParams,
    is_backpack_key,
    schema_problems,
    structure,
    structure_params,
    validate_params,
    value_problems,
)
from backpackflow.errors import ConfigError, PluginError
from backpackflow.loader.conditions import compile_condition
from backpackflow.loader.dataflow import check_dataflow
from backpackflow.loader.mappings import level_mappings
from backpackflow.loader.schema import flow_schema
from backpackflow.plugins import NodeType, Registry
from backpackflow.runner import BUILTIN_TYPES, BaseNode, DependencyContainer


class _Checks:
    """The checks of :class:`~backpackflow.FlowLoader` (the base of its parts: what they all
    read of it is declared here; :class:`~backpackflow.loader.build._Build` and
    :class:`~backpackflow.loader.export._Export` build on it, and FlowLoader on them)."""

    registry: Registry
    _local: dict[str, NodeType]
    _schema_cache: dict[str, Any] | None
    #: the params class of each node type, as the cached schema composed them
    _schema_params: dict[str, type | None]

    def node_type(self, name: str) -> NodeType:
        local = self._local.get(name)
        return local if local is not None else self.registry.node_type(name)

    def _node_type_or_none(self, name: str) -> NodeType | None:
        try:
            return self.node_type(name)
        except PluginError:
            return None

    def node_types(self) -> dict[str, type | None]:
        types = {name: t.params for name, t in self.registry.node_types.items()}
        types.update({name: t.params for name, t in self._local.items()})
        return types

    def type_name_of(self, node: BaseNode) -> str:
        own = getattr(node, "node_type", None)
        if isinstance(own, str):
            return own
        for name, node_type in self._local.items():
            if node_type.node_class is type(node):
                return name
        registered = self.registry.node_type_of(type(node))
        if registered is None:
            raise ConfigError(
                f"node {node.id!r} ({type(node).__name__}) has no registered node type, so it "
                "cannot be exported; register its class through backpackflow_register_node_types "
                "or loader.register(name, cls)"
            )
        return registered.name

    def _schema(self) -> dict[str, Any]:
        if self._schema_cache is None:
            contracts = {n: (t.reads, t.writes) for n, t in self.registry.node_types.items()}
            contracts.update({n: (t.reads, t.writes) for n, t in self._local.items()})
            types = self.node_types()
            self._schema_cache = flow_schema(self.registry, node_types=types, contracts=contracts)
            self._schema_params = types
        return self._schema_cache

    def _make_node(self, config: NodeConfig, deps: DependencyContainer, where: str) -> BaseNode:
        raise NotImplementedError  # loader/build.py: the build half of FlowLoader

    def _check(
        self,
        config: FlowConfig,
        raw: Mapping[str, Any],
        label: str,
        node_deps: DependencyContainer | None = None,
    ) -> tuple[FlowConfig, list[str]]:
        """Every problem of a structured config, raised together: the graph, dependencies,
        sinks, inputs and, with ``node_deps``, what each node's class checks when it is built
        (its templates, rules, tools), built on ``node_deps``."""
        problems: list[str] = []
        warns: list[str] = []
        nodes = self._check_graph(
            config.nodes,
            config.edges,
            config.entry,
            config.allow_cycles,
            raw,
            "$",
            problems,
            warns,
        )
        self._check_plugins_used(config, problems, warns)
        _check_inputs(config, problems)
        config = attrs.evolve(config, nodes=nodes)
        dataflow: list[str] = []
        check_dataflow(config, self._node_type_or_none, dataflow)
        (problems if config.strict_contracts else warns).extend(dataflow)
        if node_deps is not None:
            self._check_node_builds(config, node_deps, problems)
        if problems:
            raise ConfigError(_join(label, problems), problems)
        return config, warns

    def _check_node_builds(
        self, config: FlowConfig, deps: DependencyContainer, problems: list[str]
    ) -> None:
        """Build every node whose type and params are sound, as loading does, and collect
        what their classes refuse. The flow's dependencies are named but never built."""
        for name in config.dependencies:
            if not deps.has(name):
                deps.register_factory(name, _not_built)
        for where, node in _walk_nodes(config.nodes, "$"):
            try:
                node_type = self.node_type(node.type)
            except PluginError:
                continue  # reported by the schema stage
            if node_type.params is not None and not isinstance(node.params, node_type.params):
                continue  # its params did not structure: reported already
            try:
                self._make_node(node, deps, where)
            except ConfigError as exc:
                cause = exc.__cause__
                if cause is not None and not isinstance(cause, ConfigError):
                    continue  # the node type's own code crashed: loading reports it
                problems.extend(exc.problems)

    def _check_plugins_used(
        self, config: FlowConfig, problems: list[str], warns: list[str]
    ) -> None:
        """Dependencies and sinks: their types exist and their options match their schemas;
        dependencies nodes need that the flow does not declare are warnings (the caller may
        provide them, which ``load_flow`` checks)."""
        for name, spec in config.dependencies.items():
            if spec.type not in BUILTIN_TYPES:
                _check_options(
                    self.registry.dependency_factory,
                    spec.type,
                    spec.config,
                    f"$.dependencies.{name}",
                    "config",
                    problems,
                )
        for i, sink in enumerate(config.sinks):
            _check_options(
                self.registry.event_sink,
                sink.type,
                sink.options,
                f"$.sinks[{i}]",
                "options",
                problems,
            )
        declared = set(config.dependencies)
        for where, node in _walk_nodes(config.nodes, "$"):
            try:
                needed = [*self.node_type(node.type).dependencies, *node.dependencies]
            except PluginError:
                continue
            for name in needed:
                if name not in declared:
                    warns.append(
                        f"{where}: node {node.id!r} needs dependency {name!r}, which the flow "
                        "does not declare; whoever loads the flow must provide it"
                    )

    def _check_graph(
        self,
        nodes: list[NodeConfig],
        edges: list[EdgeConfig],
        entry: str | None,
        allow_cycles: bool,
        raw: Mapping[str, Any],
        path: str,
        problems: list[str],
        warns: list[str],
    ) -> list[NodeConfig]:
        """Check one graph level (nodes, edges, entry, cycles, reachability, params); returns
        the nodes with params structured into their types' params classes."""
        seen: dict[str, int] = {}
        checked: list[NodeConfig] = []
        raw_nodes = raw.get("nodes") or []
        for i, node in enumerate(nodes):
            where = f"{path}.nodes[{i}]"
            if node.id in seen:
                first = f"{path}.nodes[{seen[node.id]}]"
                problems.append(f"{where}.id: duplicate node id {node.id!r} (also {first})")
            seen.setdefault(node.id, i)
            raw_node = raw_nodes[i] if i < len(raw_nodes) else {}
            checked.append(self._check_node(node, raw_node, where, allow_cycles, problems, warns))
        for i, edge in enumerate(edges):
            for end, node_id in (("from", edge.from_), ("to", edge.to)):
                if node_id not in seen:
                    problems.append(
                        f"{path}.edges[{i}].{end}: unknown node id {node_id!r} (nodes: "
                        f"{', '.join(repr(n) for n in seen) or 'none'})"
                    )
            if edge.when is not None:
                try:
                    compile_condition(edge.when, self.registry, where=f"{path}.edges[{i}].when")
                except ConfigError as exc:
                    problems.extend(exc.problems)
        level_mappings(nodes, edges, path, problems)
        if entry is not None and entry not in seen:
            problems.append(f"{path}.entry: unknown node id {entry!r}")
        if problems or not nodes:
            return checked
        start = entry if entry is not None else nodes[0].id
        successors: dict[str, list[str]] = {n.id: [] for n in nodes}
        for edge in edges:
            successors[edge.from_].append(edge.to)
        cycle = _find_cycle(successors)
        if cycle and not allow_cycles:
            shown = cycle if len(cycle) <= 12 else [*cycle[:5], "…", *cycle[-5:]]
            problems.append(
                f"{path}.edges: the graph has a cycle ({' -> '.join(shown)}); set "
                '"allow_cycles": true if the flow loops on purpose (limits.max_steps bounds it)'
            )
        reachable = _reachable(start, successors)
        for i, node in enumerate(nodes):
            if node.id not in reachable:
                warns.append(
                    f"{path}.nodes[{i}]: node {node.id!r} is unreachable from the entry node "
                    f"{start!r}; it will never run"
                )
        return checked

    def _check_node(
        self,
        node: NodeConfig,
        raw_node: Mapping[str, Any],
        where: str,
        allow_cycles: bool,
        problems: list[str],
        warns: list[str],
    ) -> NodeConfig:
        if node.type == FLOW_NODE_TYPE:
            for field, value in (
                ("retry", node.retry),
                ("inputs", node.inputs),
                ("mappings", node.mappings),
                ("dependencies", node.dependencies),
            ):
                if value:
                    problems.append(
                        f"{where}.{field}: a nested flow node takes no {field} (give them to "
                        "the nodes inside it)"
                    )
            try:
                sub = structure(node.params, SubflowParams, path=f"{where}.params")
            except ConfigError as exc:
                problems.extend(exc.problems)
                return node
            raw_params = raw_node.get("params") or {}
            inner = self._check_graph(
                sub.nodes,
                sub.edges,
                sub.entry,
                allow_cycles,
                raw_params,
                f"{where}.params",
                problems,
                warns,
            )
            return attrs.evolve(node, params=attrs.evolve(sub, nodes=inner))
        try:
            node_type = self.node_type(node.type)
        except PluginError as exc:
            problems.append(f"{where}.type: {exc}")
            return node
        if node_type.params is None:
            return node
        try:
            if self._schema_params.get(node.type) is node_type.params:
                # the document was validated against the schema composed with this params
                # class (parse validates before it checks): its params were, with it
                params: Any = structure(
                    dict(node.params or {}),
                    node_type.params,
                    path=f"{where}.params",
                    where=f"node {node.id!r}",
                )
            else:
                params = structure_params(
                    node_type.params,
                    node.params or {},
                    where=f"node {node.id!r}",
                    path=f"{where}.params",
                )
        except ConfigError as exc:
            problems.extend(exc.problems)
            return node
        return attrs.evolve(node, params=params)


def _not_built(container: DependencyContainer) -> Any:
    raise ConfigError("dependencies are not built while a flow is only validated")


def _check_inputs(config: FlowConfig, problems: list[str]) -> None:
    """Each declared input is named as a Backpack key (it is packed under its name), its
    schema is a JSON Schema and its default matches it; each output names a Backpack key."""
    for i, key in enumerate(config.outputs):
        if not is_backpack_key(key):
            problems.append(f"$.outputs[{i}]: {key!r} is not a Backpack key ({KEY_RULE})")
    for name, spec in config.inputs.items():
        where = f"$.inputs.{name}"
        if not is_backpack_key(name):
            problems.append(
                f"$.inputs: the input name {name!r} is not a Backpack key ({KEY_RULE}); a run "
                "packs its inputs under their names"
            )
        if spec.schema is None:
            continue
        found = schema_problems(spec.schema, f"{where}.schema")
        problems.extend(found)
        if not found and spec.default is not None:
            problems.extend(value_problems(spec.schema, spec.default, f"{where}.default"))


def _check_options(
    lookup: Any, type_name: str, options: Any, where: str, field: str, problems: list[str]
) -> None:
    """A dependency's or sink's ``type`` is registered and its options match its schema."""
    try:
        registered = lookup(type_name)
    except PluginError as exc:
        problems.append(f"{where}.type: {exc}")
        return
    if registered.options is not None:
        try:
            validate_params(registered.options, options, where=where, path=f"{where}.{field}")
        except ConfigError as exc:
            problems.extend(exc.problems)


def _walk_nodes(nodes: Sequence[NodeConfig], path: str) -> Iterable[tuple[str, NodeConfig]]:
    """Every node config with its JSON path, nested flows included."""
    for i, node in enumerate(nodes):
        where = f"{path}.nodes[{i}]"
        if node.type == FLOW_NODE_TYPE:
            if isinstance(node.params, SubflowParams):
                yield from _walk_nodes(node.params.nodes, f"{where}.params")
            continue
        yield where, node


def _redact(problems: list[str], refs: Mapping[Any, tuple[str, str]]) -> list[str]:
    """Problems with every value a ``${NAME}`` resolved to replaced by the reference."""
    secrets = sorted(
        ((resolved, written) for written, resolved in refs.values() if resolved),
        key=lambda pair: -len(pair[0]),
    )
    redacted = []
    for problem in problems:
        for resolved, written in secrets:
            problem = problem.replace(resolved, written)
        redacted.append(problem)
    return redacted


def _join(label: str, problems: Sequence[str]) -> str:
    return f"{label}: " + f"\n{label}: ".join(problems)


def _find_cycle(successors: Mapping[str, list[str]]) -> list[str] | None:
    """A cycle in the graph as a path of ids (first == last), or ``None``. Iterative depth-first
    search (an explicit stack), so a chain of any length is checked without recursion."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    for root in successors:
        if root in state:
            continue
        path: list[str] = [root]
        state[root] = 1
        stack = [iter(successors.get(root, ()))]
        while stack:
            target = next(stack[-1], None)
            if target is None:
                stack.pop()
                state[path.pop()] = 2
                continue
            mark = state.get(target)
            if mark == 1:
                return [*path[path.index(target) :], target]
            if mark is None:
                state[target] = 1
                path.append(target)
                stack.append(iter(successors.get(target, ())))
    return None


def _reachable(start: str, successors: Mapping[str, list[str]]) -> set[str]:
    seen = {start}
    queue = [start]
    while queue:
        for target in successors.get(queue.pop(), ()):
            if target not in seen:
                seen.add(target)
                queue.append(target)
    return seen
