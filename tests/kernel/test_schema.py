"""The composed flow JSON Schema (Draft 2020-12): the core structure plus the params schema of
every installed node type, generated from the attrs params classes by msgspec (never written
twice), and validation with JSON-path errors."""

from __future__ import annotations

import copy
import enum
import json
from collections.abc import Callable
from typing import Annotated, Any

import attrs
import msgspec
import pytest
from jsonschema import Draft202012Validator

from backpackflow import ConfigError, Node, hookimpl
from backpackflow.config import (
    CURRENT_VERSION,
    check_params_instance,
    describe,
    format_error,
    params_schema,
    sorted_errors,
    validate_params,
)
from backpackflow.config.params import SCHEMA_DIALECT
from backpackflow.loader import FlowLoader, dumps_schema, flow_schema, validate_flow_document
from backpackflow.plugins import build_registry

V = CURRENT_VERSION


class Tone(enum.Enum):
    FRIENDLY = "friendly"
    FORMAL = "formal"


@attrs.frozen
class Address:
    """Where to send it."""

    host: Annotated[str, msgspec.Meta(min_length=1)]
    port: Annotated[int, msgspec.Meta(ge=1, le=65535)] = 443


@attrs.frozen
class ChatParams:
    model: str
    temperature: Annotated[float, msgspec.Meta(ge=0, le=2)] = 0.7
    max_tokens: Annotated[int, msgspec.Meta(ge=1)] | None = None
    tone: Tone = Tone.FRIENDLY
    stop: list[str] = attrs.field(factory=list)
    endpoint: Address | None = None


@attrs.frozen
class OtherParams:
    # a class of the same name in another node type must not collide with the chat one
    endpoint: Address


class ChatNode(Node):
    Params = ChatParams


class WebhookNode(Node):
    Params = OtherParams


class FreeNode(Node):
    pass


class Plugin:
    __name__ = "schema_nodes"

    @hookimpl
    def backpackflow_register_node_types(self, register):
        register("chat", ChatNode)
        register("webhook", WebhookNode)
        register("free", FreeNode)


@pytest.fixture
def registry():
    return build_registry(plugins=[Plugin()], autoload=False)


@pytest.fixture
def schema(registry):
    return flow_schema(registry)


def test_the_composed_schema_is_a_valid_draft_2020_12_schema(schema):
    Draft202012Validator.check_schema(schema)
    assert schema["$schema"] == SCHEMA_DIALECT == "https://json-schema.org/draft/2020-12/schema"
    assert "$id" not in schema  # only the published document has one (test_schemas_published)
    assert schema["properties"]["version"] == {"const": V}
    assert schema["properties"]["$schema"]["type"] == "string"  # flow files may name it


def test_the_node_type_enum_lists_every_installed_type_and_flow(schema):
    assert schema["$defs"]["node"]["properties"]["type"]["enum"] == [
        "chat",
        "flow",
        "free",
        "webhook",
    ]


def test_params_schemas_are_generated_from_the_attrs_classes_by_msgspec(schema):
    (_, generated) = msgspec.json.schema_components([ChatParams], ref_template="#/$defs/{name}")
    composed = schema["$defs"]["chat.ChatParams"]
    # the same properties and constraints msgspec generates, not a second hand-written copy
    assert (
        composed["properties"]["temperature"]
        == generated["ChatParams"]["properties"]["temperature"]
    )
    assert composed["properties"]["temperature"]["maximum"] == 2
    assert composed["required"] == ["model"]
    assert composed["additionalProperties"] is False
    assert schema["$defs"]["chat.Tone"]["enum"] == ["formal", "friendly"]
    assert schema["$defs"]["chat.Address"]["additionalProperties"] is False
    assert schema["$defs"]["chat.Address"]["properties"]["port"]["maximum"] == 65535


def test_classes_of_the_same_name_in_different_node_types_do_not_collide(schema):
    assert "chat.Address" in schema["$defs"] and "webhook.Address" in schema["$defs"]
    assert schema["$defs"]["webhook.OtherParams"]["required"] == ["endpoint"]


