"""AnthropicProvider against real HTTP servers speaking the Messages wire format."""

from __future__ import annotations

import pytest
from llm_wire import Reply, anthropic_events, run

from backpackflow_llm import (
    AnthropicProvider,
    LLMRequest,
    MalformedResponse,
    Message,
    MissingAPIKey,
    ProviderConnectionError,
    ProviderRequestError,
    ProviderTimeout,
    RateLimited,
    ServerError,
    Usage,
)
from backpackflow_llm.providers.anthropic import JSON_INSTRUCTION

MESSAGE = {
    "id": "msg_1",
    "type": "message",
    "role": "assistant",
    "model": "claude-3-5-haiku-20241022",
    "content": [
        {"type": "thinking", "thinking": "hmm", "signature": "x"},
        {"type": "text", "text": "Paris"},
        {"type": "text", "text": " is the capital."},
    ],
    "stop_reason": "end_turn",
    "stop_sequence": None,
    "usage": {
        "input_tokens": 10,
        "output_tokens": 7,
        "cache_read_input_tokens": 100,
        "cache_creation_input_tokens": 20,
    },
}


def request(**params: object) -> LLMRequest:
    return LLMRequest(
        "anthropic",
        "claude-3-5-haiku-latest",
        (Message("user", "Capital of France?"),),
        **params,  # type: ignore[arg-type]
    )


def provider(url: str, **kwargs: object) -> AnthropicProvider:
    return AnthropicProvider(api_key="ak-test", base_url=url, timeout=5, **kwargs)  # type: ignore[arg-type]


def test_completion_sends_the_messages_wire_format(wire_server):
    server = wire_server(Reply(json=MESSAGE))
    req = request(system="Be brief.", max_tokens=64)
    response = run(provider(server.url).complete(req))

    sent = server.last
    assert sent.path == "/v1/messages"
    # the key and the API version as the installed SDK sends them (x-api-key in older
    # releases, a bearer token in newer ones)
    key_headers = (sent.headers.get("x-api-key"), sent.headers.get("authorization"))
    assert key_headers in (("ak-test", None), (None, "Bearer ak-test"))
    assert sent.headers["anthropic-version"]
    assert sent.headers["content-type"] == "application/json"
    assert sent.json() == {
        "model": "claude-3-5-haiku-latest",
        "max_tokens": 64,
        "messages": [{"role": "user", "content": "Capital of France?"}],
        "system": "Be brief.",
    }
    assert response.text == "Paris is the capital."  # text blocks only, thinking skipped
    # input_tokens counts every prompt token: uncached + cache reads + cache writes
    assert response.usage == Usage(130, 7, cached_input_tokens=100, cache_write_tokens=20)
    assert response.model == "claude-3-5-haiku-20241022"
    assert response.finish_reason == "end_turn"
    assert response.provider == "anthropic"


def test_temperature_is_refused_before_anything_is_sent(wire_server):
    # the current Messages API (and the SDK's request type) has no temperature: sending it
    # would be a 400 that a fallback chain would quietly route around
    server = wire_server(Reply(json=MESSAGE))
    with pytest.raises(ProviderRequestError, match="takes no temperature") as info:
        run(provider(server.url).complete(request(temperature=0.5)))
    assert not info.value.transient
    assert server.requests == []


def test_max_tokens_is_always_sent_and_json_is_asked_for_in_the_system_prompt(wire_server):
    server = wire_server(Reply(json=MESSAGE), Reply(json=MESSAGE))
    p = provider(server.url, default_max_tokens=333)
    run(p.complete(request(response_format="json")))
    assert server.last.json() == {
        "model": "claude-3-5-haiku-latest",
        "max_tokens": 333,
        "messages": [{"role": "user", "content": "Capital of France?"}],
        "system": JSON_INSTRUCTION,
    }
    run(p.complete(request(response_format="json", system="Be brief.")))
    assert server.last.json()["system"] == f"Be brief.\n\n{JSON_INSTRUCTION}"


def test_usage_without_cache_fields(wire_server):
    body = {**MESSAGE, "usage": {"input_tokens": 5, "output_tokens": 2}}
    server = wire_server(Reply(json=body))
    assert run(provider(server.url).complete(request())).usage == Usage(5, 2)


