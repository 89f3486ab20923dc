"""The data of the LLM layer: requests, responses, token usage and provider errors.

Everything is an immutable ``attrs`` class so a request can be hashed into a cache key, logged
and replayed, and a response can be shared between the cache, the cost accounting and the flow
without defensive copies. Every error names the provider, the model, what happened and what to
do, and says whether retrying can help (``transient``): the retry and fallback logic in
:mod:`backpackflow_llm.resilience` reads only that flag.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from typing import Any, ClassVar, Literal, get_args

import attrs

from backpackflow import BackpackFlowError, SerializationError

ResponseFormat = Literal["text", "json"]
ToolChoice = Literal["auto", "none", "required"]
ROLES = ("user", "assistant", "tool")

__all__ = [
    "ROLES",
    "LLMRequest",
    "LLMResponse",
    "MalformedResponse",
    "Message",
    "MissingAPIKey",
    "ProviderConnectionError",
    "ProviderError",
    "ProviderRequestError",
    "ProviderTimeout",
    "RateLimited",
    "ResponseFormat",
    "ServerError",
    "ToolCall",
    "ToolChoice",
    "ToolSpec",
    "Usage",
]


# --------------------------------------------------------------------------------------------
# requests


def _check_role(_: Any, attribute: attrs.Attribute[str], value: str) -> None:
    if value not in ROLES:
        hint = " (put the system prompt in LLMRequest.system)" if value == "system" else ""
        raise ValueError(f"Message.role must be one of {list(ROLES)}, got {value!r}{hint}")


def _check_str(_: Any, attribute: attrs.Attribute[Any], value: Any) -> None:
    if not isinstance(value, str):
        raise TypeError(f"{attribute.name} must be a str, got {type(value).__name__}")


def _json_object(_: Any, attribute: attrs.Attribute[Any], value: Any) -> None:
    if not isinstance(value, Mapping):
        raise TypeError(f"{attribute.name} must be a JSON object, got {type(value).__name__}")


@attrs.frozen
class ToolCall:
    """A tool the model asked to call: ``id`` (the provider's, echoed back with the result),
    the tool's ``name`` and its ``arguments`` (the parsed JSON object)."""

    id: str = attrs.field(validator=_check_str)
    name: str = attrs.field(validator=_check_str)
    arguments: Mapping[str, Any] = attrs.field(validator=_json_object, hash=False)

    def to_json(self) -> dict[str, Any]:
        return {"id": self.id, "name": self.name, "arguments": dict(self.arguments)}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> ToolCall:
        try:
            return cls(data["id"], data["name"], data["arguments"])
        except (KeyError, TypeError) as exc:
            raise SerializationError(f"ToolCall: missing or bad field {exc}") from None


@attrs.frozen
class ToolSpec:
    """A tool the model may call: its ``name``, what it does (``description``, which the model
    reads to decide) and its ``parameters`` (a JSON Schema of an object)."""

    name: str = attrs.field(validator=_check_str)
    description: str = attrs.field(validator=_check_str)
    parameters: Mapping[str, Any] = attrs.field(validator=_json_object, hash=False)

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "description": self.description, "parameters": self.parameters}


def _to_tools(value: Iterable[ToolSpec]) -> tuple[ToolSpec, ...]:
    return tuple(value)


def _to_tool_calls(value: Iterable[ToolCall | Mapping[str, Any]]) -> tuple[ToolCall, ...]:
    return tuple(c if isinstance(c, ToolCall) else ToolCall.from_json(c) for c in value)


