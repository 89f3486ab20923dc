"""The attrs config model and its one cattrs converter (PRD-003, DESIGN §3.4): unknown keys
rejected, strict scalar types, ``from`` renamed, every problem reported with its JSON path, and
node params structured into (and unstructured from) the attrs params classes of node types."""

from __future__ import annotations

import enum
from typing import Annotated, Literal

import attrs
import msgspec
import pytest

from backpackflow import ConfigError, Node, NodeDefinitionError
from backpackflow.config import (
    CURRENT_VERSION,
    DependencyConfig,
    EdgeConfig,
    FlowConfig,
    LimitsConfig,
    NodeConfig,
    RetryConfig,
    structure,
    structure_params,
    unstructure,
    unstructure_params,
)

V = CURRENT_VERSION


def problems_of(exc_info: pytest.ExceptionInfo[ConfigError]) -> list[str]:
    return list(exc_info.value.problems)


# ------------------------------------------------------------------------------- flow documents


FULL = {
    "version": V,
    "name": "research",
    "description": "fetch, decide, summarize",
    "namespace": "sales.research",
    "entry": "fetch",
    "parallel": True,
    "allow_cycles": True,
    "nodes": [
        {
            "type": "tool",
            "id": "fetch",
            "name": "Fetch",
            "namespace": "web",
            "params": {"url": "https://example.com"},
            "inputs": {"query": "{{ inputs.q }}"},
            "dependencies": ["http"],
            "retry": {"max_retries": 3, "wait": 0.5, "backoff": 2.0, "max_wait": 4.0},
        },
        {"type": "llm", "id": "summarize"},
    ],
    "edges": [
        {"from": "fetch", "to": "summarize", "condition": "ok", "when": "size(text) > 0"},
        {"from": "summarize", "to": "fetch", "when": {"==": [{"var": "again"}, True]}},
    ],
    "dependencies": {
        "llm": {"type": "offline", "config": {"seed": 1}},
        "events": "EventStreamer",
    },
    "limits": {"max_steps": 50, "timeout": 120, "max_tokens": 1000, "max_cost": "0.50"},
    "inputs": {"q": {"description": "the question", "default": "why?", "required": True}},
    "sinks": [{"type": "file", "options": {"path": "run.jsonl"}}],
}


def test_a_full_document_structures_into_the_attrs_model():
    config = structure(FULL, FlowConfig)
    assert isinstance(config, FlowConfig)
    assert config.entry == "fetch" and config.parallel and config.allow_cycles
    fetch = config.nodes[0]
    assert isinstance(fetch, NodeConfig)
    assert fetch.params == {"url": "https://example.com"}  # params stay JSON in the model
    assert fetch.retry == RetryConfig(max_retries=3, wait=0.5, backoff=2.0, max_wait=4.0)
    edge = config.edges[0]
    assert isinstance(edge, EdgeConfig)
    assert (edge.from_, edge.to, edge.condition) == ("fetch", "summarize", "ok")
    assert config.edges[1].when == {"==": [{"var": "again"}, True]}
    assert config.edges[1].condition == "default"
    assert config.dependencies["llm"] == DependencyConfig(type="offline", config={"seed": 1})
    # PRD-003's short form "name": "factory"
    assert config.dependencies["events"] == DependencyConfig(type="EventStreamer")
    assert config.limits == LimitsConfig(
        max_steps=50, timeout=120.0, max_tokens=1000, max_cost="0.50"
    )
    assert isinstance(config.limits.timeout, float)  # an integer is fine where a number is
    assert config.inputs["q"].required is True
    assert config.sinks[0].options == {"path": "run.jsonl"}


def test_unstructure_renames_from_and_omits_defaults():
    config = structure(
        {
            "version": V,
            "nodes": [{"type": "t", "id": "a"}, {"type": "t", "id": "b"}],
            "edges": [{"from": "a", "to": "b"}],
        },
        FlowConfig,
    )
    assert unstructure(config) == {
        "version": V,
        "nodes": [{"type": "t", "id": "a"}, {"type": "t", "id": "b"}],
        "edges": [{"from": "a", "to": "b"}],
    }


