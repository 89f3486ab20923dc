"""The exact-match response cache: keys, TTL, LRU and SQLite persistence."""

from __future__ import annotations

import hashlib
import math
import sqlite3
import subprocess
import sys
import textwrap
import threading
from decimal import Decimal
from pathlib import Path

import attrs
import pytest

from backpackflow_llm import (
    Cost,
    LLMRequest,
    LLMResponse,
    MemoryCache,
    Message,
    PricingTable,
    ResponseCache,
    SQLiteCache,
    Usage,
    cache_key,
)

BASE = LLMRequest(
    "openai",
    "gpt-4o-mini",
    (Message("user", "Hi"), Message("assistant", "Hello"), Message("user", "Summarize x")),
    system="Be brief.",
    temperature=0.0,
    max_tokens=100,
)
RESPONSE = LLMResponse(
    text="x.",
    usage=Usage(120, 30, cached_input_tokens=100, reasoning_tokens=5),
    provider="openai",
    model="gpt-4o-mini-2024-07-18",
    finish_reason="stop",
    latency_ms=812.5,
    raw={"id": "chatcmpl-1", "nested": [1, {"a": None}]},
)
# pinned: a change of the key recipe must bump CACHE_KEY_VERSION, so old entries stop matching
GOLDEN_KEY = "1c08a81c172da167021c84dbc5db2c8f56cb8b4c0f0698a498255ba74d41d81c"
COST = PricingTable.load().price("openai", RESPONSE.model, RESPONSE.usage)


