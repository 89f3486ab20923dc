"""FlowLoader: flow configs into runnable flows, and flows back into configs.

Loading goes, in order: read (a path, JSON text, a dict or a FlowConfig) → migrate older versions
(with a warning naming both versions) → validate against the composed JSON Schema → resolve
``${ENV}`` references → structure with cattrs → check the graph (duplicate and unknown ids,
cycles, unreachable nodes, conditions, dependencies) → build nodes and edges. Every problem is
reported with its JSON path; all problems of a stage are reported together.

Export is the inverse and is stable: ``export(load(export(flow)))`` is byte-identical to
``export(flow)``. Params are exported as the config wrote them: environment references stay
``${NAME}`` and secrets never appear.
"""

from __future__ import annotations

import copy
import json
import warnings
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import attrs

from backpackflow.conditions import CompiledCondition, compile_condition
from backpackflow.config import (
    CURRENT_VERSION,
    FLOW_NODE_TYPE,
    EdgeConfig,
    FlowConfig,
    NodeConfig,
    RetryConfig,
    SubflowParams,
    env_ref_paths,
    has_env_refs,
    resolve_env_refs,
    restore_env_refs,
    structure,
    structure_params,
    unstructure,
    unstructure_params,
)
from backpackflow.deps import DependencyContainer
from backpackflow.errors import (
    BackpackFlowError,
    ConfigError,
    FlowError,
    InvalidValue,
    PluginError,
)
from backpackflow.flow import Flow
from backpackflow.jsondata import JSONTooDeep, check_depth, copy_in
from backpackflow.jsondata import loads as load_json
from backpackflow.node import BaseNode, Node, iter_nodes
from backpackflow.plugins import NodeType, Registry, get_registry
from backpackflow.run import Limits
from backpackflow.sandbox import POLICY, SandboxPolicy
from backpackflow.schema import validate_flow_document
from backpackflow.secrets import SECRETS, SecretMasker, collect_named_secrets

#: The dependency holding the folder of the flow file being loaded (tools resolve paths there).
FLOW_DIR = "flow_dir"
_KERNEL_FROM_CONFIG = BaseNode.from_config.__func__  # type: ignore[attr-defined]


class ConfigWarning(UserWarning):
    """Something in a flow config works but is probably not what was meant (an unreachable
    node, a migrated version)."""


@attrs.frozen
class ValidationReport:
    """What :meth:`FlowLoader.validate` found: ``errors`` make the flow unusable; ``warnings``
    do not. Both are ``"$.path: message"`` strings."""

    errors: list[str]
    warnings: list[str]

    @property
    def ok(self) -> bool:
        return not self.errors


ConfigSource = str | Path | Mapping[str, Any] | FlowConfig