def test_a_type_without_a_params_class_takes_any_object(registry):
    document = {"version": V, "nodes": [{"type": "free", "id": "f", "params": {"anything": [1]}}]}
    assert validate_flow_document(document, registry) == []
    document["nodes"][0]["params"] = [1]
    assert validate_flow_document(document, registry) == [
        "$.nodes[0].params: [1] is not of type 'object'"
    ]


def test_a_plain_jsonschema_validator_checks_params_with_the_exported_schema(schema):
    # CI pipelines validate with any Draft 2020-12 validator and the exported file alone
    exported = json.loads(dumps_schema(schema))
    validator = Draft202012Validator(exported)
    good = {
        "version": V,
        "nodes": [
            {"type": "chat", "id": "c", "params": {"model": "m", "temperature": 1.5}},
            {"type": "webhook", "id": "w", "params": {"endpoint": {"host": "h"}}},
        ],
        "edges": [{"from": "c", "to": "w"}],
    }
    assert list(validator.iter_errors(good)) == []
    bad = json.loads(json.dumps(good))
    bad["nodes"][0]["params"]["temperature"] = 5
    bad["nodes"][1]["params"]["endpoint"]["port"] = 0
    messages = sorted(e.message for e in validator.iter_errors(bad))
    assert messages == ["0 is less than the minimum of 1", "5 is greater than the maximum of 2"]


@pytest.mark.parametrize(
    ("mutate", "expected"),
    [
        (
            lambda d: d["nodes"][0]["params"].update(temperature=5),
            ["$.nodes[0].params.temperature: 5 is greater than the maximum of 2"],
        ),
        (
            lambda d: d["nodes"][0]["params"].update(tone="rude"),
            ["$.nodes[0].params.tone: 'rude' is not one of ['formal', 'friendly']"],
        ),
        (
            lambda d: d["nodes"][0]["params"].update(endpoint={"host": "h", "port": 70000}),
            ["$.nodes[0].params.endpoint.port: 70000 is greater than the maximum of 65535"],
        ),
        (
            lambda d: d["nodes"][0]["params"].update(max_tokens=0),
            ["$.nodes[0].params.max_tokens: 0 is less than the minimum of 1"],
        ),
        (
            lambda d: d["nodes"][0].update(colour=1),
            ["$.nodes[0]: Additional properties are not allowed ('colour' was unexpected)"],
        ),
        (
            lambda d: d.update(extra=True),
            ["$: Additional properties are not allowed ('extra' was unexpected)"],
        ),
        (lambda d: d["edges"].append({"from": "c"}), ["$.edges[0]: 'to' is a required property"]),
        (
            lambda d: d["nodes"][0].update(id="has space"),
            ["$.nodes[0].id: 'has space' does not match '^[A-Za-z0-9][A-Za-z0-9_.:-]*$'"],
        ),
        (lambda d: d.update(namespace="a..b"), ["$.namespace: 'a..b' does not match"]),
        (
            lambda d: d.update(limits={"max_steps": 0}),
            ["$.limits.max_steps: 0 is less than the minimum of 1"],
        ),
        (
            lambda d: d.update(limits={"max_cost": "1,5"}),
            ["$.limits.max_cost: '1,5' does not match"],
        ),
        (lambda d: d.update(version="1.0"), ["$.version: '2.0.0' was expected"]),
        (lambda d: d.update(nodes=[]), ["$.nodes: [] should be non-empty"]),
    ],
)
def test_validation_errors_carry_json_paths(registry, mutate, expected):
    document = {
        "version": V,
        "nodes": [{"type": "chat", "id": "c", "params": {"model": "m"}}],
        "edges": [],
    }
    mutate(document)
    found = validate_flow_document(document, registry)
    assert len(found) == len(expected), found
    for problem, prefix in zip(found, expected, strict=True):
        assert problem.startswith(prefix), found