@attrs.frozen
class Message:
    """One chat turn. Roles are ``user``, ``assistant`` and ``tool``; the system prompt is not a
    message but :attr:`LLMRequest.system`, because the providers carry it differently (OpenAI as
    a first message, Anthropic as a top-level field).

    An assistant turn that called tools carries them in ``tool_calls`` (its ``content`` is the
    text said beside them, often ""); each result comes back as a ``tool`` message whose
    ``tool_call_id`` names the call and whose ``content`` is the result as text.
    """

    role: str = attrs.field(validator=[_check_str, _check_role])
    content: str = attrs.field(validator=_check_str)
    tool_calls: tuple[ToolCall, ...] = attrs.field(default=(), converter=_to_tool_calls)
    tool_call_id: str | None = attrs.field(default=None)

    def __attrs_post_init__(self) -> None:
        if self.role == "tool" and not self.tool_call_id:
            raise ValueError("Message: a tool message needs the tool_call_id it answers")
        if self.tool_calls and self.role != "assistant":
            raise ValueError("Message: only an assistant message carries tool_calls")

    def to_json(self) -> dict[str, Any]:
        data: dict[str, Any] = {"role": self.role, "content": self.content}
        if self.tool_calls:
            data["tool_calls"] = [c.to_json() for c in self.tool_calls]
        if self.tool_call_id is not None:
            data["tool_call_id"] = self.tool_call_id
        return data


def _to_messages(value: Iterable[Message | Mapping[str, Any]]) -> tuple[Message, ...]:
    """Accept messages or ``{"role", "content"}`` mappings (as read from flow JSON)."""
    out = []
    for m in value:
        if isinstance(m, Message):
            out.append(m)
        elif isinstance(m, Mapping):
            out.append(
                Message(
                    role=m.get("role"),  # type: ignore[arg-type]
                    content=m.get("content"),  # type: ignore[arg-type]
                    tool_calls=m.get("tool_calls") or (),
                    tool_call_id=m.get("tool_call_id"),
                )
            )
        else:
            raise TypeError(f"messages must be Message objects, got {type(m).__name__}")
    return tuple(out)


def _check_messages(_: Any, attribute: attrs.Attribute[Any], value: tuple[Message, ...]) -> None:
    if not value:
        raise ValueError("LLMRequest.messages must hold at least one message")


def _check_temperature(_: Any, attribute: attrs.Attribute[Any], value: float | None) -> None:
    if value is None:
        return
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise TypeError(f"LLMRequest.temperature must be a finite number, got {value!r}")
    if value < 0:
        raise ValueError(f"LLMRequest.temperature must be >= 0, got {value!r}")


def _check_max_tokens(_: Any, attribute: attrs.Attribute[Any], value: int | None) -> None:
    if value is None:
        return
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"LLMRequest.max_tokens must be an int, got {value!r}")
    if value < 1:
        raise ValueError(f"LLMRequest.max_tokens must be >= 1, got {value!r}")


def _check_format(_: Any, attribute: attrs.Attribute[Any], value: str) -> None:
    if value not in get_args(ResponseFormat):
        raise ValueError(
            f"LLMRequest.response_format must be one of {list(get_args(ResponseFormat))}, "
            f"got {value!r}"
        )


def _optional_str(_: Any, attribute: attrs.Attribute[Any], value: Any) -> None:
    if value is not None and not isinstance(value, str):
        raise TypeError(f"LLMRequest.{attribute.name} must be a str or None, got {value!r}")


