"""OpenAI Chat Completions through the official ``openai`` SDK (also any server that speaks
that wire format: vLLM, Ollama, LM Studio, Azure OpenAI)."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable, Mapping
from typing import Any, Literal

import httpx2
import httpx_sse
import openai

from backpackflow.policy import EgressPolicy
from backpackflow_llm.providers._http import (
    HTTPProvider,
    SDKCall,
    StreamResult,
    WireError,
    field,
    loads_event,
    reported_model,
    token_count,
)
from backpackflow_llm.providers.base import OnChunk
from backpackflow_llm.types import (
    LLMRequest,
    LLMResponse,
    Message,
    ProviderConnectionError,
    ProviderError,
    ProviderRequestError,
    RateLimited,
    ServerError,
    ToolCall,
    Usage,
)

__all__ = ["OpenAIProvider"]

_NONE = type(None)


class OpenAIProvider(HTTPProvider):
    """``POST {base_url}/chat/completions`` in the OpenAI wire format, sent by the SDK.

    The system prompt travels as a first ``system`` message; ``response_format="json"`` sends
    ``{"type": "json_object"}`` (OpenAI then requires the word "JSON" somewhere in the
    messages), or with a ``json_schema`` ``{"type": "json_schema", "json_schema": {...,
    "strict": true}}`` (structured output). ``max_tokens`` is sent as
    ``max_completion_tokens``, the field every current OpenAI model accepts (reasoning models
    refuse ``max_tokens``); pass ``max_tokens_field="max_tokens"`` for older OpenAI-compatible
    servers. Tools are sent as ``function`` tools, and the model's ``tool_calls`` come back as
    :class:`~backpackflow_llm.types.ToolCall` data. Streams ask for
    ``stream_options.include_usage``; a server that sends no usage (in a stream or an answer)
    gets it estimated and marked ``estimated``, never a crash. A refusal (``refusal``, streamed
    or not) is :attr:`LLMResponse.refusal`, not text. ``name`` lets one class serve several
    OpenAI-compatible endpoints under distinct provider names (pricing and cache keys use it).

    Azure OpenAI: ``base_url`` is the deployment's URL (``.../openai/deployments/<name>``) with
    ``?api-version=`` (or ``api_version=``), the key in ``extra_headers={"api-key": ...}`` and
    ``require_api_key=False``. Local servers take ``require_api_key=False``.

    The API key comes from ``api_key`` or, at call time, from the ``api_key_env`` environment
    variable; only a call without either raises
    :class:`~backpackflow_llm.types.MissingAPIKey` (unless ``require_api_key`` is false).
    """

    wire = "OpenAI Chat Completions"

    def __init__(
        self,
        api_key: str | None = None,
        base_url: str = "https://api.openai.com/v1",
        timeout: float = 60,
        api_key_env: str = "OPENAI_API_KEY",
        *,
        name: str = "openai",
        max_tokens_field: Literal["max_completion_tokens", "max_tokens"] = "max_completion_tokens",
        client: httpx2.AsyncClient | None = None,
        extra_headers: Mapping[str, str] | None = None,
        egress: EgressPolicy | None = None,
        getenv: Callable[[str], str | None] | None = None,
        require_api_key: bool = True,
        api_version: str | None = None,
    ) -> None:
        super().__init__(
            name=name,
            api_key=api_key,
            api_key_env=api_key_env,
            base_url=base_url,
            timeout=timeout,
            client=client,
            extra_headers=extra_headers,
            egress=egress,
            getenv=getenv,
            require_api_key=require_api_key,
            query={"api-version": api_version} if api_version else None,
        )
        if max_tokens_field not in ("max_completion_tokens", "max_tokens"):
            raise ValueError(f"OpenAIProvider: unknown max_tokens_field {max_tokens_field!r}")
        self.max_tokens_field = max_tokens_field

    def endpoint(self) -> str:
        return "/chat/completions"

    def sdk_call(self, http_client: httpx2.AsyncClient, api_key: str) -> SDKCall:
        client = openai.AsyncOpenAI(
            # without a key (a local server), a placeholder the SDK needs, never sent: the
            # SDK would otherwise read OPENAI_API_KEY itself, around the sandbox policy
            api_key=api_key or "unused",
            base_url=self.base_url,
            timeout=self.timeout,
            max_retries=0,  # retries and fallbacks are the project's
            default_query=self.query or None,
            http_client=http_client,
        )
        return client.chat.completions.with_streaming_response.create

    def call_headers(self, api_key: str) -> dict[str, Any]:
        # no key: the SDK's Authorization header (from its placeholder key) is left out
        return {} if api_key else {"Authorization": openai.Omit()}

    def messages_sent(self, request: LLMRequest) -> list[dict[str, Any]]:
        """The messages exactly as this provider sends them, for ``llm_request`` events."""
        messages: list[dict[str, Any]] = self.body(request)["messages"]
        return messages

    def body(self, request: LLMRequest) -> dict[str, Any]:
        messages: list[dict[str, Any]] = []
        if request.system is not None:
            messages.append({"role": "system", "content": request.system})
        messages.extend(_wire_message(m) for m in request.messages)
        body: dict[str, Any] = {"model": request.model, "messages": messages}
        if request.temperature is not None:
            body["temperature"] = request.temperature
        if request.max_tokens is not None:
            body[self.max_tokens_field] = request.max_tokens
        if request.json_schema is not None:
            body["response_format"] = {
                "type": "json_schema",
                "json_schema": {"name": "answer", "schema": request.json_schema, "strict": True},
            }
        elif request.response_format == "json":
            body["response_format"] = {"type": "json_object"}
        if request.tools:
            body["tools"] = [
                {
                    "type": "function",
                    "function": {
                        "name": t.name,
                        "description": t.description,
                        "parameters": dict(t.parameters),
                    },
                }
                for t in request.tools
            ]
        if request.tool_choice is not None:
            choice = request.tool_choice
            body["tool_choice"] = (
                choice
                if choice in ("auto", "none", "required")
                else {"type": "function", "function": {"name": choice}}
            )
        if request.stream:
            body["stream"] = True
            body["stream_options"] = {"include_usage": True}
        return body

    def parse_response(self, data: Any, request: LLMRequest, latency_ms: float) -> LLMResponse:
        field(data, "choices", 0, kind=dict)
        message = field(data, "choices", 0, "message", kind=dict)
        content = field(data, "choices", 0, "message", "content", kind=(str, _NONE))
        refusal = message.get("refusal")
        calls = tuple(
            _tool_call(field(data, "choices", 0, "message", "tool_calls", i, kind=dict), i)
            for i in range(len(message.get("tool_calls") or ()))
        )
        finish = data["choices"][0].get("finish_reason")
        text = content or ""
        usage = data.get("usage")
        return LLMResponse(
            text=text,
            usage=_usage(usage) if usage is not None else _estimate(request, text, calls),
            provider=self.name,
            model=reported_model(data, request.model),
            finish_reason=finish if isinstance(finish, str) else None,
            latency_ms=latency_ms,
            raw=data,
            refusal=refusal if isinstance(refusal, str) else None,
            tool_calls=calls,
        )

    async def consume_stream(
        self,
        events: AsyncIterator[httpx_sse.ServerSentEvent],
        request: LLMRequest,
        on_chunk: OnChunk | None,
    ) -> StreamResult:
        parts: list[str] = []
        refusal: list[str] = []
        calls: dict[int, dict[str, Any]] = {}  # index -> id, name, argument pieces
        usage: Usage | None = None
        finish: str | None = None
        model = request.model
        raw: dict[str, Any] | None = None
        seen = 0
        async for event in events:
            if event.data.strip() == "[DONE]":
                break
            seen += 1
            try:
                data = loads_event(event)
                if not isinstance(data, dict):
                    raise WireError("stream event is not a JSON object")
                if "error" in data:
                    raise self._stream_error(data, request.model)
                model = reported_model(data, model)
                raw = raw if data.get("usage") is None and raw is not None else data
                for choice in field(data, "choices", kind=list):
                    if not isinstance(choice, dict) or choice.get("index", 0) != 0:
                        continue
                    delta = choice.get("delta") or {}
                    if not isinstance(delta, dict):
                        raise WireError("choices[].delta is not an object")
                    piece = delta.get("content")
                    if isinstance(piece, str) and piece:
                        parts.append(piece)
                        if on_chunk is not None:
                            on_chunk(piece)
                    if isinstance(delta.get("refusal"), str):
                        refusal.append(delta["refusal"])
                    for call in delta.get("tool_calls") or ():
                        _merge_call_delta(calls, call)
                    if isinstance(choice.get("finish_reason"), str):
                        finish = choice["finish_reason"]
                if data.get("usage"):
                    usage = _usage(data["usage"])
            except WireError as exc:
                exc.body = exc.body or event.data
                raise
        else:
            raise ProviderConnectionError(
                f"the event stream ended after {seen} events without 'data: [DONE]' "
                "(connection dropped mid-answer)",
                provider=self.name,
                model=request.model,
            )
        tool_calls = tuple(_streamed_call(calls[i], i) for i in sorted(calls))
        text = "".join(parts)
        if usage is None:  # the server ignored stream_options: estimate, and say so
            usage = _estimate(request, text, tool_calls)
        return StreamResult(
            text,
            usage,
            model,
            finish,
            raw,
            refusal="".join(refusal) if refusal else None,
            tool_calls=tool_calls,
        )

    def _stream_error(self, data: dict[str, Any], model: str) -> ProviderError:
        """An error sent as a stream event after the 200 status (e.g. the server broke)."""
        raw_error = data["error"]
        error: dict[str, Any] = raw_error if isinstance(raw_error, dict) else {}
        kind = str(error.get("type") or error.get("code") or "error")
        detail = f"error in the stream ({kind}): {self.error_message(data) or error}"
        if "rate_limit" in kind:
            return RateLimited(detail, provider=self.name, model=model)
        if kind in ("invalid_request_error", "invalid_api_key", "insufficient_quota"):
            return ProviderRequestError(detail, provider=self.name, model=model)
        return ServerError(detail, provider=self.name, model=model)


def _wire_message(message: Message) -> dict[str, Any]:
    """A message in the Chat Completions shape (tool calls as ``function`` calls whose
    arguments are a JSON string; a tool result as a ``tool`` message)."""
    if message.role == "tool":
        return {"role": "tool", "tool_call_id": message.tool_call_id, "content": message.content}
    if message.tool_calls:
        return {
            "role": "assistant",
            "content": message.content or None,
            "tool_calls": [
                {
                    "id": c.id,
                    "type": "function",
                    "function": {
                        "name": c.name,
                        "arguments": json.dumps(dict(c.arguments), ensure_ascii=False),
                    },
                }
                for c in message.tool_calls
            ],
        }
    return {"role": message.role, "content": message.content}


def _arguments(text: Any, where: str) -> dict[str, Any]:
    """A tool call's arguments: a JSON string holding an object ("" is no arguments)."""
    if not isinstance(text, str):
        raise WireError(f"field {where} is {type(text).__name__}, expected a JSON string")
    if not text.strip():
        return {}
    try:
        value = json.loads(text)
    except ValueError:
        raise WireError(f"field {where} is not JSON: {text[:100]!r}") from None
    if not isinstance(value, dict):
        raise WireError(f"field {where} is not a JSON object")
    return value


