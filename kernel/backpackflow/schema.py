"""JSON Schemas of flow configs (Draft 2020-12): generated, composed and used for validation.

Node params schemas are generated from the attrs params classes by ``msgspec.json.schema``
(constraints come from ``Annotated[float, msgspec.Meta(ge=0, le=2)]`` field types), never
written by hand. The flow schema composes the core structure with the params schema of every
installed node type (``if type == X then params matches X's schema``), so one document
validates a whole flow and errors point into ``params``::

    $.nodes[2].params.temperature: 5 is greater than the maximum of 2
"""

from __future__ import annotations

import dataclasses
import functools
import inspect
import json
import re
import typing
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Annotated, Any
from urllib.parse import quote

import attrs
import msgspec
from jsonschema import Draft202012Validator
from jsonschema.exceptions import ValidationError, best_match

from backpackflow.config import CURRENT_VERSION, FLOW_NODE_TYPE
from backpackflow.errors import ConfigError

if TYPE_CHECKING:
    from backpackflow.plugins import Registry

SCHEMA_DIALECT = "https://json-schema.org/draft/2020-12/schema"
SCHEMA_ID = "https://backpackflow.dev/schemas/flow/{version}.json"
_NAMESPACE_PATTERN = r"^[A-Za-z0-9_-]+(\.[A-Za-z0-9_-]+)*$"
_ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.:-]*$"


# ------------------------------------------------------------------------------- params


def _tidy(schema: Any) -> None:
    """Adjust msgspec's output in place: ``anyOf: [{type: X, ...constraints}, {type: null}]``
    becomes ``type: [X, null]`` with the constraints inline, so any validator reports "5 is
    greater than the maximum of 2" rather than "not valid under any of the given schemas"."""
    if isinstance(schema, dict):
        options = schema.get("anyOf")
        if isinstance(options, list) and len(options) == 2 and {"type": "null"} in options:
            other = options[0] if options[1] == {"type": "null"} else options[1]
            if isinstance(other.get("type"), str) and not set(other) & set(schema) - {"anyOf"}:
                del schema["anyOf"]
                schema.update(other)
                schema["type"] = [other["type"], "null"]
        for value in schema.values():
            _tidy(value)
    elif isinstance(schema, list):
        for value in schema:
            _tidy(value)


def _own_class_schema(schema: dict[str, Any], cls: type) -> None:
    """What a published schema says of a class is decided here, not by msgspec (whose output
    changes between releases: 0.23 dedents docstrings and shows factory defaults) nor by
    Python (3.13 dedents docstrings itself):

    - ``description``: the class docstring in one normal form (:func:`describe`);
    - for attrs classes, ``additionalProperties: false`` (the loader rejects unknown params,
      the schema says so too) and each field's ``default``: its own default value as JSON,
      none for a default made by a factory (``attrs.field(factory=list)`` makes a fresh value
      per instance, not one value to show).
    """
    description = describe(cls)
    if description is None:
        schema.pop("description", None)
    else:
        schema["description"] = description
    if not attrs.has(cls) or schema.get("type") != "object":
        return
    schema.setdefault("additionalProperties", False)
    properties = schema.get("properties", {})
    for field in attrs.fields(cls):
        prop = properties.get(field.name)
        if not isinstance(prop, dict):
            continue
        if field.default is attrs.NOTHING or isinstance(field.default, _FACTORY):
            prop.pop("default", None)
        else:
            prop["default"] = msgspec.to_builtins(field.default)


#: attrs types ``Factory`` as a function for type checkers; it is a class.
_FACTORY: type = attrs.Factory  # type: ignore[assignment]


