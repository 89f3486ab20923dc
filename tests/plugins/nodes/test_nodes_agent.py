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
    conversation_roles = ["user", "assistant", "tool", "assistant", "tool", "assistant"]
    assert [m["role"] for m in conversation] == conversation_roles
    # kept with append, one commit per turn holding only that turn's messages (the prompt
    # with the first), committed as each turn ends: between the turns' model calls
    backpack = ran.result.backpack
    commits = [c for c in backpack.get_history() if c.key == "analyst.conversation"]
    assert [c.op for c in commits] == ["append"] * 3
    roles = [
        [m["role"] for m in backpack.get_snapshot_at_commit(c.commit_id)["analyst.conversation"]]
        for c in commits
    ]
    assert roles == [conversation_roles[:3], conversation_roles[:5], conversation_roles]
    sequence = [
        e["type"]
        for e in ran.events
        if e["type"] == "llm_request" or e["payload"].get("key") == "analyst.conversation"
    ]
    assert sequence == [
        "llm_request", "backpack_pack", "llm_request", "backpack_pack", "llm_request",
        "backpack_pack",
    ]  # fmt: skip


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


@pytest.mark.parametrize(
    "limits",
    [{"max_tokens": 60}, {"max_cost": "0.00002"}],
    ids=["max_tokens", "max_cost"],
)
def test_the_run_budget_stops_the_agent_on_the_turn_that_crosses_it(limits):
    ran = run_flow({**flow_doc(agent("Read a.md and b.csv.")), "limits": limits})
    assert not ran.result.ok
    (limit,) = limits
    assert ran.one("guardrail")["limit"] == limit
    # turn 1 stays under the budget, turn 2 crosses it: its tool call is never run
    assert len(ran.of("llm_response", "analyst")) == 2
    assert len(ran.of("tool_call", "analyst")) == 2
    assert len(ran.of("tool_response", "analyst")) == 1
    # the turns made are kept, each its own commit: turn 1 with its tool result, then the
    # model's message of turn 2 that crossed the budget
    backpack = ran.result.backpack
    commits = [c for c in backpack.get_history() if c.key == "analyst.conversation"]
    assert len(commits) == 2
    conversation = backpack.peek("analyst.conversation")
    assert [m["role"] for m in conversation] == ["user", "assistant", "tool", "assistant"]
    assert conversation[-1]["tool_calls"][0]["arguments"] == {"path": "b.csv"}


def test_an_agent_without_tools_is_a_load_error():
    with pytest.raises(ConfigError, match=r"an agent needs params\.tools"):
        run_flow(flow_doc(agent("hi", tools=[])))


def _agent_step(ran) -> int:
    (start,) = [e for e in ran.events if e["type"] == "node_start" and e["node_id"] == "analyst"]
    return start["step"]


def test_each_tool_call_is_a_step_nested_in_the_agents_step():
    ran = run_flow(AGENT)
    assert ran.result.ok, ran.result.error
    agent_step = _agent_step(ran)
    tool_events = [e for e in ran.events if e["type"] in ("tool_request", "tool_response")]
    # each call: its own step number, parent_step the agent's, named after the tool
    by_step: dict[int, list[dict]] = {}
    for event in tool_events:
        assert event["parent_step"] == agent_step
        assert event["node_id"] == "analyst"
        by_step.setdefault(event["step"], []).append(event)
    assert len(by_step) == 2 and agent_step not in by_step
    for events in by_step.values():
        request, response = events
        assert (request["type"], response["type"]) == ("tool_request", "tool_response")
        assert request["node_name"] == response["node_name"] == request["payload"]["tool"]
        assert request["payload"]["call_id"] == response["payload"]["call_id"]
    # everything else the agent emits stays on its own step, with no parent_step
    for event in ran.events:
        if event["node_id"] == "analyst" and event["type"] not in ("tool_request", "tool_response"):
            assert event["step"] == agent_step and "parent_step" not in event
    # nested steps are trace structure, not node executions
    assert ran.events[-1]["payload"]["node_count"] == 1


def test_the_calls_of_one_turn_are_sibling_steps():
    ran = run_flow(flow_doc(agent("Compare a.csv and b.csv.")))
    agent_step = _agent_step(ran)
    requests = [e for e in ran.events if e["type"] == "tool_request"]
    responses = [e for e in ran.events if e["type"] == "tool_response"]
    assert len({e["step"] for e in requests}) == 2
    assert {e["parent_step"] for e in requests + responses} == {agent_step}
    # both calls started before either finished: they ran concurrently
    assert max(e["seq"] for e in requests) < min(e["seq"] for e in responses)
    assert {e["step"] for e in responses} == {e["step"] for e in requests}


