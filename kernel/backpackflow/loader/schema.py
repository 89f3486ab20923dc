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
import re
from collections.abc import Mapping
from importlib.resources import files
from typing import TYPE_CHECKING, Any

from jsonschema import Draft202012Validator, ValidationError

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
    ``schema`` or else the schema composed from ``registry`` (one of them is needed).

    The same problems as validating the whole document against ``schema`` in one go, found
    in time linear in the document (see :class:`_DocumentValidator`); the validators compiled
    for a schema object are kept for the next document validated against that object, so a
    caller must not change a schema it has validated with."""
    if schema is None:
        schema = flow_schema(registry)
    return [format_error(e) for e in _document_validator(schema).errors(data)]


_VALIDATORS: dict[int, tuple[Mapping[str, Any], _DocumentValidator]] = {}
_MAX_VALIDATORS = 16  # composed schemas in use at once: a loader's, the server's, a test's


def _document_validator(schema: Mapping[str, Any]) -> _DocumentValidator:
    """The validator of ``schema``, compiled once per schema object (keyed by identity: the
    schema is held with it, so its id is never reused while cached)."""
    cached = _VALIDATORS.get(id(schema))
    if cached is not None and cached[0] is schema:
        return cached[1]
    validator = _DocumentValidator(schema)
    if len(_VALIDATORS) >= _MAX_VALIDATORS:
        _VALIDATORS.pop(next(iter(_VALIDATORS)))
    _VALIDATORS[id(schema)] = (schema, validator)
    return validator


class _DocumentValidator:
    """Validates flow documents against a composed schema piece by piece, with the result of
    validating the whole document at once.

    jsonschema on a whole document costs tens of microseconds per node and tries every node
    against the ``if type == X`` branch of every node type: a 200,000-node document took most
    of a minute. Here the top level is validated with its ``nodes`` and ``edges`` items left
    out, then each item on its own:

    * a node against the core node schema with only its own type's branch (the other types'
      ``if`` fails, so their branches cannot apply), an edge against the edge schema;
    * items alike but for their identity (a node's ``id``, ``name`` and ``inputs``, an edge's
      ``from`` and ``to``: plain strings or any object, checked here as jsonschema checks
      them) are validated once: the other properties of an item do not depend on those, so
      an item is valid when its shape was found valid and its identity values are (a chain
      of llm nodes alike but for their ids and input bindings validates its node schema once);
    * an item found invalid is validated alone with jsonschema, and the item's place is
      prepended to the paths of its problems.

    So each problem, its message, its JSON path and their order are those of the
    whole-document validation (tests/kernel/test_schema.py compares the two).
    A schema not of the composed shape is validated whole."""

    def __init__(self, schema: Mapping[str, Any]) -> None:
        self._whole = Draft202012Validator(schema)
        self._split = _splittable(schema)
        self._by_type: dict[str | None, Draft202012Validator] = {}
        if not self._split:
            return
        properties = schema["properties"]
        self._top = Draft202012Validator(
            {
                **schema,
                "properties": {
                    **properties,
                    "nodes": {k: v for k, v in properties["nodes"].items() if k != "items"},
                    "edges": {k: v for k, v in properties["edges"].items() if k != "items"},
                },
            }
        )
        self._shared = {k: schema[k] for k in ("$schema", "$id", "$defs") if k in schema}
        node = schema["$defs"]["node"]
        self._node_core = {k: v for k, v in node.items() if k != "allOf"}
        self._branches: dict[str, list[Any]] = {}
        for branch in node.get("allOf", ()):
            name = branch["if"]["properties"]["type"]["const"]
            self._branches.setdefault(name, []).append(branch)
        self._any_node = self._sub({"$ref": "#/$defs/node"})
        self._edge = self._sub({"$ref": "#/$defs/edge"})
        self._node_ids = _identity_fields(
            node, ("id", "name", "inputs"), frozenset(("type", "params"))
        )
        self._edge_ids = _identity_fields(schema["$defs"]["edge"], ("from", "to"), frozenset())

    def _sub(self, schema: dict[str, Any]) -> Draft202012Validator:
        """A validator of ``schema`` whose ``$ref``s resolve in the composed schema."""
        return Draft202012Validator({**self._shared, **schema})

    def _node_validator(self, node: Any) -> Draft202012Validator:
        if type(node) is not dict:
            return self._any_node  # every branch's ``if`` holds vacuously: the whole schema
        type_name = node.get("type")
        if type(type_name) is not str:
            type_name = None  # no branch's ``if`` holds
        validator = self._by_type.get(type_name)
        if validator is None:
            branches = self._branches.get(type_name) if type_name is not None else None
            schema = dict(self._node_core)
            if branches:
                schema["allOf"] = branches
            validator = self._by_type[type_name] = self._sub(schema)
        return validator

    def errors(self, data: Any) -> list[ValidationError]:
        """Every problem of ``data``, sorted by path as :func:`sorted_errors` sorts them."""
        if not self._split:
            return sorted_errors(self._whole, data)
        errors = sorted_errors(self._top, data)
        if type(data) is not dict:
            return errors
        found = False
        for field, identity in (("nodes", self._node_ids), ("edges", self._edge_ids)):
            items = data.get(field)
            if type(items) is not list:
                continue
            shapes: dict[str, bool] = {}  # an item's shape (identity left out) -> valid
            for index, item in enumerate(items):
                validator = self._edge if field == "edges" else self._node_validator(item)
                if _valid(item, validator, identity, shapes):
                    continue
                errors.extend(_placed(sorted_errors(validator, item), field, index))
                found = True
        if found:  # sorted as a whole, stably: the same order as the whole document's
            errors.sort(key=_error_path)
        return errors


_ITEM_KEYWORDS = frozenset(
    ("type", "description", "required", "properties", "additionalProperties", "allOf")
)


def _identity_fields(
    item_schema: Mapping[str, Any], names: tuple[str, ...], others: frozenset[str]
) -> dict[str, tuple[type, re.Pattern[str] | None]]:
    """Of ``names``, the properties of ``item_schema`` that are plain strings (with a pattern
    or not) or any object, and that no other keyword looks at (``others``: the properties its
    ``allOf`` reads), as ``name: (the Python type jsonschema checks, pattern)``; none when the
    schema has other keywords than the composed one's."""
    if not set(item_schema) <= _ITEM_KEYWORDS:
        return {}
    properties = item_schema.get("properties", {})
    fields: dict[str, tuple[type, re.Pattern[str] | None]] = {}
    for name in names:
        sub = properties.get(name)
        if name in others or not isinstance(sub, Mapping):
            continue
        if sub == {"type": "object"}:
            fields[name] = (dict, None)  # jsonschema's "object" is a dict
        elif sub.get("type") != "string":
            continue
        elif set(sub) == {"type"}:
            fields[name] = (str, None)
        elif set(sub) == {"type", "pattern"} and isinstance(sub["pattern"], str):
            fields[name] = (str, re.compile(sub["pattern"]))
    return fields