def test_structure_and_unstructure_round_trip_a_full_document():
    config = structure(FULL, FlowConfig)
    again = structure(unstructure(config), FlowConfig)
    assert again == config
    document = unstructure(config)
    assert document["edges"][0]["from"] == "fetch"
    assert "from_" not in document["edges"][0]


@pytest.mark.parametrize(
    ("document", "expected"),
    [
        ({"version": V, "nodes": [], "bogus": 1}, "$: unknown field(s) ['bogus']"),
        (
            {"version": V, "nodes": [{"type": "t", "id": "a", "param": {}}]},
            "$.nodes[0]: unknown field(s) ['param']",
        ),
        (
            {"version": V, "nodes": [], "edges": [{"from": "a", "to": "b", "label": "x"}]},
            "$.edges[0]: unknown field(s) ['label']",
        ),
        (
            {"version": V, "nodes": [], "limits": {"max_step": 3}},
            "$.limits: unknown field(s) ['max_step']",
        ),
        (
            {"version": V, "nodes": [{"type": "t", "id": "a", "retry": {"retries": 3}}]},
            "$.nodes[0].retry: unknown field(s) ['retries']",
        ),
        (
            {"version": V, "nodes": [], "dependencies": {"llm": {"type": "x", "options": {}}}},
            "$.dependencies.llm: unknown field(s) ['options']",
        ),
    ],
)
def test_unknown_keys_are_rejected_with_their_json_path(document, expected):
    with pytest.raises(ConfigError) as info:
        structure(document, FlowConfig)
    assert problems_of(info) == [expected]
    assert expected in str(info.value)


def test_an_edge_spelled_with_the_python_name_from_underscore_is_rejected():
    with pytest.raises(ConfigError) as info:
        structure({"from_": "a", "to": "b"}, EdgeConfig)
    assert any("from" in p for p in problems_of(info))


@pytest.mark.parametrize(
    ("document", "path"),
    [
        ({"nodes": []}, "$.version"),
        ({"version": V}, "$.nodes"),
        ({"version": V, "nodes": [{"id": "a"}]}, "$.nodes[0].type"),
        ({"version": V, "nodes": [{"type": "t"}]}, "$.nodes[0].id"),
        ({"version": V, "nodes": [], "edges": [{"from": "a"}]}, "$.edges[0].to"),
        ({"version": V, "nodes": [], "dependencies": {"x": {"config": {}}}}, "$.dependencies.x"),
    ],
)
def test_missing_required_fields_are_named(document, path):
    with pytest.raises(ConfigError) as info:
        structure(document, FlowConfig)
    assert any(p.startswith(path) and "required field missing" in p for p in problems_of(info))


@pytest.mark.parametrize(
    ("document", "path"),
    [
        ({"version": 2, "nodes": []}, "$.version"),
        ({"version": V, "nodes": [{"type": "t", "id": 3}]}, "$.nodes[0].id"),
        ({"version": V, "nodes": [], "limits": {"max_steps": "10"}}, "$.limits.max_steps"),
        ({"version": V, "nodes": [], "limits": {"max_steps": 2.5}}, "$.limits.max_steps"),
        ({"version": V, "nodes": [], "parallel": "yes"}, "$.parallel"),
        ({"version": V, "nodes": [], "parallel": 1}, "$.parallel"),
        ({"version": V, "nodes": [], "limits": {"timeout": "5"}}, "$.limits.timeout"),
        ({"version": V, "nodes": [{"type": "t", "id": "a", "dependencies": "x"}]}, "$.nodes[0]"),
        ({"version": V, "nodes": {}}, "$.nodes"),
    ],
)
def test_scalars_are_strict_no_silent_conversion(document, path):
    with pytest.raises(ConfigError) as info:
        structure(document, FlowConfig)
    assert any(p.startswith(path) for p in problems_of(info)), problems_of(info)


@pytest.mark.parametrize("when", [[1, 2], 3, True, 1.5])
def test_when_is_a_string_or_a_json_logic_object(when):
    with pytest.raises(ConfigError) as info:
        structure({"from": "a", "to": "b", "when": when}, EdgeConfig)
    assert problems_of(info)[0].startswith("$.when: a condition is an expression string")