def test_the_run_summary_lists_tool_calls_under_the_agent():
    from backpackflow.events import format_table, summarize

    ran = run_flow(AGENT)
    summary = summarize(ran.events)
    agent_step = _agent_step(ran)
    rows = [(s.step, s.node_type, s.node_name, s.parent_step, s.status) for s in summary.steps]
    assert [r[1:] for r in rows if r[3] is not None] == [
        ("tool", "read_file", agent_step, "succeeded"),
        ("tool", "csv_summary", agent_step, "succeeded"),
    ]
    # each nested step is listed right after the step it belongs to
    at = [r[0] for r in rows].index(agent_step)
    assert [r[3] for r in rows[at + 1 : at + 3]] == [agent_step, agent_step]
    assert all(s.latency_ms is not None and s.latency_ms >= 0 for s in summary.steps[at + 1 :][:2])
    table = format_table(summary)
    assert "└ read_file" in table and "└ csv_summary" in table
    # the totals count the model calls once: tool steps carry no tokens
    assert summary.tokens_input == ran.events[-1]["payload"]["totals"]["tokens_input"]


def test_a_failing_tool_call_is_a_failed_nested_step_not_a_failed_run():
    from backpackflow.events import summarize

    ran = run_flow(flow_doc(agent("Compare a.csv and b.csv.")))
    assert ran.result.ok
    nested = [s for s in summarize(ran.events).steps if s.parent_step is not None]
    assert [s.status for s in nested] == ["failed", "failed"]
    assert all("a.csv" in s.error or "b.csv" in s.error for s in nested)


def test_the_cli_trace_and_inspect_show_tool_calls_under_the_agent(tmp_path, capsys, monkeypatch):
    from backpackflow.cli.app import main

    monkeypatch.chdir(tmp_path)  # the response cache of the run command lives here
    trace = tmp_path / "run.jsonl"
    assert main(["run", str(AGENT), "--sink", f"file:{trace}", "--sink", "console"]) == 0
    out, err = capsys.readouterr()
    # the run summary: the tool calls as rows under the agent's
    table = [line.split() for line in out.splitlines() if line[:2].strip().isdigit()]
    assert [row[1:4] for row in table] == [
        ["analyst", "agent", "succeeded"],
        ["└", "read_file", "tool"],
        ["└", "csv_summary", "tool"],
    ]
    # the console trace: each call indented under the agent, with its own step number
    lines = [line for line in err.splitlines() if "⚙ tool" in line or "analyst" in line]
    agent_indent = len(lines[0]) - len(lines[0].lstrip())
    calls = [line for line in lines if "⚙ tool" in line]
    assert calls and all(len(c) - len(c.lstrip()) > agent_indent for c in calls)
    assert any(re.search(r"read_file #2 ", c) for c in calls)

    assert main(["inspect", str(trace), "--width", "200"]) == 0
    out = capsys.readouterr().out
    rows = [re.split(r"\s{2,}", line.strip()) for line in out.splitlines()]
    rows = [r for r in rows if r[0].isdigit()]
    assert [r[:3] for r in rows] == [
        ["1", "agents.sales › analyst (agent)", "ok"],
        ["2", "└ read_file (tool)", "ok"],
        ["3", "└ csv_summary (tool)", "ok"],
    ]
    assert "1 nodes" in out  # nested steps are not node executions

    assert main(["inspect", str(trace), "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["nodes"] == 1
    assert [(s["step"], s.get("parent_step"), s["status"]) for s in data["steps"]] == [
        (1, None, "ok"),
        (2, 1, "ok"),
        (3, 1, "ok"),
    ]

    # one tool call: its arguments, result, latency and status
    assert main(["inspect", str(trace), "--step", "3", "--json"]) == 0
    step = json.loads(capsys.readouterr().out)
    assert (step["node_type"], step["node_name"], step["parent_step"]) == ("tool", "csv_summary", 1)
    assert step["params"] == {"path": "sales.csv"}
    assert step["exec_result"]["rows"] > 0 and step["duration_ms"] >= 0
    assert main(["inspect", str(trace), "--step", "3", "--width", "200"]) == 0
    out = capsys.readouterr().out
    assert "Tool csv_summary · step 3" in out and "nested in step 1 (node analyst)" in out
    # the agent's own view lists the calls nested in it
    assert main(["inspect", str(trace), "--node", "analyst", "--width", "200"]) == 0
    out = capsys.readouterr().out
    assert "2 nested steps" in out and "read_file" in out and "csv_summary" in out
