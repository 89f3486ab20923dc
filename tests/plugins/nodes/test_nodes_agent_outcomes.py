"""Streaming inside the agent node, and the ``refused`` outcome end to end (structured output
refused, through the llm and agent nodes into events and the run summary): on the offline
model, and over the wire (the official SDKs against a loopback server answering with the SDKs'
own response models; every request checked against the SDKs' request types)."""

from __future__ import annotations

import json
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from anthropic import types as at
from llm_wire import Reply, anthropic_events, openai_events
from nodes_support import flow_doc, llm, run_flow
from openai.types import chat as oc
from sdk_wire import anthropic_request, chunk, dump, openai_request

from backpackflow.events import format_table, summarize

NOTES = "The North region opened two new stores in March. Sales grew in every region."
QUESTION = "Read notes.md: which region opened new stores?"
SCHEMA = {
    "type": "object",
    "properties": {"region": {"type": "string"}},
    "required": ["region"],
    "additionalProperties": False,
}
REFUSAL = "I can't help with that request."


def agent(**params: Any) -> dict[str, Any]:
    return {
        "type": "agent",
        "id": "analyst",
        "params": {"prompt": QUESTION, "tools": ["read_file"], **params},
    }


def of_step(ran: Any, node_id: str, *types: str) -> list[dict[str, Any]]:
    return [e for e in ran.events if e["node_id"] == node_id and e["type"] in types]


def assert_refused(ran: Any, node_id: str, refusal: str) -> None:
    """The refusal as a distinct outcome everywhere: the node's output and action, the
    llm_response event, node_end, run_end, and the run summary; the run itself succeeded."""
    assert ran.result.ok, ran.result.error
    assert ran.result.action == "refused"
    assert ran.result.backpack.peek(node_id) == {"refusal": refusal}
    (response,) = [
        e["payload"] for e in of_step(ran, node_id, "llm_response") if "refusal" in e["payload"]
    ]
    assert (response["text"], response["refusal"]) == ("", refusal)
    (end,) = of_step(ran, node_id, "node_end")
    assert end["payload"]["action"] == "refused"
    assert ran.events[-1]["payload"]["action"] == "refused"
    summary = summarize(ran.events)
    (step,) = [s for s in summary.steps if s.node_id == node_id and s.parent_step is None]
    assert (step.status, step.action, step.refusal) == ("succeeded", "refused", refusal)
    assert f"refused: {refusal[:60]}" in format_table(summary)
    # the refusal's tokens are counted and priced like any answer's
    assert summary.tokens_output == ran.events[-1]["payload"]["totals"]["tokens_output"]


# ---------------------------------------------------------------------------------- offline


def test_an_agent_streams_its_answer_turn_and_not_its_tool_turns():
    Path("notes.md").write_text(NOTES, encoding="utf-8")
    ran = run_flow(flow_doc(agent(stream=True)))
    assert ran.result.ok, ran.result.error
    loop = [
        e["type"]
        for e in of_step(ran, "analyst", "llm_request", "llm_response", "stream_chunk")
        if e["type"] != "stream_chunk" or e["payload"]["chunk_index"] == 0
    ]
    # turn 1 asks for read_file (nothing to stream), turn 2 streams the answer
    assert loop == ["llm_request", "llm_response", "llm_request", "stream_chunk", "llm_response"]
    chunks = [e["payload"] for e in of_step(ran, "analyst", "stream_chunk")]
    assert [c["chunk_index"] for c in chunks] == list(range(len(chunks)))
    assert len(chunks) > 1
    answer = ran.result.backpack.peek("analyst")
    assert "".join(c["text"] for c in chunks) == answer
    assert "North region opened two new stores" in answer
    # the chunks are the agent's own step, never a tool call's
    (start,) = of_step(ran, "analyst", "node_start")
    assert {e["step"] for e in of_step(ran, "analyst", "stream_chunk")} == {start["step"]}
    # the streamed answer is the conversation's last message, committed with its turn
    assert ran.result.backpack.peek("analyst.conversation")[-1]["content"] == answer


def test_structured_output_refused_through_the_llm_node_offline():
    ran = run_flow(
        flow_doc(
            llm("extract", "Which region? " + NOTES, provider="refuser", json_schema=SCHEMA),
            dependencies={"refuser": {"type": "offline", "config": {"refusal": REFUSAL}}},
        )
    )
    assert_refused(ran, "extract", REFUSAL)
    (request,) = [e["payload"] for e in of_step(ran, "extract", "llm_request")]
    assert request["params"]["json_schema"] == SCHEMA


