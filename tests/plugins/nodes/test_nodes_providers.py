"""Providers configured purely from a flow's ``dependencies``, against real HTTP servers on
127.0.0.1 speaking the OpenAI and Anthropic wire formats: retries, fallbacks, rate limits,
streaming, cached and reasoning tokens, unknown models, and secrets that never leak."""

from __future__ import annotations

import json
import socket
import time
import uuid
from decimal import Decimal

import pytest
from llm_wire import Reply, anthropic_events, openai_events
from nodes_support import (
    OPENAI_500,
    SHORT_PROMPT,
    anthropic_message,
    costs,
    execute,
    flow_doc,
    installed_registry,
    llm,
    load,
    openai_completion,
    price,
    run_flow,
)

from backpackflow.errors import ConfigError
from backpackflow.events import format_table, summarize
from backpackflow.loader import FlowLoader

QUESTION = "What is the capital of France?"
FAST_RETRIES = {"max_attempts": 3, "retry_base_delay": 0.01, "retry_max_delay": 0.05}


@pytest.fixture
def keys(monkeypatch):
    """Fresh secrets in the environment, referenced from flows as ``${...}``."""
    openai_key = f"sk-test-{uuid.uuid4().hex}"
    anthropic_key = f"ak-test-{uuid.uuid4().hex}"
    monkeypatch.setenv("BPF_TEST_OPENAI_KEY", openai_key)
    monkeypatch.setenv("BPF_TEST_ANTHROPIC_KEY", anthropic_key)
    return openai_key, anthropic_key


def providers(openai_url: str, anthropic_url: str | None = None) -> dict:
    deps = {
        "primary": {
            "type": "openai",
            "config": {"base_url": openai_url, "api_key": "${BPF_TEST_OPENAI_KEY}", "timeout": 5},
        }
    }
    if anthropic_url is not None:
        deps["backup"] = {
            "type": "anthropic",
            "config": {
                "base_url": anthropic_url,
                "api_key": "${BPF_TEST_ANTHROPIC_KEY}",
                "timeout": 5,
            },
        }
    return deps


def ask(**params):
    params = {"provider": "primary", "model": "gpt-4o-mini", **params}
    return llm("ask", QUESTION, system="Answer in one word.", **params)


def with_fallback(**params):
    return ask(
        fallbacks=[{"provider": "backup", "model": "claude-3-5-haiku-latest"}],
        **FAST_RETRIES,
        **params,
    )


# ------------------------------------------------------------------------------- retry and fallback


def test_openai_500s_are_retried_then_anthropic_answers(wire_server, keys):
    openai_key, anthropic_key = keys
    openai = wire_server(Reply(status=500, json=OPENAI_500))
    anthropic = wire_server(Reply(json=anthropic_message("Paris.")))
    doc = flow_doc(with_fallback(), dependencies=providers(openai.url, anthropic.url))

    loader = FlowLoader(installed_registry())
    flow = loader.load_flow(doc)
    ran = execute(flow)

    assert ran.result.ok, ran.result.error
    assert ran.types("ask") == [
        "node_start",
        "prep_complete",
        "llm_request",
        "retry",
        "retry",
        "fallback",
        "llm_request",
        "llm_response",
        "exec_complete",
        "backpack_pack",
        "node_end",
    ]
    first, second = ran.of("llm_request", "ask")
    messages = [
        {"role": "system", "content": "Answer in one word."},
        {"role": "user", "content": QUESTION},
    ]
    assert (first["provider"], first["model"]) == ("openai", "gpt-4o-mini")
    assert (second["provider"], second["model"]) == ("anthropic", "claude-3-5-haiku-latest")
    assert first["messages"] == second["messages"] == messages

    retries = ran.of("retry", "ask")
    assert [r["attempt"] for r in retries] == [1, 2]
    for retry in retries:
        assert retry["error_type"] == "ServerError"
        assert "HTTP 500" in retry["error"] and "The server had an error" in retry["error"]
        assert (retry["provider"], retry["model"], retry["phase"]) == (
            "openai",
            "gpt-4o-mini",
            "exec",
        )
        assert 0 <= retry["delay_s"] <= 0.05
    fallback = ran.one("fallback", "ask")
    assert fallback["from_provider"] == "openai"
    assert fallback["from_model"] == "gpt-4o-mini"
    assert fallback["to_provider"] == "anthropic"
    assert fallback["to_model"] == "claude-3-5-haiku-latest"
    assert fallback["reason"].startswith("ServerError after retries (3 attempts)")
    response = ran.one("llm_response", "ask")
    assert response["provider"] == "anthropic"
    assert response["model"] == "claude-3-5-haiku-20241022"
    assert response["text"] == "Paris."
    assert response["finish_reason"] == "end_turn"
    assert response["latency_ms"] > 0
    assert Decimal(response["cost"]) > 0 and response["cost_known"] is True
    assert ran.result.backpack.peek("ask") == "Paris."

    # the wire: three OpenAI attempts with the key from the environment, then Anthropic
    assert len(openai.requests) == 3
    for received in openai.requests:
        assert received.path == "/chat/completions"
        assert received.headers["authorization"] == f"Bearer {openai_key}"
        assert received.json()["messages"] == messages
    (sent,) = anthropic.requests
    assert sent.path == "/v1/messages"
    # as the installed SDK sends the key: x-api-key in older releases, a bearer token in newer
    assert anthropic_key in (
        sent.headers.get("x-api-key"),
        sent.headers.get("authorization", "")[7:],
    )
    assert sent.json()["system"] == "Answer in one word."
    assert sent.json()["messages"] == [{"role": "user", "content": QUESTION}]

    # the summary counts them; the secrets appear in no event and no export
    (step,) = summarize(ran.events).steps
    assert (step.retries, step.fallbacks, step.status) == (2, 1, "succeeded")
    assert "2 retries; 1 fallback" in format_table(summarize(ran.events))
    exported = loader.export_json(flow)
    for secret in keys:
        assert secret not in ran.serialized()
        assert secret not in exported
    assert "${BPF_TEST_OPENAI_KEY}" in exported


