"""Flows as data: the attrs config model and its one cattrs converter.

A flow config is JSON::

    {"version": "2.0.0", "namespace": "research", "entry": "fetch",
     "nodes": [{"type": "tool", "id": "fetch", "params": {...}, "inputs": {...}}, ...],
     "edges": [{"from": "fetch", "to": "summarize"},
               {"from": "decide", "to": "deep", "when": "branch == 'deep'"}],
     "dependencies": {"llm": {"type": "offline"}},
     "limits": {"max_steps": 50, "max_tokens": 100000, "timeout": 120}}

Structuring uses cattrs with unknown keys forbidden; every problem is reported with its JSON path
(``$.nodes[2].params.temperature: ...``) via ``cattrs.transform_error``. Node ``params`` stay JSON
here; the loader structures them into the params class of the node's registered type.
"""

from __future__ import annotations

import enum
import os
import re
import typing
from collections.abc import Mapping
from typing import Any, TypeVar

import attrs
import cattrs
from cattrs.cols import list_structure_factory
from cattrs.errors import ClassValidationError, ForbiddenExtraKeysError
from cattrs.gen import make_dict_structure_fn, make_dict_unstructure_fn, override

from backpackflow.errors import ConfigError
from backpackflow.secrets import SecretMasker

T = TypeVar("T")

CURRENT_VERSION = "2.0.0"
#: The node type of a nested flow: its params hold the inner flow's nodes and edges.
FLOW_NODE_TYPE = "flow"


# ------------------------------------------------------------------------------- the model


@attrs.frozen(kw_only=True)
class EdgeConfig:
    """An edge: follow it from ``from_`` (JSON ``from``) to ``to`` when the node's action is
    ``condition`` (default ``"default"``) and ``when`` (an expression string or a JSON Logic
    object) holds."""

    from_: str
    to: str
    condition: str = "default"
    when: str | dict[str, Any] | None = None


@attrs.frozen(kw_only=True)
class LimitsConfig:
    """Per-run guardrails (see :class:`backpackflow.Limits`); ``max_cost`` is a decimal string."""

    max_steps: int | None = None
    timeout: float | None = None
    max_tokens: int | None = None
    max_cost: str | None = None


@attrs.frozen(kw_only=True)
class RetryConfig:
    """Node-level retries of ``exec`` (see :class:`backpackflow.Node`)."""

    max_retries: int = 1
    wait: float = 0
    backoff: float = 1.0
    max_wait: float | None = None


@attrs.frozen(kw_only=True)
class NodeConfig:
    """One node: its registered ``type``, ``id``, display ``name``, ``namespace`` segment,
    ``params`` (validated against the type's params schema), ``inputs`` (bindings the node
    resolves at run time, e.g. ``"{{ node.fetch.output }}"``), ``dependencies`` it needs beyond
    those its type declares, and ``retry`` settings."""

    type: str
    id: str
    name: str | None = None
    namespace: str | None = None
    params: Any = attrs.field(factory=dict)
    inputs: dict[str, Any] = attrs.field(factory=dict)
    dependencies: list[str] = attrs.field(factory=list)
    retry: RetryConfig | None = None


@attrs.frozen(kw_only=True)
class DependencyConfig:
    """A dependency built by a registered factory (``type``) from ``config``."""

    type: str
    config: dict[str, Any] = attrs.field(factory=dict)


@attrs.frozen(kw_only=True)
class InputConfig:
    """A run input the flow expects (``--input name=value`` on the command line)."""

    description: str | None = None
    default: Any = None
    required: bool = False


@attrs.frozen(kw_only=True)
class SinkConfig:
    """An event sink to attach to every run of the flow."""

    type: str
    options: dict[str, Any] = attrs.field(factory=dict)


@attrs.frozen(kw_only=True)
class SubflowParams:
    """Params of a nested flow node (type ``"flow"``): the inner graph."""

    nodes: list[NodeConfig]
    edges: list[EdgeConfig] = attrs.field(factory=list)
    entry: str | None = None
    parallel: bool = False


@attrs.frozen(kw_only=True)
class FlowConfig:
    """A whole flow. ``entry`` names the start node (default: the first node); ``schema`` (JSON
    ``$schema``) is the schema the file names for editors, kept but not used to load."""

    version: str
    schema: str | None = None
    name: str | None = None
    description: str | None = None
    namespace: str | None = None
    entry: str | None = None
    parallel: bool = False
    allow_cycles: bool = False
    nodes: list[NodeConfig]
    edges: list[EdgeConfig] = attrs.field(factory=list)
    dependencies: dict[str, DependencyConfig] = attrs.field(factory=dict)
    limits: LimitsConfig = attrs.field(factory=LimitsConfig)
    inputs: dict[str, InputConfig] = attrs.field(factory=dict)
    sinks: list[SinkConfig] = attrs.field(factory=list)


