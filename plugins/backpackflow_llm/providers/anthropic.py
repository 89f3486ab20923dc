"""Anthropic Messages API through the official ``anthropic`` SDK."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable, Mapping
from typing import Any

import anthropic
import httpx2
import httpx_sse

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
    ProviderTimeout,
    RateLimited,
    ServerError,
    ToolCall,
    Usage,
)

__all__ = ["JSON_INSTRUCTION", "AnthropicProvider"]

JSON_INSTRUCTION = "Respond with a single valid JSON object and nothing else."
REFUSED = "the model refused to answer (stop_reason: refusal)"


class AnthropicProvider(HTTPProvider):
    """``POST {base_url}/v1/messages`` in the Anthropic Messages wire format, sent by the SDK.

    ``base_url`` is the API root (``https://api.anthropic.com``; a trailing ``/v1``, as older
    configurations wrote it, is accepted). The system prompt is the top-level ``system`` field.
    The API requires ``max_tokens``, so a request without one gets ``default_max_tokens``.
    ``response_format="json"`` with a ``json_schema`` uses the API's native structured output
    (``output_config.format``); without a schema the Messages API has no JSON mode, so
    :data:`JSON_INSTRUCTION` is appended to the system prompt. Tools are sent as
    ``input_schema`` tools and ``tool_use`` blocks come back as
    :class:`~backpackflow_llm.types.ToolCall` data; ``stop_reason: "refusal"`` is
    :attr:`LLMResponse.refusal`. The current Messages API takes no ``temperature`` (the SDK's
    request type has none), so a request with one is refused before it is sent, saying so.

    Usage: Anthropic's ``input_tokens`` counts only the uncached part of the prompt, so
    :attr:`Usage.input_tokens` is ``input_tokens + cache_read_input_tokens +
    cache_creation_input_tokens`` (every prompt token), with ``cache_read_input_tokens`` as
    ``cached_input_tokens`` and ``cache_creation_input_tokens`` as ``cache_write_tokens``, of
    which ``cache_creation.ephemeral_1h_input_tokens`` are ``cache_write_1h_tokens`` (priced
    at the 1-hour rate). Thinking tokens (``output_tokens_details.thinking_tokens``) are
    ``reasoning_tokens``, within ``output_tokens``.

    The API key comes from ``api_key`` or, at call time, from ``api_key_env``.
    """

    wire = "Anthropic Messages"

    def __init__(
        self,
        api_key: str | None = None,
        base_url: str = "https://api.anthropic.com",
        timeout: float = 60,
        api_key_env: str = "ANTHROPIC_API_KEY",
        *,
        name: str = "anthropic",
        default_max_tokens: int = 1024,
        client: httpx2.AsyncClient | None = None,
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
        if self.base_url.endswith("/v1"):
            self.base_url = self.base_url[: -len("/v1")]
        if default_max_tokens < 1:
            raise ValueError("AnthropicProvider: default_max_tokens must be >= 1")
        self.default_max_tokens = default_max_tokens

    def endpoint(self) -> str:
        return "/v1/messages"

    def sdk_call(self, http_client: httpx2.AsyncClient, api_key: str) -> SDKCall:
        client = anthropic.AsyncAnthropic(
            api_key=api_key,
            base_url=self.base_url,
            timeout=self.timeout,
            max_retries=0,  # retries and fallbacks are the project's
            default_query=self.query or None,
            http_client=http_client,
        )
        return client.messages.with_streaming_response.create

    async def complete(
        self, request: LLMRequest, *, on_chunk: OnChunk | None = None
    ) -> LLMResponse:
        if request.temperature is not None:
            raise ProviderRequestError(
                f"the {self.wire} API takes no temperature (got {request.temperature})",
                provider=self.name,
                model=request.model,
                hint="remove temperature from the request (the llm node's params); not sent",
            )
        return await super().complete(request, on_chunk=on_chunk)

    def body(self, request: LLMRequest) -> dict[str, Any]:
        body: dict[str, Any] = {
            "model": request.model,
            "max_tokens": request.max_tokens or self.default_max_tokens,
            "messages": _wire_messages(request.messages),
        }
        system = request.system
        if request.json_schema is not None:
            body["output_config"] = {
                "format": {"type": "json_schema", "schema": dict(request.json_schema)}
            }
        elif request.response_format == "json":
            system = f"{system}\n\n{JSON_INSTRUCTION}" if system else JSON_INSTRUCTION
        if system is not None:
            body["system"] = system
        if request.tools:
            body["tools"] = [
                {
                    "name": t.name,
                    "description": t.description,
                    "input_schema": dict(t.parameters),
                }
                for t in request.tools
            ]
        if request.tool_choice is not None:
            choice = request.tool_choice
            kinds = {"auto": "auto", "none": "none", "required": "any"}
            body["tool_choice"] = (
                {"type": kinds[choice]} if choice in kinds else {"type": "tool", "name": choice}
            )
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
        calls = []
        for i, block in enumerate(blocks):
            kind = field(block, "type", kind=str)
            if kind == "text":
                texts.append(field(data, "content", i, "text", kind=str))
            elif kind == "tool_use":
                calls.append(
                    ToolCall(
                        field(data, "content", i, "id", kind=str),
                        field(data, "content", i, "name", kind=str),
                        field(data, "content", i, "input", kind=dict),
                    )
                )
        stop = data.get("stop_reason")
        text = "".join(texts)
        refused = stop == "refusal"
        return LLMResponse(
            text="" if refused else text,
            usage=_usage(field(data, "usage", kind=dict)),
            provider=self.name,
            model=reported_model(data, request.model),
            finish_reason=stop if isinstance(stop, str) else None,
            latency_ms=latency_ms,
            raw=data,
            refusal=(text or REFUSED) if refused else None,
            tool_calls=tuple(calls),
        )

    async def consume_stream(
        self,
        events: AsyncIterator[httpx_sse.ServerSentEvent],
        request: LLMRequest,
        on_chunk: OnChunk | None,
    ) -> StreamResult:
        parts: list[str] = []
        message: dict[str, Any] | None = None
        usage: dict[str, Any] = {}
        blocks: dict[int, dict[str, Any]] = {}  # index -> a tool_use block and its JSON pieces
        stop: str | None = None
        seen = 0
        async for event in events:
            seen += 1
            try:
                data = loads_event(event)
                kind = field(data, "type", kind=str)
                if kind == "message_start":
                    message = field(data, "message", kind=dict)
                    _merge_usage(usage, field(data, "message", "usage", kind=dict))
                elif kind == "content_block_start":
                    block = field(data, "content_block", kind=dict)
                    if block.get("type") == "text" and block.get("text"):
                        _emit(str(block["text"]), parts, on_chunk)
                    elif block.get("type") == "tool_use":
                        index = field(data, "index", kind=int)
                        blocks[index] = {
                            "id": field(data, "content_block", "id", kind=str),
                            "name": field(data, "content_block", "name", kind=str),
                            "json": [],
                        }
                elif kind == "content_block_delta":
                    delta_type = field(data, "delta", "type", kind=str)
                    if delta_type == "text_delta":
                        _emit(field(data, "delta", "text", kind=str), parts, on_chunk)
                    elif delta_type == "input_json_delta":
                        index = field(data, "index", kind=int)
                        if index in blocks:  # (server tools' blocks are not the flow's)
                            blocks[index]["json"].append(
                                field(data, "delta", "partial_json", kind=str)
                            )
                    # thinking_delta / signature_delta: thinking is not the answer's text
                elif kind == "message_delta":
                    reason = field(data, "delta", kind=dict).get("stop_reason")
                    stop = reason if isinstance(reason, str) else stop
                    # usage here is cumulative; newer API versions repeat the input counts too
                    _merge_usage(usage, data.get("usage") or {})
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
        calls = tuple(_streamed_call(blocks[i], i) for i in sorted(blocks))
        text = "".join(parts)
        refused = stop == "refusal"
        return StreamResult(
            text="" if refused else text,
            usage=_usage(usage),
            model=reported_model(message, request.model),
            finish_reason=stop,
            raw={**message, "stop_reason": stop, "usage": usage},
            refusal=(text or REFUSED) if refused else None,
            tool_calls=calls,
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


def _merge_usage(usage: dict[str, Any], update: Any) -> None:
    """Fold one event's usage into the stream's (later values win; null ones are absent)."""
    if not isinstance(update, dict):
        raise WireError(f"usage is {type(update).__name__}, expected an object")
    usage.update({k: v for k, v in update.items() if v is not None})


def _streamed_call(block: dict[str, Any], index: int) -> ToolCall:
    text = "".join(block["json"])
    try:
        arguments = json.loads(text) if text.strip() else {}
    except ValueError:
        raise WireError(f"tool_use block {index}: its input is not JSON: {text[:100]!r}") from None
    if not isinstance(arguments, dict):
        raise WireError(f"tool_use block {index}: its input is not a JSON object")
    return ToolCall(block["id"], block["name"], arguments)


def _wire_messages(messages: tuple[Message, ...]) -> list[dict[str, Any]]:
    """Messages in the Messages API shape: tool calls as ``tool_use`` blocks of the assistant
    turn, tool results as ``tool_result`` blocks of one user turn (consecutive results are
    merged, as the API wants them answered together)."""
    out: list[dict[str, Any]] = []
    for m in messages:
        if m.role == "tool":
            block = {"type": "tool_result", "tool_use_id": m.tool_call_id, "content": m.content}
            last = out[-1] if out else None
            if (
                last is not None
                and last["role"] == "user"
                and isinstance(last["content"], list)
                and all(b.get("type") == "tool_result" for b in last["content"])
            ):
                last["content"].append(block)
            else:
                out.append({"role": "user", "content": [block]})
        elif m.tool_calls:
            content: list[dict[str, Any]] = (
                [{"type": "text", "text": m.content}] if m.content else []
            )
            content += [
                {"type": "tool_use", "id": c.id, "name": c.name, "input": dict(c.arguments)}
                for c in m.tool_calls
            ]
            out.append({"role": "assistant", "content": content})
        else:
            out.append({"role": m.role, "content": m.content})
    return out


def _usage(data: dict[str, Any]) -> Usage:
    """Anthropic usage -> :class:`Usage`, folding the cache parts into ``input_tokens``."""
    try:
        uncached = token_count(data, "input_tokens")
        read = token_count(data, "cache_read_input_tokens", optional=True)
        written = token_count(data, "cache_creation_input_tokens", optional=True)
        written_1h = token_count(data, "cache_creation", "ephemeral_1h_input_tokens", optional=True)
        return Usage(
            input_tokens=uncached + read + written,
            output_tokens=token_count(data, "output_tokens"),
            cached_input_tokens=read,
            cache_write_tokens=written,
            cache_write_1h_tokens=written_1h,
            reasoning_tokens=token_count(
                data, "output_tokens_details", "thinking_tokens", optional=True
            ),
        )
    except WireError as exc:
        raise WireError(f"{exc} of usage") from None
    except ValueError as exc:
        raise WireError(f"inconsistent usage: {exc}") from None