@attrs.frozen
class LLMRequest:
    """What to ask which model.

    ``provider`` and ``model`` name the first choice; a fallback chain re-targets the request
    with :func:`attrs.evolve`. ``max_tokens`` bounds the *output*; ``None`` lets the provider
    choose (Anthropic needs a value, so its provider fills in its ``default_max_tokens``).
    ``response_format="json"`` asks for one JSON object; ``json_schema`` (with
    ``response_format="json"``) asks for one that matches that schema, with the provider's
    native structured output. ``tools`` are what the model may call; ``tool_choice`` is
    ``"auto"`` (the default when there are tools), ``"none"``, ``"required"`` or the name of one
    tool it must call. ``stream`` changes how the answer travels, not what it is, so it is not
    part of the cache key.
    """

    def __attrs_post_init__(self) -> None:
        names = [t.name for t in self.tools]
        if len(set(names)) != len(names):
            raise ValueError(f"LLMRequest.tools: tool names must be unique, got {names}")
        choice = self.tool_choice
        if choice is not None and choice not in get_args(ToolChoice) and choice not in names:
            raise ValueError(
                f"LLMRequest.tool_choice must be one of {list(get_args(ToolChoice))} or a tool "
                f"name of tools {names}, got {choice!r}"
            )
        if self.json_schema is not None and self.response_format != "json":
            raise ValueError('LLMRequest.json_schema needs response_format="json"')

    provider: str = attrs.field(validator=_check_str)
    model: str = attrs.field(validator=_check_str)
    messages: tuple[Message, ...] = attrs.field(converter=_to_messages, validator=_check_messages)
    system: str | None = attrs.field(default=None, validator=_optional_str)
    temperature: float | None = attrs.field(default=None, validator=_check_temperature)
    max_tokens: int | None = attrs.field(default=None, validator=_check_max_tokens)
    response_format: ResponseFormat = attrs.field(default="text", validator=_check_format)
    stream: bool = attrs.field(default=False, validator=attrs.validators.instance_of(bool))
    tools: tuple[ToolSpec, ...] = attrs.field(default=(), converter=_to_tools)
    tool_choice: str | None = attrs.field(default=None, validator=_optional_str)
    json_schema: Mapping[str, Any] | None = attrs.field(default=None, hash=False)

    @classmethod
    def from_prompt(
        cls, provider: str, model: str, prompt: str, *, system: str | None = None, **params: Any
    ) -> LLMRequest:
        """A one-turn request: the common case for a flow node."""
        return cls(provider, model, (Message("user", prompt),), system=system, **params)

    def to_json(self) -> dict[str, Any]:
        return {
            "provider": self.provider,
            "model": self.model,
            "messages": [m.to_json() for m in self.messages],
            "system": self.system,
            "temperature": self.temperature,
            "max_tokens": self.max_tokens,
            "response_format": self.response_format,
            "stream": self.stream,
            **({"tools": [t.to_json() for t in self.tools]} if self.tools else {}),
            **({"tool_choice": self.tool_choice} if self.tool_choice is not None else {}),
            **({"json_schema": self.json_schema} if self.json_schema is not None else {}),
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> LLMRequest:
        unknown = set(data) - {f.name for f in attrs.fields(cls)}
        if unknown:
            raise SerializationError(f"LLMRequest: unknown fields {sorted(unknown)}")
        try:
            fields = dict(data)
            if "tools" in fields:
                fields["tools"] = tuple(ToolSpec(**t) for t in fields["tools"])
            return cls(**fields)
        except (TypeError, ValueError) as exc:
            raise SerializationError(f"LLMRequest: {exc}") from exc


# --------------------------------------------------------------------------------------------
# usage and responses


def _count(_: Any, attribute: attrs.Attribute[Any], value: Any) -> None:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"Usage.{attribute.name} must be an int, got {value!r}")
    if value < 0:
        raise ValueError(f"Usage.{attribute.name} must be >= 0, got {value}")


