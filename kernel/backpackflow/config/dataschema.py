"""JSON Schemas of data (flow inputs, the Backpack keys a node reads and writes): checking a
schema a user wrote, generating one from a Python type (as params schemas are generated, with
``msgspec.json.schema``), and validating a value with every problem at its JSON path.

A schema is a JSON Schema (Draft 2020-12) document or a boolean (``true``: anything).
"""

from __future__ import annotations

import functools
import json
import re
from collections.abc import Mapping
from typing import Any

import msgspec
from jsonschema import Draft202012Validator
from jsonschema.exceptions import SchemaError

from backpackflow.config.params import _tidy, format_error, sorted_errors

DataSchema = Mapping[str, Any] | bool


def schema_problems(schema: Any, path: str) -> list[str]:
    """Why ``schema`` is not a usable JSON Schema (empty: it is), at ``path``."""
    if isinstance(schema, bool):
        return []
    if not isinstance(schema, Mapping):
        return [f"{path}: a JSON Schema is an object or a boolean, got {type(schema).__name__}"]
    try:
        Draft202012Validator.check_schema(dict(schema))
    except SchemaError as exc:
        where = "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in exc.absolute_path)
        return [f"{path}{where}: not a valid JSON Schema: {exc.message}"]
    return []


def type_schema(tp: Any) -> dict[str, Any]:
    """The JSON Schema of a Python type (``str``, ``list[str]``, an attrs class, ...), inlined
    (no ``$ref``) so it can be shown and compared on its own."""
    (schema,), components = msgspec.json.schema_components([tp], ref_template="#/$defs/{name}")
    _tidy(schema)
    _tidy(components)
    if components:
        schema = {**schema, "$defs": components}
    return schema


def as_schema(declared: Any) -> DataSchema:
    """A declared contract as a JSON Schema: a schema (dict or bool) as it is, a Python type
    converted with :func:`type_schema`."""
    if isinstance(declared, (bool, Mapping)):
        return declared if isinstance(declared, bool) else dict(declared)
    return type_schema(declared)


@functools.lru_cache(maxsize=512)
def _validator(text: str) -> Draft202012Validator:
    return Draft202012Validator(json.loads(text))


def value_problems(schema: DataSchema, value: Any, path: str) -> list[str]:
    """Every way ``value`` breaks ``schema``, as ``path.inside.the.value: message``."""
    if schema is True:
        return []
    if schema is False:
        return [f"{path}: no value is allowed here (schema false)"]
    validator = _validator(json.dumps(schema, sort_keys=True))
    return [format_error(e, path) for e in sorted_errors(validator, value)]


# ------------------------------------------------------------------------------- contracts

#: What makes a string a Backpack key (the Backpack checks it on every write).
KEY_RULE = "keys are non-empty strings without surrounding white space or '*'"


def is_backpack_key(key: object) -> bool:
    """Whether ``key`` is a valid Backpack key (:data:`KEY_RULE`): what a flow names as a key
    (an input, an output, a mapping) is checked when it loads, not when a run packs it."""
    return isinstance(key, str) and bool(key) and key.strip() == key and "*" not in key


_PLACEHOLDER = re.compile(r"\{([A-Za-z_][A-Za-z0-9_]*(?:\|[A-Za-z_][A-Za-z0-9_]*)*)\}")


def contract_schemas(declared: Mapping[str, Any] | None, what: str) -> dict[str, DataSchema]:
    """A node type's declared ``reads`` or ``writes`` (``{key: type or JSON Schema}``) as
    ``{key: JSON Schema}``. A key may name params: ``"{source}"`` is the key
    ``params.source`` holds, ``"{output_key|id}"`` the first of ``params.output_key`` and the
    node's id that is set."""
    if not declared:
        return {}
    if not isinstance(declared, Mapping):
        raise TypeError(f"{what} must map Backpack keys to types or JSON Schemas")
    schemas: dict[str, DataSchema] = {}
    for key, spec in declared.items():
        if not isinstance(key, str) or not key:
            raise TypeError(f"{what}: a key is a non-empty string, got {key!r}")
        try:
            schema = as_schema(spec)
        except (TypeError, ValueError) as exc:
            raise TypeError(f"{what}[{key!r}]: no JSON Schema for {spec!r}: {exc}") from None
        problems = schema_problems(schema, f"{what}[{key!r}]")
        if problems:
            raise TypeError(problems[0])
        schemas[key] = schema
    return schemas


def resolve_key(template: str, params: Mapping[str, Any], node_id: str) -> str | None:
    """The Backpack key ``template`` names for one node (``None``: a placeholder's params are
    all unset, so the node reads or writes no such key)."""
    if "{" not in template:
        return template
    missing = False

    def fill(match: re.Match[str]) -> str:
        nonlocal missing
        for name in match.group(1).split("|"):
            value = node_id if name == "id" else params.get(name)
            if isinstance(value, str) and value:
                return value
        missing = True
        return ""

    key = _PLACEHOLDER.sub(fill, template)
    return None if missing else key