def test_an_agent_refuses_after_its_tool_turn_offline():
    Path("notes.md").write_text(NOTES, encoding="utf-8")
    ran = run_flow(
        flow_doc(
            agent(provider="refuser", json_schema=SCHEMA, stream=True),
            dependencies={"refuser": {"type": "offline", "config": {"refusal": REFUSAL}}},
        )
    )
    assert_refused(ran, "analyst", REFUSAL)
    # the tools ran first; the refusal is the last turn, and nothing of it was streamed
    assert len(of_step(ran, "analyst", "tool_response")) == 1
    assert of_step(ran, "analyst", "stream_chunk") == []
    conversation = ran.result.backpack.peek("analyst.conversation")
    assert [m["role"] for m in conversation] == ["user", "assistant", "tool", "assistant"]


# ---------------------------------------------------------------------------------- the wire


def wire_flow(node: dict[str, Any], kind: str, url: str) -> dict[str, Any]:
    config: dict[str, Any] = {"base_url": url, "api_key": "sk-test", "timeout": 5}
    params = {**node["params"], "provider": "main", "max_attempts": 1}
    params["model"] = "gpt-4o-mini" if kind == "openai" else "claude-sonnet-4-5"
    return flow_doc(
        {**node, "params": params}, dependencies={"main": {"type": kind, "config": config}}
    )


OPENAI_USAGE = {"prompt_tokens": 40, "completion_tokens": 9, "total_tokens": 49}


def openai_tool_turn() -> list[str]:
    call = {"index": 0, "id": "call_a", "type": "function"}
    return openai_events(
        *map(
            json.loads,
            [
                chunk(
                    {
                        "role": "assistant",
                        "tool_calls": [
                            {**call, "function": {"name": "read_file", "arguments": ""}}
                        ],
                    }
                ),
                chunk({"tool_calls": [{"index": 0, "function": {"arguments": '{"path": '}}]}),
                chunk({"tool_calls": [{"index": 0, "function": {"arguments": '"notes.md"}'}}]}),
                chunk({}, finish="tool_calls"),
                chunk(None, usage=OPENAI_USAGE),  # type: ignore[arg-type]
            ],
        )
    )


def test_an_agent_streams_over_the_openai_sdk(wire_server):
    Path("notes.md").write_text(NOTES, encoding="utf-8")
    answer = ["The North ", "region."]
    server = wire_server(
        Reply(events=openai_tool_turn()),
        Reply(
            events=openai_events(
                *map(
                    json.loads,
                    [
                        chunk({"role": "assistant", "content": answer[0]}),
                        chunk({"content": answer[1]}),
                        chunk({}, finish="stop"),
                        chunk(None, usage=OPENAI_USAGE),  # type: ignore[arg-type]
                    ],
                )
            )
        ),
    )
    ran = run_flow(wire_flow(agent(stream=True), "openai", server.url))
    assert ran.result.ok, ran.result.error
    bodies = [r.json() for r in server.requests]
    for body in bodies:
        openai_request(body)
        assert body["stream"] is True and body["stream_options"] == {"include_usage": True}
    # turn 2 sends the call and its result back, as the API wants them
    assert bodies[1]["messages"][-2]["tool_calls"][0]["id"] == "call_a"
    assert bodies[1]["messages"][-1]["role"] == "tool"
    assert bodies[1]["messages"][-1]["tool_call_id"] == "call_a"
    assert NOTES in bodies[1]["messages"][-1]["content"]
    chunks = [e["payload"]["text"] for e in of_step(ran, "analyst", "stream_chunk")]
    assert chunks == answer
    assert ran.result.backpack.peek("analyst") == "".join(answer)
    (call,) = [e for e in ran.events if e["type"] == "tool_response"]
    assert call["parent_step"] is not None and call["payload"]["call_id"] == "call_a"
    totals = ran.events[-1]["payload"]["totals"]
    assert (totals["tokens_input"], totals["tokens_output"]) == (80, 18)


def claude_message(stop: str | None, output_tokens: int) -> at.Message:
    return at.Message(
        id="msg_1",
        type="message",
        role="assistant",
        model="claude-sonnet-4-5-20250929",
        content=[],
        stop_reason=stop,
        stop_sequence=None,
        usage=at.Usage(input_tokens=40, output_tokens=output_tokens),
    )


def anthropic_stream(*blocks: tuple[Any, list[Any]], stop: str) -> list[str]:
    start = claude_message(None, 1)
    events: list[Any] = [at.RawMessageStartEvent(type="message_start", message=start)]
    for index, (block, deltas) in enumerate(blocks):
        events.append(
            at.RawContentBlockStartEvent(
                type="content_block_start", index=index, content_block=block
            )
        )
        events.extend(
            at.RawContentBlockDeltaEvent(type="content_block_delta", index=index, delta=d)
            for d in deltas
        )
        events.append(at.RawContentBlockStopEvent(type="content_block_stop", index=index))
    events.append(
        at.RawMessageDeltaEvent(
            type="message_delta",
            delta={"stop_reason": stop, "stop_sequence": None},
            usage=at.MessageDeltaUsage(output_tokens=9),
        )
    )
    events.append(at.RawMessageStopEvent(type="message_stop"))
    return anthropic_events(*map(dump, events))