@attrs.frozen
class Usage:
    """Token counts of one call (or, summed with ``+``, of many).

    ``input_tokens`` is *every* prompt token. ``cached_input_tokens`` (read from a prompt
    cache) and ``cache_write_tokens`` (written to one, Anthropic's
    ``cache_creation_input_tokens``) are parts *of* it, priced differently. Likewise
    ``reasoning_tokens`` are part *of* ``output_tokens``. Keeping the parts inside the totals
    means ``total_tokens`` is what the model processed, and pricing charges each token once.
    ``cache_write_1h_tokens`` are the part of ``cache_write_tokens`` written with a 1-hour
    lifetime (Anthropic; the rest lives 5 minutes and is priced lower). ``estimated`` marks
    counts the server did not report (a compatible server that sends no usage): they are
    estimated from the text, about 4 characters a token, so budgets still see the call.
    """

    input_tokens: int = attrs.field(validator=_count)
    output_tokens: int = attrs.field(validator=_count)
    cached_input_tokens: int = attrs.field(default=0, validator=_count)
    reasoning_tokens: int = attrs.field(default=0, validator=_count)
    cache_write_tokens: int = attrs.field(default=0, validator=_count)
    cache_write_1h_tokens: int = attrs.field(default=0, validator=_count)
    estimated: bool = attrs.field(default=False, validator=attrs.validators.instance_of(bool))

    def __attrs_post_init__(self) -> None:
        if self.cache_write_1h_tokens > self.cache_write_tokens:
            raise ValueError(
                f"Usage: cache_write_1h_tokens ({self.cache_write_1h_tokens}) exceed "
                f"cache_write_tokens ({self.cache_write_tokens}); they are counted within it"
            )
        if self.cached_input_tokens + self.cache_write_tokens > self.input_tokens:
            raise ValueError(
                f"Usage: cached_input_tokens ({self.cached_input_tokens}) + cache_write_tokens "
                f"({self.cache_write_tokens}) exceed input_tokens ({self.input_tokens}); "
                "they are counted within input_tokens"
            )
        if self.reasoning_tokens > self.output_tokens:
            raise ValueError(
                f"Usage: reasoning_tokens ({self.reasoning_tokens}) exceed output_tokens "
                f"({self.output_tokens}); they are counted within output_tokens"
            )

    @property
    def total_tokens(self) -> int:
        return self.input_tokens + self.output_tokens

    def __add__(self, other: Usage) -> Usage:
        if not isinstance(other, Usage):
            return NotImplemented
        return Usage(
            self.input_tokens + other.input_tokens,
            self.output_tokens + other.output_tokens,
            self.cached_input_tokens + other.cached_input_tokens,
            self.reasoning_tokens + other.reasoning_tokens,
            self.cache_write_tokens + other.cache_write_tokens,
            self.cache_write_1h_tokens + other.cache_write_1h_tokens,
            self.estimated or other.estimated,
        )

    @classmethod
    def zero(cls) -> Usage:
        return cls(0, 0)

    @classmethod
    def estimate(cls, prompt: str, answer: str) -> Usage:
        """Counts for a call whose server reported none: ~4 characters a token, rounded up,
        marked ``estimated``."""
        return cls(-(-len(prompt) // 4), -(-len(answer) // 4), estimated=True)

    def to_json(self) -> dict[str, Any]:
        """The counts; ``cache_write_1h_tokens`` and ``estimated`` only when they say
        something (so the usual shape stays as it was)."""
        data: dict[str, Any] = {
            "input_tokens": self.input_tokens,
            "output_tokens": self.output_tokens,
            "cached_input_tokens": self.cached_input_tokens,
            "reasoning_tokens": self.reasoning_tokens,
            "cache_write_tokens": self.cache_write_tokens,
            "total_tokens": self.total_tokens,
        }
        if self.cache_write_1h_tokens:
            data["cache_write_1h_tokens"] = self.cache_write_1h_tokens
        if self.estimated:
            data["estimated"] = True
        return data

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Usage:
        fields = {k: v for k, v in data.items() if k != "total_tokens"}
        try:
            return cls(**fields)
        except (TypeError, ValueError) as exc:
            raise SerializationError(f"Usage: {exc}") from exc


@attrs.frozen
class LLMResponse:
    """A model's complete answer.

    ``provider`` and ``model`` say who actually answered (after any fallback; for OpenAI and
    Anthropic ``model`` is the name the API reports, e.g. a dated snapshot). ``latency_ms`` is
    the wall time of the successful HTTP exchange (for the offline model: its simulated
    latency). ``raw`` is the provider's JSON (for streams: the last event carrying metadata) for
    debugging, never needed to read the answer.
    """

    text: str
    usage: Usage
    provider: str
    model: str
    finish_reason: str | None
    latency_ms: float
    raw: dict[str, Any] | None = attrs.field(default=None, hash=False)
    refusal: str | None = None
    tool_calls: tuple[ToolCall, ...] = attrs.field(default=(), converter=_to_tool_calls)

    def to_json(self) -> dict[str, Any]:
        data: dict[str, Any] = {
            "text": self.text,
            "usage": self.usage.to_json(),
            "provider": self.provider,
            "model": self.model,
            "finish_reason": self.finish_reason,
            "latency_ms": self.latency_ms,
            "raw": self.raw,
        }
        if self.refusal is not None:
            data["refusal"] = self.refusal
        if self.tool_calls:
            data["tool_calls"] = [c.to_json() for c in self.tool_calls]
        return data

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> LLMResponse:
        try:
            return cls(
                text=data["text"],
                usage=Usage.from_json(data["usage"]),
                provider=data["provider"],
                model=data["model"],
                finish_reason=data["finish_reason"],
                latency_ms=float(data["latency_ms"]),
                raw=data.get("raw"),
                refusal=data.get("refusal"),
                tool_calls=data.get("tool_calls") or (),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise SerializationError(f"LLMResponse: missing or bad field {exc}") from exc


# --------------------------------------------------------------------------------------------
# errors


class ProviderError(BackpackFlowError):
    """A provider call failed. Catch this to handle every LLM failure.

    ``transient`` says whether the same call may succeed later (network trouble, timeouts,
    rate limits, server errors); only transient errors are retried. ``status`` is the HTTP
    status when there was one; ``retry_after`` is the server's requested wait in seconds.
    The message reads ``<provider> model '<model>': <what happened>; <what to do>``.
    """

    default_transient: ClassVar[bool] = False
    default_hint: ClassVar[str] = "see the provider's documentation"

    def __init__(
        self,
        detail: str,
        *,
        provider: str,
        model: str,
        status: int | None = None,
        retry_after: float | None = None,
        transient: bool | None = None,
        hint: str | None = None,
    ) -> None:
        self.detail = detail
        self.provider = provider
        self.model = model
        self.status = status
        self.retry_after = retry_after
        self.transient = self.default_transient if transient is None else transient
        self.hint = self.default_hint if hint is None else hint
        super().__init__(f"{provider} model {model!r}: {detail}; {self.hint}")

    def __reduce__(self) -> tuple[Any, ...]:
        # The keyword-only constructor defeats Exception's default pickling; errors cross
        # process boundaries in a service, so rebuild from the message and the attributes.
        return (_restore_error, (type(self), str(self), dict(self.__dict__)))


def _restore_error(cls: type[ProviderError], message: str, state: dict[str, Any]) -> ProviderError:
    err = cls.__new__(cls)
    Exception.__init__(err, message)
    err.__dict__.update(state)
    return err


class ProviderConnectionError(ProviderError):
    """The provider could not be reached, or the connection broke mid-answer."""

    default_transient = True
    default_hint = "check base_url and the network; transient, so it is retried"


class ProviderTimeout(ProviderError):
    """The provider did not answer (or stopped streaming) within the timeout."""

    default_transient = True
    default_hint = "raise the provider's timeout= or rely on retries and a fallback model"


class RateLimited(ProviderError):
    """HTTP 429: too many requests or tokens; ``retry_after`` says how long to wait."""

    default_transient = True
    default_hint = "slow down, raise the account's rate limit, or add a fallback model"


class ServerError(ProviderError):
    """HTTP 5xx (including Anthropic's 529 "overloaded"): the provider failed on its side."""

    default_transient = True
    default_hint = "the provider failed on its side; retried, add a fallback model for outages"


class MalformedResponse(ProviderError):
    """The body is not in the provider's wire format; ``body`` keeps its start for debugging."""

    default_hint = "check that base_url points at a server speaking this provider's API"
    BODY_LIMIT: ClassVar[int] = 2000

    def __init__(self, detail: str, *, body: str, **kwargs: Any) -> None:
        self.body = body[: self.BODY_LIMIT]
        excerpt = body[:200] + ("..." if len(body) > 200 else "")
        super().__init__(f"{detail} (body: {excerpt!r})", **kwargs)


class ProviderRequestError(ProviderError):
    """HTTP 4xx other than 429: the request itself was refused (bad key, unknown model, bad
    parameters). Retrying the same request cannot help."""

    default_hint = "fix the request (API key, model name, parameters); not retried"


class MissingAPIKey(ProviderError):
    """No API key was given and the environment variable for it is not set."""

    def __init__(self, *, provider: str, model: str, env_var: str, owner: str) -> None:
        self.env_var = env_var
        super().__init__(
            f"no API key: {owner} got no api_key= and the environment variable {env_var} "
            "is not set",
            provider=provider,
            model=model,
            hint=f"export {env_var}=<your key>, or pass api_key= to {owner}",
        )
