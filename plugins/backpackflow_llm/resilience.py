"""Retries with exponential backoff, and fallback chains of (provider, model) pairs.

The rules, in order, for each failure of a call:

1. Only :class:`~backpackflow_llm.types.ProviderError` is handled; anything else (a bug, an
   error raised by a callback, cancellation) propagates at once.
2. A *transient* error (connection, timeout, 429, 5xx/529) is retried on the same pair up to
   ``policy.max_attempts`` attempts, sleeping :meth:`RetryPolicy.delay` between attempts.
3. A pair that still fails (retries exhausted, or a non-transient error such as a 4xx,
   a malformed body or a missing API key) hands over to the next pair when ``fallback_on``
   accepts the error. By default it accepts every ProviderError: a 4xx is specific to the
   provider, model and key that got it (unknown model, context too long, bad key), and the next
   pair has another of each. Pass ``fallback_on=lambda e: e.transient`` to stop on a 4xx.
4. When no pair is left, or ``fallback_on`` refuses, :class:`AllProvidersFailed` lists every
   attempt.

With streaming, a failed attempt may already have sent deltas to ``on_chunk``; a new attempt
streams from the beginning. ``on_retry``/``on_fallback`` are called *before* the new attempt
starts, so a consumer that shows partial text discards it there.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Awaitable, Callable, Mapping, Sequence
from contextlib import AbstractAsyncContextManager
from typing import Any

import attrs

from backpackflow import SerializationError
from backpackflow_llm.providers.base import OnChunk, Provider
from backpackflow_llm.types import LLMRequest, LLMResponse, ProviderError

__all__ = [
    "AllProvidersFailed",
    "AttemptRecord",
    "FallbackInfo",
    "RetryInfo",
    "RetryPolicy",
    "complete_with_fallback",
]


def _non_negative(_: Any, attribute: attrs.Attribute[Any], value: float) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not value >= 0:
        raise ValueError(f"RetryPolicy.{attribute.name} must be a number >= 0, got {value!r}")


def _check_attempts(_: Any, attribute: attrs.Attribute[Any], value: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"RetryPolicy.max_attempts must be an int >= 1, got {value!r}")


def _check_multiplier(_: Any, attribute: attrs.Attribute[Any], value: float) -> None:
    _non_negative(_, attribute, value)
    if value < 1:
        raise ValueError(f"RetryPolicy.multiplier must be >= 1, got {value!r}")


def _check_jitter(_: Any, attribute: attrs.Attribute[Any], value: float) -> None:
    _non_negative(_, attribute, value)
    if value > 1:
        raise ValueError(f"RetryPolicy.jitter must be between 0 and 1, got {value!r}")


@attrs.frozen
class RetryPolicy:
    """How often and how patiently to retry one (provider, model) pair.

    ``max_attempts`` counts every attempt, the first included (1 = no retry). Before retry
    ``n`` (after failed attempt ``n``) the backoff is ``base_delay * multiplier**(n-1)``,
    capped at ``max_delay``, then reduced by a random fraction of up to ``jitter``
    (0 = fixed delays, 1 = "full jitter"), which spreads clients that failed together. When the
    error carries ``retry_after`` (HTTP ``retry-after``), that wait is used instead, as asked:
    the server knows when it will take the request. A server that asks for more than
    ``max_retry_after`` seconds is not waited for: the pair fails at once (and the chain moves
    to its fallback), the error naming the wait, rather than retrying early into the same
    refusal or stalling a flow for minutes.
    """

    max_attempts: int = attrs.field(default=3, validator=_check_attempts)
    base_delay: float = attrs.field(default=0.5, validator=_non_negative)
    max_delay: float = attrs.field(default=20.0, validator=_non_negative)
    multiplier: float = attrs.field(default=2.0, validator=_check_multiplier)
    jitter: float = attrs.field(default=0.5, validator=_check_jitter)
    max_retry_after: float = attrs.field(default=60.0, validator=_non_negative)

    def should_retry(self, error: ProviderError, attempt: int) -> bool:
        """Whether failed attempt number ``attempt`` (1-based) is followed by another."""
        return error.transient and attempt < self.max_attempts and not self.waits_too_long(error)

    def waits_too_long(self, error: ProviderError) -> bool:
        """Whether the server asked for a longer wait than this policy accepts."""
        return error.retry_after is not None and error.retry_after > self.max_retry_after

    def delay(
        self,
        attempt: int,
        error: ProviderError | None = None,
        rand: Callable[[], float] = random.random,
    ) -> float:
        """Seconds to wait after failed attempt ``attempt``; ``rand`` returns [0, 1)."""
        if error is not None and error.retry_after is not None:
            return min(max(error.retry_after, 0.0), self.max_retry_after)
        try:
            backoff = min(self.max_delay, self.base_delay * self.multiplier ** (attempt - 1))
        except OverflowError:
            backoff = self.max_delay
        return backoff * (1 - self.jitter * rand())

    def to_json(self) -> dict[str, Any]:
        return attrs.asdict(self)

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> RetryPolicy:
        unknown = set(data) - {f.name for f in attrs.fields(cls)}
        if unknown:
            raise SerializationError(f"RetryPolicy: unknown fields {sorted(unknown)}")
        try:
            return cls(**data)
        except (TypeError, ValueError) as exc:
            raise SerializationError(str(exc)) from exc


@attrs.frozen
class RetryInfo:
    """Attempt ``attempt`` of ``provider``/``model`` failed; retrying after ``delay`` s."""

    provider: str
    model: str
    attempt: int
    max_attempts: int
    error: ProviderError
    delay: float


@attrs.frozen
class FallbackInfo:
    """The chain moves from one pair to the next because of ``error`` (``reason`` says it)."""

    from_provider: str
    from_model: str
    to_provider: str
    to_model: str
    reason: str
    error: ProviderError


@attrs.frozen
class AttemptRecord:
    """One failed attempt, as listed by :class:`AllProvidersFailed`."""

    provider: str
    model: str
    attempt: int
    error: ProviderError
    #: why the attempt was not retried although its error is transient (a too-long wait)
    note: str | None = None

    def describe(self) -> str:
        note = f" ({self.note})" if self.note else ""
        return (
            f"{self.provider}/{self.model} attempt {self.attempt}: "
            f"{type(self.error).__name__}{note}"
        )


class AllProvidersFailed(ProviderError):
    """The whole chain failed. ``attempts`` lists every attempt; ``last_error`` is the final
    one, whose ``provider``, ``model``, ``status``, ``retry_after`` and ``transient`` this
    error repeats (and which is its ``__cause__``)."""

    def __init__(
        self,
        attempts: Sequence[AttemptRecord],
        *,
        stopped: str | None = None,
        untried: Sequence[tuple[str, str]] = (),
    ) -> None:
        self.attempts = tuple(attempts)
        last = self.attempts[-1].error
        self.last_error = last
        lines = [f"{a.describe()}: {a.error.detail}" for a in self.attempts]
        detail = f"all {len(self.attempts)} attempts failed: " + " | ".join(lines)
        if stopped:
            skipped = ", ".join(f"{p}/{m}" for p, m in untried)
            detail += f" | stopped before {skipped}: {stopped}"
        super().__init__(
            detail,
            provider=last.provider,
            model=last.model,
            status=last.status,
            retry_after=last.retry_after,
            transient=last.transient,
            hint=last.hint,
        )


def _always(error: ProviderError) -> bool:
    return True


async def complete_with_fallback(
    chain: Sequence[tuple[Provider, str]],
    request: LLMRequest,
    *,
    policy: RetryPolicy | None = None,
    on_retry: Callable[[RetryInfo], None] | None = None,
    on_fallback: Callable[[FallbackInfo], None] | None = None,
    on_chunk: OnChunk | None = None,
    fallback_on: Callable[[ProviderError], bool] = _always,
    sleep: Callable[[float], Awaitable[Any]] = asyncio.sleep,
    rand: Callable[[], float] = random.random,
    gate: Callable[[str, str], AbstractAsyncContextManager[Any]] | None = None,
) -> LLMResponse:
    """Answer ``request`` with the first (provider, model) pair of ``chain`` that succeeds.

    The request is re-targeted to each pair (``provider=provider.name, model=model``); the
    ``provider`` and ``model`` of ``request`` itself are ignored. The response's ``provider``
    and ``model`` say who answered. See the module docstring for the retry and fallback rules;
    ``sleep`` and ``rand`` are injectable so tests neither wait nor guess. ``gate(provider,
    model)``, when given, is entered around every attempt: the service's rate limits and
    concurrency caps per provider (:class:`~backpackflow_llm.limits.ProviderLimits`).
    """
    if not chain:
        raise ValueError("complete_with_fallback: the chain of (provider, model) pairs is empty")
    policy = policy or RetryPolicy()
    attempts: list[AttemptRecord] = []
    for index, (provider, model) in enumerate(chain):
        target = attrs.evolve(request, provider=provider.name, model=model)
        attempt = 0
        while True:
            attempt += 1
            try:
                if gate is None:
                    return await provider.complete(target, on_chunk=on_chunk)
                async with gate(provider.name, model):
                    return await provider.complete(target, on_chunk=on_chunk)
            except ProviderError as failure:
                note = None
                if failure.transient and policy.waits_too_long(failure):
                    note = (
                        f"not retried: the server asked to wait {failure.retry_after:g}s, "
                        f"more than max_retry_after={policy.max_retry_after:g}s"
                    )
                attempts.append(AttemptRecord(provider.name, model, attempt, failure, note))
                if not policy.should_retry(failure, attempt):
                    break
                delay = policy.delay(attempt, failure, rand)
                if on_retry is not None:
                    on_retry(
                        RetryInfo(
                            provider.name, model, attempt, policy.max_attempts, failure, delay
                        )
                    )
                await sleep(delay)
        error = attempts[-1].error
        rest = [(p.name, m) for p, m in chain[index + 1 :]]
        if not rest:
            raise AllProvidersFailed(attempts) from error
        if not fallback_on(error):
            raise AllProvidersFailed(
                attempts, stopped=f"fallback_on refused {type(error).__name__}", untried=rest
            ) from error
        why = "after retries" if error.transient else "not retryable"
        tries = f"{attempt} attempt{'s' if attempt != 1 else ''}"
        reason = f"{type(error).__name__} {why} ({tries}): {error.detail}"
        if on_fallback is not None:
            to_provider, to_model = rest[0]
            on_fallback(FallbackInfo(provider.name, model, to_provider, to_model, reason, error))
    raise AssertionError("unreachable: the last pair either answers or raises")
