"""JSON Schemas of flow configs (Draft 2020-12): generated, composed and used for validation.

Node params schemas are generated from the attrs params classes by ``msgspec.json.schema``
(constraints come from ``Annotated[float, msgspec.Meta(ge=0, le=2)]`` field types), never
written by hand. The flow schema composes the core structure with the params schema of every
installed node type (``if type == X then params matches X's schema``), so one document
validates a whole flow and errors point into ``params``::

    $.nodes[2].params.temperature: 5 is greater than the maximum of 2
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from importlib.resources import files
from typing import TYPE_CHECKING, Any

from jsonschema import Draft202012Validator

from backpackflow.config import (
    CURRENT_VERSION,
    FLOW_NODE_TYPE,
    format_error,
    params_schema_components,
    sorted_errors,
)
from backpackflow.runner import BUILTIN_FACTORIES

if TYPE_CHECKING:  # annotations only: nothing here is needed at run time
    from backpackflow.plugins import Registry

SCHEMA_DIALECT = "https://json-schema.org/draft/2020-12/schema"
SCHEMA_ID = "https://backpackflow.dev/schemas/flow/{version}.json"
_NAMESPACE_PATTERN = r"^[A-Za-z0-9_-]+(\.[A-Za-z0-9_-]+)*$"
_ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.:-]*$"


def _core_defs(node_types: list[str]) -> dict[str, Any]:
    string_or_null = {"type": ["string", "null"]}
    return {
        "namespace": {"type": "string", "pattern": _NAMESPACE_PATTERN},
        "key": {
            "description": "A Backpack key: no surrounding white space, no '*'.",
            "type": "string",
            "pattern": r"^[^\s*]([^*]*[^\s*])?$",
        },
        "mappings": {
            "description": "Key mappings: what the node reads as NAME (the property) is the "
            "value of the Backpack key the property's value names.",
            "type": "object",
            "propertyNames": {"$ref": "#/$defs/key"},
            "additionalProperties": {"$ref": "#/$defs/key"},
        },
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
                "mappings": {"$ref": "#/$defs/mappings"},
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
                "mappings": {"$ref": "#/$defs/mappings"},
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
                "schema": {
                    "description": "The JSON Schema the input's value must match.",
                    "type": ["object", "boolean"],
                },
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
    contracts: Mapping[str, tuple[Mapping[str, Any], Mapping[str, Any]]] | None = None,
) -> dict[str, Any]:
    """The composed schema: the core flow structure plus the params schema of every node type
    (``node_types`` maps type names to params classes; default: the registry's node types) and
    the options schemas of the registry's dependency factories and event sinks. Each node
    type's data contract (``contracts``: name -> (reads, writes); default: the registry's) is
    an annotation of its branch, ``x-backpackflow-reads`` / ``x-backpackflow-writes``, for
    editors. It has no ``$id``: only the published document (tools/publish_schema.py) carries
    one."""
    if registry is None and node_types is None:
        raise TypeError("flow_schema() needs the registry to compose (or node_types)")
    if node_types is None:
        assert registry is not None
        node_types = {name: t.params for name, t in registry.node_types.items()}
    if contracts is None:
        known = registry.node_types if registry is not None else {}
        contracts = {name: (t.reads, t.writes) for name, t in known.items()}
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
        branch = _params_branch(name, params_ref)
        reads, writes = contracts.get(name, ({}, {}))
        if reads:
            branch["then"]["x-backpackflow-reads"] = dict(reads)
        if writes:
            branch["then"]["x-backpackflow-writes"] = dict(writes)
        branches.append(branch)
    defs["node"]["allOf"] = branches
    dependency_types = {name: f.options for name, f in BUILTIN_FACTORIES.items()}
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
            # input names and output keys are Backpack keys: the loader checks them (not this
            # schema, whose first 2.0.0 form took any name: schema changes stay additive)
            "inputs": {"type": "object", "additionalProperties": {"$ref": "#/$defs/input"}},
            "contracts": {
                "description": "Whether broken data contracts are errors (strict) or "
                "warnings (advisory); unset: strict when the flow declares inputs.",
                "enum": ["strict", "advisory"],
            },
            "outputs": {
                "description": "Backpack keys a run returns as its outputs.",
                "type": "array",
                "items": {"type": "string", "minLength": 1},
                "uniqueItems": True,
            },
            "sinks": {"type": "array", "items": {"$ref": "#/$defs/sink"}},
        },
        "additionalProperties": False,
        "$defs": defs,
    }


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
    """Every schema problem of a flow document, as ``$.path: message`` strings, against
    ``schema`` or else the schema composed from ``registry`` (one of them is needed)."""
    validator = Draft202012Validator(schema if schema is not None else flow_schema(registry))
    return [format_error(e) for e in sorted_errors(validator, data)]


def export_schema(registry: Registry) -> dict[str, Any]:
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
    return files("backpackflow").joinpath("schemas", "flow", f"{version}.json")
