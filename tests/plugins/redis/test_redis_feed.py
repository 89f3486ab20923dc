"""The Redis live feed and shared limits against the real Redis of the machine: stream ids are
event seqs, end markers carry the summary, one reader connection serves every watch, cancels
reach the other processes, and limits hold for several processes (here: several clients)."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
import redis
import redis.asyncio as aioredis

from backpackflow import ConfigError
from backpackflow_llm import RateLimited
from backpackflow_llm.limits import ProviderLimits, parse_rates
from backpackflow_redis import RedisFeed
from backpackflow_redis.limits import shared_provider_limits
from backpackflow_redis.plugin import open_redis_feed


def fresh_prefix() -> str:
    return f"bpf-test-{uuid.uuid4().hex[:8]}"


def run(main: Callable[[], Awaitable[Any]]) -> Any:
    return asyncio.run(asyncio.wait_for(main(), 20))


async def until(condition: Callable[[], Any], what: str) -> None:
    for _ in range(400):
        if condition():
            return
        await asyncio.sleep(0.01)
    raise AssertionError(f"timed out waiting for {what}")


def test_events_and_ends_reach_every_watch_through_one_reader_connection(redis_url: str) -> None:
    prefix = fresh_prefix()

    async def main() -> None:
        feed = RedisFeed(redis_url, prefix=prefix)
        await feed.start(lambda message: None)
        try:
            run_ids = [uuid.uuid4().hex for _ in range(5)]
            async with contextlib_stack(feed, run_ids, watchers=4) as tails:
                for run_id in run_ids:
                    feed.publish(run_id, [(1, '{"seq":1}'), (2, '{"seq":2}')])
                    feed.publish_end(run_id, 2, {"id": run_id, "status": "succeeded"})
                await until(lambda: all(t.end is not None for t in tails), "every end marker")
                for tail in tails:
                    assert (tail.get(1), tail.get(2), tail.top) == ('{"seq":1}', '{"seq":2}', 2)
                    assert tail.end == (2, {"id": tail.run_id, "status": "succeeded"})
                # 20 watches, 5 runs: one tail per run, and one reader connection in all
                assert len({id(t) for t in tails}) == 5
                sync = redis.Redis.from_url(redis_url)
                readers = [c for c in sync.client_list() if c["name"].startswith(prefix)]
                sync.close()
                assert len(readers) == 1 and readers[0]["cmd"] == "xread"
            # a watch from after event 1 of a finished run: XREAD from 1-0 gives 2, then end
            async with feed.watch(run_ids[0], 1) as late:
                await until(lambda: late.end is not None, "the late watch's end")
                assert (late.get(1), late.get(2)) == (None, '{"seq":2}')
        finally:
            await feed.close()
        client = redis.Redis.from_url(redis_url)
        ids = [entry_id.decode() for entry_id, _ in client.xrange(f"{prefix}:run:{run_ids[0]}")]
        assert ids == ["1-0", "2-0", "2-1"]
        assert 0 < client.ttl(f"{prefix}:run:{run_ids[0]}") <= feed.end_ttl
        client.close()

    run(main)


class contextlib_stack:
    """``watchers`` watches of each run, entered together (a list of their tails)."""

    def __init__(self, feed: RedisFeed, run_ids: list[str], watchers: int) -> None:
        self._managers = [feed.watch(r, 0) for r in run_ids for _ in range(watchers)]

    async def __aenter__(self) -> list[Any]:
        return [await manager.__aenter__() for manager in self._managers]

    async def __aexit__(self, *exc_info: object) -> None:
        for manager in self._managers:
            await manager.__aexit__(None, None, None)


def test_a_cancel_reaches_the_other_process_and_stays_marked(redis_url: str) -> None:
    prefix = fresh_prefix()

    async def main() -> None:
        received: list[dict[str, Any]] = []
        here, there = RedisFeed(redis_url, prefix=prefix), RedisFeed(redis_url, prefix=prefix)
        await here.start(received.append)
        await there.start(lambda message: None)
        try:
            await until(lambda: {"op": "resync"} in received, "the subscription")
            run_id = uuid.uuid4().hex
            assert await there.request_cancel(run_id, "stop it") >= 1
            await until(lambda: len(received) > 1, "the cancel message")
            assert received[-1] == {"op": "cancel", "run_id": run_id, "reason": "stop it"}
            assert await here.cancel_marks([run_id, "other"]) == {run_id: "stop it"}
        finally:
            await here.close()
            await there.close()

    run(main)


def test_an_unreachable_feed_and_a_bad_prefix_are_clear_errors() -> None:
    async def main() -> None:
        feed = RedisFeed("redis://127.0.0.1:1/0")
        with pytest.raises(ConnectionError, match=r"live feed: cannot reach redis 127\.0\.0\.1:1"):
            await feed.start(lambda message: None)

    run(main)
    with pytest.raises(ConfigError, match="prefix 'a b' may hold only"):
        open_redis_feed("redis://127.0.0.1:6379/0?prefix=a%20b")
    feed = open_redis_feed("redis://127.0.0.1:6379/2?prefix=staging&socket_timeout=3")
    assert (feed.prefix, feed.url) == ("staging", "redis://127.0.0.1:6379/2?socket_timeout=3")


def test_rates_parse_or_say_what_is_wrong() -> None:
    rates = parse_rates("500/minute, 10/second", "provider_rate_limits.openai")
    assert [(r.limit, r.interval) for r in rates] == [(10, 1000), (500, 60_000)]
    with pytest.raises(ValueError, match=r"provider_rate_limits\.openai: '10 per second'"):
        parse_rates("10 per second", "provider_rate_limits.openai")


def test_a_rate_limit_without_a_permit_in_time_is_rate_limited() -> None:
    async def main() -> None:
        limits = ProviderLimits({"offline": parse_rates("1/minute", "x")}, {}, max_wait=0.1)
        async with limits.gate("offline", "m"):
            pass
        async with limits.gate("other", "m"):  # no limit of its own
            pass
        with pytest.raises(RateLimited, match=r"gave no permit within 0\.1s") as info:
            async with limits.gate("offline", "m"):
                pass
        assert not info.value.transient  # not retried: the chain may fall back

    run(main)


def test_a_concurrency_cap_holds_across_processes(redis_url: str) -> None:
    """Two services' limits (two Redis clients), a cap of 2: never more than 2 calls in
    flight together, though each side alone would allow 2."""
    prefix = fresh_prefix()

    async def main() -> None:
        clients = [aioredis.Redis.from_url(redis_url) for _ in range(2)]
        sides = [shared_provider_limits(c, prefix, {}, {"openai": 2}, max_wait=5) for c in clients]
        in_flight, most = 0, 0

        async def call(limits: ProviderLimits) -> None:
            nonlocal in_flight, most
            async with limits.gate("openai", "gpt"):
                in_flight += 1
                most = max(most, in_flight)
                await asyncio.sleep(0.02)
                in_flight -= 1

        await asyncio.gather(*(call(sides[i % 2]) for i in range(12)))
        assert most == 2
        assert await clients[0].zcard(f"{prefix}:slots:openai") == 0  # every lease given back
        for client in clients:
            await client.aclose()

    run(main)
