"""The agent node: the model <-> tools loop, offline, with exact events, tokens and costs."""

from __future__ import annotations

import json
import re
from decimal import Decimal
from importlib import resources

import pytest
from nodes_support import EXAMPLES, flow_doc, price, run_flow

from backpackflow.errors import ConfigError

AGENT = EXAMPLES / "agent" / "flow.json"
TOKEN = re.compile(r"\w+|[^\w\s]")  # the offline model's documented tokenizer


def offline_price() -> tuple[str, str]:
    data = json.loads(resources.files("backpackflow_llm").joinpath("pricing.json").read_text())
    (entry,) = data["providers"]["offline"]
    return entry["input"], entry["output"]


def agent(prompt: str, **params):
    return {
        "type": "agent",
        "id": "analyst",
        "params": {"prompt": prompt, "tools": ["read_file", "csv_summary"], **params},
    }


def test_the_example_agent_reads_the_files_turn_by_turn_and_answers():
    ran = run_flow(AGENT)
    assert ran.result.ok, ran.result.error
    types = [e["type"] for e in ran.events if e["node_id"] == "analyst"]
    loop = [
        t
        for t in types
        if t in ("llm_request", "llm_response", "tool_call", "tool_request", "tool_response")
    ]
    assert loop == [
        "llm_request", "llm_response", "tool_call", "tool_request", "tool_response",
        "llm_request", "llm_response", "tool_call", "tool_request", "tool_response",
        "llm_request", "llm_response",
    ]  # fmt: skip
    calls = ran.of("tool_call", "analyst")
    assert calls == [
        {"tool": "read_file", "arguments": {"path": "notes.md"}, "call_id": "call_1"},
        {"tool": "csv_summary", "arguments": {"path": "sales.csv"}, "call_id": "call_2"},
    ]
    responses = ran.of("tool_response", "analyst")
    assert [r["call_id"] for r in responses] == ["call_1", "call_2"]
    assert responses[0]["result"]["path"] == "notes.md" and responses[0]["error"] is None
    assert responses[1]["result"]["rows"] > 0

    # exact cost: every turn's tokens at the shipped offline prices, and the run's totals
    input_price, output_price = offline_price()
    llm = ran.of("llm_response", "analyst")
    for response in llm:
        usage = response["usage"]
        expected = price(usage["input_tokens"], input_price) + price(
            usage["output_tokens"], output_price
        )
        assert Decimal(response["cost"]) == expected
    totals = ran.events[-1]["payload"]["totals"]
    assert Decimal(totals["cost"]) == sum(Decimal(r["cost"]) for r in llm)
    assert totals["tokens_input"] == sum(r["usage"]["input_tokens"] for r in llm)
    # each turn sends the whole conversation so far: the prompt grows with the results
    sent = [len(r["messages"]) for r in ran.of("llm_request", "analyst")]
    assert sent == [2, 4, 6]  # system + user, + assistant and tool, twice

    answer = ran.result.backpack.peek("analyst")
    assert "North region opened two new stores" in answer
    conversation = ran.result.backpack.peek("analyst.conversation")
    assert [m["role"] for m in conversation] == [
        "user",
        "assistant",
        "tool",
        "assistant",
        "tool",
        "assistant",
    ]
    # kept with append: the conversation is one append commit holding only its messages
    (commit,) = [c for c in ran.result.backpack.get_history() if c.key == "analyst.conversation"]
    assert commit.op == "append"


def test_several_calls_of_one_turn_run_in_parallel_and_are_each_traced():
    ran = run_flow(flow_doc(agent("Compare a.csv and b.csv.")))
    # files are missing: each call's error goes back to the model, which then answers
    assert ran.result.ok, ran.result.error
    calls = ran.of("tool_call", "analyst")
    assert [(c["tool"], c["arguments"]["path"], c["call_id"]) for c in calls] == [
        ("csv_summary", "a.csv", "call_1"),
        ("csv_summary", "b.csv", "call_2"),
    ]
    responses = ran.of("tool_response", "analyst")
    assert sorted(r["call_id"] for r in responses) == ["call_1", "call_2"]
    assert all(r["result"] is None and r["error"] for r in responses)
    assert len(ran.of("llm_request", "analyst")) == 2  # one turn of calls, then the answer
    tool_messages = ran.of("llm_request", "analyst")[1]["messages"][-2:]
    assert [m["role"] for m in tool_messages] == ["tool", "tool"]
    assert json.loads(tool_messages[0]["content"])["error"]


def test_max_turns_is_a_guardrail():
    ran = run_flow(flow_doc(agent("Read a.md then b.csv then c.txt.", max_turns=2)))
    assert not ran.result.ok
    guardrail = ran.one("guardrail", "analyst")
    assert (guardrail["limit"], guardrail["maximum"]) == ("max_turns", 2)
    assert "did not answer within max_turns=2" in str(ran.result.error)


def test_the_run_budget_stops_the_agent_on_the_turn_that_crosses_it():
    ran = run_flow({**flow_doc(agent("Read a.md and b.csv.")), "limits": {"max_tokens": 60}})
    assert not ran.result.ok
    assert ran.one("guardrail")["limit"] == "max_tokens"
    # turn 1 stays under 60 tokens, turn 2 crosses them: its tool call is never run
    assert len(ran.of("llm_response", "analyst")) == 2
    assert len(ran.of("tool_call", "analyst")) == 2
    assert len(ran.of("tool_response", "analyst")) == 1


def test_an_agent_without_tools_is_a_load_error():
    with pytest.raises(ConfigError, match=r"an agent needs params\.tools"):
        run_flow(flow_doc(agent("hi", tools=[])))
