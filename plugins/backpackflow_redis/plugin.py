"""Registers the Redis live feed (``redis://``, ``rediss://`` and ``unix://`` URLs).

redis-py is checked for at load, so without the ``redis`` extra the plugin is listed as
unavailable with its install hint instead of failing when a service opens a feed.
"""

from __future__ import annotations

import importlib.util
import sys
from typing import TYPE_CHECKING

from backpackflow import hookimpl
from backpackflow.plugins import LiveFeedRegistrar

if TYPE_CHECKING:
    from backpackflow_redis.feed import RedisFeed

if importlib.util.find_spec("redis") is None:
    raise ModuleNotFoundError("No module named 'redis'", name="redis")


def open_redis_feed(url: str) -> RedisFeed:
    """The live feed on the Redis server of ``url``."""
    from backpackflow_redis.feed import RedisFeed

    return RedisFeed(url)


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
