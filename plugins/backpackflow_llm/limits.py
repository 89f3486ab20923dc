"""Rate limits and concurrency caps per LLM provider, asked before every call to it.

The operator's limits (``"openai": "10/second,500/minute"``; at most N calls in flight) keep
a service's runs under the account's quota together, rather than each run meeting 429s on its
own. :class:`ProviderLimits` is what the llm node asks (the ``llm_limits`` dependency; see
:func:`~backpackflow_llm.resilience.complete_with_fallback`'s ``gate``): each attempt first
waits for a permit of the provider's rates, then holds a slot of its concurrency cap during
the call.

The rates are pyrate-limiter's (a sliding-window log per provider): in memory for one process,
or a ``RedisBucket`` shared by every process of a service when it has a live feed
(``backpackflow_redis``), so ten workers draw on one budget. The caps are asyncio semaphores in
one process, Redis leases shared by all of them otherwise.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from contextlib import AbstractAsyncContextManager
from typing import Any

from pyrate_limiter import AbstractBucket, Duration, InMemoryBucket, Limiter, Rate

from backpackflow_llm.types import RateLimited

__all__ = ["ProviderLimits", "parse_rates"]

_UNITS = {
    "second": Duration.SECOND,
    "minute": Duration.MINUTE,
    "hour": Duration.HOUR,
    "day": Duration.DAY,
}
_RATE = re.compile(r"\s*(\d+)\s*/\s*(second|minute|hour|day)s?\s*")

#: Makes the bucket of a provider's rates (``InMemoryBucket`` without one).
BucketFactory = Callable[[str, list[Rate]], Awaitable[AbstractBucket]]
#: Makes the slot holder of a provider's concurrency cap (an asyncio semaphore without one).
SlotFactory = Callable[[str, int], AbstractAsyncContextManager[Any]]


def parse_rates(text: str, where: str) -> list[Rate]:
    """``"10/second,500/minute"`` as pyrate-limiter rates; ``ValueError`` naming ``where``."""
    rates = []
    for part in text.split(","):
        match = _RATE.fullmatch(part)
        if match is None or int(match.group(1)) < 1:
            raise ValueError(
                f"{where}: {part.strip()!r} is not a rate; expected N/second, N/minute, N/hour "
                "or N/day with N >= 1, several separated by commas"
            )
        rates.append(Rate(int(match.group(1)), _UNITS[match.group(2)]))
    return sorted(rates, key=lambda rate: rate.interval)


async def _memory_bucket(provider: str, rates: list[Rate]) -> AbstractBucket:
    return InMemoryBucket(rates)


class ProviderLimits:
    """Each provider's rates (``{"openai": [Rate, ...]}``) and concurrency cap
    (``{"openai": 4}``). A call that cannot get a permit within ``max_wait`` seconds fails
    with :class:`~backpackflow_llm.types.RateLimited` (not retried: the chain may fall back)."""

    def __init__(
        self,
        rates: Mapping[str, Sequence[Rate]],
        concurrency: Mapping[str, int],
        *,
        bucket: BucketFactory | None = None,
        slot: SlotFactory | None = None,
        max_wait: float = 300.0,
    ) -> None:
        self.rates = {name: list(value) for name, value in rates.items()}
        self.concurrency = dict(concurrency)
        self.max_wait = max_wait
        self._bucket = bucket or _memory_bucket
        self._slot = slot or self._local_slot
        self._limiters: dict[str, Limiter] = {}
        self._semaphores: dict[str, asyncio.Semaphore] = {}
        self._building = asyncio.Lock()

    async def _limiter(self, provider: str) -> Limiter | None:
        rates = self.rates.get(provider)
        if not rates:
            return None
        limiter = self._limiters.get(provider)
        if limiter is None:
            async with self._building:
                limiter = self._limiters.get(provider)
                if limiter is None:
                    bucket = await self._bucket(provider, rates)
                    limiter = self._limiters[provider] = Limiter(bucket)
        return limiter

    def _local_slot(self, provider: str, cap: int) -> AbstractAsyncContextManager[Any]:
        semaphore = self._semaphores.get(provider)
        if semaphore is None:
            semaphore = self._semaphores[provider] = asyncio.Semaphore(cap)
        return semaphore

    @contextlib.asynccontextmanager
    async def gate(self, provider: str, model: str) -> AsyncIterator[None]:
        """Wait for a permit of ``provider``'s rates, then hold a slot of its cap."""
        limiter = await self._limiter(provider)
        if limiter is not None:
            granted = await limiter.try_acquire_async(
                provider, blocking=True, timeout=self.max_wait
            )
            if not granted:
                raise RateLimited(
                    f"the service's rate limit of {provider!r} gave no permit within "
                    f"{self.max_wait:g}s",
                    provider=provider,
                    model=model,
                    transient=False,
                    hint="raise provider_rate_limits, or run fewer flows at once",
                )
        cap = self.concurrency.get(provider)
        if cap is None:
            yield
            return
        async with self._slot(provider, cap):
            yield