# ------------------------------------------------------------------------------- converter


def _make_converter() -> cattrs.Converter:
    conv = cattrs.Converter(forbid_extra_keys=True, omit_if_default=True)
    _strict_scalars(conv)  # before the generated hooks below capture field handlers

    def structure_when(value: Any, _: type) -> str | dict[str, Any] | None:
        if value is None or isinstance(value, (str, dict)):
            return value
        raise TypeError(
            f"a condition is an expression string or a JSON Logic object, got "
            f"{type(value).__name__}"
        )

    conv.register_structure_hook(str | dict[str, Any] | None, structure_when)

    def structure_rule(value: Any, _: type) -> str | dict[str, Any]:
        if value is None:
            raise TypeError("expected an expression string or a JSON Logic object, got null")
        result = structure_when(value, _)
        assert result is not None
        return result

    conv.register_structure_hook(str | dict[str, Any], structure_rule)
    conv.register_structure_hook(Any, lambda value, _: value)
    _register_renamed(conv, EdgeConfig, from_="from")

    def structure_dependency(value: Any, _: type) -> DependencyConfig:
        # PRD-003 allows the short form "llm": "openai" for {"type": "openai"}
        if isinstance(value, str):
            return DependencyConfig(type=value)
        return _dependency_structure(value, DependencyConfig)

    _dependency_structure = make_dict_structure_fn(
        DependencyConfig, conv, _cattrs_forbid_extra_keys=True
    )
    conv.register_structure_hook(DependencyConfig, structure_dependency)

    # last: the hooks made here capture those of the field types, registered above
    _register_renamed(conv, FlowConfig, schema="$schema")
    return conv


def _register_renamed(conv: cattrs.Converter, cls: type, **renames: str) -> None:
    """Hooks for ``cls`` whose fields ``renames`` have other names in JSON (``from_`` is
    ``from``): structuring forbids unknown keys, unstructuring omits defaults."""
    overrides: dict[str, Any] = {field: override(rename=name) for field, name in renames.items()}
    conv.register_structure_hook(
        cls, make_dict_structure_fn(cls, conv, _cattrs_forbid_extra_keys=True, **overrides)
    )
    conv.register_unstructure_hook(
        cls, make_dict_unstructure_fn(cls, conv, _cattrs_omit_if_default=True, **overrides)
    )


def _strict_scalars(conv: cattrs.Converter) -> None:
    """cattrs converts "3" to 3 and "ab" to ["a", "b"] by default; configs must say what they
    mean."""

    def exact(kind: type) -> Any:
        def structure(value: Any, cl: type) -> Any:
            if kind is float and type(value) is int:
                value = float(value)
            elif type(value) is not kind:
                raise TypeError(f"expected {kind.__name__}, got {_json_type(value)} {value!r}")
            # the hook also serves subclasses such as IntEnum and str-based enums
            return value if cl is kind else cl(value)

        return structure

    for kind in (str, int, float, bool):
        conv.register_structure_hook(kind, exact(kind))

    def plain(value: Any) -> Any:
        # str-based enums would otherwise be exported as enum members, not JSON data
        return value.value if isinstance(value, enum.Enum) else value

    for kind in (str, int, float):
        conv.register_unstructure_hook(kind, plain)

    def is_list(tp: Any) -> bool:
        return tp is list or typing.get_origin(tp) is list

    def strict_list(tp: Any) -> Any:
        base = list_structure_factory(tp, conv)

        def structure(value: Any, cl: Any) -> Any:
            if not isinstance(value, (list, tuple)):
                raise TypeError(f"expected an array, got {_json_type(value)} {value!r}")
            return base(value, cl)

        return structure

    conv.register_structure_hook_factory(is_list, strict_list)


def _json_type(value: Any) -> str:
    return {
        dict: "an object",
        list: "an array",
        str: "a string",
        int: "an integer",
        float: "a number",
        bool: "a boolean",
        type(None): "null",
    }.get(type(value), type(value).__name__)


converter = _make_converter()