def test_a_429_with_retry_after_is_honoured(wire_server, keys):
    limited = {"error": {"message": "Rate limit reached", "type": "rate_limit_error"}}
    openai = wire_server(
        Reply(status=429, json=limited, headers={"retry-after": "1"}),
        Reply(json=openai_completion("Paris.")),
    )
    doc = flow_doc(
        ask(max_attempts=3, retry_base_delay=0.01, retry_max_delay=5),
        dependencies=providers(openai.url),
    )
    started = time.perf_counter()
    ran = run_flow(doc)
    elapsed = time.perf_counter() - started

    assert ran.result.ok, ran.result.error
    (retry,) = ran.of("retry", "ask")
    assert retry["error_type"] == "RateLimited"
    assert retry["delay_s"] == 1.0  # the server's wait, not the 0.01 s backoff
    assert "retry after 1s" in retry["error"]
    assert elapsed >= 0.95
    assert ran.one("llm_response")["text"] == "Paris."
    assert len(openai.requests) == 2


def test_retry_after_is_honoured_up_to_retry_after_max(wire_server, keys):
    openai = wire_server(
        Reply(status=429, json={}, headers={"retry-after": "0.04"}),
        Reply(json=openai_completion("Paris.")),
    )
    doc = flow_doc(
        ask(retry_base_delay=0.01, retry_max_delay=0.01), dependencies=providers(openai.url)
    )
    ran = run_flow(doc)
    assert ran.result.ok
    assert ran.one("retry")["delay_s"] == 0.04  # as asked, not cut to retry_max_delay


def test_a_longer_retry_after_fails_fast_naming_the_wait(wire_server, keys):
    openai = wire_server(
        Reply(status=429, json={}, headers={"retry-after": "600"}),
        Reply(json=openai_completion("Paris.")),
    )
    doc = flow_doc(ask(retry_after_max=30), dependencies=providers(openai.url))
    ran = run_flow(doc)
    assert not ran.result.ok
    assert ran.of("retry") == []
    assert len(openai.requests) == 1
    assert "the server asked to wait 600s, more than max_retry_after=30s" in str(ran.result.error)


def test_a_4xx_is_not_retried_but_falls_back_at_once(wire_server, keys):
    refused = {"error": {"message": "The model does not exist", "type": "invalid_request_error"}}
    openai = wire_server(Reply(status=404, json=refused))
    anthropic = wire_server(Reply(json=anthropic_message("Paris.")))
    ran = run_flow(flow_doc(with_fallback(), dependencies=providers(openai.url, anthropic.url)))

    assert ran.result.ok
    assert ran.of("retry") == []
    assert len(openai.requests) == 1
    reason = ran.one("fallback")["reason"]
    assert reason.startswith("ProviderRequestError not retryable (1 attempt)")
    assert "The model does not exist" in reason


