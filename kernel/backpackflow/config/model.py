"""Flows as data: the attrs config model and its one cattrs converter.

A flow config is JSON::

    {"version": "2.0.0", "namespace": "research", "entry": "fetch",
     "nodes": [{"type": "tool", "id": "fetch", "params": {...}, "inputs": {...}}, ...],
     "edges": [{"from": "fetch", "to": "summarize"},
               {"from": "decide", "to": "deep", "when": "branch == 'deep'"},
               {"from": "search", "to": "analyze", "mappings": {"data": "search_results"}}],
     "dependencies": {"llm": {"type": "offline"}},
     "limits": {"max_steps": 50, "max_tokens": 100000, "timeout": 120}}

Structuring uses cattrs with unknown keys forbidden; every problem is reported with its JSON path
(``$.nodes[2].params.temperature: ...``) via ``cattrs.transform_error``. Node ``params`` stay JSON
here; the loader structures them into the params class of the node's registered type.
"""

from __future__ import annotations

import enum
import re
import typing
from typing import Any, TypeVar

import attrs
import cattrs
from cattrs.cols import list_structure_factory
from cattrs.errors import ClassValidationError, ForbiddenExtraKeysError
from cattrs.gen import make_dict_structure_fn, make_dict_unstructure_fn, override

from backpackflow.errors import ConfigError

T = TypeVar("T")

CURRENT_VERSION = "2.0.0"
#: The node type of a nested flow: its params hold the inner flow's nodes and edges.
FLOW_NODE_TYPE = "flow"


# ------------------------------------------------------------------------------- the model


@attrs.frozen(kw_only=True)
class EdgeConfig:
    """An edge: follow it from ``from_`` (JSON ``from``) to ``to`` when the node's action is
    ``condition`` (default ``"default"``) and ``when`` (an expression string or a JSON Logic
    object) holds. ``mappings`` (``{name: Backpack key}``): what the target node reads as
    ``name`` is the value of the key (see docs/dataflow.md)."""

    from_: str
    to: str
    condition: str = "default"
    when: str | dict[str, Any] | None = None
    mappings: dict[str, str] = attrs.field(factory=dict)


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
    resolves at run time, e.g. ``"{{ node.fetch.output }}"``), ``mappings`` (``{name: Backpack
    key}``: what the node reads as ``name`` is the value of the key, for any node type),
    ``dependencies`` it needs beyond those its type declares, and ``retry`` settings."""

    type: str
    id: str
    name: str | None = None
    namespace: str | None = None
    params: Any = attrs.field(factory=dict)
    inputs: dict[str, Any] = attrs.field(factory=dict)
    mappings: dict[str, str] = attrs.field(factory=dict)
    dependencies: list[str] = attrs.field(factory=list)
    retry: RetryConfig | None = None


@attrs.frozen(kw_only=True)
class DependencyConfig:
    """A dependency built by a registered factory (``type``) from ``config``."""

    type: str
    config: dict[str, Any] = attrs.field(factory=dict)


@attrs.frozen(kw_only=True)
class InputConfig:
    """A run input the flow expects (``--input name=value`` on the command line,
    ``input_vars`` of the service, ``flow.run(..., inputs=...)``): its JSON ``schema`` (the
    value is checked against it), a ``default`` used when none is given, whether it is
    ``required``. A run packs its declared inputs into the Backpack under their names."""

    description: str | None = None
    schema: dict[str, Any] | bool | None = None
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
    outputs: list[str] = attrs.field(factory=list)
    #: ``"strict"``: a read no input or upstream node provides is a load error, a value that
    #: breaks its contract a run error; ``"advisory"``: warnings and ``log`` events instead.
    #: Unset: strict when the flow declares inputs (it says what enters the Backpack),
    #: advisory when not (its callers may fill the Backpack before running it).
    contracts: str | None = None

    @property
    def strict_contracts(self) -> bool:
        if self.contracts is not None:
            return self.contracts == "strict"
        return bool(self.inputs)

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

    def structure_schema(value: Any, _: type) -> dict[str, Any] | bool | None:
        if value is None or isinstance(value, (bool, dict)):
            return value
        raise TypeError(f"a JSON Schema is an object or a boolean, got {_json_type(value)}")

    conv.register_structure_hook(dict[str, Any] | bool | None, structure_schema)
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
