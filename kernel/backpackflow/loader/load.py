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
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import attrs

from backpackflow.config import (
    CURRENT_VERSION,
    FLOW_NODE_TYPE,
    FlowConfig,
    env_ref_paths,
    resolve_env_refs,
    structure,
    unstructure,
)
from backpackflow.errors import ConfigError, InvalidValue, PluginError
from backpackflow.jsondata import JSONTooDeep, check_depth, copy_in
from backpackflow.jsondata import loads as load_json
from backpackflow.loader.checks import _join, _redact
from backpackflow.loader.export import _Export
from backpackflow.loader.schema import validate_flow_document
from backpackflow.plugins import NodeType, Registry, get_registry, node_contract
from backpackflow.policy.sandbox import POLICY, SandboxPolicy
from backpackflow.policy.secrets import SECRETS, SecretMasker, collect_named_secrets
from backpackflow.runner import (
    BaseNode,
    DependencyContainer,
    Flow,
    InputSpec,
    Limits,
    resolve_inputs,
)

#: The dependency holding the folder of the flow file being loaded (tools resolve paths there).
FLOW_DIR = "flow_dir"


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


class FlowLoader(_Export):
    """Loads flow configs with the node types of a plugin registry (default: the installed
    plugins) plus any registered on the loader itself (``loader.register(...)``)."""

    def __init__(self, registry: Registry | None = None) -> None:
        self.registry = registry if registry is not None else get_registry()
        self._local: dict[str, NodeType] = {}
        self._schema_cache: dict[str, Any] | None = None
        self._schema_params: dict[str, type | None] = {}

    def register(
        self,
        name: str,
        node_class: type[BaseNode],
        *,
        params: type | None = None,
        dependencies: Sequence[str] = (),
        reads: Mapping[str, Any] | None = None,
        writes: Mapping[str, Any] | None = None,
    ) -> None:
        """Make ``node_class`` loadable as type ``name`` by this loader only (``reads`` /
        ``writes``: its data contract, default: the class's attributes)."""
        params = params if params is not None else getattr(node_class, "Params", None)
        contract = node_contract(node_class, reads, writes, f"node type {name!r}")
        self._local[name] = NodeType(
            name, node_class, params, tuple(dependencies), "", "local", *contract
        )
        self._schema_cache = None

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
        node_deps: DependencyContainer | None = None,
    ) -> tuple[FlowConfig, dict[str, Any], list[str]]:
        """Read, migrate, validate and structure ``source`` (with ``node_deps``: build each
        node on it too, as loading does, to collect what node classes refuse).

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
            config, warns = self._check(config, raw, label, node_deps)
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
        deps: DependencyContainer | None = None,
    ) -> ValidationReport:
        """Every problem of ``source`` without raising: the schema, then the graph, params,
        inputs and the checks each node's class runs when it is built (templates, rules,
        tools) — everything loading checks, so a flow that validates loads (unless a node
        type's own code crashes building it, which loading reports). ``deps``: what loading
        will provide (``flow_dir`` ...); nodes are built on a container of their own that
        reads it. (No Python warnings are issued, so it is safe to call from any thread.)"""
        given, deps = deps, DependencyContainer()  # nodes are built on a container of its own
        for name in given.names() if given is not None else ():
            deps.register_factory(name, lambda _, n=name, g=given: g.get(n))
        if policy is not None and not deps.has(POLICY):
            deps.register(POLICY, policy)
        if _is_file(source) and not deps.has(FLOW_DIR):
            deps.register(FLOW_DIR, Path(str(source)).resolve().parent)
        try:
            _, _, warns = self.parse(source, environ=environ, policy=policy, node_deps=deps)
        except ConfigError as exc:
            return ValidationReport(list(exc.problems), [])
        return ValidationReport([], warns)

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

        ``policy`` bounds what the flow may do (see :mod:`backpackflow.policy.sandbox`; default:
        :data:`~backpackflow.policy.sandbox.TRUSTED`); it is registered in ``deps`` as
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
            strict=config.strict_contracts,
        )
        limits = config.limits
        flow.limits = Limits(
            max_steps=limits.max_steps if limits.max_steps is not None else Limits().max_steps,
            timeout=limits.timeout,
            max_tokens=limits.max_tokens,
            max_cost=limits.max_cost,
        )
        flow.input_specs = input_specs(config)
        flow.output_keys = tuple(config.outputs)
        flow.config = config
        flow.config_source = _top_level_source(raw)
        # what the config set, so an export shows what code changed since
        flow.config_loaded = (flow.name, flow.namespace, flow.limits)  # type: ignore[attr-defined]
        flow.deps = deps
        flow.policy = policy
        flow.secrets = secrets
        return flow


def _top_level_source(raw: Mapping[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in raw.items() if k not in ("nodes", "edges", "entry", "parallel")}


# ------------------------------------------------------------------------------- nodes


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


def input_specs(config: FlowConfig) -> dict[str, InputSpec]:
    """The run inputs ``config`` declares, as the runner checks and packs them."""
    return {
        name: InputSpec(
            name=name,
            schema=spec.schema,
            default=spec.default,
            required=spec.required,
            description=spec.description,
        )
        for name, spec in config.inputs.items()
    }


def prepare_inputs(
    flow: Flow, given: Mapping[str, Any] | None, *, path: str = "inputs"
) -> dict[str, Any]:
    """The run inputs of a loaded flow: ``given`` checked against the inputs the flow declares
    (names, required ones, JSON Schemas), defaults filled in; every problem is reported
    together at ``<path>.<name>`` (a flow that declares no inputs accepts any). A flow's runs
    do this themselves: call it to report bad inputs before anything else happens."""
    return resolve_inputs(flow.input_specs, given, path=path)


def load_flow(
    source: ConfigSource, deps: DependencyContainer | None = None, **options: Any
) -> Flow:
    """Load a flow with the installed plugins (shortcut for ``FlowLoader().load_flow``)."""
    return FlowLoader().load_flow(source, deps, **options)
