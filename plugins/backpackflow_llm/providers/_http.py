"""What the HTTP providers share: the call, the SSE stream and the mapping of failures to errors.

The transport is the provider's official SDK (``openai``, ``anthropic``): it builds the request
(URL, authentication, version headers) from its typed request parameters, so the wire follows
the APIs as they change. The SDK sends through an ``httpx2`` client whose transport obeys the
run's egress policy (:mod:`backpackflow_httpx.sdk_client`); its own retries are off
(``max_retries=0``), because retries and fallbacks are the project's
(:mod:`backpackflow_llm.resilience`), and its exceptions are mapped to the project's error
classes here. The answer is read from the raw body (``with_streaming_response``) so that a
missing field is a :class:`MalformedResponse` naming its JSON path, and streams are parsed with
httpx-sse. A subclass supplies the SDK client, the request body, and how to read an answer or
a stream of events.
"""

from __future__ import annotations

import email.utils
import json
import os
import time
import urllib.parse
from collections.abc import AsyncIterator, Callable, Mapping
from typing import Any

import anthropic
import attrs
import httpx
import httpx2
import httpx_sse
import openai

from backpackflow.policy import EgressDenied, EgressPolicy, SandboxViolation
from backpackflow_httpx.sdk_client import sdk_async_client
from backpackflow_llm.providers.base import OnChunk
from backpackflow_llm.types import (
    LLMRequest,
    LLMResponse,
    MalformedResponse,
    MissingAPIKey,
    ProviderConnectionError,
    ProviderError,
    ProviderRequestError,
    ProviderTimeout,
    RateLimited,
    ServerError,
    ToolCall,
    Usage,
)
from backpackflow_otel.propagation import trace_headers

__all__ = ["HTTPProvider", "StreamResult", "WireError", "field", "parse_retry_after"]


class WireError(Exception):
    """A field the wire format requires is missing or has the wrong type (internal).

    ``body`` is the text it was read from, when a stream reader knows it (the event data).
    """

    def __init__(self, message: str, body: str = "") -> None:
        super().__init__(message)
        self.body = body


def field(data: Any, *path: str | int, kind: type | tuple[type, ...] | None = None) -> Any:
    """``data[path[0]][path[1]]...``, or :class:`WireError` naming the JSON path that failed."""
    where = "$"
    value = data
    for step in path:
        where += f"[{step}]" if isinstance(step, int) else f".{step}"
        if isinstance(step, int):
            ok = isinstance(value, list) and -len(value) <= step < len(value)
        else:
            ok = isinstance(value, dict) and step in value
        if not ok:
            raise WireError(f"missing field {where}")
        value = value[step]
    if kind is not None and not isinstance(value, kind):
        raise WireError(f"field {where} is {type(value).__name__}, expected {_names(kind)}")
    return value


def _names(kind: type | tuple[type, ...]) -> str:
    kinds = kind if isinstance(kind, tuple) else (kind,)
    return " or ".join("null" if k is type(None) else k.__name__ for k in kinds)


def token_count(data: Any, *path: str | int, optional: bool = False) -> int:
    """A token count field: a non-negative int (``None``/absent is 0 when ``optional``)."""
    try:
        value = field(data, *path)
    except WireError:
        if optional:
            return 0
        raise
    if value is None and optional:
        return 0
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        where = "$" + "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in path)
        raise WireError(f"field {where} is {value!r}, expected a token count")
    return value


def parse_retry_after(headers: Mapping[str, str], now: float | None = None) -> float | None:
    """Seconds to wait from ``retry-after-ms`` or ``retry-after`` (seconds or an HTTP date).

    OpenAI sends ``retry-after-ms`` for sub-second waits; RFC 9110 allows ``retry-after`` as
    delay-seconds or an HTTP-date. Unparseable or negative values are ignored (``None``).
    """
    ms = headers.get("retry-after-ms")
    if ms is not None:
        try:
            value = float(ms) / 1000
        except ValueError:
            value = -1
        if 0 <= value < float("inf"):
            return value
    raw = headers.get("retry-after")
    if raw is None:
        return None
    raw = raw.strip()
    try:
        value = float(raw)
    except ValueError:
        try:
            when = email.utils.parsedate_to_datetime(raw)
        except (TypeError, ValueError):
            return None
        value = when.timestamp() - (time.time() if now is None else now)
        return max(value, 0.0)
    return value if 0 <= value < float("inf") else None


