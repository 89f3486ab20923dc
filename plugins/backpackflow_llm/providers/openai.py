"""OpenAI Chat Completions over httpx (also any server that speaks that wire format)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Mapping
from typing import Any, Literal

import httpx
import httpx_sse

from backpackflow.policy import EgressPolicy
from backpackflow_llm.providers._http import (
    HTTPProvider,
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
    ProviderConnectionError,
    ProviderError,
    ProviderRequestError,
    RateLimited,
    ServerError,
    Usage,
)

__all__ = ["OpenAIProvider"]

_NONE = type(None)


class OpenAIProvider(HTTPProvider):
    """``POST {base_url}/chat/completions`` in the OpenAI wire format.

    The system prompt travels as a first ``system`` message; ``response_format="json"`` sends
    ``{"type": "json_object"}`` (OpenAI then requires the word "JSON" somewhere in the
    messages). ``max_tokens`` is sent as ``max_completion_tokens``, the field every current
    OpenAI model accepts (reasoning models refuse ``max_tokens``); pass
    ``max_tokens_field="max_tokens"`` for older OpenAI-compatible servers. Streams ask for
    ``stream_options.include_usage`` so the final event carries the usage; a stream without it
    is a :class:`~backpackflow_llm.types.MalformedResponse`, because cost accounting must not
    guess. ``name`` lets one class serve several OpenAI-compatible endpoints under distinct
    provider names (pricing and cache keys use it).

    The API key comes from ``api_key`` or, at call time, from the ``api_key_env`` environment
    variable; only a call without either raises
    :class:`~backpackflow_llm.types.MissingAPIKey`.
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
        client: httpx.AsyncClient | None = None,
        extra_headers: Mapping[str, str] | None = None,
        egress: EgressPolicy | None = None,
        getenv: Callable[[str], str | None] | None = None,
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
        )
        if max_tokens_field not in ("max_completion_tokens", "max_tokens"):
            raise ValueError(f"OpenAIProvider: unknown max_tokens_field {max_tokens_field!r}")
        self.max_tokens_field = max_tokens_field

    def endpoint(self) -> str:
        return "/chat/completions"

    def headers(self, api_key: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {api_key}"}

    def messages_sent(self, request: LLMRequest) -> list[dict[str, Any]]:
        """The messages exactly as this provider sends them, for ``llm_request`` events."""
        messages: list[dict[str, Any]] = self.body(request)["messages"]
        return messages

    def body(self, request: LLMRequest) -> dict[str, Any]:
        messages: list[dict[str, str]] = []
        if request.system is not None:
            messages.append({"role": "system", "content": request.system})
        messages.extend(m.to_json() for m in request.messages)
        body: dict[str, Any] = {"model": request.model, "messages": messages}
        if request.temperature is not None:
            body["temperature"] = request.temperature
        if request.max_tokens is not None:
            body[self.max_tokens_field] = request.max_tokens
        if request.response_format == "json":
            body["response_format"] = {"type": "json_object"}
        if request.stream:
            body["stream"] = True
            body["stream_options"] = {"include_usage": True}
        return body

    def parse_response(self, data: Any, request: LLMRequest, latency_ms: float) -> LLMResponse:
        field(data, "choices", 0, kind=dict)
        message = field(data, "choices", 0, "message", kind=dict)
        content = field(data, "choices", 0, "message", "content", kind=(str, _NONE))
        if content is None:  # a refusal or a tool call: the refusal is the only text there is
            refusal = message.get("refusal")
            content = refusal if isinstance(refusal, str) else ""
        finish = data["choices"][0].get("finish_reason")
        return LLMResponse(
            text=content,
            usage=_usage(field(data, "usage", kind=dict)),
            provider=self.name,
            model=reported_model(data, request.model),
            finish_reason=finish if isinstance(finish, str) else None,
            latency_ms=latency_ms,
            raw=data,
        )

    async def consume_stream(
        self,
        events: AsyncIterator[httpx_sse.ServerSentEvent],
        request: LLMRequest,
        on_chunk: OnChunk | None,
    ) -> StreamResult:
        parts: list[str] = []
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
                for choice in field(data, "choices", kind=list):
                    if not isinstance(choice, dict) or choice.get("index", 0) != 0:
                        continue
                    delta = choice.get("delta") or {}
                    piece = delta.get("content") if isinstance(delta, dict) else None
                    if isinstance(piece, str) and piece:
                        parts.append(piece)
                        if on_chunk is not None:
                            on_chunk(piece)
                    if isinstance(choice.get("finish_reason"), str):
                        finish = choice["finish_reason"]
                if data.get("usage"):
                    usage = _usage(data["usage"])
                    raw = data
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
        if usage is None:
            raise WireError("no usage in the stream (the server ignored stream_options)")
        return StreamResult("".join(parts), usage, model, finish, raw)

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
        )
    except WireError as exc:
        raise WireError(f"{exc} of usage") from None
    except ValueError as exc:
        raise WireError(f"inconsistent usage: {exc}") from None
