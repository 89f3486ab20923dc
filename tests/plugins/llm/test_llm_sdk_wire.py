"""The providers against the official SDKs' own types, over a real loopback HTTP server.

Every request a provider sends is validated against the SDK's request type (the TypedDict of
``create()``'s parameters, no key outside it); every answer is built with the SDK's own response
models (tool calls, thinking, cache usage, refusals, streaming events) and must be read exactly.
"""

from __future__ import annotations

import json
from decimal import Decimal
from typing import Any

import pydantic
import pytest
from anthropic import types as at
from llm_wire import Reply, anthropic_events, openai_events, run
from openai.types import chat as oc
from sdk_wire import anthropic_request, chunk, dump, openai_request

from backpackflow_llm import (
    AnthropicProvider,
    LLMRequest,
    Message,
    OpenAIProvider,
    PricingTable,
    ProviderRequestError,
    RateLimited,
    ServerError,
    ToolCall,
    ToolSpec,
    Usage,
)

READ_FILE = ToolSpec(
    "read_file",
    "Read a text file",
    {"type": "object", "properties": {"path": {"type": "string"}}, "required": ["path"]},
)
CSV = ToolSpec(
    "csv_summary",
    "Summarize a CSV file",
    {"type": "object", "properties": {"path": {"type": "string"}}, "required": ["path"]},
)
CONVERSATION = (
    Message("user", "How many rows in sales.csv?"),
    Message(
        "assistant",
        "",
        tool_calls=[
            ToolCall("call_1", "csv_summary", {"path": "sales.csv"}),
            ToolCall("call_2", "read_file", {"path": "notes.txt"}),
        ],
    ),
    Message("tool", '{"rows": 4}', tool_call_id="call_1"),
    Message("tool", '{"content": "hi"}', tool_call_id="call_2"),
)


# ---------------------------------------------------------------------------------- OpenAI


def openai_provider(url: str, **kwargs: Any) -> OpenAIProvider:
    return OpenAIProvider(api_key="sk-test", base_url=url, timeout=5, **kwargs)


def completion(message: oc.ChatCompletionMessage, finish: str, usage: Any = None) -> Any:
    return oc.ChatCompletion(
        id="chatcmpl-1",
        object="chat.completion",
        created=1,
        model="gpt-4o-mini-2024-07-18",
        choices=[{"index": 0, "message": message, "finish_reason": finish, "logprobs": None}],
        usage=usage,
    )


USAGE = {
    "prompt_tokens": 120,
    "completion_tokens": 30,
    "total_tokens": 150,
    "prompt_tokens_details": {"cached_tokens": 64, "cache_write_tokens": 20},
    "completion_tokens_details": {"reasoning_tokens": 12},
}


def test_openai_tool_calls_request_and_answer(wire_server):
    message = oc.ChatCompletionMessage(
        role="assistant",
        content=None,
        tool_calls=[
            oc.ChatCompletionMessageFunctionToolCall(
                id="call_9",
                type="function",
                function={"name": "read_file", "arguments": '{"path": "a.txt"}'},
            ),
            oc.ChatCompletionMessageFunctionToolCall(
                id="call_10",
                type="function",
                function={"name": "csv_summary", "arguments": '{"path": "b.csv"}'},
            ),
        ],
    )
    server = wire_server(Reply(json=dump(completion(message, "tool_calls", USAGE))))
    request = LLMRequest(
        "openai", "gpt-4o-mini", CONVERSATION, tools=(READ_FILE, CSV), tool_choice="required"
    )
    response = run(openai_provider(server.url).complete(request))

    body = server.last.json()
    openai_request(body)
    assert body["tools"][0] == {
        "type": "function",
        "function": {
            "name": "read_file",
            "description": "Read a text file",
            "parameters": READ_FILE.parameters,
        },
    }
    assert body["tool_choice"] == "required"
    assert body["messages"][1]["tool_calls"][0] == {
        "id": "call_1",
        "type": "function",
        "function": {"name": "csv_summary", "arguments": '{"path": "sales.csv"}'},
    }
    assert body["messages"][2] == {
        "role": "tool",
        "tool_call_id": "call_1",
        "content": '{"rows": 4}',
    }
    assert response.tool_calls == (
        ToolCall("call_9", "read_file", {"path": "a.txt"}),
        ToolCall("call_10", "csv_summary", {"path": "b.csv"}),
    )
    assert (response.text, response.refusal, response.finish_reason) == ("", None, "tool_calls")
    assert response.usage == Usage(
        120, 30, cached_input_tokens=64, cache_write_tokens=20, reasoning_tokens=12
    )