def test_an_agent_streams_over_the_anthropic_sdk(wire_server):
    Path("notes.md").write_text(NOTES, encoding="utf-8")
    tool_use = at.ToolUseBlock(type="tool_use", id="toolu_a", name="read_file", input={})
    json_deltas = ['{"path": ', '"notes.md"}']
    server = wire_server(
        Reply(
            events=anthropic_stream(
                (
                    tool_use,
                    [
                        at.InputJSONDelta(type="input_json_delta", partial_json=j)
                        for j in json_deltas
                    ],
                ),
                stop="tool_use",
            )
        ),
        Reply(
            events=anthropic_stream(
                (
                    at.TextBlock(type="text", text=""),
                    [at.TextDelta(type="text_delta", text=t) for t in ("The North ", "region.")],
                ),
                stop="end_turn",
            )
        ),
    )
    ran = run_flow(wire_flow(agent(stream=True), "anthropic", server.url))
    assert ran.result.ok, ran.result.error
    bodies = [r.json() for r in server.requests]
    for body in bodies:
        anthropic_request(body)
        assert body["stream"] is True
    assert bodies[1]["messages"][-1]["content"][0]["tool_use_id"] == "toolu_a"
    chunks = [e["payload"]["text"] for e in of_step(ran, "analyst", "stream_chunk")]
    assert chunks == ["The North ", "region."]
    assert ran.result.backpack.peek("analyst") == "The North region."
    totals = ran.events[-1]["payload"]["totals"]
    assert (totals["tokens_input"], totals["tokens_output"]) == (80, 18)


def test_structured_output_refused_over_the_openai_sdk(wire_server):
    refusing = oc.ChatCompletionMessage(role="assistant", content=None, refusal=REFUSAL)
    completion = oc.ChatCompletion(
        id="chatcmpl-1",
        object="chat.completion",
        created=1,
        model="gpt-4o-mini-2024-07-18",
        choices=[{"index": 0, "message": refusing, "finish_reason": "stop", "logprobs": None}],
        usage=OPENAI_USAGE,
    )
    server = wire_server(Reply(json=dump(completion)))
    node = llm("extract", "Which region? " + NOTES, json_schema=SCHEMA)
    ran = run_flow(wire_flow(node, "openai", server.url))
    body = server.last.json()
    openai_request(body)
    assert body["response_format"]["type"] == "json_schema"
    assert body["response_format"]["json_schema"]["schema"] == SCHEMA
    assert_refused(ran, "extract", REFUSAL)
    (response,) = [e["payload"] for e in of_step(ran, "extract", "llm_response")]
    assert response["usage"]["output_tokens"] == 9 and Decimal(response["cost"]) > 0


def test_an_agent_refuses_streamed_over_the_openai_sdk(wire_server):
    Path("notes.md").write_text(NOTES, encoding="utf-8")
    refusing = [
        chunk({"role": "assistant", "refusal": REFUSAL[:10]}),
        chunk({"refusal": REFUSAL[10:]}, finish="stop"),
        chunk(None, usage=OPENAI_USAGE),  # type: ignore[arg-type]
    ]
    server = wire_server(
        Reply(events=openai_tool_turn()),
        Reply(events=openai_events(*map(json.loads, refusing))),
    )
    ran = run_flow(wire_flow(agent(stream=True, json_schema=SCHEMA), "openai", server.url))
    for request in server.requests:
        openai_request(request.json())
    assert_refused(ran, "analyst", REFUSAL)
    assert of_step(ran, "analyst", "stream_chunk") == []  # a refusal is not the answer's text


@pytest.mark.parametrize("stream", [False, True])
def test_structured_output_refused_over_the_anthropic_sdk(wire_server, stream):
    if stream:
        reply = Reply(events=anthropic_stream(stop="refusal"))
    else:
        reply = Reply(json=dump(claude_message("refusal", 9)))
    server = wire_server(reply)
    node = llm("extract", "Which region? " + NOTES, json_schema=SCHEMA, stream=stream)
    ran = run_flow(wire_flow(node, "anthropic", server.url))
    body = server.last.json()
    anthropic_request(body)
    assert body["output_config"] == {"format": {"type": "json_schema", "schema": SCHEMA}}
    (response,) = [e["payload"] for e in of_step(ran, "extract", "llm_response")]
    assert response["finish_reason"] == "refusal"
    assert_refused(ran, "extract", response["refusal"])