class FlowLoader:
    """Loads flow configs with the node types of a plugin registry (default: the installed
    plugins) plus any registered on the loader itself (``loader.register(...)``)."""

    def __init__(self, registry: Registry | None = None) -> None:
        self.registry = registry if registry is not None else get_registry()
        self._local: dict[str, NodeType] = {}
        self._schema_cache: dict[str, Any] | None = None

    def register(
        self,
        name: str,
        node_class: type[BaseNode],
        *,
        params: type | None = None,
        dependencies: Sequence[str] = (),
    ) -> None:
        """Make ``node_class`` loadable as type ``name`` by this loader only."""
        params = params if params is not None else getattr(node_class, "Params", None)
        self._local[name] = NodeType(name, node_class, params, tuple(dependencies), "", "local")
        self._schema_cache = None

    def node_type(self, name: str) -> NodeType:
        local = self._local.get(name)
        return local if local is not None else self.registry.node_type(name)

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

    # -------------------------------------------------------------- reading

    def read(self, source: ConfigSource) -> tuple[dict[str, Any], str]:
        """The raw document of ``source`` and a label for messages (the file name)."""
        if isinstance(source, FlowConfig):
            return unstructure(source), "<FlowConfig>"
        if isinstance(source, Mapping):
            try:  # a copy, and proof it is JSON data (exports must be able to write it)
                check_depth(source)  # before copy_in, which recurses
                return copy_in(dict(source), "flow config"), "<config>"
            except (InvalidValue, JSONTooDeep) as exc:
                raise ConfigError(str(exc), [str(exc)]) from None
        if _is_file(source):
            path = Path(source)
            try:
                text = path.read_text(encoding="utf-8")
            except (OSError, ValueError) as exc:  # ValueError: a NUL in the path, not UTF-8
                what = f"cannot read the flow file: {getattr(exc, 'strerror', None) or exc}"
                raise ConfigError(f"{path}: {what}", [what]) from None
            return _parse_json(text, str(path)), str(path)
        if isinstance(source, str):
            return _parse_json(source, "<json>"), "<json>"
        raise ConfigError(
            f"a flow config is a path, JSON text, a dict or a FlowConfig, got "
            f"{type(source).__name__}"
        )

    def migrate(self, data: dict[str, Any], *, label: str = "<config>") -> dict[str, Any]:
        """``data`` rewritten to the current config version (unchanged if it already is).
        Pure: it warns nobody (``parse`` reports a migration among its warnings)."""
        version = data.get("version") if isinstance(data, dict) else None
        if not isinstance(version, str):
            raise ConfigError(
                f"$.version: a flow config needs a version string (current: {CURRENT_VERSION!r})"
            )
        if version == CURRENT_VERSION:
            return data
        try:
            chain = self.registry.migration_chain(version, CURRENT_VERSION)
        except PluginError as exc:
            raise ConfigError(
                f"$.version: unsupported flow config version {version!r}: {exc}"
            ) from None
        for migration in chain:
            try:
                data = migration.migrate(copy.deepcopy(data))
            except ConfigError:
                raise
            except Exception as exc:
                what = (
                    f"$.version: migration {migration.from_version} -> {migration.to_version} "
                    f"(plugin {migration.plugin!r}) failed: {type(exc).__name__}: {exc}"
                )
                raise ConfigError(f"{label}: {what}", [what]) from exc
        return data

    # -------------------------------------------------------------- validating

    def parse(
        self,
        source: ConfigSource,
        *,
        environ: Mapping[str, str] | None = None,
        policy: SandboxPolicy | None = None,
        secrets: SecretMasker | None = None,
    ) -> tuple[FlowConfig, dict[str, Any], list[str]]:
        """Read, migrate, validate and structure ``source``.

        Returns (the config with env references resolved and params structured, the migrated
        document as written — references intact — and warnings). Raises :class:`ConfigError`
        listing every problem found. ``${NAME}`` references resolve from ``environ`` (default:
        the environment ``policy`` lets flows read, else ``os.environ``); every value they
        resolve to is added to ``secrets``.
        """
        if environ is None and policy is not None and policy.env_allowlist is not None:
            environ = policy.environ()
        raw, label = self.read(source)
        version = raw.get("version")
        raw = self.migrate(raw, label=label)
        notices = []
        if version != CURRENT_VERSION:
            notices.append(
                f"$.version: flow config version {version!r} was migrated to "
                f"{CURRENT_VERSION!r}; run 'backpackflow migrate --in-place {label}' to "
                "rewrite the file"
            )
        resolved = resolve_env_refs(raw, environ=environ, secrets=secrets)
        unknown = self._unknown_types(resolved.get("nodes"), "$")
        problems = [*unknown.values()] + [
            p
            for p in validate_flow_document(resolved, schema=self._schema())
            if not any(p.startswith(f"{where}: ") for where in unknown)
        ]
        # a problem may quote a value: never one a ${NAME} reference resolved to
        if problems:
            problems = _redact(problems, env_ref_paths(raw, resolved))
            raise ConfigError(_join(label, problems), problems)
        try:
            config = structure(resolved, FlowConfig)
            config, warns = self._check(config, raw, label)
        except ConfigError as exc:
            refs = env_ref_paths(raw, resolved)
            problems = _redact(list(exc.problems), refs)
            raise ConfigError(_redact([str(exc)], refs)[0], problems) from None
        return config, raw, [*notices, *warns]

    def _unknown_types(self, nodes: Any, path: str) -> dict[str, str]:
        """``{"$.nodes[i].type": problem}`` for node types no plugin registered, with the
        registry's explanation (known types, plugins that failed to load) rather than the
        schema's bare enum message."""
        found: dict[str, str] = {}
        if not isinstance(nodes, list):
            return found
        for i, node in enumerate(nodes):
            if not isinstance(node, Mapping) or not isinstance(node.get("type"), str):
                continue
            where = f"{path}.nodes[{i}]"
            if node["type"] == FLOW_NODE_TYPE:
                params = node.get("params")
                if isinstance(params, Mapping):
                    found.update(self._unknown_types(params.get("nodes"), f"{where}.params"))
                continue
            try:
                self.node_type(node["type"])
            except PluginError as exc:
                found[f"{where}.type"] = f"{where}.type: {exc}"
        return found

    def validate(
        self,
        source: ConfigSource,
        *,
        environ: Mapping[str, str] | None = None,
        policy: SandboxPolicy | None = None,
    ) -> ValidationReport:
        """Every problem of ``source`` without raising: schema, graph and params checks.
        (No Python warnings are issued, so it is safe to call from any thread.)"""
        try:
            _, _, warns = self.parse(source, environ=environ, policy=policy)
        except ConfigError as exc:
            return ValidationReport(list(exc.problems), [])
        return ValidationReport([], warns)

    def _schema(self) -> dict[str, Any]:
        from backpackflow.schema import flow_schema

        if self._schema_cache is None:
            self._schema_cache = flow_schema(self.registry, node_types=self.node_types())
        return self._schema_cache

    def _check(
        self, config: FlowConfig, raw: Mapping[str, Any], label: str
    ) -> tuple[FlowConfig, list[str]]:
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
        if problems:
            raise ConfigError(_join(label, problems), problems)
        return attrs.evolve(config, nodes=nodes), warns

    def _check_plugins_used(
        self, config: FlowConfig, problems: list[str], warns: list[str]
    ) -> None:
        """Dependencies and sinks: their types exist and their options match their schemas;
        dependencies nodes need that the flow does not declare are warnings (the caller may
        provide them, which ``load_flow`` checks)."""
        from backpackflow.deps import BUILTIN_TYPES

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
            params: Any = structure_params(
                node_type.params,
                node.params or {},
                where=f"node {node.id!r}",
                path=f"{where}.params",
            )
        except ConfigError as exc:
            problems.extend(exc.problems)
            return node
        return attrs.evolve(node, params=params)

    # -------------------------------------------------------------- loading

    def load_flow(
        self,
        source: ConfigSource,
        deps: DependencyContainer | None = None,
        *,
        environ: Mapping[str, str] | None = None,
        policy: SandboxPolicy | None = None,
    ) -> Flow:
        """A runnable :class:`~backpackflow.Flow` from a flow config. Dependencies the flow
        declares are added to ``deps`` (what ``deps`` already holds wins); a node needing a
        dependency nobody provides is an error naming the node.

        ``policy`` bounds what the flow may do (see :mod:`backpackflow.sandbox`; default:
        :data:`~backpackflow.sandbox.TRUSTED`); it is registered in ``deps`` as
        ``sandbox_policy`` and applied to every run. The flow's secrets (values of ``${NAME}``
        references, secret-named options of dependencies and sinks) are masked in every event
        of its runs (``flow.secrets``, also registered in ``deps`` as ``secrets``)."""
        deps = deps if deps is not None else DependencyContainer()
        secrets: SecretMasker = deps.get(SECRETS) if deps.has(SECRETS) else SecretMasker()
        config, raw, warns = self.parse(source, environ=environ, policy=policy, secrets=secrets)
        for message in warns:
            warnings.warn(message, ConfigWarning, stacklevel=2)
        for spec in config.dependencies.values():
            collect_named_secrets(spec.config, secrets)
        for sink in config.sinks:
            collect_named_secrets(sink.options, secrets)
        if not deps.has(SECRETS):
            deps.register(SECRETS, secrets)
        if policy is not None and not deps.has(POLICY):
            deps.register(POLICY, policy)
        from_file = _is_file(source)
        if from_file and not deps.has(FLOW_DIR):  # where the flow's relative file paths point
            deps.register(FLOW_DIR, Path(str(source)).resolve().parent)
        deps.add_from_config(config.dependencies, self.registry)
        problems = self._missing_dependencies(config.nodes, deps)
        if problems:
            raise ConfigError("; ".join(problems), problems)
        name = config.name
        if name is None and from_file:  # an unnamed flow is known by its file
            name = Path(str(source)).stem
        flow = self._build_flow(
            config.nodes,
            config.edges,
            config.entry,
            config.parallel,
            raw,
            deps,
            "$",
            flow_id=None,
            name=name,
            namespace=config.namespace,
        )
        limits = config.limits
        flow.limits = Limits(
            max_steps=limits.max_steps if limits.max_steps is not None else Limits().max_steps,
            timeout=limits.timeout,
            max_tokens=limits.max_tokens,
            max_cost=limits.max_cost,
        )
        flow.config = config
        flow.config_source = _top_level_source(raw)
        # what the config set, so an export shows what code changed since
        flow.config_loaded = (flow.name, flow.namespace, flow.limits)  # type: ignore[attr-defined]
        flow.deps = deps
        flow.policy = policy
        flow.secrets = secrets
        return flow

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
    ) -> Flow:
        built: dict[str, BaseNode] = {}
        raw_nodes = raw.get("nodes") or []
        for i, node_config in enumerate(nodes):
            raw_node = raw_nodes[i] if i < len(raw_nodes) else {}
            built[node_config.id] = self._build_node(
                node_config, raw_node, deps, f"{path}.nodes[{i}]"
            )
        raw_edges = raw.get("edges") or []
        for i, edge in enumerate(edges):
            when = None
            if edge.when is not None:
                when = compile_condition(edge.when, self.registry, where=f"{path}.edges[{i}].when")
                raw_edge = raw_edges[i] if i < len(raw_edges) else None
                raw_when = raw_edge.get("when") if isinstance(raw_edge, Mapping) else None
                if raw_when is not None and has_env_refs(raw_when):
                    when = when.with_source(copy.deepcopy(raw_when))  # exported as written
            built[edge.from_].next(built[edge.to], edge.condition, when=when)
        start = built[entry] if entry is not None else built[nodes[0].id]
        flow = Flow(start, parallel=parallel, id=flow_id, name=name, namespace=namespace)
        flow.config_order = [n.id for n in nodes]  # type: ignore[attr-defined]
        # unreachable nodes (a warning at load) are exported too: export never drops config
        flow.config_nodes = list(built.values())  # type: ignore[attr-defined]
        return flow

    def _build_node(
        self, config: NodeConfig, raw_node: Mapping[str, Any], deps: DependencyContainer, where: str
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
            )
            flow.node_type = FLOW_NODE_TYPE
            return flow
        node_type = self.node_type(config.type)
        node_class = node_type.node_class
        try:
            builder = node_class.from_config  # type: ignore[attr-defined]
            if getattr(builder, "__func__", None) is not _KERNEL_FROM_CONFIG:
                node: BaseNode = builder(config, deps)  # the class builds itself
            else:
                node = node_from_config(node_class, config, deps)
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
                raise ConfigError(
                    f"{where}: {exc}", [f"{where}: {p}" for p in exc.problems]
                ) from None
            except BackpackFlowError as exc:
                raise ConfigError(f"{where}: {exc}") from None
        raw_params = raw_node.get("params") if isinstance(raw_node, Mapping) else None
        if raw_params is not None and has_env_refs(raw_params):
            # exports and events show the references, never the resolved secrets
            node.env_refs = env_ref_paths(raw_params, node.params_json())
        raw_inputs = raw_node.get("inputs") if isinstance(raw_node, Mapping) else None
        if raw_inputs is not None and has_env_refs(raw_inputs):
            node.input_env_refs = env_ref_paths(raw_inputs, dict(node.inputs))  # type: ignore[attr-defined]
        return node

    # -------------------------------------------------------------- exporting

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
        document: dict[str, Any] = unstructure(node_to_config(node, self.type_name_of(node)))
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
    default = Limits()
    document: dict[str, Any] = {}
    if limits.max_steps != default.max_steps:
        document["max_steps"] = limits.max_steps
    if limits.timeout is not None:
        document["timeout"] = limits.timeout
    if limits.max_tokens is not None:
        document["max_tokens"] = limits.max_tokens
    if limits.max_cost is not None:
        # positional, as written and as the schema takes it: str() gives "1E-7" for 0.0000001
        document["max_cost"] = format(limits.max_cost, "f")
    return document