def describe(cls: type) -> str | None:
    """A class's own docstring as the published schemas spell it: ``inspect.cleandoc``, then
    each continuation line indented by four spaces, as a module-level class's docstring is
    written in the source (the form schema 2.0.0 was published with, when msgspec copied
    docstrings as written: kept, so that file's bytes stay). ``None`` for no docstring, an
    enum's stock one or a dataclass's generated signature (which differs between Pythons)."""
    doc = cls.__dict__.get("__doc__")
    if not isinstance(doc, str) or not doc.strip():
        return None
    if doc == "An enumeration." or (
        dataclasses.is_dataclass(cls) and doc.startswith(f"{cls.__name__}(")
    ):
        return None
    first, *rest = inspect.cleandoc(doc).split("\n")
    return "\n".join([first, *(f"    {line}" if line else "" for line in rest)])


def _classes(cls: type, seen: set[type] | None = None) -> set[type]:
    """``cls`` and every class its fields' types mention, through nested attrs classes."""
    seen = set() if seen is None else seen
    if cls in seen:
        return seen
    seen.add(cls)
    if not attrs.has(cls):
        return seen
    try:
        # resolves string annotations (``from __future__ import annotations``)
        types = list(typing.get_type_hints(cls, include_extras=True).values())
    except Exception:  # noqa: BLE001 - unresolvable names: fall back to what attrs holds
        types = [field.type for field in attrs.fields(cls)]
    for field_type in types:
        for arg in _type_args(field_type):
            if isinstance(arg, type):
                _classes(arg, seen)
    return seen


def _type_args(tp: Any) -> Iterable[Any]:
    yield tp
    for arg in getattr(tp, "__args__", ()) or ():
        yield from _type_args(arg)
    origin = getattr(tp, "__origin__", None)
    if origin is not None:
        yield origin


def _component_names(classes: Iterable[type]) -> dict[str, type]:
    """The names msgspec may give each class's component (its name, or its import path when
    two classes share a name), each mapped to its class."""
    names: dict[str, type] = {}
    by_short_name: dict[str, list[type]] = {}
    for cls in classes:
        by_short_name.setdefault(_component_name(cls.__name__), []).append(cls)
        names[_component_name(f"{cls.__module__}.{cls.__qualname__}")] = cls
    names.update({name: group[0] for name, group in by_short_name.items() if len(group) == 1})
    return names


def _component_name(name: str) -> str:
    return re.sub(r"[^a-zA-Z0-9.\-_]", "_", name)