@pytest.mark.parametrize("when", ["x == 1", {"var": "x"}, None])
def test_valid_when_values_are_kept_as_written(when):
    assert structure({"from": "a", "to": "b", "when": when}, EdgeConfig).when == when


def test_every_problem_is_reported_not_only_the_first():
    with pytest.raises(ConfigError) as info:
        structure(
            {
                "version": V,
                "nodes": [{"type": "t", "id": 1}, {"type": 2, "id": "b", "extra": 0}],
                "limits": {"max_steps": "x"},
            },
            FlowConfig,
        )
    found = problems_of(info)
    assert len(found) >= 4, found
    joined = "\n".join(found)
    for path in ("$.nodes[0].id", "$.nodes[1].type", "$.nodes[1]", "$.limits.max_steps"):
        assert path in joined


def test_a_prefix_path_and_where_label_are_applied():
    with pytest.raises(ConfigError) as info:
        structure({"type": "t"}, NodeConfig, path="$.nodes[4]", where="flow.json")
    assert problems_of(info) == ["$.nodes[4].id: required field missing"]
    assert str(info.value).startswith("flow.json: $.nodes[4].id")


def test_config_errors_are_project_errors_and_value_errors():
    with pytest.raises(ConfigError) as info:
        structure({}, FlowConfig)
    from backpackflow import BackpackFlowError

    assert isinstance(info.value, BackpackFlowError)
    assert isinstance(info.value, ValueError)


# ------------------------------------------------------------------------------- params


class Colour(enum.Enum):
    RED = "red"
    BLUE = "blue"


class Level(enum.IntEnum):
    LOW = 1
    HIGH = 2


class Mode(str, enum.Enum):
    FAST = "fast"
    DEEP = "deep"


@attrs.frozen
class Inner:
    name: Annotated[str, msgspec.Meta(min_length=1, max_length=8)]
    weight: Annotated[int, msgspec.Meta(ge=0)] = 0


@attrs.frozen
class Params:
    model: str
    temperature: Annotated[float, msgspec.Meta(ge=0, le=2)] = 0.7
    top_k: Annotated[int, msgspec.Meta(ge=1, le=10)] | None = None
    colour: Colour = Colour.RED
    level: Level = Level.LOW
    mode: Mode = Mode.FAST
    style: Literal["short", "long"] = "short"
    tags: list[Annotated[str, msgspec.Meta(pattern="^[a-z]+$")]] = attrs.field(factory=list)
    inner: Inner | None = None
    inners: list[Inner] = attrs.field(factory=list)
    weights: dict[str, float] = attrs.field(factory=dict)


def test_params_structure_into_the_params_class_with_nested_classes_and_enums():
    params = structure_params(
        Params,
        {
            "model": "m",
            "temperature": 1,
            "colour": "blue",
            "style": "long",
            "tags": ["ab"],
            "inner": {"name": "x"},
            "inners": [{"name": "y", "weight": 3}],
            "weights": {"a": 1},
        },
        where="node 'a'",
    )
    assert params.temperature == 1.0 and isinstance(params.temperature, float)
    assert params.colour is Colour.BLUE
    assert params.inner == Inner(name="x")
    assert params.inners == [Inner(name="y", weight=3)]
    assert params.weights == {"a": 1.0}


def test_int_enum_params_structure_to_enum_members():
    params = structure_params(Params, {"model": "m", "level": 2}, where="node 'a'")
    assert params.level is Level.HIGH
    assert type(unstructure_params(params)["level"]) is int


def test_str_mixin_enum_params_structure_to_enum_members():
    params = structure_params(Params, {"model": "m", "mode": "deep"}, where="node 'a'")
    assert params.mode is Mode.DEEP
    exported = unstructure_params(params)["mode"]
    assert exported == "deep" and type(exported) is str  # JSON data, not the enum member


def test_params_unstructure_with_every_field_defaults_included():
    data = unstructure_params(Params(model="m", inner=Inner(name="n")))
    assert data == {
        "model": "m",
        "temperature": 0.7,
        "top_k": None,
        "colour": "red",
        "level": 1,
        "mode": "fast",
        "style": "short",
        "tags": [],
        "inner": {"name": "n", "weight": 0},
        "inners": [],
        "weights": {},
    }
    assert structure_params(Params, data, where="x") == Params(model="m", inner=Inner(name="n"))


