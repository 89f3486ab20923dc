"""Data contracts (issue 15): a node type declares the Backpack keys it reads and writes, each
with a JSON Schema generated from a Python type (or written as one), as class attributes or in
its registration; ``backpackflow plugins --json`` and the composed flow schema show them."""

from __future__ import annotations

import json
from typing import Any, TypedDict

import pytest

from backpackflow import Node, PluginError, hookimpl
from backpackflow.cli import main
from backpackflow.config import resolve_key
from backpackflow.loader import FlowLoader
from backpackflow.plugins import build_registry


class Answer(TypedDict):
    text: str
    score: float


class AnswerNode(Node):
    """Answers the question under ``params.source``."""

    reads = {"{source}": str}
    writes = {"answer": Answer}


class Plugin:
    @hookimpl
    def backpackflow_register_node_types(self, register: Any) -> None:
        register("answer", AnswerNode)
        register("plain", Node, reads={"x": {"type": "integer"}}, writes={"{out|id}": int})


def test_contracts_become_json_schemas_from_class_or_registration() -> None:
    registry = build_registry(plugins=[Plugin()], autoload=False)
    answer = registry.node_type("answer")
    assert answer.reads == {"{source}": {"type": "string"}}
    writes = answer.writes["answer"]
    assert writes["$defs"]["Answer"]["properties"] == {
        "score": {"type": "number"},
        "text": {"type": "string"},
    }
    plain = registry.node_type("plain")
    assert (plain.reads, plain.writes) == (
        {"x": {"type": "integer"}},
        {"{out|id}": {"type": "integer"}},
    )


def test_a_contract_that_is_no_schema_fails_naming_the_plugin() -> None:
    class Bad:
        @hookimpl
        def backpackflow_register_node_types(self, register: Any) -> None:
            register("bad", Node, reads={"x": {"type": "strin"}})

    registry = build_registry(plugins=[Bad()], autoload=False)
    assert "bad" not in registry.node_types
    assert any("data contract" in e and "reads['x']" in e for e in registry.errors)
    with pytest.raises(PluginError, match="data contract"):
        FlowLoader(registry).register("worse", Node, writes={"y": object()})


def test_keys_name_params() -> None:
    assert resolve_key("{source}", {"source": "ticket"}, "n") == "ticket"
    assert resolve_key("{out|id}", {"out": None}, "n") == "n"
    assert resolve_key("{target}", {}, "n") is None
    assert resolve_key("fixed", {}, "n") == "fixed"


def test_plugins_json_and_the_schema_show_them(capsys: pytest.CaptureFixture[str]) -> None:
    registry = build_registry(plugins=[Plugin()], autoload=False)
    assert main(["plugins", "--json"], registry=registry) == 0
    shown = json.loads(capsys.readouterr().out)["node_types"]
    assert shown["answer"]["reads"] == {"{source}": {"type": "string"}}
    assert shown["plain"]["writes"] == {"{out|id}": {"type": "integer"}}
    branches = FlowLoader(registry)._schema()["$defs"]["node"]["allOf"]
    [branch] = [b for b in branches if b["if"]["properties"]["type"]["const"] == "plain"]
    assert branch["then"]["x-backpackflow-reads"] == {"x": {"type": "integer"}}