def test_openai_a_named_tool_choice_and_json_schema(wire_server):
    message = oc.ChatCompletionMessage(role="assistant", content='{"rows": 4}')
    server = wire_server(Reply(json=dump(completion(message, "stop", USAGE))))
    schema = {"type": "object", "properties": {"rows": {"type": "integer"}}, "required": ["rows"]}
    request = LLMRequest(
        "openai",
        "gpt-4o-mini",
        (Message("user", "Rows?"),),
        tools=(READ_FILE,),
        tool_choice="read_file",
        response_format="json",
        json_schema=schema,
    )
    response = run(openai_provider(server.url).complete(request))
    body = server.last.json()
    openai_request(body)
    assert body["tool_choice"] == {"type": "function", "function": {"name": "read_file"}}
    assert body["response_format"] == {
        "type": "json_schema",
        "json_schema": {"name": "answer", "schema": schema, "strict": True},
    }
    assert response.text == '{"rows": 4}'


def test_openai_streamed_tool_calls_refusal_and_usage(wire_server):
    pieces = [
        chunk(
            {
                "role": "assistant",
                "tool_calls": [
                    {
                        "index": 0,
                        "id": "call_1",
                        "type": "function",
                        "function": {"name": "read_file", "arguments": ""},
                    },
                ],
            }
        ),
        chunk({"tool_calls": [{"index": 0, "function": {"arguments": '{"pa'}}]}),
        chunk({"tool_calls": [{"index": 0, "function": {"arguments": 'th": "a"}'}}]}),
        chunk(
            {
                "tool_calls": [
                    {
                        "index": 1,
                        "id": "call_2",
                        "type": "function",
                        "function": {"name": "csv_summary", "arguments": '{"path": "b.csv"}'},
                    },
                ]
            }
        ),
        chunk({}, finish="tool_calls"),
        chunk(None, usage=USAGE),  # type: ignore[arg-type]
    ]
    server = wire_server(Reply(events=openai_events(*map(json.loads, pieces))))
    request = LLMRequest("openai", "gpt-4o-mini", CONVERSATION, tools=(READ_FILE, CSV), stream=True)
    response = run(openai_provider(server.url).complete(request))
    openai_request(server.last.json())
    assert response.tool_calls == (
        ToolCall("call_1", "read_file", {"path": "a"}),
        ToolCall("call_2", "csv_summary", {"path": "b.csv"}),
    )
    assert response.usage.cache_write_tokens == 20
    assert response.finish_reason == "tool_calls"

    refusing = [chunk({"role": "assistant", "refusal": "I can"}), chunk({"refusal": "'t."}, "stop")]
    server = wire_server(Reply(events=openai_events(*map(json.loads, refusing))))
    chunks: list[str] = []
    response = run(
        openai_provider(server.url).complete(
            LLMRequest.from_prompt("openai", "gpt-4o-mini", "hi", stream=True),
            on_chunk=chunks.append,
        )
    )
    # a streamed refusal is a refusal, not "": and its usage (none sent) is estimated
    assert (response.text, response.refusal, chunks) == ("", "I can't.", [])
    assert response.usage.estimated


