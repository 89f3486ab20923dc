"""Exact-match response cache: in memory (LRU) or in SQLite (shared across processes).

A key is the sha256 of the canonical JSON of everything that changes a model's answer:
provider, model, system prompt, messages, ``temperature``, ``max_tokens``,
``response_format`` and an optional ``extra`` mapping (e.g. a prompt template version).
``stream`` only changes how the answer travels, so a streamed and a plain call share a key.
Entries keep the whole response and what it cost, so a hit can report the cost it saved.

Caching a ``temperature > 0`` answer freezes one sample; whether that is wanted is the
caller's decision, not the cache's. Both caches are synchronous (a lookup is microseconds in
memory and a single indexed read in SQLite) and safe to share between threads.
"""

from __future__ import annotations

import hashlib
import json
import math
import sqlite3
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import attrs

from backpackflow_llm.pricing import Cost
from backpackflow_llm.types import LLMRequest, LLMResponse

__all__ = [
    "CACHE_KEY_VERSION",
    "CacheStats",
    "CachedEntry",
    "MemoryCache",
    "ResponseCache",
    "SQLiteCache",
    "cache_key",
]

CACHE_KEY_VERSION = 1
"""Part of every key: bumping it invalidates every stored entry when the key recipe changes."""

Clock = Callable[[], float]


def cache_key(request: LLMRequest, *, extra: Mapping[str, Any] | None = None) -> str:
    """The hex sha256 identifying ``request``'s answer (see the module docstring).

    ``temperature`` is normalised to a float so ``1`` and ``1.0`` share a key; ``extra`` must
    be JSON data and lets the caller add what else changes the answer.
    """
    payload = {
        "v": CACHE_KEY_VERSION,
        "provider": request.provider,
        "model": request.model,
        "system": request.system,
        "messages": [[m.role, m.content] for m in request.messages],
        "temperature": None if request.temperature is None else float(request.temperature),
        "max_tokens": request.max_tokens,
        "response_format": request.response_format,
        "extra": dict(extra) if extra else None,
    }
    # what changes the answer beyond the above; only when set, so older keys stay valid
    if request.tools:
        payload["tools"] = [t.to_json() for t in request.tools]
    if request.tool_choice is not None:
        payload["tool_choice"] = request.tool_choice
    if request.json_schema is not None:
        payload["json_schema"] = request.json_schema
    if any(m.tool_calls or m.tool_call_id for m in request.messages):
        payload["messages"] = [m.to_json() for m in request.messages]
    try:
        text = json.dumps(
            payload, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False
        )
    except (TypeError, ValueError) as exc:
        raise ValueError(f"cache_key: extra must be JSON data: {exc}") from None
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


@attrs.frozen
class CachedEntry:
    """A stored answer. ``cost`` is what the original call cost: what a hit saves."""

    key: str
    response: LLMResponse
    cost: Cost
    created_at: float
    expires_at: float | None

    def expired(self, now: float) -> bool:
        return self.expires_at is not None and now >= self.expires_at


@attrs.frozen
class CacheStats:
    """Counters of one cache object since it was made (``entries`` is the current size).

    ``saved_cost`` sums the cost of every hit; it is ``known=False`` if any hit's cost was.
    """

    hits: int
    misses: int
    sets: int
    evictions: int
    expirations: int
    entries: int
    saved_cost: Cost

    @property
    def hit_rate(self) -> float:
        lookups = self.hits + self.misses
        return self.hits / lookups if lookups else 0.0


@runtime_checkable
class ResponseCache(Protocol):
    """What the flow node needs of a cache. ``ttl`` is seconds; ``None`` means the cache's
    ``default_ttl``, ``math.inf`` never expires."""

    def get(self, key: str) -> CachedEntry | None: ...

    def set(
        self, key: str, response: LLMResponse, cost: Cost, ttl: float | None = None
    ) -> None: ...

    def stats(self) -> CacheStats: ...


def _expiry(now: float, ttl: float | None, default_ttl: float | None) -> float | None:
    ttl = default_ttl if ttl is None else ttl
    if ttl is None or ttl == math.inf:
        return None
    if not ttl > 0:
        raise ValueError(f"cache ttl must be > 0 seconds (or math.inf), got {ttl!r}")
    return now + ttl


def _check_default_ttl(default_ttl: float | None) -> None:
    if default_ttl is not None and not default_ttl > 0:
        raise ValueError(f"default_ttl must be > 0 seconds or None, got {default_ttl!r}")


class _Counters:
    def __init__(self) -> None:
        self.hits = self.misses = self.sets = self.evictions = self.expirations = 0
        self.saved = Cost.zero()

    def hit(self, entry: CachedEntry) -> None:
        self.hits += 1
        if entry.cost.currency == self.saved.currency:
            self.saved = self.saved + entry.cost
        else:  # a different currency cannot be summed: keep the amount, lose the certainty
            self.saved = attrs.evolve(self.saved, known=False)

    def stats(self, entries: int) -> CacheStats:
        return CacheStats(
            self.hits,
            self.misses,
            self.sets,
            self.evictions,
            self.expirations,
            entries,
            self.saved,
        )