def params_schema_components(cls: type, prefix: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """The schema of params class ``cls`` as (a ``$ref`` to it, its ``$defs``), with every
    definition name prefixed by ``prefix`` so classes of different node types never collide."""
    # the reference is a URI fragment holding a JSON pointer: escape '~' and '/' (RFC 6901),
    # then percent-encode (which also keeps '{' and '}' away from str.format)
    pointer = prefix.replace("~", "~0").replace("/", "~1")
    ref_template = "#/$defs/" + quote(pointer, safe="") + "{name}"
    (schema,), components = msgspec.json.schema_components([cls], ref_template=ref_template)
    classes = _component_names(_classes(cls))
    for name, component in components.items():
        if name in classes:
            _own_class_schema(component, classes[name])
    defs = {prefix + name: value for name, value in components.items()}
    _tidy(defs)
    return schema, defs


@functools.lru_cache(maxsize=256)
def params_schema(cls: type) -> dict[str, Any]:
    """A standalone Draft 2020-12 schema of one params class."""
    ref, defs = params_schema_components(cls, "")
    return {"$schema": SCHEMA_DIALECT, **ref, "$defs": defs}


@functools.lru_cache(maxsize=256)
def _params_validator(cls: type) -> Draft202012Validator:
    return Draft202012Validator(params_schema(cls))


def format_error(error: ValidationError, prefix: str = "$") -> str:
    """``$.path.to.field: message`` for one jsonschema error."""
    path = prefix
    for part in error.absolute_path:
        path += f"[{part}]" if isinstance(part, int) else f".{part}"
    return f"{path}: {error.message}"


def _sorted_errors(validator: Draft202012Validator, instance: Any) -> list[ValidationError]:
    errors = []
    for error in validator.iter_errors(instance):
        # an if/then branch error reports where the params failed, not the umbrella "allOf"
        errors.extend(_leaves(error))
    return sorted(errors, key=lambda e: [str(p) for p in e.absolute_path])


def _leaves(error: ValidationError) -> list[ValidationError]:
    """The most specific cause of an error with alternatives (anyOf/oneOf)."""
    if not error.context:
        return [error]
    # best_match descends into the alternative whose type matches the instance (an optional
    # ``X | None`` reports X's problem, not "is not of type 'null'")
    best = best_match([error])
    if best.context:  # no alternative stands out: take the best of them
        best = best_match(best.context)
    return _leaves(best)


def validate_params(cls: type, params: Any, *, where: str, path: str = "$") -> None:
    """Raise :class:`ConfigError` when ``params`` does not match ``cls``'s schema."""
    problems = [format_error(e, path) for e in _sorted_errors(_params_validator(cls), params)]
    if problems:
        raise ConfigError(f"{where}: " + "; ".join(problems), problems)


def check_params_instance(instance: Any, *, where: str) -> None:
    """Validate an already built params instance against its class's schema (constraints such
    as ``maximum`` hold for nodes built in code too)."""
    from backpackflow.config import unstructure_params

    validate_params(type(instance), unstructure_params(instance), where=where)


# ------------------------------------------------------------------------------- the flow schema


def _core_defs(node_types: list[str]) -> dict[str, Any]:
    string_or_null = {"type": ["string", "null"]}
    return {
        "namespace": {"type": "string", "pattern": _NAMESPACE_PATTERN},
        "node": {
            "type": "object",
            "description": "A node of a registered type.",
            "required": ["type", "id"],
            "properties": {
                "type": {"enum": sorted(node_types)},
                "id": {"type": "string", "pattern": _ID_PATTERN},
                "name": {"type": "string"},
                "namespace": {"$ref": "#/$defs/namespace"},
                "params": {"type": "object"},
                "inputs": {"type": "object"},
                "dependencies": {"type": "array", "items": {"type": "string"}},
                "retry": {
                    "type": "object",
                    "properties": {
                        "max_retries": {"type": "integer", "minimum": 1},
                        "wait": {"type": "number", "minimum": 0},
                        "backoff": {"type": "number", "minimum": 1},
                        "max_wait": {"type": ["number", "null"], "minimum": 0},
                    },
                    "additionalProperties": False,
                },
            },
            "additionalProperties": False,
        },
        "edge": {
            "type": "object",
            "required": ["from", "to"],
            "properties": {
                "from": {"type": "string"},
                "to": {"type": "string"},
                "condition": {"type": "string", "minLength": 1, "default": "default"},
                "when": {
                    "description": "An expression (string) or a JSON Logic object.",
                    "type": ["string", "object", "null"],
                },
            },
            "additionalProperties": False,
        },
        "subflow": {
            "type": "object",
            "description": "Params of a nested flow node (type 'flow').",
            "required": ["nodes"],
            "properties": {
                "nodes": {"type": "array", "minItems": 1, "items": {"$ref": "#/$defs/node"}},
                "edges": {"type": "array", "items": {"$ref": "#/$defs/edge"}},
                "entry": string_or_null,
                "parallel": {"type": "boolean"},
            },
            "additionalProperties": False,
        },
        "limits": {
            "type": "object",
            "properties": {
                "max_steps": {"type": ["integer", "null"], "minimum": 1},
                "timeout": {"type": ["number", "null"], "exclusiveMinimum": 0},
                "max_tokens": {"type": ["integer", "null"], "minimum": 1},
                "max_cost": {
                    "type": ["string", "null"],
                    "pattern": r"^[0-9]+(\.[0-9]+)?$",
                    "description": 'Exact decimal, e.g. "0.50".',
                },
            },
            "additionalProperties": False,
        },
        "dependency": {
            "oneOf": [
                {"type": "string", "description": "Short form: the factory name."},
                {
                    "type": "object",
                    "required": ["type"],
                    "properties": {"type": {"type": "string"}, "config": {"type": "object"}},
                    "additionalProperties": False,
                },
            ]
        },
        "input": {
            "type": "object",
            "properties": {
                "description": {"type": "string"},
                "default": True,
                "required": {"type": "boolean"},
            },
            "additionalProperties": False,
        },
        "sink": {
            "type": "object",
            "required": ["type"],
            "properties": {"type": {"type": "string"}, "options": {"type": "object"}},
            "additionalProperties": False,
        },
    }


def flow_schema(
    registry: Registry | None = None,
    *,
    version: str = CURRENT_VERSION,
    node_types: Mapping[str, type | None] | None = None,
) -> dict[str, Any]:
    """The composed schema: the core flow structure plus the params schema of every node type
    (``node_types`` maps type names to params classes; default: the registry's node types) and
    the options schemas of the registry's dependency factories and event sinks. It has no
    ``$id``: only :func:`published_schema` carries one."""
    if registry is None and node_types is None:
        from backpackflow.plugins import get_registry

        registry = get_registry()
    if node_types is None:
        assert registry is not None
        node_types = {name: t.params for name, t in registry.node_types.items()}
    names = [*node_types, FLOW_NODE_TYPE]
    defs = _core_defs(names)
    branches: list[dict[str, Any]] = [_params_branch(FLOW_NODE_TYPE, {"$ref": "#/$defs/subflow"})]
    for name in sorted(node_types):
        params_cls = node_types[name]
        if params_cls is None:
            params_ref: dict[str, Any] = {}  # any object: the core node schema says so
        else:
            params_ref, params_defs = params_schema_components(params_cls, f"{name}.")
            defs.update(params_defs)
        branches.append(_params_branch(name, params_ref))
    defs["node"]["allOf"] = branches
    dependency_types: dict[str, type | None] = {"EventStreamer": _EventStreamerOptions}
    sink_types: dict[str, type | None] = {}
    if registry is not None:
        dependency_types.update(
            {name: f.options for name, f in registry.dependency_factories.items()}
        )
        sink_types.update({name: s.options for name, s in registry.event_sinks.items()})
    dependency_branches = _option_branches("dependency", "config", dependency_types, defs)
    if dependency_branches:  # an empty allOf is not valid JSON Schema
        defs["dependency"]["oneOf"][1]["allOf"] = dependency_branches
    sink_branches = _option_branches("sink", "options", sink_types, defs)
    if sink_branches:
        defs["sink"]["allOf"] = sink_branches
    return {
        "$schema": SCHEMA_DIALECT,
        "title": f"backpackflow flow config {version}",
        "type": "object",
        "required": ["version", "nodes"],
        "properties": {
            "$schema": {
                "type": "string",
                "description": "The JSON Schema of this file, for editors; loading ignores it.",
            },
            "version": {"const": version},
            "name": {"type": "string"},
            "description": {"type": "string"},
            "namespace": {"$ref": "#/$defs/namespace"},
            "entry": {"type": "string"},
            "parallel": {"type": "boolean", "default": False},
            "allow_cycles": {"type": "boolean", "default": False},
            "nodes": {"type": "array", "minItems": 1, "items": {"$ref": "#/$defs/node"}},
            "edges": {"type": "array", "items": {"$ref": "#/$defs/edge"}},
            "dependencies": {
                "type": "object",
                "additionalProperties": {"$ref": "#/$defs/dependency"},
            },
            "limits": {"$ref": "#/$defs/limits"},
            "inputs": {"type": "object", "additionalProperties": {"$ref": "#/$defs/input"}},
            "sinks": {"type": "array", "items": {"$ref": "#/$defs/sink"}},
        },
        "additionalProperties": False,
        "$defs": defs,
    }


@attrs.frozen(kw_only=True)
class _EventStreamerOptions:
    """Options of the kernel's own ``EventStreamer`` dependency."""

    history_size: Annotated[int, msgspec.Meta(ge=0)] = 10_000


def _option_branches(
    kind: str, field: str, types: Mapping[str, type | None], defs: dict[str, Any]
) -> list[dict[str, Any]]:
    """``if type == X then <field> matches X's options schema`` for every registered type."""
    branches = []
    for name in sorted(types):
        options = types[name]
        if options is None:
            continue
        ref, option_defs = params_schema_components(options, f"{kind}.{name}.")
        defs.update(option_defs)
        branches.append(_if_type(name, {"properties": {field: ref}}))
    return branches


def _params_branch(type_name: str, params_ref: dict[str, Any]) -> dict[str, Any]:
    then: dict[str, Any] = {"properties": {"params": params_ref}}
    if type_name == FLOW_NODE_TYPE:  # a nested flow is its params: they cannot be left out
        then["required"] = ["params"]
    return _if_type(type_name, then)


def _if_type(type_name: str, then: dict[str, Any]) -> dict[str, Any]:
    """``if type == type_name then <then>``."""
    return {
        "if": {"properties": {"type": {"const": type_name}}, "required": ["type"]},
        "then": then,
    }


def dumps_schema(schema: Mapping[str, Any]) -> str:
    """The one text form of a schema (stable key order, trailing newline): what is committed
    under ``schemas/`` and what ``backpackflow schema export`` writes."""
    return json.dumps(schema, indent=2, sort_keys=True, ensure_ascii=False) + "\n"


def validate_flow_document(
    data: Any, registry: Registry | None = None, *, schema: Mapping[str, Any] | None = None
) -> list[str]:
    """Every schema problem of a flow document, as ``$.path: message`` strings."""
    validator = Draft202012Validator(schema if schema is not None else flow_schema(registry))
    return [format_error(e) for e in _sorted_errors(validator, data)]


#: The plugins whose node types, dependency factories and sinks the published schemas describe
#: (this distribution's own).
FIRST_PARTY_NODE_PLUGINS = (
    "backpackflow_nodes.plugin",
    "backpackflow_llm.plugin",
    "backpackflow_sinks.console",
    "backpackflow_sinks.jsonl",
    "backpackflow_sinks.webhook",
)


def published_schema(version: str = CURRENT_VERSION) -> dict[str, Any]:
    """The schema of ``version`` as published under ``schemas/flow/`` and shipped in the
    package: the core with the first-party node types only, so it does not depend on what
    else happens to be installed. The only document that carries the published ``$id``."""
    import importlib

    from backpackflow.plugins import build_registry

    modules = [importlib.import_module(name) for name in FIRST_PARTY_NODE_PLUGINS]
    registry = build_registry(plugins=modules, autoload=False)
    return {**flow_schema(registry, version=version), "$id": SCHEMA_ID.format(version=version)}


def export_schema(registry: Registry | None = None) -> dict[str, Any]:
    """What ``backpackflow schema export`` writes: the schema composed from ``registry``'s
    plugins. When they make exactly the published document (the first-party plugins, nothing
    else), that is the published document, shipped in the package, with its ``$id``; anything
    else (a third party's node types added, a plugin missing) has no ``$id``: one ``$id`` names
    one document."""
    composed = flow_schema(registry)
    published = json.loads(shipped_schema_path().read_text(encoding="utf-8"))
    if composed == {k: v for k, v in published.items() if k != "$id"}:
        return published  # type: ignore[no-any-return]
    return composed


def shipped_schema_path(version: str = CURRENT_VERSION) -> Any:
    """The published schema file inside the installed package."""
    from importlib.resources import files

    return files("backpackflow").joinpath("schemas", "flow", f"{version}.json")