@pytest.mark.parametrize("status", [502, 503, 529])
def test_every_5xx_is_transient(wire_server, keys, status):
    openai = wire_server(
        Reply(status=status, json=OPENAI_500), Reply(json=openai_completion("Ok."))
    )
    ran = run_flow(flow_doc(ask(**FAST_RETRIES), dependencies=providers(openai.url)))
    assert ran.result.ok
    assert len(ran.of("retry")) == 1


def test_when_every_provider_fails_the_run_fails_listing_every_attempt(wire_server, keys):
    openai = wire_server(Reply(status=500, json=OPENAI_500))
    anthropic = wire_server(
        Reply(status=529, json={"type": "error", "error": {"type": "overloaded_error"}})
    )
    ran = run_flow(flow_doc(with_fallback(), dependencies=providers(openai.url, anthropic.url)))

    assert ran.result.status == "failed"
    assert len(openai.requests) == 3 and len(anthropic.requests) == 3
    assert len(ran.of("retry")) == 4
    assert len(ran.of("fallback")) == 1
    assert ran.of("llm_response") == []
    error = ran.one("error", "ask")
    assert error["phase"] == "exec"
    assert error["error_type"] == "AllProvidersFailed"
    assert "all 6 attempts failed" in error["error"]
    assert ran.run_end["totals"]["cost"] == "0"
    for secret in keys:
        assert secret not in ran.serialized()


def test_a_forced_offline_failure_shows_retries_then_a_fallback_without_any_network():
    doc = flow_doc(
        llm(
            "ask",
            SHORT_PROMPT,
            provider="flaky",
            model="offline-flaky",
            fallbacks=[{"provider": "offline", "model": "offline-extractive-1"}],
            max_attempts=2,
            retry_base_delay=0.001,
        ),
        dependencies={"flaky": {"type": "offline", "config": {"fail_models": ["offline-flaky"]}}},
    )
    ran = run_flow(doc)
    assert ran.result.ok, ran.result.error
    (retry,) = ran.of("retry")
    assert retry["error_type"] == "ServerError"
    assert "injected server failure" in retry["error"]
    assert (retry["provider"], retry["model"], retry["attempt"]) == ("offline", "offline-flaky", 1)
    fallback = ran.one("fallback")
    assert (fallback["from_model"], fallback["to_model"]) == (
        "offline-flaky",
        "offline-extractive-1",
    )
    assert "ServerError after retries (2 attempts)" in fallback["reason"]
    assert ran.one("llm_response")["model"] == "offline-extractive-1"


def test_a_missing_environment_variable_is_a_load_error_naming_it(monkeypatch):
    monkeypatch.delenv("BPF_TEST_OPENAI_KEY", raising=False)
    with pytest.raises(ConfigError, match="BPF_TEST_OPENAI_KEY"):
        load(flow_doc(ask(), dependencies=providers("http://127.0.0.1:9")))


