"""Registers the Redis live feed (``redis://``, ``rediss://`` and ``unix://`` URLs).

redis-py is checked for at load, so without the ``redis`` extra the plugin is listed as
unavailable with its install hint instead of failing when a service opens a feed.
"""

from __future__ import annotations

import importlib.util
import sys
from typing import TYPE_CHECKING
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from backpackflow import ConfigError, hookimpl
from backpackflow.plugins import LiveFeedRegistrar

if TYPE_CHECKING:
    from backpackflow_redis.feed import RedisFeed

if importlib.util.find_spec("redis") is None:
    raise ModuleNotFoundError("No module named 'redis'", name="redis")


def open_redis_feed(url: str) -> RedisFeed:
    """The live feed on the Redis server of ``url``; a ``prefix`` query parameter
    (``redis://host:6379/0?prefix=staging``) names its keys, so several services can share one
    Redis (default ``backpackflow``)."""
    from backpackflow_redis.feed import RedisFeed

    parts = urlsplit(url)
    query = parse_qsl(parts.query, keep_blank_values=True)
    prefixes = [value for name, value in query if name == "prefix"]
    if not prefixes:
        return RedisFeed(url)
    if not prefixes[-1] or not all(c.isalnum() or c in "-_.:" for c in prefixes[-1]):
        raise ConfigError(
            f"live_feed: prefix {prefixes[-1]!r} may hold only letters, digits and - _ . :"
        )
    rest = urlencode([(name, value) for name, value in query if name != "prefix"])
    return RedisFeed(urlunsplit(parts._replace(query=rest)), prefix=prefixes[-1])


@hookimpl
def backpackflow_register_live_feeds(register: LiveFeedRegistrar) -> None:
    register(
        "redis",
        open_redis_feed,
        schemes=("redis", "rediss", "unix"),
        description="Redis Streams: runs' events and control messages across service processes",
    )


#: What the entry point names ("<module>:plugin [extra]"): this module itself.
plugin = sys.modules[__name__]
