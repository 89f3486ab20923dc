"""OpenAIProvider against real HTTP servers speaking the Chat Completions wire format."""

from __future__ import annotations

import pytest
from llm_wire import Reply, openai_events, run

from backpackflow_llm import (
    LLMRequest,
    MalformedResponse,
    Message,
    MissingAPIKey,
    OpenAIProvider,
    ProviderConnectionError,
    ProviderRequestError,
    ProviderTimeout,
    RateLimited,
    ServerError,
    Usage,
)

COMPLETION = {
    "id": "chatcmpl-1",
    "object": "chat.completion",
    "model": "gpt-4o-mini-2024-07-18",
    "choices": [
        {
            "index": 0,
            "message": {"role": "assistant", "content": "Paris.", "refusal": None},
            "finish_reason": "stop",
        }
    ],
    "usage": {
        "prompt_tokens": 20,
        "completion_tokens": 9,
        "total_tokens": 29,
        "prompt_tokens_details": {"cached_tokens": 8},
        "completion_tokens_details": {"reasoning_tokens": 4},
    },
}


def request(**params: object) -> LLMRequest:
    return LLMRequest(
        "openai",
        "gpt-4o-mini",
        (Message("user", "Capital of France?"), Message("assistant", "Hm?"), Message("user", "!")),
        **params,  # type: ignore[arg-type]
    )


def provider(url: str, **kwargs: object) -> OpenAIProvider:
    return OpenAIProvider(api_key="sk-test", base_url=url, timeout=5, **kwargs)  # type: ignore[arg-type]


def test_completion_sends_the_chat_completions_wire_format(wire_server):
    server = wire_server(Reply(json=COMPLETION))
    req = request(system="Be brief.", temperature=0.2, max_tokens=50, response_format="json")
    response = run(provider(server.url).complete(req))

    sent = server.last
    assert sent.method == "POST"
    assert sent.path == "/chat/completions"
    assert sent.headers["authorization"] == "Bearer sk-test"
    assert sent.headers["content-type"] == "application/json"
    assert sent.json() == {
        "model": "gpt-4o-mini",
        "messages": [
            {"role": "system", "content": "Be brief."},
            {"role": "user", "content": "Capital of France?"},
            {"role": "assistant", "content": "Hm?"},
            {"role": "user", "content": "!"},
        ],
        "temperature": 0.2,
        "max_completion_tokens": 50,
        "response_format": {"type": "json_object"},
    }
    assert response.text == "Paris."
    assert response.usage == Usage(20, 9, cached_input_tokens=8, reasoning_tokens=4)
    assert response.provider == "openai"
    assert response.model == "gpt-4o-mini-2024-07-18"  # the model the API says answered
    assert response.finish_reason == "stop"
    assert response.latency_ms > 0
    assert response.raw == COMPLETION


def test_minimal_request_sends_only_what_was_asked(wire_server):
    server = wire_server(Reply(json=COMPLETION))
    run(provider(server.url, max_tokens_field="max_tokens").complete(request(max_tokens=7)))
    assert server.last.json() == {
        "model": "gpt-4o-mini",
        "messages": [
            {"role": "user", "content": "Capital of France?"},
            {"role": "assistant", "content": "Hm?"},
            {"role": "user", "content": "!"},
        ],
        "max_tokens": 7,
    }


def test_usage_details_are_optional_for_older_compatible_servers(wire_server):
    body = {**COMPLETION, "usage": {"prompt_tokens": 3, "completion_tokens": 2}}
    server = wire_server(Reply(json=body))
    response = run(provider(server.url).complete(request()))
    assert response.usage == Usage(3, 2)


def test_a_refusal_is_distinct_from_an_empty_answer(wire_server):
    choice = {
        "index": 0,
        "message": {"content": None, "refusal": "I can't."},
        "finish_reason": "stop",
    }
    server = wire_server(Reply(json={**COMPLETION, "choices": [choice]}))
    response = run(provider(server.url).complete(request()))
    assert (response.text, response.refusal) == ("", "I can't.")


def chunk(delta: dict[str, str], finish: str | None = None) -> dict[str, object]:
    choice = {"index": 0, "delta": delta, "finish_reason": finish}
    return {"id": "c", "model": "gpt-4o-mini-2024-07-18", "choices": [choice]}


STREAM = openai_events(
    chunk({"role": "assistant", "content": ""}),
    chunk({"content": "Pa"}),
    chunk({"content": "ris."}),
    chunk({}, finish="stop"),
    {
        "id": "c",
        "model": "gpt-4o-mini-2024-07-18",
        "choices": [],
        "usage": {
            "prompt_tokens": 11,
            "completion_tokens": 3,
            "prompt_tokens_details": {"cached_tokens": 0},
        },
    },
)