def _valid(
    item: Any,
    validator: Draft202012Validator,
    identity: Mapping[str, tuple[type, re.Pattern[str] | None]],
    shapes: dict[str, bool],
) -> bool:
    """Whether ``item`` is valid, validating each shape of item once (see
    :class:`_DocumentValidator`)."""
    if type(item) is not dict:
        return bool(validator.is_valid(item))
    shape = item
    if identity:
        shape = dict(item)
        for name, (kind, pattern) in identity.items():
            value = shape.get(name, _ABSENT)
            if value is _ABSENT:
                continue  # ``required`` may object: the shape says so
            # what jsonschema checks of {"type": "string", "pattern": ...} or {"type": "object"}
            if not isinstance(value, kind):
                return False
            if pattern is not None and not pattern.search(str(value)):  # patterns: strings only
                return False
            shape[name] = None  # present, and valid
    try:
        key = json.dumps(shape, sort_keys=True, allow_nan=True)
    except (TypeError, ValueError):  # not JSON data: validated as it is
        return bool(validator.is_valid(item))
    valid = shapes.get(key)
    if valid is None:
        # valid(item) => valid(shape) as the identity values are independent properties; an
        # invalid item marks its shape invalid, and items of that shape are then validated
        # one by one (exact, only slower)
        valid = shapes[key] = bool(validator.is_valid(item))
    return valid


_ABSENT = object()


#: What the top level of a composed schema holds: other keywords (``allOf``, ...) could reach
#: into the nodes, and such a schema is validated whole.
_TOP_KEYWORDS = frozenset(
    [
        "$schema",
        "$id",
        "$defs",
        "title",
        "description",
        "type",
        "required",
        "properties",
        "additionalProperties",
    ]
)


def _splittable(schema: Mapping[str, Any]) -> bool:
    """Whether ``schema`` has the composed shape :class:`_DocumentValidator` splits."""
    try:
        properties = schema["properties"]
        node = schema["$defs"]["node"]
        if not isinstance(schema["$defs"]["edge"], Mapping):
            return False
        for branch in node.get("allOf", ()):
            condition = branch["if"]
            if (
                set(branch) != {"if", "then"}
                or set(condition) != {"properties", "required"}
                or set(condition["properties"]) != {"type"}
                or set(condition["properties"]["type"]) != {"const"}
                or type(condition["properties"]["type"]["const"]) is not str
            ):
                return False
        return (
            schema.get("type") == "object"
            and properties["nodes"].get("items") == {"$ref": "#/$defs/node"}
            and properties["edges"].get("items") == {"$ref": "#/$defs/edge"}
            and set(schema) <= _TOP_KEYWORDS
        )
    except (KeyError, TypeError, AttributeError):
        return False


def _placed(errors: list[ValidationError], *where: str | int) -> list[ValidationError]:
    """``errors`` found in an item, with their paths made the item's place in the document.
    An error may be the cause picked among another's alternatives (see ``sorted_errors``):
    its path is relative to that error's, so the place goes before the outermost one's."""
    for error in errors:
        outermost: Any = error
        while outermost.parent is not None:
            outermost = outermost.parent
        outermost.path.extendleft(reversed(where))
    return errors


def _error_path(error: ValidationError) -> list[str]:
    return [str(p) for p in error.absolute_path]


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
