"""Requests, usage, responses and the error hierarchy."""

from __future__ import annotations

import json
import pickle

import attrs
import pytest
from hypothesis import given
from hypothesis import strategies as st

from backpackflow.errors import BackpackFlowError, SerializationError
from backpackflow_llm import (
    LLMRequest,
    LLMResponse,
    MalformedResponse,
    Message,
    MissingAPIKey,
    ProviderConnectionError,
    ProviderError,
    ProviderRequestError,
    ProviderTimeout,
    RateLimited,
    ServerError,
    ToolCall,
    ToolSpec,
    Usage,
)


def test_request_from_prompt_and_json_round_trip():
    req = LLMRequest.from_prompt(
        "openai", "gpt-4o", "Hi", system="S", temperature=0.3, max_tokens=9, stream=True
    )
    assert req.messages == (Message("user", "Hi"),)
    data = json.loads(json.dumps(req.to_json()))
    assert data["messages"] == [{"role": "user", "content": "Hi"}]
    assert LLMRequest.from_json(data) == req


def test_messages_may_be_given_as_mappings_and_become_a_tuple():
    req = LLMRequest("p", "m", [{"role": "user", "content": "a"}])  # type: ignore[arg-type]
    assert req.messages == (Message("user", "a"),)
    hash(req)  # requests are hashable values


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"messages": ()}, ValueError, "at least one message"),
        ({"temperature": -0.1}, ValueError, "temperature must be >= 0"),
        ({"temperature": float("nan")}, TypeError, "finite number"),
        ({"temperature": True}, TypeError, "finite number"),
        ({"max_tokens": 0}, ValueError, "max_tokens must be >= 1"),
        ({"max_tokens": 1.5}, TypeError, "max_tokens must be an int"),
        ({"response_format": "xml"}, ValueError, "response_format must be one of"),
        ({"system": 3}, TypeError, "system must be a str"),
        ({"stream": "yes"}, TypeError, "stream"),
    ],
)
def test_bad_requests_are_refused(kwargs, error, match):
    base = {"provider": "p", "model": "m", "messages": (Message("user", "x"),)}
    with pytest.raises(error, match=match):
        LLMRequest(**{**base, **kwargs})


def test_system_is_not_a_message_role():
    with pytest.raises(ValueError, match=r"put the system prompt in LLMRequest\.system"):
        Message("system", "x")
    with pytest.raises(ValueError, match="role must be one of"):
        Message("developer", "x")
    with pytest.raises(ValueError, match="needs the tool_call_id"):
        Message("tool", "x")
    with pytest.raises(ValueError, match="only an assistant message carries tool_calls"):
        Message("user", "x", tool_calls=[ToolCall("c1", "t", {})])


def test_tool_calls_and_tool_choice_round_trip_and_are_checked():
    spec = ToolSpec("read_file", "Read a file", {"type": "object", "properties": {}})
    assistant = Message(
        "assistant", "", tool_calls=[{"id": "c1", "name": "read_file", "arguments": {"path": "a"}}]
    )
    request = LLMRequest(
        "p",
        "m",
        (Message("user", "hi"), assistant, Message("tool", '{"ok": 1}', tool_call_id="c1")),
        tools=(spec,),
        tool_choice="read_file",
    )
    assert LLMRequest.from_json(request.to_json()) == request
    with pytest.raises(ValueError, match="tool_choice must be one of"):
        LLMRequest("p", "m", (Message("user", "hi"),), tools=(spec,), tool_choice="other")
    with pytest.raises(ValueError, match="tool names must be unique"):
        LLMRequest("p", "m", (Message("user", "hi"),), tools=(spec, spec))
    with pytest.raises(ValueError, match='needs response_format="json"'):
        LLMRequest("p", "m", (Message("user", "hi"),), json_schema={"type": "object"})


def test_from_json_reports_bad_data_as_serialization_errors():
    with pytest.raises(SerializationError, match="unknown fields"):
        LLMRequest.from_json({"provider": "p", "model": "m", "messages": [], "top_p": 1})
    with pytest.raises(SerializationError):
        LLMRequest.from_json({"provider": "p", "model": "m", "messages": []})


def test_usage_parts_are_within_the_totals():
    usage = Usage(100, 40, cached_input_tokens=30, reasoning_tokens=10, cache_write_tokens=20)
    assert usage.total_tokens == 140
    with pytest.raises(ValueError, match="counted within input_tokens"):
        Usage(10, 0, cached_input_tokens=6, cache_write_tokens=5)
    with pytest.raises(ValueError, match="counted within output_tokens"):
        Usage(0, 5, reasoning_tokens=6)
    with pytest.raises(ValueError, match=">= 0"):
        Usage(-1, 0)
    with pytest.raises(TypeError, match="must be an int"):
        Usage(1.0, 0)  # type: ignore[arg-type]


counts = st.integers(0, 10**9)


@st.composite
def usages(draw: st.DrawFn) -> Usage:
    i, o = draw(counts), draw(counts)
    cached = draw(st.integers(0, i))
    return Usage(i, o, cached, draw(st.integers(0, o)), draw(st.integers(0, i - cached)))


@given(usages(), usages())
def test_usage_addition_adds_every_field(a, b):
    total = a + b
    assert total.total_tokens == a.total_tokens + b.total_tokens
    for f in attrs.fields(Usage):
        assert getattr(total, f.name) == getattr(a, f.name) + getattr(b, f.name)
    assert Usage.from_json(total.to_json()) == total
    assert a + Usage.zero() == a


def test_response_json_round_trip():
    response = LLMResponse("t", Usage(1, 2), "openai", "gpt-4o", None, 12.5, {"id": "x"})
    assert LLMResponse.from_json(json.loads(json.dumps(response.to_json()))) == response
    with pytest.raises(SerializationError):
        LLMResponse.from_json({"text": "t"})


ERRORS = [
    (ProviderConnectionError, True),
    (ProviderTimeout, True),
    (RateLimited, True),
    (ServerError, True),
    (ProviderRequestError, False),
]


@pytest.mark.parametrize(("cls", "transient"), ERRORS)
def test_errors_say_who_what_and_what_to_do(cls, transient):
    error = cls("HTTP 503 server error", provider="openai", model="gpt-4o", status=503)
    assert isinstance(error, ProviderError) and isinstance(error, BackpackFlowError)
    assert error.transient is transient
    text = str(error)
    assert text.startswith("openai model 'gpt-4o': HTTP 503 server error; ")
    assert len(text) > len("openai model 'gpt-4o': HTTP 503 server error; ") + 10  # a hint
    clone = pickle.loads(pickle.dumps(error))
    assert type(clone) is cls and str(clone) == text
    assert (clone.provider, clone.model, clone.status, clone.transient) == (
        "openai",
        "gpt-4o",
        503,
        transient,
    )


def test_transient_can_be_overridden():
    assert not ServerError("x", provider="p", model="m", transient=False).transient


def test_malformed_response_keeps_a_truncated_body():
    error = MalformedResponse("not JSON", body="<" * 5000, provider="p", model="m")
    assert len(error.body) == MalformedResponse.BODY_LIMIT
    assert "body: '<<<" in str(error) and len(str(error)) < 400
    assert not error.transient
    assert pickle.loads(pickle.dumps(error)).body == error.body


def test_missing_api_key_names_the_variable():
    error = MissingAPIKey(provider="openai", model="gpt-4o", env_var="OPENAI_API_KEY", owner="X")
    assert error.env_var == "OPENAI_API_KEY"
    assert "export OPENAI_API_KEY=" in str(error)
    assert not error.transient
