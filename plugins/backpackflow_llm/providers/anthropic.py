"""Anthropic Messages API over httpx."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Mapping
from typing import Any

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
    ProviderTimeout,
    RateLimited,
    ServerError,
    Usage,
)

__all__ = ["JSON_INSTRUCTION", "AnthropicProvider"]

API_VERSION = "2023-06-01"
JSON_INSTRUCTION = "Respond with a single valid JSON object and nothing else."


class AnthropicProvider(HTTPProvider):
    """``POST {base_url}/messages`` in the Anthropic Messages wire format.

    Headers ``x-api-key`` and ``anthropic-version: 2023-06-01``; the system prompt is the
    top-level ``system`` field. The API requires ``max_tokens``, so a request without one
    gets ``default_max_tokens``. The Messages API has no JSON mode, so
    ``response_format="json"`` appends :data:`JSON_INSTRUCTION` to the system prompt (the
    answer is not validated here; a node that needs JSON parses it).

    Usage: Anthropic's ``input_tokens`` counts only the uncached part of the prompt, so
    :attr:`Usage.input_tokens` is ``input_tokens + cache_read_input_tokens +
    cache_creation_input_tokens`` (every prompt token), with ``cache_read_input_tokens`` as
    ``cached_input_tokens`` and ``cache_creation_input_tokens`` as ``cache_write_tokens``, each
    priced at its own rate. Extended-thinking tokens are not reported separately by the API;
    they are inside ``output_tokens`` and ``reasoning_tokens`` stays 0.

    The API key comes from ``api_key`` or, at call time, from ``api_key_env``.
    """

    wire = "Anthropic Messages"

    def __init__(
        self,
        api_key: str | None = None,
        base_url: str = "https://api.anthropic.com/v1",
        timeout: float = 60,
        api_key_env: str = "ANTHROPIC_API_KEY",
        *,
        name: str = "anthropic",
        default_max_tokens: int = 1024,
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
        if default_max_tokens < 1:
            raise ValueError("AnthropicProvider: default_max_tokens must be >= 1")
        self.default_max_tokens = default_max_tokens

    def endpoint(self) -> str:
        return "/messages"

    def headers(self, api_key: str) -> dict[str, str]:
        return {"x-api-key": api_key, "anthropic-version": API_VERSION}

    def body(self, request: LLMRequest) -> dict[str, Any]:
        body: dict[str, Any] = {
            "model": request.model,
            "max_tokens": request.max_tokens or self.default_max_tokens,
            "messages": [m.to_json() for m in request.messages],
        }
        system = request.system
        if request.response_format == "json":
            system = f"{system}\n\n{JSON_INSTRUCTION}" if system else JSON_INSTRUCTION
        if system is not None:
            body["system"] = system
        if request.temperature is not None:
            body["temperature"] = request.temperature
        if request.stream:
            body["stream"] = True
        return body

    def messages_sent(self, request: LLMRequest) -> list[dict[str, Any]]:
        """The conversation exactly as this provider sends it (the system prompt first, with
        the JSON instruction it adds in JSON mode), for ``llm_request`` events."""
        body = self.body(request)
        system = [{"role": "system", "content": body["system"]}] if "system" in body else []
        return system + list(body["messages"])

    def parse_response(self, data: Any, request: LLMRequest, latency_ms: float) -> LLMResponse:
        blocks = field(data, "content", kind=list)
        texts = []
        for i, block in enumerate(blocks):
            if field(block, "type", kind=str) == "text":
                texts.append(field(data, "content", i, "text", kind=str))
        stop = data.get("stop_reason")
        return LLMResponse(
            text="".join(texts),
            usage=_usage(field(data, "usage", kind=dict)),
            provider=self.name,
            model=reported_model(data, request.model),
            finish_reason=stop if isinstance(stop, str) else None,
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
        message: dict[str, Any] | None = None
        counts: dict[str, int] = {}
        stop: str | None = None
        seen = 0
        async for event in events:
            seen += 1
            try:
                data = loads_event(event)
                kind = field(data, "type", kind=str)
                if kind == "message_start":
                    message = field(data, "message", kind=dict)
                    counts.update(_counts(field(data, "message", "usage", kind=dict)))
                elif kind == "content_block_start":
                    block = field(data, "content_block", kind=dict)
                    if block.get("type") == "text" and block.get("text"):
                        _emit(str(block["text"]), parts, on_chunk)
                elif kind == "content_block_delta":
                    if field(data, "delta", "type", kind=str) == "text_delta":
                        _emit(field(data, "delta", "text", kind=str), parts, on_chunk)
                elif kind == "message_delta":
                    reason = field(data, "delta", kind=dict).get("stop_reason")
                    stop = reason if isinstance(reason, str) else stop
                    # usage here is cumulative; newer API versions repeat the input counts too
                    counts.update(_counts(data.get("usage") or {}))
                elif kind == "message_stop":
                    break
                elif kind == "error":
                    raise self._stream_error(data, request.model)
                # ping, content_block_stop and event types added later carry no text
            except WireError as exc:
                exc.body = exc.body or event.data
                raise
        else:
            raise ProviderConnectionError(
                f"the event stream ended after {seen} events without message_stop "
                "(connection dropped mid-answer)",
                provider=self.name,
                model=request.model,
            )
        if message is None:
            raise WireError("no message_start event before message_stop")
        return StreamResult(
            text="".join(parts),
            usage=_usage(counts),
            model=reported_model(message, request.model),
            finish_reason=stop,
            raw={**message, "stop_reason": stop, "usage": counts},
        )

    def _stream_error(self, data: dict[str, Any], model: str) -> ProviderError:
        """An ``error`` event sent after the 200 status (e.g. ``overloaded_error``)."""
        raw_error = data.get("error")
        error: dict[str, Any] = raw_error if isinstance(raw_error, dict) else {}
        kind = str(error.get("type") or "error")
        detail = f"error event in the stream ({kind}): {self.error_message(data) or data}"
        common: dict[str, Any] = {"provider": self.name, "model": model}
        if kind == "overloaded_error":
            return ServerError(detail, status=529, **common)
        if kind == "rate_limit_error":
            return RateLimited(detail, status=429, **common)
        if kind == "timeout_error":
            return ProviderTimeout(detail, **common)
        if kind in (
            "invalid_request_error",
            "authentication_error",
            "permission_error",
            "not_found_error",
            "request_too_large",
            "billing_error",
        ):
            return ProviderRequestError(detail, **common)
        return ServerError(detail, **common)  # api_error and unknown kinds: the server broke


def _emit(piece: str, parts: list[str], on_chunk: OnChunk | None) -> None:
    if piece:
        parts.append(piece)
        if on_chunk is not None:
            on_chunk(piece)


_COUNT_FIELDS = (
    "input_tokens",
    "output_tokens",
    "cache_read_input_tokens",
    "cache_creation_input_tokens",
)


def _counts(usage: Any) -> dict[str, int]:
    """The token counts present in a usage object (absent or null ones are left out)."""
    if not isinstance(usage, dict):
        raise WireError(f"usage is {type(usage).__name__}, expected an object")
    return {name: token_count(usage, name) for name in _COUNT_FIELDS if usage.get(name) is not None}


def _usage(data: dict[str, Any]) -> Usage:
    """Anthropic usage -> :class:`Usage`, folding the cache parts into ``input_tokens``."""
    try:
        uncached = token_count(data, "input_tokens")
        read = token_count(data, "cache_read_input_tokens", optional=True)
        written = token_count(data, "cache_creation_input_tokens", optional=True)
        return Usage(
            input_tokens=uncached + read + written,
            output_tokens=token_count(data, "output_tokens"),
            cached_input_tokens=read,
            cache_write_tokens=written,
        )
    except WireError as exc:
        raise WireError(f"{exc} of usage") from None