def _tool_call(data: dict[str, Any], index: int) -> ToolCall:
    where = f"$.choices[0].message.tool_calls[{index}]"
    function = data.get("function")
    if not isinstance(function, dict) or not isinstance(function.get("name"), str):
        raise WireError(f"field {where}.function.name is missing")
    if not isinstance(data.get("id"), str):
        raise WireError(f"field {where}.id is missing")
    arguments = _arguments(function.get("arguments", ""), f"{where}.function.arguments")
    return ToolCall(data["id"], function["name"], arguments)


def _merge_call_delta(calls: dict[int, dict[str, Any]], delta: Any) -> None:
    """Add one streamed tool-call piece: the first carries id and name, the rest pieces of
    the arguments' JSON text."""
    if not isinstance(delta, dict) or not isinstance(delta.get("index"), int):
        raise WireError("a streamed tool call has no index")
    call = calls.setdefault(delta["index"], {"id": None, "name": None, "arguments": []})
    if isinstance(delta.get("id"), str):
        call["id"] = delta["id"]
    function = delta.get("function") or {}
    if isinstance(function.get("name"), str):
        call["name"] = function["name"]
    if isinstance(function.get("arguments"), str):
        call["arguments"].append(function["arguments"])


def _streamed_call(call: dict[str, Any], index: int) -> ToolCall:
    if not call["id"] or not call["name"]:
        raise WireError(f"streamed tool call {index} has no id or name")
    where = f"streamed tool_calls[{index}].function.arguments"
    return ToolCall(call["id"], call["name"], _arguments("".join(call["arguments"]), where))


