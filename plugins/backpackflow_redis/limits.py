"""Per-provider limits shared by every process of a service through Redis.

Rates: pyrate-limiter's ``RedisBucket`` (a sliding-window log in a sorted set, checked and
added to in one Lua script), one bucket per provider, so every process draws on one budget.

Concurrency caps: a lease per call in a sorted set per provider (member: a fresh id, score: when
the lease lapses, on Redis's clock), taken by a Lua script only while fewer than the cap are
live, removed when the call ends. A process that dies mid-call frees its slots when their
leases lapse (``lease`` seconds). redis-py's ``Lock`` is a mutex; a counting semaphore over it
would need a lock per slot, so this is the one hand-written script here.
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator, Mapping, Sequence
from typing import Any

import redis.asyncio as aioredis
from pyrate_limiter import AbstractBucket, Rate, RedisBucket

from backpackflow_llm.limits import ProviderLimits

__all__ = ["RedisSlots", "shared_provider_limits"]

_TAKE = """
local now = redis.call('TIME')
local ms = tonumber(now[1]) * 1000 + math.floor(tonumber(now[2]) / 1000)
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', ms)
if redis.call('ZCARD', KEYS[1]) < tonumber(ARGV[1]) then
  redis.call('ZADD', KEYS[1], ms + tonumber(ARGV[2]), ARGV[3])
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
  return 1
end
return 0
"""


class RedisSlots:
    """Concurrency caps shared through Redis: ``slot(provider, cap)`` waits (polling, from
    ``poll`` up to ``max_poll`` seconds apart) until fewer than ``cap`` calls of the provider
    hold a lease, and holds one during the block."""

    def __init__(
        self,
        client: aioredis.Redis,
        prefix: str,
        *,
        lease: float = 600.0,
        poll: float = 0.02,
        max_poll: float = 0.25,
    ) -> None:
        self._client = client
        self._prefix = prefix
        self._lease_ms = int(lease * 1000)
        self._poll = poll
        self._max_poll = max_poll
        self._take = client.register_script(_TAKE)

    @contextlib.asynccontextmanager
    async def slot(self, provider: str, cap: int) -> AsyncIterator[None]:
        key = f"{self._prefix}:slots:{provider}"
        holder = uuid.uuid4().hex
        pause = self._poll
        while not await self._take(keys=[key], args=[cap, self._lease_ms, holder]):
            await asyncio.sleep(pause)
            pause = min(pause * 2, self._max_poll)
        try:
            yield
        finally:
            await asyncio.shield(self._client.zrem(key, holder))


def shared_provider_limits(
    client: aioredis.Redis,
    prefix: str,
    rates: Mapping[str, Sequence[Rate]],
    concurrency: Mapping[str, int],
    *,
    max_wait: float,
) -> ProviderLimits:
    """:class:`~backpackflow_llm.limits.ProviderLimits` whose buckets and slots live in Redis
    (keys ``<prefix>:rate:<provider>`` and ``<prefix>:slots:<provider>``)."""

    async def bucket(provider: str, provider_rates: list[Rate]) -> AbstractBucket:
        made: Any = await RedisBucket.init(provider_rates, client, f"{prefix}:rate:{provider}")
        return made  # type: ignore[no-any-return]

    slots = RedisSlots(client, prefix)
    return ProviderLimits(rates, concurrency, bucket=bucket, slot=slots.slot, max_wait=max_wait)