def _format_problem(exc: BaseException, type_: Any) -> str:
    if isinstance(exc, ForbiddenExtraKeysError):
        return f"unknown field(s) {sorted(exc.extra_fields)}"
    if isinstance(exc, KeyError):
        return "required field missing"
    if isinstance(exc, (TypeError, ValueError)) and not isinstance(exc, ClassValidationError):
        return str(exc) or f"invalid value (expected {getattr(type_, '__name__', type_)})"
    return str(cattrs.v.format_exception(exc, type_))


_KEY_IN_BRACKETS = re.compile(r"\['([A-Za-z_][A-Za-z0-9_-]*)'\]")


def _path_first(problem: str) -> str:
    """``"message @ $.a['b']"`` (cattrs) → ``"$.a.b: message"`` (the project's error form, the
    same paths as schema validation errors)."""
    message, sep, path = problem.rpartition(" @ ")
    return f"{_KEY_IN_BRACKETS.sub(_dotted, path)}: {message}" if sep else problem


def _dotted(match: re.Match[str]) -> str:
    return "." + match.group(1)


def structure(data: Any, cls: type[T], *, path: str = "$", where: str | None = None) -> T:
    """Structure ``data`` into ``cls`` or raise :class:`ConfigError` listing every problem with
    its JSON path (prefixed by ``path``)."""
    try:
        return converter.structure(data, cls)
    except Exception as exc:  # noqa: BLE001 - every structuring failure becomes a ConfigError
        problems = [
            _path_first(p)
            for p in cattrs.transform_error(exc, path=path, format_exception=_format_problem)
        ]
        prefix = f"{where}: " if where else ""
        raise ConfigError(prefix + "; ".join(problems), problems) from None


def unstructure(value: Any) -> Any:
    return converter.unstructure(value)


def structure_params(cls: type[T], params: Mapping[str, Any], *, where: str, path: str = "$") -> T:
    """Structure a node's params mapping into its ``Params`` class, after validating it against
    the class's JSON Schema (so constraints such as ``maximum`` apply to code and config
    alike)."""
    from backpackflow.schema import validate_params

    validate_params(cls, params, where=where, path=path)
    return structure(dict(params), cls, path=path, where=where)


def unstructure_params(params: Any) -> Any:
    """A ``Params`` instance back to JSON data (every field, defaults included)."""
    return params_converter.unstructure(params)


#: Params are exported with every field, so a config says exactly what a node ran with.
params_converter = cattrs.Converter(forbid_extra_keys=True)
_strict_scalars(params_converter)
params_converter.register_structure_hook(Any, lambda value, _: value)


# ------------------------------------------------------------------------------- env references

#: A reference: ``${NAME}`` or ``${NAME:-default}``; ``$${`` escapes a literal ``${``.
_REFERENCE = r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}"
_ENV_REF = re.compile(r"(?<!\$)" + _REFERENCE)
_ENV_SUBST = re.compile(r"\$\$\{|" + _REFERENCE)  # an escape, or a reference to replace


def has_env_refs(value: Any) -> bool:
    """True when ``value`` (JSON data) contains a ``${NAME}`` reference anywhere."""
    if isinstance(value, str):
        return _ENV_REF.search(value) is not None
    if isinstance(value, Mapping):
        return any(has_env_refs(v) for v in value.values())
    if isinstance(value, list):
        return any(has_env_refs(v) for v in value)
    return False


class KeepUnset(dict[str, str]):
    """An environment for :func:`resolve_env_refs` in which a reference to an unset variable
    without a default stays as written (``backpackflow validate --allow-unset-env``); defaults
    still apply. Made from a restricted environment (a sandbox policy's), names it refuses stay
    refused."""

    def __init__(self, source: Mapping[str, str] = ()) -> None:  # type: ignore[assignment]
        super().__init__(source)
        refuses = getattr(source, "refuses", None)
        if refuses is not None:
            self.refuses = refuses
            self.refusal = source.refusal  # type: ignore[attr-defined]