def test_streaming_parses_sse_and_reports_usage(wire_server):
    server = wire_server(Reply(events=STREAM))
    chunks: list[str] = []
    response = run(provider(server.url).complete(request(stream=True), on_chunk=chunks.append))

    body = server.last.json()
    assert body["stream"] is True
    assert body["stream_options"] == {"include_usage": True}
    assert chunks == ["Pa", "ris."]
    assert response.text == "Paris."
    assert response.usage == Usage(11, 3)
    assert response.finish_reason == "stop"
    assert response.model == "gpt-4o-mini-2024-07-18"


def test_stream_without_done_is_a_transient_connection_error(wire_server):
    server = wire_server(Reply(events=STREAM[:-1]))  # all but [DONE], then a clean end of body
    chunks: list[str] = []
    with pytest.raises(ProviderConnectionError, match=r"without 'data: \[DONE\]'") as info:
        run(provider(server.url).complete(request(stream=True), on_chunk=chunks.append))
    assert info.value.transient
    assert chunks == ["Pa", "ris."]  # deltas already delivered: a retry starts over


def test_stream_cut_mid_body_is_a_transient_connection_error(wire_server):
    server = wire_server(Reply(events=STREAM[:2], cut=True))
    with pytest.raises(ProviderConnectionError) as info:
        run(provider(server.url).complete(request(stream=True)))
    assert info.value.transient
    assert "openai model 'gpt-4o-mini'" in str(info.value)


def test_stream_without_usage_is_estimated_and_marked(wire_server):
    server = wire_server(Reply(events=[*STREAM[:4], "data: [DONE]\n\n"]))
    response = run(provider(server.url).complete(request(stream=True)))
    # prompt "Capital of France?Hm?!" is 22 characters, the answer "Paris." 6: ~4 a token
    assert response.usage == Usage(6, 2, estimated=True)
    assert response.usage.to_json()["estimated"] is True


def test_answer_without_usage_is_estimated_and_marked(wire_server):
    body = {k: v for k, v in COMPLETION.items() if k != "usage"}
    server = wire_server(Reply(json=body))
    response = run(provider(server.url).complete(request()))
    assert response.usage == Usage(6, 2, estimated=True)


def test_stream_event_that_is_not_json_is_malformed_and_keeps_the_data(wire_server):
    server = wire_server(Reply(events=["data: {not json\n\n"]))
    with pytest.raises(MalformedResponse) as info:
        run(provider(server.url).complete(request(stream=True)))
    assert info.value.body == "{not json"
    assert not info.value.transient


def test_stream_answered_with_json_instead_of_sse_is_malformed(wire_server):
    server = wire_server(Reply(json=COMPLETION))
    with pytest.raises(MalformedResponse, match="event stream"):
        run(provider(server.url).complete(request(stream=True)))


def test_error_event_inside_a_stream_is_a_server_error(wire_server):
    event = {"error": {"message": "The server had an error", "type": "server_error"}}
    server = wire_server(Reply(events=[*STREAM[:2], *openai_events(event, done=False)]))
    with pytest.raises(ServerError, match="The server had an error"):
        run(provider(server.url).complete(request(stream=True)))


def test_429_carries_retry_after_and_the_api_message(wire_server):
    error = {"error": {"message": "Rate limit reached for gpt-4o-mini", "type": "requests"}}
    server = wire_server(Reply(status=429, json=error, headers={"retry-after": "2"}))
    with pytest.raises(RateLimited) as info:
        run(provider(server.url).complete(request()))
    err = info.value
    assert (err.status, err.retry_after, err.transient) == (429, 2.0, True)
    assert "Rate limit reached for gpt-4o-mini" in str(err)
    assert str(err).startswith("openai model 'gpt-4o-mini': HTTP 429 rate limited (retry after 2s)")


def test_retry_after_ms_wins_over_retry_after(wire_server):
    headers = {"retry-after-ms": "250", "retry-after": "9"}
    server = wire_server(Reply(status=429, json={}, headers=headers))
    with pytest.raises(RateLimited) as info:
        run(provider(server.url).complete(request()))
    assert info.value.retry_after == 0.25


@pytest.mark.parametrize("status", [500, 502, 503])
def test_5xx_is_a_transient_server_error(wire_server, status):
    server = wire_server(
        Reply(status=status, body=b"<html>Bad gateway</html>", content_type="text/html")
    )
    with pytest.raises(ServerError) as info:
        run(provider(server.url).complete(request()))
    assert (info.value.status, info.value.transient) == (status, True)
    assert "Bad gateway" in str(info.value)