@pytest.mark.parametrize(
    ("params", "expected"),
    [
        ({"model": "m", "temperature": 5}, "$.temperature: 5 is greater than the maximum of 2"),
        ({"model": "m", "temperature": -1}, "$.temperature: -1 is less than the minimum of 0"),
        ({}, "$: 'model' is a required property"),
        ({"model": "m", "colour": "green"}, "$.colour: 'green' is not one of"),
        ({"model": "m", "style": "medium"}, "$.style: 'medium' is not one of"),
        ({"model": "m", "tags": ["ok", "NO"]}, "$.tags[1]: 'NO' does not match"),
        ({"model": "m", "inners": [{"weight": 1}]}, "$.inners[0]: 'name' is a required property"),
        ({"model": "m", "temperature": "hot"}, "$.temperature: 'hot' is not of type 'number'"),
        ({"model": "m", "bogus": 1}, "Additional properties are not allowed ('bogus'"),
        ({"model": "m", "inners": [{"name": "a", "x": 1}]}, "$.inners[0]: Additional properties"),
    ],
)
def test_invalid_params_fail_with_json_paths(params, expected):
    with pytest.raises(ConfigError) as info:
        structure_params(Params, params, where="node 'chat'")
    assert any(p.startswith(expected) or expected in p for p in problems_of(info)), problems_of(
        info
    )
    assert str(info.value).startswith("node 'chat': ")


@pytest.mark.parametrize(
    ("params", "expected"),
    [
        ({"model": "m", "top_k": 0}, "$.top_k: 0 is less than the minimum of 1"),
        ({"model": "m", "top_k": 11}, "$.top_k: 11 is greater than the maximum of 10"),
        ({"model": "m", "inner": {"name": ""}}, "$.inner.name: '' should be non-empty"),
        ({"model": "m", "inner": {"name": "x", "zz": 1}}, "$.inner: Additional properties"),
    ],
)
def test_errors_inside_optional_fields_name_the_real_problem(params, expected):
    # an optional field is anyOf [X, null]: the error must be X's, not "is not of type 'null'"
    with pytest.raises(ConfigError) as info:
        structure_params(Params, params, where="node 'chat'")
    assert problems_of(info)[0].startswith(expected), problems_of(info)


def test_a_wrong_type_in_an_optional_field_names_the_expected_type():
    with pytest.raises(ConfigError) as info:
        structure_params(Params, {"model": "m", "top_k": "three"}, where="n")
    assert problems_of(info)[0].startswith("$.top_k: 'three' is not of type 'integer'")


def test_params_paths_are_prefixed_with_the_node_path():
    with pytest.raises(ConfigError) as info:
        structure_params(
            Params, {"model": "m", "temperature": 5}, where="node 'c'", path="$.nodes[2].params"
        )
    assert problems_of(info) == [
        "$.nodes[2].params.temperature: 5 is greater than the maximum of 2"
    ]


def test_strict_types_in_params_after_schema_validation():
    # JSON Schema accepts 1.0 as an integer; the converter must not silently truncate
    with pytest.raises(ConfigError):
        structure_params(Params, {"model": "m", "top_k": 2.5}, where="n")
    with pytest.raises(ConfigError):
        structure_params(Params, {"model": 3}, where="n")
    with pytest.raises(ConfigError):
        structure_params(Params, {"model": "m", "temperature": True}, where="n")


class Chat(Node):
    Params = Params


def test_a_node_built_in_code_validates_params_given_as_a_mapping():
    node = Chat(id="c", params={"model": "m", "temperature": 1.5})
    assert node.params == Params(model="m", temperature=1.5)
    with pytest.raises(ConfigError) as info:
        Chat(id="c", params={"model": "m", "temperature": 5})
    assert "temperature: 5 is greater than the maximum of 2" in str(info.value)


def test_a_node_with_a_params_class_needs_the_required_params():
    with pytest.raises(NodeDefinitionError):
        Chat(id="c")
    with pytest.raises(NodeDefinitionError):
        Chat(id="c", params=["model"])