def resolve_env_refs(
    value: Any,
    *,
    path: str = "$",
    environ: Mapping[str, str] | None = None,
    secrets: SecretMasker | None = None,
) -> Any:
    """Replace ``${NAME}`` (and ``${NAME:-default}``) in strings of ``value`` with environment
    variables. An unset variable without a default is a :class:`ConfigError` naming the path;
    so is a variable the environment refuses to give (``environ`` a
    :class:`~backpackflow.sandbox.RestrictedEnviron`), unless the reference has a default.
    Every value read from the environment is added to ``secrets``."""
    env = os.environ if environ is None else environ
    # an environment that only lets some names be read (a sandbox policy's) says which
    refuses = getattr(env, "refuses", None)
    problems: list[str] = []

    def resolve(item: Any, where: str) -> Any:
        if isinstance(item, str):

            def replace(match: re.Match[str]) -> str:
                if match.group(0) == "$${":
                    return "${"  # an escaped, literal "${"
                name, default = match.group(1), match.group(2)
                if refuses is not None and refuses(name):
                    if default is not None:  # the server's variable is not read: the default
                        return default
                    problems.append(f"{where}: {env.refusal(name)}")  # type: ignore[attr-defined]
                    return match.group(0)
                found = env.get(name)
                if found is not None:
                    if secrets is not None:  # whatever the environment gave is masked
                        secrets.add(found, name=name)
                    return found
                if default is not None:
                    return default
                if isinstance(env, KeepUnset):
                    return match.group(0)
                problems.append(
                    f"{where}: environment variable {name} is not set (referenced as "
                    f"'${{{name}}}'); export it or give a default: '${{{name}:-value}}'"
                )
                return match.group(0)

            return _ENV_SUBST.sub(replace, item)
        if isinstance(item, Mapping):
            return {k: resolve(v, f"{where}.{k}") for k, v in item.items()}
        if isinstance(item, list):
            return [resolve(v, f"{where}[{i}]") for i, v in enumerate(item)]
        return item

    result = resolve(value, path)
    if problems:
        raise ConfigError("; ".join(problems), problems)
    return result


EnvRefs = dict[tuple[str | int, ...], tuple[str, str]]


def env_ref_paths(raw: Any, resolved: Any, path: tuple[str | int, ...] = ()) -> EnvRefs:
    """Where ``raw`` holds ``${NAME}`` references: path → (the text as written, its resolved
    value). Used to put references back on export and to redact secrets from events."""
    refs: EnvRefs = {}
    if isinstance(raw, str):
        if _ENV_REF.search(raw) and isinstance(resolved, str):
            refs[path] = (raw, resolved)
    elif isinstance(raw, Mapping) and isinstance(resolved, Mapping):
        for key, value in raw.items():
            if key in resolved:
                refs.update(env_ref_paths(value, resolved[key], (*path, key)))
    elif isinstance(raw, list) and isinstance(resolved, list):
        for i, value in enumerate(raw[: len(resolved)]):
            refs.update(env_ref_paths(value, resolved[i], (*path, i)))
    return refs


def escape_literal_refs(data: Any, keep: frozenset[tuple[str | int, ...]] = frozenset()) -> Any:
    """``data`` with every literal ``${`` in its strings written ``$${``, so that exporting a
    value that holds ``${`` text and loading it back gives the same text (``keep``: paths to
    leave alone, e.g. where a reference is restored)."""

    def walk(item: Any, path: tuple[str | int, ...]) -> Any:
        if path in keep:
            return item
        if isinstance(item, str):
            return item.replace("${", "$${") if "${" in item else item
        if isinstance(item, dict):
            return {k: walk(v, (*path, k)) for k, v in item.items()}
        if isinstance(item, list):
            return [walk(v, (*path, i)) for i, v in enumerate(item)]
        return item

    return walk(data, ())


def restore_env_refs(data: Any, refs: EnvRefs) -> Any:
    """A copy of ``data`` (JSON) with each resolved value that is still unchanged put back as
    the ``${NAME}`` reference it came from; any other literal ``${`` is escaped as ``$${``."""
    data = escape_literal_refs(data, frozenset(refs))
    for path, (written, resolved) in refs.items():
        if not path:
            if data == resolved:
                data = written
            continue
        parent = data
        try:
            for part in path[:-1]:
                parent = parent[part]
            if parent[path[-1]] == resolved:
                parent[path[-1]] = written
        except (KeyError, IndexError, TypeError):
            continue
    return data


class RedactedParams:
    """Node params as events show them: with ``${NAME}`` references instead of the secrets
    they resolved to (materialized only when the event is serialized)."""

    __slots__ = ("params", "refs")

    def __init__(self, params: Any, refs: EnvRefs) -> None:
        self.params = params
        self.refs = refs

    def to_json(self) -> Any:
        # restore_env_refs works on a copy: the node's own params are never changed
        data = unstructure_params(self.params) if attrs.has(type(self.params)) else self.params
        return restore_env_refs(data, self.refs)