def _estimate(request: LLMRequest, text: str, calls: tuple[ToolCall, ...]) -> Usage:
    """Usage for an answer that came without any (some compatible servers)."""
    prompt = (request.system or "") + "".join(m.content for m in request.messages)
    answer = text + "".join(json.dumps(dict(c.arguments)) for c in calls)
    return Usage.estimate(prompt, answer)


def _usage(data: Any) -> Usage:
    """OpenAI usage -> :class:`Usage`; the ``*_details`` parts are optional (older servers)."""
    if not isinstance(data, dict):
        raise WireError(f"usage is {type(data).__name__}, expected an object")
    try:
        return Usage(
            input_tokens=token_count(data, "prompt_tokens"),
            output_tokens=token_count(data, "completion_tokens"),
            cached_input_tokens=token_count(
                data, "prompt_tokens_details", "cached_tokens", optional=True
            ),
            reasoning_tokens=token_count(
                data, "completion_tokens_details", "reasoning_tokens", optional=True
            ),
            cache_write_tokens=token_count(
                data, "prompt_tokens_details", "cache_write_tokens", optional=True
            ),
        )
    except WireError as exc:
        raise WireError(f"{exc} of usage") from None
    except ValueError as exc:
        raise WireError(f"inconsistent usage: {exc}") from None