class MemoryCache:
    """An in-process LRU cache of at most ``max_entries`` answers."""

    def __init__(
        self,
        max_entries: int = 1024,
        default_ttl: float | None = None,
        *,
        clock: Clock = time.time,
    ) -> None:
        if max_entries < 1:
            raise ValueError(f"MemoryCache: max_entries must be >= 1, got {max_entries}")
        _check_default_ttl(default_ttl)
        self.max_entries = max_entries
        self.default_ttl = default_ttl
        self._clock = clock
        self._entries: OrderedDict[str, CachedEntry] = OrderedDict()
        self._lock = threading.Lock()
        self._counters = _Counters()

    def get(self, key: str) -> CachedEntry | None:
        with self._lock:
            entry = self._entries.get(key)
            if entry is not None and entry.expired(self._clock()):
                del self._entries[key]
                self._counters.expirations += 1
                entry = None
            if entry is None:
                self._counters.misses += 1
                return None
            self._entries.move_to_end(key)
            self._counters.hit(entry)
            return entry

    def set(self, key: str, response: LLMResponse, cost: Cost, ttl: float | None = None) -> None:
        now = self._clock()
        entry = CachedEntry(key, response, cost, now, _expiry(now, ttl, self.default_ttl))
        with self._lock:
            self._entries[key] = entry
            self._entries.move_to_end(key)
            self._counters.sets += 1
            while len(self._entries) > self.max_entries:
                self._entries.popitem(last=False)
                self._counters.evictions += 1

    def stats(self) -> CacheStats:
        with self._lock:
            return self._counters.stats(len(self._entries))

    def __len__(self) -> int:
        return len(self._entries)

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()


_SCHEMA_VERSION = 1
_SCHEMA = """
CREATE TABLE IF NOT EXISTS llm_response_cache (
    key TEXT PRIMARY KEY,
    response TEXT NOT NULL,
    cost TEXT NOT NULL,
    created_at REAL NOT NULL,
    expires_at REAL
)
"""


class SQLiteCache:
    """A cache in an SQLite file, shared by every process that opens the same ``path``.

    Uses the stdlib ``sqlite3``: WAL mode so readers never block the writer, a 5 s busy
    timeout for concurrent writers in other processes, and one connection guarded by a lock
    within this process (so the object may be shared between threads). Expired entries are
    deleted when read, or all at once by :meth:`purge_expired`.
    """

    def __init__(
        self,
        path: str | Path,
        default_ttl: float | None = None,
        *,
        clock: Clock = time.time,
    ) -> None:
        _check_default_ttl(default_ttl)
        self.path = str(path)
        self.default_ttl = default_ttl
        self._clock = clock
        self._lock = threading.Lock()
        self._counters = _Counters()
        self._conn = sqlite3.connect(
            self.path, timeout=5.0, isolation_level=None, check_same_thread=False
        )
        try:
            self._conn.execute("PRAGMA journal_mode=WAL")
            version = self._conn.execute("PRAGMA user_version").fetchone()[0]
            if version not in (0, _SCHEMA_VERSION):
                raise ValueError(
                    f"SQLiteCache: {self.path} has cache schema version {version}; this "
                    f"version of backpackflow_llm writes {_SCHEMA_VERSION}; use another file"
                )
            self._conn.execute(_SCHEMA)
            self._conn.execute(f"PRAGMA user_version = {_SCHEMA_VERSION}")
        except BaseException:
            self._conn.close()
            raise

    def get(self, key: str) -> CachedEntry | None:
        with self._lock:
            row = self._conn.execute(
                "SELECT response, cost, created_at, expires_at FROM llm_response_cache "
                "WHERE key = ?",
                (key,),
            ).fetchone()
            if row is not None and row[3] is not None and self._clock() >= row[3]:
                self._conn.execute(
                    "DELETE FROM llm_response_cache WHERE key = ? AND expires_at = ?",
                    (key, row[3]),
                )
                self._counters.expirations += 1
                row = None
            if row is None:
                self._counters.misses += 1
                return None
            entry = CachedEntry(
                key,
                LLMResponse.from_json(json.loads(row[0])),
                Cost.from_json(json.loads(row[1])),
                row[2],
                row[3],
            )
            self._counters.hit(entry)
            return entry

    def set(self, key: str, response: LLMResponse, cost: Cost, ttl: float | None = None) -> None:
        now = self._clock()
        expires_at = _expiry(now, ttl, self.default_ttl)
        record = (
            key,
            json.dumps(response.to_json(), ensure_ascii=False),
            json.dumps(cost.to_json()),
            now,
            expires_at,
        )
        with self._lock:
            self._conn.execute(
                "INSERT OR REPLACE INTO llm_response_cache "
                "(key, response, cost, created_at, expires_at) VALUES (?, ?, ?, ?, ?)",
                record,
            )
            self._counters.sets += 1

    def stats(self) -> CacheStats:
        with self._lock:
            count = self._conn.execute(
                "SELECT COUNT(*) FROM llm_response_cache "
                "WHERE expires_at IS NULL OR expires_at > ?",
                (self._clock(),),
            ).fetchone()[0]
            return self._counters.stats(count)

    def purge_expired(self) -> int:
        """Delete every expired entry; return how many."""
        with self._lock:
            cursor = self._conn.execute(
                "DELETE FROM llm_response_cache WHERE expires_at IS NOT NULL AND expires_at <= ?",
                (self._clock(),),
            )
            self._counters.expirations += cursor.rowcount
            return cursor.rowcount

    def clear(self) -> None:
        with self._lock:
            self._conn.execute("DELETE FROM llm_response_cache")

    def close(self) -> None:
        with self._lock:
            self._conn.close()

    def __enter__(self) -> SQLiteCache:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()