def test_openai_azure_and_local_servers_from_configuration(wire_server):
    message = oc.ChatCompletionMessage(role="assistant", content="ok")
    server = wire_server(Reply(json=dump(completion(message, "stop", USAGE))))
    azure = OpenAIProvider(
        base_url=f"{server.url}/openai/deployments/gpt4o?api-version=2024-10-21",
        extra_headers={"api-key": "az-key"},
        require_api_key=False,
        api_key_env="BACKPACKFLOW_TEST_UNSET_KEY",
        timeout=5,
    )
    run(azure.complete(LLMRequest.from_prompt("openai", "gpt-4o", "hi")))
    sent = server.last
    assert sent.path == "/openai/deployments/gpt4o/chat/completions?api-version=2024-10-21"
    assert sent.headers["api-key"] == "az-key"
    assert "authorization" not in sent.headers  # no key, no dummy bearer token

    local = OpenAIProvider(
        base_url=server.url,
        require_api_key=False,
        api_key_env="BACKPACKFLOW_TEST_UNSET_KEY",
        api_version="2025-01-01",
        max_tokens_field="max_tokens",
        timeout=5,
    )
    run(local.complete(LLMRequest.from_prompt("openai", "llama3", "hi", max_tokens=5)))
    assert server.last.path == "/chat/completions?api-version=2025-01-01"
    assert server.last.json()["max_tokens"] == 5


@pytest.mark.parametrize(
    ("status", "header", "transient"),
    [(409, None, True), (408, None, True), (400, "true", True), (503, "false", False)],
)
def test_retry_semantics_follow_the_sdks(wire_server, status, header, transient):
    headers = {"x-should-retry": header} if header else {}
    server = wire_server(Reply(status=status, json={"error": {"message": "no"}}, headers=headers))
    with pytest.raises(Exception) as info:
        run(openai_provider(server.url).complete(LLMRequest.from_prompt("openai", "m", "hi")))
    assert info.value.transient is transient  # type: ignore[attr-defined]
    assert info.value.status == status  # type: ignore[attr-defined]
    assert len(server.requests) == 1  # the SDK's own retries are off


def test_egress_policy_applies_to_the_sdk_transport(wire_server):
    from backpackflow.policy import EgressPolicy

    server = wire_server(Reply(json={}))
    denied = openai_provider(server.url, egress=EgressPolicy(allow_hosts=["api.openai.com"]))
    with pytest.raises(ProviderRequestError, match="cannot call") as info:
        run(denied.complete(LLMRequest.from_prompt("openai", "m", "hi")))
    assert not info.value.transient
    assert server.requests == []  # nothing, the key included, left the process


# ---------------------------------------------------------------------------------- Anthropic


def anthropic_provider(url: str, **kwargs: Any) -> AnthropicProvider:
    return AnthropicProvider(api_key="ak-test", base_url=url, timeout=5, **kwargs)


ANTHROPIC_USAGE = at.Usage(
    input_tokens=50,
    output_tokens=40,
    cache_read_input_tokens=1000,
    cache_creation_input_tokens=300,
    cache_creation=at.CacheCreation(ephemeral_5m_input_tokens=100, ephemeral_1h_input_tokens=200),
    output_tokens_details=at.OutputTokensDetails(thinking_tokens=25),
)


def message(content: list[Any], stop: str) -> Any:
    return at.Message(
        id="msg_1",
        type="message",
        role="assistant",
        model="claude-sonnet-4-5-20250929",
        content=content,
        stop_reason=stop,
        stop_sequence=None,
        usage=ANTHROPIC_USAGE,
    )


