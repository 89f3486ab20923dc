"""Building flows and nodes from a checked config (a mixin of :class:`FlowLoader`)."""

from __future__ import annotations

import copy
from collections.abc import Mapping, Sequence
from typing import Any

from backpackflow.config import (
    FLOW_NODE_TYPE,
    EdgeConfig,
    NodeConfig,
    SubflowParams,
    env_ref_paths,
    has_env_refs,
)
from backpackflow.errors import BackpackFlowError, ConfigError
from backpackflow.loader.checks import _Checks, _walk_nodes
from backpackflow.loader.conditions import compile_condition
from backpackflow.loader.dataflow import node_data
from backpackflow.loader.mappings import MappedRead, level_mappings
from backpackflow.runner import (
    BaseNode,
    BoundContract,
    DependencyContainer,
    Flow,
    bind_contract,
)


class _Build(_Checks):
    """The build half of :class:`~backpackflow.FlowLoader`."""

    def _missing_dependencies(
        self, nodes: Sequence[NodeConfig], deps: DependencyContainer
    ) -> list[str]:
        """A problem for each dependency a node (nested flows included) needs that ``deps``
        does not provide."""
        problems: list[str] = []
        for where, node in _walk_nodes(nodes, "$"):
            needed = [*self.node_type(node.type).dependencies, *node.dependencies]
            for name in needed:
                if not deps.has(name):
                    problems.append(
                        f"{where}: node {node.id!r} ({node.type}) needs dependency {name!r}, "
                        f"which is not provided (provided: {', '.join(deps.names()) or 'none'}); "
                        "declare it in the flow's 'dependencies' or register it in the container"
                    )
        return problems

    def _make_node(self, config: NodeConfig, deps: DependencyContainer, where: str) -> BaseNode:
        """A node of ``config``'s registered type, built and checked by its class (params,
        templates, rules: ``validate_config``); problems are ``ConfigError``s at ``where``.
        What both loading and :meth:`~backpackflow.FlowLoader.validate` run for each node."""
        node_type = self.node_type(config.type)
        node_class = node_type.node_class
        try:
            node: BaseNode = node_class.from_config(config, deps)  # type: ignore[attr-defined]
        except ConfigError:
            raise
        except Exception as exc:
            raise ConfigError(
                f"{where}: node type {config.type!r} ({node_class.__name__}) failed to build "
                f"node {config.id!r}: {type(exc).__name__}: {exc}"
            ) from exc
        node.node_type = config.type
        node.registry = self.registry
        check = getattr(node, "validate_config", None)
        if callable(check):
            try:
                check()
            except ConfigError as exc:
                # one problem: its whole message (it names the node); several: each path
                problems = (
                    [f"{where}: {exc}"]
                    if len(exc.problems) <= 1
                    else [f"{where}: {p}" for p in exc.problems]
                )
                raise ConfigError(f"{where}: {exc}", problems) from None
            except BackpackFlowError as exc:
                raise ConfigError(f"{where}: {exc}") from None
        return node

    def _build_flow(
        self,
        nodes: Sequence[NodeConfig],
        edges: Sequence[EdgeConfig],
        entry: str | None,
        parallel: bool,
        raw: Mapping[str, Any],
        deps: DependencyContainer,
        path: str,
        *,
        flow_id: str | None,
        name: str | None,
        namespace: str | None,
        strict: bool = True,
    ) -> Flow:
        built: dict[str, BaseNode] = {}
        raw_nodes = raw.get("nodes") or []
        failed: list[ConfigError] = []
        mapped = level_mappings(nodes, edges, path, [])  # checked before building
        for i, node_config in enumerate(nodes):
            raw_node = raw_nodes[i] if i < len(raw_nodes) else {}
            try:
                built[node_config.id] = self._build_node(
                    node_config,
                    raw_node,
                    deps,
                    f"{path}.nodes[{i}]",
                    strict,
                    mapped.get(node_config.id),
                )
            except ConfigError as exc:  # every node's problems, not only the first node's
                failed.append(exc)
        if len(failed) == 1:
            raise failed[0]
        if failed:
            problems = [p for exc in failed for p in exc.problems]
            # a node type's own code that crashed stays the cause (callers redact its details)
            crash = next((e.__cause__ for e in failed if e.__cause__ is not None), None)
            raise ConfigError("; ".join(problems), problems) from crash
        raw_edges = raw.get("edges") or []
        for i, edge in enumerate(edges):
            when = None
            if edge.when is not None:
                when = compile_condition(edge.when, self.registry, where=f"{path}.edges[{i}].when")
                raw_edge = raw_edges[i] if i < len(raw_edges) else None
                raw_when = raw_edge.get("when") if isinstance(raw_edge, Mapping) else None
                if raw_when is not None and has_env_refs(raw_when):
                    when = when.with_source(copy.deepcopy(raw_when))  # exported as written
            source = built[edge.from_]
            source.next(built[edge.to], edge.condition, when=when)
            if edge.mappings:  # kept on the edge for exports and the trace
                added = source.successors[edge.condition]
                added[-1] = added[-1]._replace(mappings=dict(edge.mappings))
        start = built[entry] if entry is not None else built[nodes[0].id]
        flow = Flow(start, parallel=parallel, id=flow_id, name=name, namespace=namespace)
        flow.config_order = [n.id for n in nodes]  # type: ignore[attr-defined]
        # unreachable nodes (a warning at load) are exported too: export never drops config
        flow.config_nodes = list(built.values())  # type: ignore[attr-defined]
        return flow

    def _build_node(
        self,
        config: NodeConfig,
        raw_node: Mapping[str, Any],
        deps: DependencyContainer,
        where: str,
        strict: bool = True,
        mapped: Mapping[str, MappedRead] | None = None,
    ) -> BaseNode:
        if config.type == FLOW_NODE_TYPE:
            sub = config.params
            assert isinstance(sub, SubflowParams)
            flow = self._build_flow(
                sub.nodes,
                sub.edges,
                sub.entry,
                sub.parallel,
                raw_node.get("params") or {},
                deps,
                f"{where}.params",
                flow_id=config.id,
                name=config.name,
                namespace=config.namespace,
                strict=strict,
            )
            flow.node_type = FLOW_NODE_TYPE
            return flow
        node = self._make_node(config, deps, where)
        data = node_data(config, self.node_type(config.type))
        if data.reads or data.writes or mapped:
            mappings = {name: read.key for name, read in (mapped or {}).items()}
            origins = {name: read.where for name, read in (mapped or {}).items()}
            bind_contract(node, BoundContract(data.reads, data.writes, strict, mappings, origins))
        raw_params = raw_node.get("params") if isinstance(raw_node, Mapping) else None
        if raw_params is not None and has_env_refs(raw_params):
            # exports and events show the references, never the resolved secrets
            node.env_refs = env_ref_paths(raw_params, node.params_json())
        raw_inputs = raw_node.get("inputs") if isinstance(raw_node, Mapping) else None
        if raw_inputs is not None and has_env_refs(raw_inputs):
            node.input_env_refs = env_ref_paths(raw_inputs, dict(node.inputs))  # type: ignore[attr-defined]
        return node
