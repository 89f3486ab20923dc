"""The llm node declares registered tools (their parameter classes' JSON Schemas) and a
tool_choice; the model's tool calls come back as data, with ``tool_call`` events; a JSON Schema
answer is validated."""

from __future__ import annotations

import pytest
from nodes_support import flow_doc, llm, run_flow

from backpackflow.errors import ConfigError
from backpackflow_nodes.llm import tool_spec
from backpackflow_nodes.tools import ReadFileArgs

QUESTION = "What do notes.md, sales.csv and costs.csv say?"


def test_declared_tools_reach_the_model_with_their_schemas_and_calls_come_back_as_data():
    doc = flow_doc(llm("ask", QUESTION, tools=["read_file", "csv_summary"], tool_choice="auto"))
    ran = run_flow(doc)
    assert ran.result.ok
    request = ran.one("llm_request", "ask")
    assert request["params"]["tools"] == ["read_file", "csv_summary"]
    assert request["params"]["tool_choice"] == "auto"
    # the offline model calls the first tool's files in one turn, as a model would
    output = ran.result.backpack.peek("ask")
    assert output == {
        "text": "",
        "tool_calls": [{"id": "call_1", "name": "read_file", "arguments": {"path": "notes.md"}}],
    }
    assert ran.of("tool_call", "ask") == [
        {"tool": "read_file", "arguments": {"path": "notes.md"}, "call_id": "call_1"}
    ]
    assert ran.one("llm_response", "ask")["finish_reason"] == "tool_calls"


def test_tool_choice_names_one_tool():
    doc = flow_doc(
        llm("ask", QUESTION, tools=["read_file", "csv_summary"], tool_choice="csv_summary")
    )
    output = run_flow(doc).result.backpack.peek("ask")
    # forced to that tool, the offline model gives it every file, in one turn
    paths = [c["arguments"]["path"] for c in output["tool_calls"]]
    assert paths == ["notes.md", "sales.csv", "costs.csv"]
    assert {c["name"] for c in output["tool_calls"]} == {"csv_summary"}


def test_a_tool_spec_is_the_inlined_json_schema_of_the_parameter_class():
    from nodes_support import installed_registry

    spec = tool_spec(installed_registry().tool("read_file"))
    assert spec.name == "read_file" and spec.description
    assert spec.parameters["type"] == "object"
    assert spec.parameters["required"] == ["path"]
    assert spec.parameters["properties"]["path"]["type"] == "string"
    assert spec.parameters["additionalProperties"] is False
    assert "$ref" not in spec.parameters and "$schema" not in spec.parameters
    assert ReadFileArgs.__name__ not in str(spec.parameters)


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"tools": ["nope"]}, "params.tools"),
        ({"tools": ["read_file"], "tool_choice": "csv_summary"}, "params.tool_choice"),
        ({"json_schema": {"type": "objet"}}, "params.json_schema is not a valid JSON Schema"),
    ],
)
def test_bad_tool_declarations_are_load_errors_naming_the_node(params, message):
    with pytest.raises(ConfigError, match=message) as info:
        run_flow(flow_doc(llm("ask", QUESTION, **params)))
    assert "node 'ask'" in str(info.value)


def test_a_json_schema_answer_is_validated_naming_the_path():
    schema = {
        "type": "object",
        "properties": {"summary": {"type": "integer"}},
        "required": ["summary"],
    }
    prompt = "Summarize in 1 sentence:\n\nThe harbor reopened on Monday after the storm."
    ran = run_flow(flow_doc(llm("ask", prompt, json_schema=schema)))
    assert not ran.result.ok
    assert "does not match params.json_schema at $.summary" in str(ran.result.error)
    assert ran.one("llm_request", "ask")["params"]["json_schema"] == schema

    schema["properties"]["summary"] = {"type": "string"}
    ran = run_flow(flow_doc(llm("ask", prompt, json_schema=schema)))
    assert ran.result.ok
    assert ran.result.backpack.peek("ask")["summary"].startswith("The harbor reopened")