def test_anthropic_tool_use_thinking_and_cache_usage(wire_server):
    answer = message(
        [
            at.ThinkingBlock(type="thinking", thinking="Need the CSV.", signature="sig"),
            at.TextBlock(type="text", text="Let me look."),
            at.ToolUseBlock(
                type="tool_use", id="toolu_1", name="csv_summary", input={"path": "s.csv"}
            ),
        ],
        "tool_use",
    )
    server = wire_server(Reply(json=dump(answer)))
    request = LLMRequest(
        "anthropic",
        "claude-sonnet-4-5",
        CONVERSATION,
        system="Be exact.",
        tools=(READ_FILE, CSV),
        tool_choice="required",
    )
    response = run(anthropic_provider(server.url).complete(request))
    body = server.last.json()
    anthropic_request(body)
    assert body["tools"][1] == {
        "name": "csv_summary",
        "description": "Summarize a CSV file",
        "input_schema": CSV.parameters,
    }
    assert body["tool_choice"] == {"type": "any"}
    assert body["messages"][1] == {
        "role": "assistant",
        "content": [
            {
                "type": "tool_use",
                "id": "call_1",
                "name": "csv_summary",
                "input": {"path": "sales.csv"},
            },
            {
                "type": "tool_use",
                "id": "call_2",
                "name": "read_file",
                "input": {"path": "notes.txt"},
            },
        ],
    }
    # both results in one user turn, as the API wants them
    assert body["messages"][2] == {
        "role": "user",
        "content": [
            {"type": "tool_result", "tool_use_id": "call_1", "content": '{"rows": 4}'},
            {"type": "tool_result", "tool_use_id": "call_2", "content": '{"content": "hi"}'},
        ],
    }
    assert response.text == "Let me look."
    assert response.tool_calls == (ToolCall("toolu_1", "csv_summary", {"path": "s.csv"}),)
    assert response.usage == Usage(
        1350,
        40,
        cached_input_tokens=1000,
        cache_write_tokens=300,
        cache_write_1h_tokens=200,
        reasoning_tokens=25,
    )


def test_anthropic_cache_writes_are_priced_by_lifetime():
    table = PricingTable.load(
        overrides={
            "providers": {
                "anthropic": [
                    {
                        "pattern": "claude-sonnet-4-5*",
                        "input": "3",
                        "output": "15",
                        "cached_input": "0.30",
                        "cache_write": "3.75",
                        "cache_write_1h": "6",
                    }
                ]
            }
        }
    )
    usage = Usage(
        1350,
        40,
        cached_input_tokens=1000,
        cache_write_tokens=300,
        cache_write_1h_tokens=200,
        reasoning_tokens=25,
    )
    cost = table.price("anthropic", "claude-sonnet-4-5-20250929", usage)
    # 50 plain input at 3, 1000 reads at 0.30, 100 5-minute writes at 3.75, 200 1-hour at 6,
    # 40 output (25 of them thinking) at 15, per million tokens
    assert cost.cache_write == Decimal("0.000375")
    assert cost.cache_write_1h == Decimal("0.0012")
    assert cost.total == Decimal("0.00015") + Decimal("0.0003") + Decimal("0.000375") + Decimal(
        "0.0012"
    ) + Decimal("0.0006")


def test_anthropic_structured_output_and_refusal(wire_server):
    schema = {"type": "object", "properties": {"rows": {"type": "integer"}}, "required": ["rows"]}
    server = wire_server(
        Reply(json=dump(message([at.TextBlock(type="text", text='{"rows": 4}')], "end_turn"))),
        Reply(json=dump(message([], "refusal"))),
    )
    request = LLMRequest(
        "anthropic",
        "claude-sonnet-4-5",
        (Message("user", "Rows?"),),
        response_format="json",
        json_schema=schema,
    )
    provider = anthropic_provider(server.url)
    assert run(provider.complete(request)).text == '{"rows": 4}'
    body = server.last.json()
    anthropic_request(body)
    assert body["output_config"] == {"format": {"type": "json_schema", "schema": schema}}
    assert "system" not in body  # the native format, no JSON instruction
    refused = run(provider.complete(request))
    assert (refused.text, refused.finish_reason) == ("", "refusal")
    assert refused.refusal is not None and "refused" in refused.refusal


def event(model: pydantic.BaseModel) -> dict[str, Any]:
    return dump(model)