def test_the_api_key_defaults_to_the_provider_env_var(wire_server, monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", "sk-from-the-env")
    openai = wire_server(Reply(json=openai_completion("Paris.")))
    deps = {"primary": {"type": "openai", "config": {"base_url": openai.url}}}
    ran = run_flow(flow_doc(ask(), dependencies=deps))
    assert ran.result.ok, ran.result.error
    assert openai.last.headers["authorization"] == "Bearer sk-from-the-env"
    assert "sk-from-the-env" not in ran.serialized()


def test_no_key_at_all_fails_with_the_variable_to_set(wire_server):
    openai = wire_server(Reply(json=openai_completion("Paris.")))
    deps = {"primary": {"type": "openai", "config": {"base_url": openai.url}}}
    ran = run_flow(flow_doc(ask(), dependencies=deps))
    assert ran.result.status == "failed"
    assert "OPENAI_API_KEY" in ran.error
    assert openai.requests == []


# ------------------------------------------------------------------------------- the wire formats


def test_openai_streaming_emits_the_deltas_as_chunks(wire_server, keys):
    def chunk(content=None, finish=None):
        delta = {} if content is None else {"content": content}
        return {
            "id": "c",
            "model": "gpt-4o-mini-2024-07-18",
            "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
        }

    usage = {"prompt_tokens": 20, "completion_tokens": 3}
    stream = openai_events(
        chunk(""),
        chunk("Pa"),
        chunk("ris"),
        chunk("."),
        chunk(finish="stop"),
        {"id": "c", "model": "gpt-4o-mini-2024-07-18", "choices": [], "usage": usage},
    )
    openai = wire_server(Reply(events=stream))
    ran = run_flow(flow_doc(ask(stream=True), dependencies=providers(openai.url)))

    assert ran.result.ok, ran.result.error
    assert openai.last.json()["stream"] is True
    chunks = ran.of("stream_chunk", "ask")
    assert chunks == [
        {"text": "Pa", "chunk_index": 0},
        {"text": "ris", "chunk_index": 1},
        {"text": ".", "chunk_index": 2},
    ]
    response = ran.one("llm_response")
    assert response["text"] == "Paris." == ran.result.backpack.peek("ask")
    assert response["usage"]["input_tokens"] == 20
    assert response["finish_reason"] == "stop"


def test_anthropic_streaming_through_a_flow(wire_server, keys):
    def delta(text):
        return {
            "type": "content_block_delta",
            "index": 0,
            "delta": {"type": "text_delta", "text": text},
        }

    stream = anthropic_events(
        {
            "type": "message_start",
            "message": {
                "id": "m",
                "type": "message",
                "role": "assistant",
                "model": "claude-3-5-haiku-20241022",
                "content": [],
                "usage": {"input_tokens": 9, "output_tokens": 1},
            },
        },
        {"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}},
        delta("Par"),
        delta("is."),
        {"type": "content_block_stop", "index": 0},
        {
            "type": "message_delta",
            "delta": {"stop_reason": "end_turn"},
            "usage": {"output_tokens": 4},
        },
        {"type": "message_stop"},
    )
    anthropic = wire_server(Reply(events=stream))
    deps = {
        "claude": {
            "type": "anthropic",
            "config": {"base_url": anthropic.url, "api_key": "${BPF_TEST_ANTHROPIC_KEY}"},
        }
    }
    node = llm("ask", QUESTION, provider="claude", model="claude-3-5-haiku-latest", stream=True)
    ran = run_flow(flow_doc(node, dependencies=deps))

    assert ran.result.ok, ran.result.error
    assert [c["text"] for c in ran.of("stream_chunk")] == ["Par", "is."]
    response = ran.one("llm_response")
    assert response["text"] == "Paris."
    assert response["usage"]["output_tokens"] == 4
    assert anthropic.last.json()["stream"] is True


def test_cached_and_reasoning_tokens_are_counted_within_the_totals(wire_server, keys, tmp_path):
    prices = tmp_path / "prices.json"
    prices.write_text(
        json.dumps(
            {
                "providers": {
                    "openai": [
                        {
                            "pattern": "gpt-test-*",
                            "input": "2.00",
                            "cached_input": "0.50",
                            "output": "8.00",
                            "reasoning": "12.00",
                        }
                    ]
                }
            }
        )
    )
    body = openai_completion(
        "Paris.",
        model="gpt-test-1",
        prompt_tokens=1000,
        cached_tokens=600,
        completion_tokens=300,
        reasoning_tokens=120,
    )
    openai = wire_server(Reply(json=body))
    deps = {
        **providers(openai.url),
        "pricing": {"type": "pricing", "config": {"path": str(prices)}},
    }
    ran = run_flow(flow_doc(ask(model="gpt-test-1"), dependencies=deps))

    usage = ran.one("llm_response")["usage"]
    assert usage == {
        "input_tokens": 1000,
        "output_tokens": 300,
        "cached_input_tokens": 600,
        "reasoning_tokens": 120,
        "cache_write_tokens": 0,
        "total_tokens": 1300,
    }
    expected = price(400, "2.00") + price(600, "0.50") + price(180, "8.00") + price(120, "12.00")
    assert costs(ran) == [expected]
    assert ran.run_end["totals"] == {
        "tokens_input": 1000,  # cached tokens inside the input total, not added to it
        "tokens_output": 300,  # reasoning tokens inside the output total
        "total_tokens": 1300,
        "cost": format(expected, "f"),
    }
    (step,) = summarize(ran.events).steps
    assert (step.tokens_input, step.tokens_output, step.cost) == (1000, 300, expected)


def test_an_openai_model_missing_from_the_pricing_map_is_flagged(wire_server, keys):
    openai = wire_server(Reply(json=openai_completion("Paris.", model="ft:my-own-model")))
    ran = run_flow(flow_doc(ask(model="ft:my-own-model"), dependencies=providers(openai.url)))
    response = ran.one("llm_response")
    assert (response["cost"], response["cost_known"]) == ("0", False)
    (warning,) = [p for p in ran.of("log") if p["level"] == "warning"]
    assert "ft:my-own-model" in warning["message"] and "openai" in warning["message"]


def test_after_a_retry_the_chunks_since_the_last_retry_reassemble_to_the_text(wire_server, keys):
    def chunk(content):
        choice = {"index": 0, "delta": {"content": content}, "finish_reason": None}
        return {"id": "c", "model": "gpt-4o-mini", "choices": [choice]}

    usage = {
        "id": "c",
        "model": "gpt-4o-mini",
        "choices": [],
        "usage": {"prompt_tokens": 9, "completion_tokens": 2},
    }
    stream = openai_events(chunk("Par"), chunk("is."), usage)
    # the first answer breaks off mid-stream (a transient error), the second completes
    openai = wire_server(Reply(events=stream[:1], cut=True), Reply(events=stream))
    ran = run_flow(flow_doc(ask(stream=True, **FAST_RETRIES), dependencies=providers(openai.url)))

    assert ran.result.ok, ran.result.error
    kinds = [e["type"] for e in ran.events if e["type"] in ("stream_chunk", "retry")]
    assert kinds == ["stream_chunk", "retry", "stream_chunk", "stream_chunk"]
    after = ran.events[max(i for i, e in enumerate(ran.events) if e["type"] == "retry") :]
    text = "".join(e["payload"]["text"] for e in after if e["type"] == "stream_chunk")
    assert text == ran.one("llm_response")["text"] == "Paris."
    assert ran.one("retry")["error_type"] == "ProviderConnectionError"


def test_llm_request_shows_the_system_prompt_exactly_as_anthropic_received_it(wire_server, keys):
    anthropic = wire_server(Reply(json=anthropic_message('{"city": "Paris"}')))
    deps = {
        "claude": {
            "type": "anthropic",
            "config": {"base_url": anthropic.url, "api_key": "${BPF_TEST_ANTHROPIC_KEY}"},
        }
    }
    node = llm(
        "ask",
        QUESTION,
        system="Be brief.",
        provider="claude",
        model="claude-3-5-haiku-latest",
        response_format="json",
    )
    ran = run_flow(flow_doc(node, dependencies=deps))
    assert ran.result.ok, ran.result.error
    sent_system = anthropic.last.json()["system"]
    shown = ran.one("llm_request")["messages"][0]
    assert shown == {"role": "system", "content": sent_system}


def closed_port_url() -> str:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}"


def offline_fallback(**params):
    return ask(fallbacks=[{"provider": "offline", "model": "offline-extractive-1"}], **params)


def test_connection_errors_are_retried_with_exponential_backoff_and_jitter(keys):
    doc = flow_doc(
        offline_fallback(max_attempts=3, retry_base_delay=0.04, retry_max_delay=1),
        dependencies=providers(closed_port_url()),
    )
    ran = run_flow(doc)
    assert ran.result.ok, ran.result.error
    first, second = ran.of("retry")
    assert first["error_type"] == second["error_type"] == "ProviderConnectionError"
    # backoff 0.04 s then 0.08 s, each reduced by a random part of up to half (jitter)
    assert 0.02 <= first["delay_s"] <= 0.04
    assert 0.04 <= second["delay_s"] <= 0.08
    assert ran.one("fallback")["reason"].startswith("ProviderConnectionError after retries")
    assert ran.one("llm_response")["provider"] == "offline"


def test_a_provider_that_does_not_answer_times_out_and_is_retried(wire_server, keys):
    silent = wire_server(Reply(hang=True))
    deps = providers(silent.url)
    deps["primary"]["config"]["timeout"] = 0.2
    ran = run_flow(flow_doc(offline_fallback(**FAST_RETRIES), dependencies=deps))
    assert ran.result.ok, ran.result.error
    assert [r["error_type"] for r in ran.of("retry")] == ["ProviderTimeout"] * 2
    assert len(silent.requests) == 3
    assert "no answer within 0.2s" in ran.one("fallback")["reason"]


def test_a_malformed_answer_is_not_retried(wire_server, keys):
    broken = wire_server(Reply(body=b"<html>gateway</html>", content_type="text/html"))
    ran = run_flow(flow_doc(offline_fallback(**FAST_RETRIES), dependencies=providers(broken.url)))
    assert ran.result.ok
    assert ran.of("retry") == []
    assert ran.one("fallback")["reason"].startswith("MalformedResponse not retryable")