def test_validation_errors_are_sorted_by_path(registry):
    document = {
        "version": V,
        "nodes": [
            {"type": "chat", "id": "b", "params": {"model": "m", "temperature": 9}},
            {"type": "chat", "id": "a", "params": {"model": 1}},
        ],
    }
    found = validate_flow_document(document, registry)
    assert found == sorted(found)
    assert [p.split(":")[0] for p in found] == [
        "$.nodes[0].params.temperature",
        "$.nodes[1].params.model",
    ]


def test_params_schema_of_one_class_is_standalone():
    schema = params_schema(ChatParams)
    Draft202012Validator.check_schema(schema)
    assert schema["$schema"] == SCHEMA_DIALECT
    assert schema["$ref"] == "#/$defs/ChatParams"
    validate_params(ChatParams, {"model": "m"}, where="n")
    with pytest.raises(ConfigError) as info:
        validate_params(ChatParams, {"model": "m", "stop": "END"}, where="node 'n'", path="$.p")
    assert info.value.problems == ["$.p.stop: 'END' is not of type 'array'"]


def test_a_params_instance_built_in_code_is_checked_against_its_schema():
    check_params_instance(ChatParams(model="m", temperature=2.0), where="n")
    with pytest.raises(ConfigError, match=r"temperature: 3\.0 is greater than the maximum of 2"):
        check_params_instance(ChatParams(model="m", temperature=3.0), where="n")


def test_nested_params_classes_reject_unknown_keys_under_postponed_annotations():
    # this module uses `from __future__ import annotations`: field types are strings there
    with pytest.raises(ConfigError) as info:
        validate_params(
            ChatParams, {"model": "m", "endpoint": {"host": "h", "scheme": "https"}}, where="n"
        )
    assert "Additional properties are not allowed ('scheme' was unexpected)" in str(info.value)


# ------------------------------------------------------------------------------- our own bytes


def test_defaults_are_the_fields_own_and_none_for_a_factory(schema):
    chat = schema["$defs"]["chat.ChatParams"]["properties"]
    assert chat["temperature"]["default"] == 0.7
    assert chat["tone"]["default"] == "friendly"  # as JSON
    assert chat["max_tokens"]["default"] is None
    assert "default" not in chat["stop"]  # attrs.field(factory=list): a new list each time
    assert "default" not in chat["model"]  # required


def test_a_docstring_is_described_alike_whether_python_dedented_it_or_not():
    # Python 3.13 dedents docstrings when compiling; 3.11 and 3.12 keep the source's indent
    as_written = "Options of a thing. ``x`` does\n    one thing.\n\n    And more.\n    "
    as_compiled = "Options of a thing. ``x`` does\none thing.\n\nAnd more.\n"
    described = []
    for doc in (as_written, as_compiled):

        @attrs.frozen
        class Thing:
            x: int = 1

        cls = Thing
        cls.__doc__ = doc
        assert describe(cls) == "Options of a thing. ``x`` does\n    one thing.\n\n    And more."
        described.append(params_schema(cls)["$defs"]["Thing"]["description"])
    assert described[0] == described[1] == describe(cls)


def test_what_msgspec_says_of_descriptions_and_defaults_is_not_what_is_published(
    monkeypatch, registry
):
    """A msgspec release that formats descriptions or shows factory defaults differently (0.23
    did both) changes nothing: the schema's bytes are this project's."""
    before = dumps_schema(flow_schema(registry))
    real = msgspec.json.schema_components

    def other_release(types, **options):
        schemas, components = real(types, **options)
        for component in components.values():
            if "description" in component:
                component["description"] = "  " + component["description"].upper()
            for prop in component.get("properties", {}).values():
                prop.setdefault("default", [])
        return schemas, components

    monkeypatch.setattr(msgspec.json, "schema_components", other_release)
    assert dumps_schema(flow_schema(registry)) == before


def test_dumps_schema_is_the_one_stable_text_form(schema, registry):
    text = dumps_schema(schema)
    assert text.endswith("}\n")
    assert text == dumps_schema(flow_schema(registry))
    assert text == json.dumps(json.loads(text), indent=2, sort_keys=True, ensure_ascii=False) + "\n"