def test_anthropic_streamed_tool_use_and_thinking(wire_server):
    start = at.Message(
        id="msg_1",
        type="message",
        role="assistant",
        model="claude-sonnet-4-5-20250929",
        content=[],
        stop_reason=None,
        stop_sequence=None,
        usage=at.Usage(
            input_tokens=50,
            output_tokens=1,
            cache_read_input_tokens=1000,
            cache_creation_input_tokens=300,
            cache_creation=at.CacheCreation(
                ephemeral_5m_input_tokens=100, ephemeral_1h_input_tokens=200
            ),
        ),
    )
    events = [
        at.RawMessageStartEvent(type="message_start", message=start),
        at.RawContentBlockStartEvent(
            type="content_block_start",
            index=0,
            content_block=at.ThinkingBlock(type="thinking", thinking="", signature=""),
        ),
        at.RawContentBlockDeltaEvent(
            type="content_block_delta",
            index=0,
            delta=at.ThinkingDelta(type="thinking_delta", thinking="Need the CSV."),
        ),
        at.RawContentBlockStopEvent(type="content_block_stop", index=0),
        at.RawContentBlockStartEvent(
            type="content_block_start",
            index=1,
            content_block=at.TextBlock(type="text", text=""),
        ),
        at.RawContentBlockDeltaEvent(
            type="content_block_delta",
            index=1,
            delta=at.TextDelta(type="text_delta", text="Looking."),
        ),
        at.RawContentBlockStopEvent(type="content_block_stop", index=1),
        at.RawContentBlockStartEvent(
            type="content_block_start",
            index=2,
            content_block=at.ToolUseBlock(
                type="tool_use", id="toolu_1", name="csv_summary", input={}
            ),
        ),
        at.RawContentBlockDeltaEvent(
            type="content_block_delta",
            index=2,
            delta=at.InputJSONDelta(type="input_json_delta", partial_json='{"path": '),
        ),
        at.RawContentBlockDeltaEvent(
            type="content_block_delta",
            index=2,
            delta=at.InputJSONDelta(type="input_json_delta", partial_json='"s.csv"}'),
        ),
        at.RawContentBlockStopEvent(type="content_block_stop", index=2),
        at.RawMessageDeltaEvent(
            type="message_delta",
            delta={"stop_reason": "tool_use", "stop_sequence": None},
            usage=at.MessageDeltaUsage(
                output_tokens=40, output_tokens_details=at.OutputTokensDetails(thinking_tokens=25)
            ),
        ),
        at.RawMessageStopEvent(type="message_stop"),
    ]
    server = wire_server(Reply(events=anthropic_events(*map(event, events))))
    chunks: list[str] = []
    request = LLMRequest("anthropic", "claude-sonnet-4-5", CONVERSATION, tools=(CSV,), stream=True)
    response = run(anthropic_provider(server.url).complete(request, on_chunk=chunks.append))
    anthropic_request(server.last.json())
    assert chunks == ["Looking."]  # thinking is not the answer's text
    assert response.tool_calls == (ToolCall("toolu_1", "csv_summary", {"path": "s.csv"}),)
    assert response.finish_reason == "tool_use"
    assert response.usage == Usage(
        1350,
        40,
        cached_input_tokens=1000,
        cache_write_tokens=300,
        cache_write_1h_tokens=200,
        reasoning_tokens=25,
    )


def test_anthropic_retry_after_and_should_retry(wire_server):
    server = wire_server(
        Reply(
            status=429,
            json={"type": "error", "error": {"type": "rate_limit_error", "message": "slow"}},
            headers={"retry-after": "90"},
        ),
        Reply(
            status=529,
            json={"type": "error", "error": {"type": "overloaded_error", "message": "busy"}},
            headers={"x-should-retry": "false"},
        ),
    )
    provider = anthropic_provider(server.url)
    request = LLMRequest.from_prompt("anthropic", "claude-sonnet-4-5", "hi")
    with pytest.raises(RateLimited, match=r"retry after 90s") as limited:
        run(provider.complete(request))
    assert limited.value.retry_after == 90
    with pytest.raises(ServerError) as overloaded:
        run(provider.complete(request))
    assert not overloaded.value.transient  # the server said not to retry
    assert len(server.requests) == 2