@attrs.frozen
class StreamResult:
    """What a subclass read from an event stream."""

    text: str
    usage: Usage
    model: str
    finish_reason: str | None
    raw: dict[str, Any] | None
    refusal: str | None = None
    tool_calls: tuple[ToolCall, ...] = ()


SDKCall = Callable[..., Any]
"""An SDK's ``with_streaming_response.create``: keyword arguments in, an async context
manager of the raw answer out."""

# the failures of both httpx flavours (the SDKs' httpx2, and httpx where a caller shares one)
_TIMEOUTS = (httpx.TimeoutException, httpx2.TimeoutException)
_UNSUPPORTED = (httpx.UnsupportedProtocol, httpx2.UnsupportedProtocol)
_DECODING = (httpx.DecodingError, httpx2.DecodingError)
_REQUEST_ERRORS = (httpx.RequestError, httpx2.RequestError)


_SDK_STATUS = (openai.APIStatusError, anthropic.APIStatusError)
_SDK_TIMEOUT = (openai.APITimeoutError, anthropic.APITimeoutError)
_SDK_CONNECTION = (openai.APIConnectionError, anthropic.APIConnectionError)
# what a call may raise that is not a bug: mapped to the project's errors
_FAILURES = (
    openai.APIError,
    anthropic.APIError,
    EgressDenied,
    httpx_sse.SSEError,
    httpx.HTTPError,
    httpx2.HTTPError,
)