def test_the_loader_schema_includes_types_registered_on_the_loader(registry):
    loader = FlowLoader(registry)

    @attrs.frozen
    class LocalParams:
        size: Annotated[int, msgspec.Meta(le=3)]

    class Local(Node):
        Params = LocalParams

    loader.register("local", Local)
    report = loader.validate(
        {"version": V, "nodes": [{"type": "local", "id": "l", "params": {"size": 4}}]}
    )
    assert report.errors == ["$.nodes[0].params.size: 4 is greater than the maximum of 3"]


@pytest.mark.parametrize("type_name", ["acme/chat", "acme~chat", "acme chat", "acme%20chat"])
def test_node_type_names_with_uri_and_pointer_characters_work(type_name):
    class Named:
        __name__ = "named_nodes"

        @hookimpl
        def backpackflow_register_node_types(self, register):
            register(type_name, ChatNode)

    registry = build_registry(plugins=[Named()], autoload=False)
    schema = flow_schema(registry)
    Draft202012Validator.check_schema(schema)
    good = {"version": V, "nodes": [{"type": type_name, "id": "c", "params": {"model": "m"}}]}
    assert validate_flow_document(good, registry) == []
    bad = {"version": V, "nodes": [{"type": type_name, "id": "c", "params": {"model": 1}}]}
    assert validate_flow_document(bad, registry) == [
        "$.nodes[0].params.model: 1 is not of type 'string'"
    ]
    FlowLoader(registry).load_flow(good)


# ------------------------------------------------------------------ validation piece by piece
# Flow documents are validated piece by piece (the top level, then each node against its own
# type's branch, each edge), in time linear in the document: the problems found, their
# messages, their JSON paths and their order are those of validating the whole document at once.


@pytest.fixture(scope="module")
def full_schema() -> dict[str, Any]:
    # the first-party plugins (many node types, dependency factories, sinks) and the test's
    return flow_schema(build_registry(plugins=[Plugin()]))


def whole(document: Any, schema: dict[str, Any]) -> list[str]:
    """What validating the whole document at once finds."""
    return [format_error(e) for e in sorted_errors(Draft202012Validator(schema), document)]


GOOD: dict[str, Any] = {
    "version": V,
    "namespace": "sales",
    "nodes": [
        {"type": "chat", "id": "c", "params": {"model": "m", "endpoint": {"host": "h"}}},
        {"type": "webhook", "id": "w", "params": {"endpoint": {"host": "h"}}},
        {
            "type": "flow",
            "id": "sub",
            "params": {"nodes": [{"type": "free", "id": "f", "params": {"any": 1}}]},
        },
    ],
    "edges": [{"from": "c", "to": "w"}, {"from": "w", "to": "sub", "condition": "done"}],
    "dependencies": {"cache": "memory"},
    "limits": {"max_steps": 10},
}


def _node(index: int, **changes: Any) -> Callable[[dict[str, Any]], None]:
    return lambda d: d["nodes"][index].update(changes)