class Clock:
    def __init__(self, now: float = 1_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


# ---- keys ----------------------------------------------------------------------------------


def test_key_is_a_stable_sha256():
    assert cache_key(BASE) == cache_key(attrs.evolve(BASE))
    assert cache_key(BASE) == GOLDEN_KEY
    canonical = (
        '{"extra":null,"max_tokens":100,"messages":[["user","Hi"],["assistant","Hello"],'
        '["user","Summarize x"]],"model":"gpt-4o-mini","provider":"openai",'
        '"response_format":"text","system":"Be brief.","temperature":0.0,"v":1}'
    )
    assert hashlib.sha256(canonical.encode()).hexdigest() == GOLDEN_KEY


@pytest.mark.parametrize(
    "change",
    [
        {"provider": "azure"},
        {"model": "gpt-4o"},
        {"system": "Be long."},
        {"system": None},
        {"messages": (Message("user", "Hi"),)},
        {
            "messages": (
                Message("user", "Hi"),
                Message("user", "Hello"),
                Message("user", "Summarize x"),
            )
        },
        {"messages": tuple(reversed(BASE.messages))},
        {"temperature": 0.7},
        {"temperature": None},
        {"max_tokens": 101},
        {"response_format": "json"},
    ],
)
def test_key_changes_with_everything_that_changes_the_answer(change):
    assert cache_key(attrs.evolve(BASE, **change)) != cache_key(BASE)


def test_key_ignores_how_the_answer_travels_and_number_spelling():
    assert cache_key(attrs.evolve(BASE, stream=True)) == cache_key(BASE)
    assert cache_key(attrs.evolve(BASE, temperature=1)) == cache_key(
        attrs.evolve(BASE, temperature=1.0)
    )


def test_extra_is_part_of_the_key_and_must_be_json():
    assert cache_key(BASE, extra={"template": "v2"}) != cache_key(BASE, extra={"template": "v1"})
    assert cache_key(BASE, extra={"a": 1, "b": 2}) == cache_key(BASE, extra={"b": 2, "a": 1})
    assert cache_key(BASE, extra={}) == cache_key(BASE)
    with pytest.raises(ValueError, match="extra must be JSON data"):
        cache_key(BASE, extra={"x": object()})


def test_message_boundaries_cannot_collide():
    one = attrs.evolve(BASE, messages=(Message("user", "a b"),))
    two = attrs.evolve(BASE, messages=(Message("user", "a"), Message("user", "b")))
    assert cache_key(one) != cache_key(two)


# ---- MemoryCache ---------------------------------------------------------------------------


def test_memory_cache_stores_the_response_and_its_cost():
    cache = MemoryCache()
    assert isinstance(cache, ResponseCache)
    assert cache.get("k") is None
    cache.set("k", RESPONSE, COST)
    entry = cache.get("k")
    assert entry is not None
    assert (entry.response, entry.cost, entry.expires_at) == (RESPONSE, COST, None)
    stats = cache.stats()
    assert (stats.hits, stats.misses, stats.sets, stats.entries) == (1, 1, 1, 1)
    assert stats.saved_cost.total == COST.total and stats.hit_rate == 0.5


def test_memory_cache_ttl_expiry_with_an_injected_clock():
    clock = Clock()
    cache = MemoryCache(default_ttl=60, clock=clock)
    cache.set("default", RESPONSE, COST)
    cache.set("short", RESPONSE, COST, ttl=5)
    cache.set("forever", RESPONSE, COST, ttl=math.inf)
    clock.now += 5
    assert cache.get("short") is None
    assert cache.get("default") is not None
    clock.now += 55
    assert cache.get("default") is None
    clock.now += 10**9
    assert cache.get("forever") is not None
    assert cache.stats().expirations == 2


def test_memory_cache_evicts_the_least_recently_used():
    cache = MemoryCache(max_entries=2)
    cache.set("a", RESPONSE, COST)
    cache.set("b", RESPONSE, COST)
    assert cache.get("a") is not None  # a is now the most recent
    cache.set("c", RESPONSE, COST)
    assert cache.get("b") is None
    assert cache.get("a") is not None and cache.get("c") is not None
    assert cache.stats().evictions == 1 and len(cache) == 2


@pytest.mark.parametrize("ttl", [0, -1, float("nan")])
def test_bad_ttls_are_refused(ttl):
    with pytest.raises(ValueError, match="ttl must be > 0"):
        MemoryCache().set("k", RESPONSE, COST, ttl=ttl)
    with pytest.raises(ValueError, match="default_ttl"):
        MemoryCache(default_ttl=ttl)


def test_saved_cost_stays_flagged_when_a_hit_was_unpriced():
    cache = MemoryCache()
    cache.set("known", RESPONSE, COST)
    cache.set("unknown", RESPONSE, Cost.unknown())
    cache.get("known")
    cache.get("unknown")
    assert cache.stats().saved_cost.known is False
    assert cache.stats().saved_cost.total == COST.total


# ---- SQLiteCache ---------------------------------------------------------------------------


def test_sqlite_cache_persists_across_cache_objects(tmp_path):
    path = tmp_path / "cache.db"
    with SQLiteCache(path) as first:
        assert isinstance(first, ResponseCache)
        first.set("k", RESPONSE, COST)
    with SQLiteCache(path) as second:
        entry = second.get("k")
        assert entry is not None
        assert entry.response == RESPONSE  # text, usage, provider, model, finish_reason, raw
        assert entry.cost == COST and type(entry.cost.total) is Decimal
        assert second.stats().entries == 1


def test_sqlite_cache_uses_wal(tmp_path):
    path = tmp_path / "cache.db"
    SQLiteCache(path).close()
    conn = sqlite3.connect(path)
    try:
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    finally:
        conn.close()


def test_sqlite_cache_ttl_and_purge(tmp_path):
    clock = Clock()
    with SQLiteCache(tmp_path / "c.db", default_ttl=10, clock=clock) as cache:
        cache.set("a", RESPONSE, COST)
        cache.set("b", RESPONSE, COST, ttl=100)
        cache.set("c", RESPONSE, COST, ttl=1)
        clock.now += 10
        assert cache.get("a") is None
        assert cache.stats().entries == 1
        assert cache.purge_expired() == 1  # c
        assert cache.get("b") is not None
        assert cache.stats().expirations == 2


def test_sqlite_cache_overwrites_and_clears(tmp_path):
    with SQLiteCache(tmp_path / "c.db") as cache:
        cache.set("k", RESPONSE, COST)
        cache.set("k", attrs.evolve(RESPONSE, text="new"), COST)
        entry = cache.get("k")
        assert entry is not None and entry.response.text == "new"
        cache.clear()
        assert cache.get("k") is None


def test_sqlite_cache_is_shared_between_threads(tmp_path):
    errors: list[BaseException] = []
    with SQLiteCache(tmp_path / "c.db") as cache:

        def work(n: int) -> None:
            try:
                for i in range(20):
                    cache.set(f"{n}-{i}", RESPONSE, COST)
                    assert cache.get(f"{n}-{i}") is not None
            except BaseException as exc:  # noqa: BLE001 - reported below
                errors.append(exc)

        threads = [threading.Thread(target=work, args=(n,)) for n in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert errors == []
        assert cache.stats().entries == 160


def test_sqlite_cache_is_shared_between_processes(tmp_path):
    path = tmp_path / "c.db"
    script = textwrap.dedent(
        f"""
        from backpackflow_llm import SQLiteCache, LLMResponse, Usage, Cost
        response = LLMResponse("from another process", Usage(1, 2), "offline",
                               "offline-extractive-1", "stop", 0.0, None)
        with SQLiteCache({str(path)!r}) as cache:
            cache.set("other", response, Cost.zero())
        """
    )
    subprocess.run([sys.executable, "-c", script], check=True, timeout=60)
    with SQLiteCache(path) as cache:
        entry = cache.get("other")
        assert entry is not None and entry.response.text == "from another process"


def test_sqlite_cache_refuses_a_foreign_schema_version(tmp_path):
    path = Path(tmp_path / "c.db")
    conn = sqlite3.connect(path)
    conn.execute("PRAGMA user_version = 99")
    conn.close()
    with pytest.raises(ValueError, match="schema version 99"):
        SQLiteCache(path)
