"""The params classes as JSON Schema: ``backpackflow schema export`` includes them with their
constraints, the exported schema checks flow files on its own (as ``check-jsonschema`` would in
CI), and the loader rejects bad params with JSON-path errors."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from backpackflow import ConfigError
from backpackflow.loader import FlowLoader
from jsonschema import Draft202012Validator

from helpers import FLOWS, cli


@pytest.fixture(scope="module")
def exported() -> dict[str, Any]:
    result = cli("schema", "export")
    assert result.returncode == 0, result.stderr
    schema: dict[str, Any] = json.loads(result.stdout)
    return schema


def params_of(schema: dict[str, Any], node_type: str, cls: str) -> dict[str, Any]:
    definition: dict[str, Any] = schema["$defs"][f"{node_type}.{cls}"]
    return definition


def test_the_node_types_are_in_the_schema(exported: dict[str, Any]) -> None:
    types = exported["$defs"]["node"]["properties"]["type"]["enum"]
    assert {"text_stats", "keyword_router", "extract_keywords"} <= set(types)
    branches = {
        b["if"]["properties"]["type"]["const"]: b["then"]["properties"]["params"]
        for b in exported["$defs"]["node"]["allOf"]
    }
    assert branches["text_stats"] == {"$ref": "#/$defs/text_stats.TextStatsParams"}


def test_text_stats_params_schema(exported: dict[str, Any]) -> None:
    params = params_of(exported, "text_stats", "TextStatsParams")
    assert params["required"] == ["source"]
    assert params["additionalProperties"] is False
    wpm = params["properties"]["words_per_minute"]
    assert (wpm["type"], wpm["minimum"], wpm["maximum"], wpm["default"]) == (
        "integer",
        50,
        1000,
        238,
    )
    assert "Reading speed" in wpm["description"]
    source = params["properties"]["source"]
    assert (source["type"], source["minLength"]) == ("string", 1)
    assert source["description"].startswith("Backpack key of the text")
    min_words = params["properties"]["min_words"]
    assert min_words["default"] is None
    accepts = Draft202012Validator(min_words).is_valid
    assert (accepts(None), accepts(1), accepts(0), accepts("1")) == (True, True, False, False)


def test_keyword_router_params_schema(exported: dict[str, Any]) -> None:
    params = params_of(exported, "keyword_router", "KeywordRouterParams")
    assert sorted(params["required"]) == ["routes", "source"]
    props = params["properties"]
    assert props["strategy"]["enum"] == ["first", "most_hits"]
    assert props["strategy"]["default"] == "most_hits"
    assert props["match"]["enum"] == ["substring", "word"]  # msgspec sorts enums
    assert props["min_hits"]["minimum"] == 1
    assert props["routes"] == {
        "type": "array",
        "items": {"$ref": "#/$defs/keyword_router.Route"},
        "minItems": 1,
        "description": "Candidate routes, in priority order.",
    }
    route = params_of(exported, "keyword_router", "Route")
    assert route["additionalProperties"] is False  # nested params classes are closed too
    assert route["properties"]["keywords"]["minItems"] == 1
    assert route["properties"]["name"]["pattern"] == "^[A-Za-z0-9_.:-]+$"


def test_extract_keywords_params_schema(exported: dict[str, Any]) -> None:
    props = params_of(exported, "extract_keywords", "ExtractKeywordsParams")["properties"]
    assert (props["top_k"]["minimum"], props["top_k"]["maximum"]) == (1, 100)
    assert props["target"]["default"] == "keywords"
    assert props["include_numbers"]["type"] == "boolean"


def test_schema_export_to_a_file(tmp_path: Path, exported: dict[str, Any]) -> None:
    out = tmp_path / "flow.schema.json"
    result = cli("schema", "export", "--output", str(out))
    assert result.returncode == 0, result.stderr
    assert json.loads(out.read_text(encoding="utf-8")) == exported


def test_the_exported_schema_alone_checks_flow_files(exported: dict[str, Any]) -> None:
    validator = Draft202012Validator(exported)
    good = json.loads((FLOWS / "triage.json").read_text(encoding="utf-8"))
    assert list(validator.iter_errors(good)) == []
    bad = json.loads((FLOWS / "bad_params.json").read_text(encoding="utf-8"))
    errors = list(validator.iter_errors(bad))
    assert errors
    # the type-specific branch reports inside the node's params
    leaves = [e for error in errors for e in (error.context or [error])]
    assert any(list(e.absolute_path) == ["nodes", 0, "params", "words_per_minute"] for e in leaves)


@pytest.mark.parametrize(
    ("node", "expected"),
    [
        (
            {"type": "text_stats", "id": "s", "params": {"source": "t", "words_per_minute": 5}},
            "$.nodes[0].params.words_per_minute: 5 is less than the minimum of 50",
        ),
        (
            {"type": "text_stats", "id": "s", "params": {"source": ""}},
            "$.nodes[0].params.source: '' should be non-empty",
        ),
        (
            {"type": "text_stats", "id": "s", "params": {"source": "t", "colour": "red"}},
            "$.nodes[0].params: Additional properties are not allowed ('colour' was unexpected)",
        ),
        (
            {"type": "text_stats", "id": "s", "params": {}},
            "$.nodes[0].params: 'source' is a required property",
        ),
        (
            {
                "type": "keyword_router",
                "id": "r",
                "params": {
                    "source": "t",
                    "routes": [{"name": "a", "keywords": ["x"]}],
                    "strategy": "random",
                },
            },
            "$.nodes[0].params.strategy: 'random' is not one of ['first', 'most_hits']",
        ),
        (
            {"type": "keyword_router", "id": "r", "params": {"source": "t", "routes": []}},
            "$.nodes[0].params.routes: [] should be non-empty",
        ),
        (
            {
                "type": "keyword_router",
                "id": "r",
                "params": {
                    "source": "t",
                    "routes": [{"name": "a", "keywords": ["x"], "weight": 2}],
                },
            },
            "$.nodes[0].params.routes[0]: Additional properties are not allowed ('weight' was "
            "unexpected)",
        ),
        (
            {
                "type": "keyword_router",
                "id": "r",
                "params": {"source": "t", "routes": [{"name": "has space", "keywords": ["x"]}]},
            },
            "$.nodes[0].params.routes[0].name: 'has space' does not match '^[A-Za-z0-9_.:-]+$'",
        ),
        (
            {"type": "extract_keywords", "id": "k", "params": {"source": "t", "top_k": 0}},
            "$.nodes[0].params.top_k: 0 is less than the minimum of 1",
        ),
        (
            {"type": "extract_keywords", "id": "k", "params": {"source": "t", "top_k": "5"}},
            "$.nodes[0].params.top_k: '5' is not of type 'integer'",
        ),
    ],
)
def test_invalid_params_are_rejected_with_json_paths(
    loader: FlowLoader, node: dict[str, Any], expected: str
) -> None:
    config = {"version": "2.0.0", "nodes": [node], "dependencies": {"stopwords": "stopwords"}}
    with pytest.raises(ConfigError) as caught:
        loader.load_flow(config)
    assert caught.value.problems == [expected]
    assert loader.validate(config).errors == [expected]


def test_a_check_beyond_the_schema_is_reported_at_the_params(loader: FlowLoader) -> None:
    routes = [{"name": "a", "keywords": ["x"]}, {"name": "a", "keywords": ["y"]}]
    node = {"type": "keyword_router", "id": "r", "params": {"source": "t", "routes": routes}}
    report = loader.validate({"version": "2.0.0", "nodes": [node]})
    assert report.errors == [
        "$.nodes[0].params: routes: each route name must be unique, repeated: ['a']"
    ]


@pytest.mark.parametrize(
    ("params", "expected"),
    [
        ({"min_words": 0}, "$.nodes[0].params.min_words: 0 is less than the minimum of 1"),
        ({"target": "a*"}, "$.nodes[0].params.target: 'a*' does not match"),
    ],
)
def test_an_optional_field_reports_its_own_problem_not_null(
    loader: FlowLoader, params: dict[str, Any], expected: str
) -> None:
    node = {"type": "text_stats", "id": "s", "params": {"source": "t", **params}}
    (error,) = loader.validate({"version": "2.0.0", "nodes": [node]}).errors
    assert error.startswith(expected)


@pytest.mark.parametrize("key", [" padded", "padded ", "a*b"])
def test_keys_follow_the_backpack_rules(loader: FlowLoader, key: str) -> None:
    node = {"type": "text_stats", "id": "s", "params": {"source": key}}
    (error,) = loader.validate({"version": "2.0.0", "nodes": [node]}).errors
    assert error.startswith(f"$.nodes[0].params.source: {key!r} does not match")