STREAM = anthropic_events(
    {
        "type": "message_start",
        "message": {
            "id": "msg_1",
            "type": "message",
            "role": "assistant",
            "content": [],
            "model": "claude-3-5-haiku-20241022",
            "stop_reason": None,
            "usage": {"input_tokens": 25, "output_tokens": 1, "cache_read_input_tokens": 5},
        },
    },
    {"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}},
    {"type": "ping"},
    {"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": "Hello"}},
    {
        "type": "content_block_delta",
        "index": 0,
        "delta": {"type": "input_json_delta", "partial_json": "{"},
    },
    {"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": ", world"}},
    {"type": "content_block_stop", "index": 0},
    {
        "type": "message_delta",
        "delta": {"stop_reason": "end_turn", "stop_sequence": None},
        "usage": {"output_tokens": 15},
    },
    {"type": "message_stop"},
)


def test_streaming_parses_events_and_reports_usage(wire_server):
    server = wire_server(Reply(events=STREAM))
    chunks: list[str] = []
    response = run(provider(server.url).complete(request(stream=True), on_chunk=chunks.append))
    assert server.last.json()["stream"] is True
    assert chunks == ["Hello", ", world"]
    assert response.text == "Hello, world"
    assert response.usage == Usage(30, 15, cached_input_tokens=5)
    assert response.finish_reason == "end_turn"
    assert response.model == "claude-3-5-haiku-20241022"


def test_stream_without_message_stop_is_a_transient_connection_error(wire_server):
    server = wire_server(Reply(events=STREAM[:-1]))
    with pytest.raises(ProviderConnectionError, match="without message_stop") as info:
        run(provider(server.url).complete(request(stream=True)))
    assert info.value.transient


def test_stream_cut_mid_body(wire_server):
    server = wire_server(Reply(events=STREAM[:4], cut=True))
    with pytest.raises(ProviderConnectionError):
        run(provider(server.url).complete(request(stream=True)))


@pytest.mark.parametrize(
    ("kind", "error_class", "transient"),
    [
        ("overloaded_error", ServerError, True),
        ("api_error", ServerError, True),
        ("rate_limit_error", RateLimited, True),
        ("invalid_request_error", ProviderRequestError, False),
    ],
)
def test_error_event_in_stream(wire_server, kind, error_class, transient):
    error = {"type": "error", "error": {"type": kind, "message": "Overloaded"}}
    server = wire_server(Reply(events=[*STREAM[:4], *anthropic_events(error)]))
    with pytest.raises(error_class, match="Overloaded") as info:
        run(provider(server.url).complete(request(stream=True)))
    assert type(info.value) is error_class
    assert info.value.transient is transient


def test_stream_with_missing_field_is_malformed(wire_server):
    bad = {"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta"}}
    server = wire_server(Reply(events=[*STREAM[:2], *anthropic_events(bad)]))
    with pytest.raises(MalformedResponse, match=r"missing field \$.delta.text") as info:
        run(provider(server.url).complete(request(stream=True)))
    assert '"text_delta"' in info.value.body


def test_529_overloaded_is_transient(wire_server):
    error = {"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}}
    server = wire_server(Reply(status=529, json=error))
    with pytest.raises(ServerError, match="HTTP 529 overloaded: Overloaded") as info:
        run(provider(server.url).complete(request()))
    assert (info.value.status, info.value.transient) == (529, True)


def test_429_with_retry_after(wire_server):
    error = {"type": "error", "error": {"type": "rate_limit_error", "message": "Slow down"}}
    server = wire_server(Reply(status=429, json=error, headers={"retry-after": "7"}))
    with pytest.raises(RateLimited) as info:
        run(provider(server.url).complete(request()))
    assert info.value.retry_after == 7.0


def test_401_names_the_key_variable(wire_server):
    error = {
        "type": "error",
        "error": {"type": "authentication_error", "message": "invalid x-api-key"},
    }
    server = wire_server(Reply(status=401, json=error))
    with pytest.raises(ProviderRequestError, match="ANTHROPIC_API_KEY") as info:
        run(provider(server.url).complete(request()))
    assert not info.value.transient
    assert "invalid x-api-key" in str(info.value)


def test_malformed_message(wire_server):
    server = wire_server(Reply(json={"type": "message", "content": "oops"}))
    with pytest.raises(MalformedResponse, match=r"\$.content is str"):
        run(provider(server.url).complete(request()))


def test_silent_server_times_out(wire_server):
    server = wire_server(Reply(hang=True))
    with pytest.raises(ProviderTimeout):
        run(AnthropicProvider(api_key="k", base_url=server.url, timeout=0.2).complete(request()))


def test_missing_key(wire_server):
    server = wire_server(Reply(json=MESSAGE))
    with pytest.raises(MissingAPIKey, match="ANTHROPIC_API_KEY"):
        run(AnthropicProvider(base_url=server.url).complete(request()))
    assert server.requests == []
