"""Checking the wire against the official SDKs' own types: a request body must be a value of
the SDK's request TypedDict (no key outside it); answers are built with the SDK's response
models. Shared by the provider wire tests and the node tests that run over the wire."""

from __future__ import annotations

import json
import typing
from typing import Any

import pydantic
from anthropic.types import message_create_params
from openai.types import chat as oc
from openai.types.chat import completion_create_params


def valid_request(typed_dict: Any, body: dict[str, Any]) -> None:
    """``body`` is a value of the SDK's request TypedDict, with no key outside it."""
    allowed = set(typing.get_type_hints(typed_dict))
    assert set(body) <= allowed, f"keys the SDK's request type lacks: {set(body) - allowed}"
    pydantic.TypeAdapter(typed_dict).validate_python(body, strict=False)


def openai_request(body: dict[str, Any]) -> None:
    kind = (
        completion_create_params.CompletionCreateParamsStreaming
        if body.get("stream")
        else completion_create_params.CompletionCreateParamsNonStreaming
    )
    valid_request(kind, body)


def anthropic_request(body: dict[str, Any]) -> None:
    kind = (
        message_create_params.MessageCreateParamsStreaming
        if body.get("stream")
        else message_create_params.MessageCreateParamsNonStreaming
    )
    valid_request(kind, body)


def check_sdk_request(path: str, body: Any) -> None:
    """A chat request as the SDK of its API would accept it (other paths: not checked)."""
    endpoint = path.split("?", 1)[0].rstrip("/")
    if endpoint.endswith("/chat/completions"):
        openai_request(body)
    elif endpoint.endswith("/messages"):
        anthropic_request(body)


def dump(model: pydantic.BaseModel) -> dict[str, Any]:
    return model.model_dump(mode="json", exclude_unset=True)


def chunk(delta: dict[str, Any], finish: str | None = None, usage: Any = None) -> str:
    model = oc.ChatCompletionChunk(
        id="c",
        object="chat.completion.chunk",
        created=1,
        model="gpt-4o-mini-2024-07-18",
        choices=[{"index": 0, "delta": delta, "finish_reason": finish}]
        if delta is not None
        else [],
        usage=usage,
    )
    return json.dumps(dump(model))