@pytest.mark.parametrize(("status", "what"), [(401, "not authorized"), (400, "request refused")])
def test_4xx_is_a_request_error_and_not_transient(wire_server, status, what):
    error = {"error": {"message": "Incorrect API key provided", "type": "invalid_request_error"}}
    server = wire_server(Reply(status=status, json=error))
    with pytest.raises(ProviderRequestError, match=what) as info:
        run(provider(server.url).complete(request()))
    assert (info.value.status, info.value.transient) == (status, False)
    assert "Incorrect API key provided" in str(info.value)


def test_silent_server_times_out(wire_server):
    server = wire_server(Reply(hang=True))
    slow = OpenAIProvider(api_key="k", base_url=server.url, timeout=0.2)
    with pytest.raises(ProviderTimeout, match=r"no answer within 0.2s") as info:
        run(slow.complete(request()))
    assert info.value.transient


def test_connection_refused_is_a_transient_connection_error(wire_server):
    server = wire_server()
    url = server.url
    server.stop()
    with pytest.raises(ProviderConnectionError, match="connection to") as info:
        run(provider(url).complete(request()))
    assert info.value.transient


@pytest.mark.parametrize(
    ("body", "match"),
    [
        (b"<html>not json</html>", "not JSON"),
        (b'{"choices": []}', r"missing field \$.choices\[0\]"),
        (b'{"choices": [{"message": {"content": 3}}]}', r"\$.choices\[0\].message.content is int"),
        (
            b'{"choices": [{"message": {"content": "x"}}], "usage": {"prompt_tokens": 1}}',
            r"missing field \$.completion_tokens of usage",
        ),
        (
            b'{"choices": [{"message": {"content": "x"}}], '
            b'"usage": {"prompt_tokens": 1, "completion_tokens": 1, '
            b'"prompt_tokens_details": {"cached_tokens": 5}}}',
            "inconsistent usage",
        ),
    ],
)
def test_malformed_bodies(wire_server, body, match):
    server = wire_server(Reply(body=body))
    with pytest.raises(MalformedResponse, match=match) as info:
        run(provider(server.url).complete(request()))
    assert info.value.body == body.decode()
    assert not info.value.transient


def test_malformed_body_is_kept_truncated(wire_server):
    server = wire_server(Reply(body=b"x" * 10_000, content_type="text/plain"))
    with pytest.raises(MalformedResponse) as info:
        run(provider(server.url).complete(request()))
    assert len(info.value.body) == MalformedResponse.BODY_LIMIT
    assert len(str(info.value)) < 600


def test_api_key_comes_from_the_environment_at_call_time(wire_server, monkeypatch):
    server = wire_server(Reply(json=COMPLETION))
    p = OpenAIProvider(base_url=server.url)  # no key yet: constructing is fine
    monkeypatch.setenv("OPENAI_API_KEY", "sk-env")
    run(p.complete(request()))
    assert server.last.headers["authorization"] == "Bearer sk-env"


def test_missing_key_raises_only_when_called_and_names_the_variable(wire_server):
    server = wire_server(Reply(json=COMPLETION))
    p = OpenAIProvider(base_url=server.url, api_key_env="MY_OPENAI_KEY")
    with pytest.raises(MissingAPIKey) as info:
        run(p.complete(request()))
    assert info.value.env_var == "MY_OPENAI_KEY"
    assert "MY_OPENAI_KEY" in str(info.value) and "api_key=" in str(info.value)
    assert not info.value.transient
    assert server.requests == []  # nothing was sent


def test_repr_never_shows_the_key():
    assert "sk-secret" not in repr(OpenAIProvider(api_key="sk-secret"))


def test_shared_client_is_used_and_left_open(wire_server):
    import httpx

    server = wire_server(Reply(json=COMPLETION))

    async def go() -> None:
        async with httpx.AsyncClient() as client:
            p = provider(server.url, client=client, extra_headers={"OpenAI-Organization": "org-1"})
            await p.complete(request())
            await p.complete(request())
            assert not client.is_closed

    run(go())
    assert len(server.requests) == 2
    assert server.last.headers["openai-organization"] == "org-1"


def test_a_non_http_base_url_is_a_request_error():
    p = OpenAIProvider(api_key="k", base_url="ftp://example.invalid/v1")
    with pytest.raises(ProviderRequestError, match="base_url"):
        run(p.complete(request()))