class HTTPProvider:
    """Base of the HTTP providers: resolves the key, sends, times and maps failures.

    ``client`` lets a service share one pooled ``httpx2.AsyncClient`` (the SDKs' httpx; it is
    never closed here); without it each call opens and closes its own client, which is always
    safe because an ``AsyncClient`` must not outlive its event loop. The provider's ``timeout``
    applies to every call either way: connect, each read (so a stream that stalls times out)
    and write.

    ``egress`` (a sandbox policy's, given by the dependency factory for flows the operator does
    not trust) restricts where calls may go: ``base_url`` comes from the flow, so a call to a
    denied address fails before anything (the API key included) is sent. ``getenv`` reads
    ``api_key_env`` (default ``os.environ.get``): the policy's, which only reads the variables
    the operator allows and masks what it read. ``require_api_key=False`` lets a call go without
    a key (local OpenAI-compatible servers) instead of raising :class:`MissingAPIKey`. A query
    in ``base_url`` (Azure's ``?api-version=``) and ``query`` are sent with every call.
    """

    name: str
    wire: str  # "OpenAI Chat Completions", used in error messages

    def __init__(
        self,
        *,
        name: str,
        api_key: str | None,
        api_key_env: str,
        base_url: str,
        timeout: float,
        client: httpx2.AsyncClient | None,
        extra_headers: Mapping[str, str] | None,
        egress: EgressPolicy | None = None,
        getenv: Callable[[str], str | None] | None = None,
        require_api_key: bool = True,
        query: Mapping[str, str] | None = None,
    ) -> None:
        if timeout <= 0:
            raise ValueError(f"{type(self).__name__}: timeout must be > 0 seconds, got {timeout}")
        self.name = name
        self.api_key_env = api_key_env
        self.require_api_key = require_api_key
        # a query in base_url (Azure's ?api-version=) is sent with every call, not glued
        # in front of the endpoint's path
        parts = urllib.parse.urlsplit(base_url)
        self.query = {**dict(urllib.parse.parse_qsl(parts.query)), **dict(query or {})}
        base_url = urllib.parse.urlunsplit(parts._replace(query="", fragment=""))
        self.base_url = base_url.rstrip("/")
        self.timeout = float(timeout)
        self._api_key = api_key
        self._client = client
        self._extra_headers = dict(extra_headers or {})
        self._egress = egress
        self._getenv = getenv if getenv is not None else os.environ.get

    def __repr__(self) -> str:  # never show the key
        return f"{type(self).__name__}(name={self.name!r}, base_url={self.base_url!r})"

    # ---- what a subclass provides -----------------------------------------------------------

    def endpoint(self) -> str:
        """The path below ``base_url`` the SDK posts to (for error messages)."""
        raise NotImplementedError

    def sdk_call(self, http_client: httpx2.AsyncClient, api_key: str) -> SDKCall:
        """The SDK's ``with_streaming_response.create`` on a client built with
        ``http_client``, ``api_key``, this provider's ``base_url`` and ``max_retries=0``."""
        raise NotImplementedError

    def call_headers(self, api_key: str) -> dict[str, Any]:
        """Per-call headers the SDK takes beside the flow's ``extra_headers``."""
        return {}

    def body(self, request: LLMRequest) -> dict[str, Any]:
        raise NotImplementedError

    def parse_response(self, data: Any, request: LLMRequest, latency_ms: float) -> LLMResponse:
        """Read a complete JSON answer; raise :class:`WireError` for a missing field."""
        raise NotImplementedError

    async def consume_stream(
        self,
        events: AsyncIterator[httpx_sse.ServerSentEvent],
        request: LLMRequest,
        on_chunk: OnChunk | None,
    ) -> StreamResult:
        """Read an event stream to its end; raise :class:`WireError` or a ProviderError."""
        raise NotImplementedError

    def error_message(self, data: Any) -> str | None:
        """The human message inside an error body, if the body has the usual shape
        (``{"error": {"message": ...}}``, as both OpenAI and Anthropic send)."""
        if isinstance(data, dict) and isinstance(data.get("error"), dict):
            message = data["error"].get("message")
            return message if isinstance(message, str) else None
        return None

    # ---- the call ---------------------------------------------------------------------------

    def resolve_api_key(self, model: str) -> str:
        try:
            key = self._api_key or self._getenv(self.api_key_env) or ""
        except SandboxViolation as exc:  # the operator does not let flows read it
            raise ProviderRequestError(
                str(exc),
                provider=self.name,
                model=model,
                hint="give the key another way the operator allows; not retried",
            ) from None
        if not key and not self.require_api_key:  # a local server (vLLM, Ollama) needs none
            return ""
        if not key:
            raise MissingAPIKey(
                provider=self.name,
                model=model,
                env_var=self.api_key_env,
                owner=type(self).__name__,
            )
        return key

    async def complete(
        self, request: LLMRequest, *, on_chunk: OnChunk | None = None
    ) -> LLMResponse:
        key = self.resolve_api_key(request.model)
        # traceparent of the call's span, when an OpenTelemetry sink traces the run
        headers = {**trace_headers(dict(self._extra_headers)), **self.call_headers(key)}
        payload = self.body(request)
        if self._client is not None:
            return await self._send(self._client, key, request, headers, payload, on_chunk)
        async with sdk_async_client(self._egress) as client:
            return await self._send(client, key, request, headers, payload, on_chunk)

    async def _send(
        self,
        client: httpx2.AsyncClient,
        key: str,
        request: LLMRequest,
        headers: dict[str, Any],
        payload: dict[str, Any],
        on_chunk: OnChunk | None,
    ) -> LLMResponse:
        model = request.model
        url = f"{self.base_url}{self.endpoint()}"
        create = self.sdk_call(client, key)
        started = time.perf_counter()
        try:
            async with create(**payload, extra_headers=headers, timeout=self.timeout) as answer:
                response = answer.http_response
                if request.stream:
                    events = httpx_sse.EventSource(response).aiter_sse()
                    try:
                        result = await self.consume_stream(events, request, on_chunk)
                    except WireError as exc:
                        detail = f"{exc} in the {self.wire} stream"
                        raise self._malformed(detail, exc.body, model) from None
                    finally:
                        await events.aclose()
                    return LLMResponse(
                        text=result.text,
                        usage=result.usage,
                        provider=self.name,
                        model=result.model,
                        finish_reason=result.finish_reason,
                        latency_ms=_ms_since(started),
                        raw=result.raw,
                        refusal=result.refusal,
                        tool_calls=result.tool_calls,
                    )
                body = (await response.aread()).decode("utf-8", "replace")
        except ProviderError:
            raise
        except _FAILURES as exc:
            raise self._transport_error(exc, url, model) from None
        latency_ms = _ms_since(started)
        try:
            data = json.loads(body)
        except ValueError:
            raise self._malformed(f"the {self.wire} answer is not JSON", body, model) from None
        try:
            return self.parse_response(data, request, latency_ms)
        except WireError as exc:
            raise self._malformed(f"{exc} in the {self.wire} answer", body, model) from None

    def _transport_error(self, exc: Exception, url: str, model: str) -> ProviderError:
        """The project's error for what the SDK or the transport raised."""
        if isinstance(exc, _SDK_STATUS):
            # the body was read before the SDK raised
            return self._status_error(exc.response, exc.response.text, model)
        cause: BaseException = exc
        if isinstance(exc, _SDK_CONNECTION) and exc.__cause__ is not None:
            cause = exc.__cause__  # the SDK wraps what the transport raised
        common: dict[str, Any] = {"provider": self.name, "model": model}
        if isinstance(cause, EgressDenied):  # nothing was sent
            return ProviderRequestError(
                f"cannot call {url}: {cause}",
                hint="base_url must name a destination the operator allows; not retried",
                **common,
            )
        if isinstance(cause, httpx_sse.SSEError):
            return self._malformed(f"expected an event stream: {cause}", "", model)
        if isinstance(exc, _SDK_TIMEOUT) or isinstance(cause, _TIMEOUTS):
            return ProviderTimeout(
                f"no answer within {self.timeout:g}s from {url} ({type(cause).__name__})",
                **common,
            )
        if isinstance(cause, _UNSUPPORTED):
            return ProviderRequestError(
                f"cannot call {url}: {cause}",
                hint="base_url must start with http:// or https://",
                **common,
            )
        if isinstance(cause, _DECODING):
            return self._malformed(f"undecodable body: {cause}", "", model)
        if isinstance(exc, _SDK_CONNECTION) or isinstance(cause, _REQUEST_ERRORS):
            return ProviderConnectionError(
                f"connection to {url} failed: {type(cause).__name__}: {cause or 'no detail'}",
                **common,
            )
        # another SDK error (e.g. it could not build the request from these parameters)
        return ProviderRequestError(
            f"the {self.wire} SDK refused the call: {type(exc).__name__}: {exc}", **common
        )

    # ---- failures ---------------------------------------------------------------------------

    def _malformed(self, detail: str, body: str, model: str) -> MalformedResponse:
        return MalformedResponse(detail, body=body, provider=self.name, model=model)

    def _status_error(self, response: Any, body: str, model: str) -> ProviderError:
        """The error for a non-2xx answer, with the retry semantics both official SDKs follow:
        408, 409, 429 and 5xx are transient, unless the server says otherwise with
        ``x-should-retry: true|false``, which wins either way."""
        status = response.status_code
        try:
            message = self.error_message(json.loads(body))
        except ValueError:
            message = None
        said = f": {message}" if message else f": {body[:300]!r}" if body else ""
        retry_after = parse_retry_after(response.headers)
        wait = f" (retry after {retry_after:g}s)" if retry_after is not None else ""
        common: dict[str, Any] = {
            "provider": self.name,
            "model": model,
            "status": status,
            "retry_after": retry_after,
        }
        should_retry = response.headers.get("x-should-retry", "").strip().lower()
        if should_retry in ("true", "false"):
            common["transient"] = should_retry == "true"
        if status == 429:
            return RateLimited(f"HTTP 429 rate limited{wait}{said}", **common)
        if status >= 500:
            what = "overloaded" if status == 529 else "server error"
            return ServerError(f"HTTP {status} {what}{wait}{said}", **common)
        if status == 408:
            return ProviderTimeout(f"HTTP 408 request timeout{wait}{said}", **common)
        if status == 409:
            common.setdefault("transient", True)
            return ProviderRequestError(
                f"HTTP 409 conflict{wait}{said}",
                hint="a conflicting request was in flight (e.g. a lock); retried",
                **common,
            )
        if status in (401, 403):
            return ProviderRequestError(
                f"HTTP {status} not authorized{said}",
                hint=f"check the API key ({self.api_key_env} or api_key=) and its permissions; "
                "not retried",
                **common,
            )
        if 400 <= status < 500:
            return ProviderRequestError(f"HTTP {status} request refused{said}", **common)
        return ProviderRequestError(
            f"unexpected HTTP {status}{said}",
            hint="check base_url (redirects are not followed); not retried",
            **common,
        )


def reported_model(data: dict[str, Any], default: str) -> str:
    """The model an answer says it came from (``data["model"]``), else ``default``."""
    model = data.get("model")
    return model if isinstance(model, str) and model else default


def _ms_since(started: float) -> float:
    return (time.perf_counter() - started) * 1000.0


def loads_event(event: httpx_sse.ServerSentEvent) -> Any:
    """The JSON data of one event, or :class:`WireError`."""
    try:
        return json.loads(event.data)
    except ValueError:
        raise WireError(f"event {event.event!r} data is not JSON", event.data) from None