def _top_level_source(raw: Mapping[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in raw.items() if k not in ("nodes", "edges", "entry", "parallel")}


# ------------------------------------------------------------------------------- nodes


def node_from_config(
    cls: type[BaseNode], config: NodeConfig | Mapping[str, Any], deps: DependencyContainer | None
) -> BaseNode:
    """Build a node of ``cls`` from its config: the kernel's ``from_config`` every node class
    gets for free. The node receives ``id``, ``name``, ``namespace``, ``params`` (and retry
    settings for :class:`~backpackflow.Node` classes); ``inputs`` and the dependency container
    are set as the ``inputs`` and ``deps`` attributes."""
    if not isinstance(config, NodeConfig):
        config = structure(dict(config), NodeConfig)
    kwargs: dict[str, Any] = {"id": config.id, "namespace": config.namespace}
    if config.name is not None:
        kwargs["name"] = config.name
    params = config.params
    if params not in (None, {}) or getattr(cls, "Params", None) is not None:
        kwargs["params"] = params if params is not None else {}
    retry = config.retry
    if retry is not None:
        if not issubclass(cls, Node):
            raise ConfigError(f"node {config.id!r}: {cls.__name__} takes no retry settings")
        kwargs.update(
            max_retries=retry.max_retries,
            wait=retry.wait,
            backoff=retry.backoff,
            max_wait=retry.max_wait,
        )
    node = cls(**kwargs)
    node.node_type = config.type  # so to_config() needs no registry lookup
    node.inputs = dict(config.inputs)
    node.deps = deps
    node.extra_dependencies = list(config.dependencies)  # type: ignore[attr-defined]
    if retry is not None:
        node.retry_config = retry  # type: ignore[attr-defined]
    return node


def node_to_config(node: BaseNode, type_name: str | None = None) -> NodeConfig:
    """A node's config (the kernel's ``to_config`` every node class gets for free)."""
    if type_name is None:
        type_name = getattr(node, "node_type", None) or FlowLoader().type_name_of(node)
    if type(node).Params is not None:
        params: Any = unstructure_params(node.params)
    else:
        params = copy.deepcopy(node.params) if node.params else {}
    # references back as written, any other literal "${" escaped as "$${" (round trip)
    params = restore_env_refs(params, getattr(node, "env_refs", None) or {})
    inputs = copy.deepcopy(dict(getattr(node, "inputs", None) or {}))
    inputs = restore_env_refs(inputs, getattr(node, "input_env_refs", None) or {})
    retry = getattr(node, "retry_config", None)
    if (
        retry is None
        and isinstance(node, Node)
        and (node.max_retries != 1 or node.wait or node.backoff != 1.0 or node.max_wait is not None)
    ):
        retry = RetryConfig(
            max_retries=node.max_retries,
            wait=node.wait,
            backoff=node.backoff,
            max_wait=node.max_wait,
        )
    return NodeConfig(
        type=type_name,
        id=node.id,
        name=node.name if node.name != type(node).__name__ else None,
        namespace=node.namespace,
        params=params,
        inputs=inputs,
        dependencies=list(getattr(node, "extra_dependencies", None) or []),
        retry=retry,
    )


# ------------------------------------------------------------------------------- helpers


def _check_options(
    lookup: Any, type_name: str, options: Any, where: str, field: str, problems: list[str]
) -> None:
    """A dependency's or sink's ``type`` is registered and its options match its schema."""
    from backpackflow.schema import validate_params

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


def _is_file(source: ConfigSource) -> bool:
    """Whether ``source`` names a flow file (a path, or text that is not a JSON object)."""
    return isinstance(source, Path) or (
        isinstance(source, str) and not source.lstrip().startswith("{")
    )


def _parse_json(text: str, label: str) -> dict[str, Any]:
    try:
        data = load_json(text)
    except json.JSONDecodeError as exc:
        what = f"not valid JSON: {exc.msg} at line {exc.lineno} column {exc.colno}"
        raise ConfigError(f"{label}: {what}", [what]) from None
    except JSONTooDeep as exc:
        what = str(exc)
        raise ConfigError(f"{label}: {what}", [what]) from None
    except ValueError as exc:
        what = f"not valid JSON: {exc}"
        raise ConfigError(f"{label}: {what}", [what]) from None
    if not isinstance(data, dict):
        what = f"a flow config is a JSON object, got {type(data).__name__}"
        raise ConfigError(f"{label}: {what}", [what])
    return data


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


def prepare_inputs(flow: Flow, given: Mapping[str, Any] | None) -> dict[str, Any]:
    """The run inputs of a loaded flow: ``given`` plus the defaults its config declares. A
    required input that is missing, or an input the flow does not declare, is an error (a flow
    that declares no inputs accepts any)."""
    given = dict(given or {})
    config = getattr(flow, "config", None)
    declared = config.inputs if isinstance(config, FlowConfig) else {}
    if not declared:
        return given
    problems = []
    unknown = sorted(set(given) - set(declared))
    if unknown:
        problems.append(
            f"unknown input(s) {', '.join(repr(n) for n in unknown)}; the flow declares "
            f"{', '.join(repr(n) for n in sorted(declared))}"
        )
    inputs = {}
    for name, spec in declared.items():
        if name in given:
            inputs[name] = given[name]
        elif spec.required:
            problems.append(f"input {name!r} is required ({spec.description or 'no description'})")
        elif spec.default is not None:
            inputs[name] = copy.deepcopy(spec.default)
    if problems:
        raise ConfigError("; ".join(problems), problems)
    return inputs


def load_flow(
    source: ConfigSource, deps: DependencyContainer | None = None, **options: Any
) -> Flow:
    """Load a flow with the installed plugins (shortcut for ``FlowLoader().load_flow``)."""
    return FlowLoader().load_flow(source, deps, **options)


__all__ = [
    "ConfigWarning",
    "FlowError",
    "FlowLoader",
    "ValidationReport",
    "load_flow",
    "node_from_config",
    "node_to_config",
    "prepare_inputs",
]