MUTATIONS: dict[str, Callable[[dict[str, Any]], None]] = {
    "a params range": _node(0, params={"model": "m", "temperature": 5}),
    "a nested params object": _node(0, params={"model": 1, "endpoint": {"host": "", "port": 0}}),
    "an optional value of the wrong type": _node(0, params={"model": "m", "max_tokens": "x"}),
    "several problems at one node": _node(1, colour=1, id="has space", params={}),
    "an unknown type": _node(0, type="nope"),
    "a type that is no string": _node(0, type=7),
    "no type": lambda d: d["nodes"][0].pop("type"),
    "no id": lambda d: d["nodes"][1].pop("id"),
    "a node that is no object": lambda d: d["nodes"].append("n"),
    "a node that is a list": lambda d: d["nodes"].append([{"type": "chat"}]),
    "a nested flow without params": lambda d: d["nodes"][2].pop("params"),
    "a bad node in a nested flow": lambda d: d["nodes"][2]["params"]["nodes"].append(
        {"type": "chat", "id": "x", "params": {"model": 2}}
    ),
    "bad retry settings": _node(0, retry={"max_retries": 0, "wait": -1, "extra": True}),
    "an edge without its target": lambda d: d["edges"].append({"from": "c"}),
    "an edge that is no object": lambda d: d["edges"].append(3),
    "an edge's extra key": lambda d: d["edges"][0].update(label="x"),
    "nodes that are no list": lambda d: d.update(nodes={"c": {}}),
    "no nodes": lambda d: d.update(nodes=[]),
    "edges that are no list": lambda d: d.update(edges="c->w"),
    "the top level": lambda d: d.update(extra=True, version="1", namespace="a..b"),
    "a dependency of neither form": lambda d: d.update(dependencies={"x": 3, "y": {"config": 1}}),
    "limits": lambda d: d.update(limits={"max_steps": 0, "max_cost": "1,5"}),
    # items alike but for their identity are validated once: each still gets its own problems
    "alike nodes, one with a bad id": lambda d: d["nodes"].extend(
        {"type": "free", "id": i} for i in ("a", "b c", "d", "", "e")
    ),
    "alike nodes, some with bad names or inputs": lambda d: d["nodes"].extend(
        {"type": "free", "id": f"n{i}", **extra}
        for i, extra in enumerate(
            [
                {"name": "A", "inputs": {"x": "{{ a }}"}},
                {"name": "B", "inputs": {"x": "{{ b }}", "y": 1}},
                {"name": 5, "inputs": {}},
                {"name": "C", "inputs": ["x"]},
                {"inputs": "x"},
                {"name": None},
            ]
        )
    ),
    "alike nodes of a bad shape": lambda d: d["nodes"].extend(
        {"type": "chat", "id": i, "params": {"model": 1}} for i in ("a", "b", "c d")
    ),
    "alike edges, some with bad ends": lambda d: d["edges"].extend(
        [{"from": "a", "to": "b"}, {"from": 1, "to": "b"}, {"from": "a"}, {"from": "a", "to": []}]
    ),
    "alike edges of a bad shape": lambda d: d["edges"].extend(
        {"from": "a", "to": t, "condition": ""} for t in ("b", "c")
    ),
    "everything at once": lambda d: (
        d["nodes"][0].update(params={"model": 1}, colour=2),
        d["nodes"].append({"type": 1}),
        d["edges"].append({}),
        d.update(extra=1, limits={"max_steps": 0}),
    ),
}


@pytest.mark.parametrize("name", list(MUTATIONS))
def test_problems_are_those_of_the_whole_document(name: str, full_schema: dict[str, Any]) -> None:
    document = copy.deepcopy(GOOD)
    MUTATIONS[name](document)
    expected = whole(document, full_schema)
    assert expected, "each mutation breaks the document"
    assert validate_flow_document(copy.deepcopy(document), schema=full_schema) == expected


def test_a_good_document_has_no_problems(full_schema: dict[str, Any]) -> None:
    assert whole(GOOD, full_schema) == []
    assert validate_flow_document(GOOD, schema=full_schema) == []


@pytest.mark.parametrize("document", [None, [], "flow", 3])
def test_a_document_that_is_no_object(document: Any, full_schema: dict[str, Any]) -> None:
    assert validate_flow_document(document, schema=full_schema) == whole(document, full_schema)


def test_a_schema_of_another_shape_is_validated_whole(full_schema: dict[str, Any]) -> None:
    # a top-level keyword that could reach into the nodes: no splitting
    other = {**full_schema, "allOf": [{"properties": {"nodes": {"maxItems": 1}}}]}
    document = copy.deepcopy(GOOD)
    document["nodes"][0]["params"]["temperature"] = 5
    found = validate_flow_document(document, schema=other)
    assert found == whole(document, other)
    assert "$.nodes: [" in " ".join(found)  # the extra keyword was applied


def test_the_validators_are_compiled_once_per_schema_object(full_schema: dict[str, Any]) -> None:
    from backpackflow.loader.schema import _document_validator

    assert _document_validator(full_schema)._split  # the composed schema is validated in pieces
    assert _document_validator(full_schema) is _document_validator(full_schema)
    same_text = json.loads(json.dumps(full_schema))
    assert _document_validator(same_text) is not _document_validator(full_schema)
