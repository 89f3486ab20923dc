"""Redis for a service of several processes: a live feed of every run's stored events
(Redis Streams, resumable by seq), control messages (cancel) and limits shared by every process.

The feed is what ``backpackflow serve --live-feed redis://...`` (the ``live_feed`` setting)
opens through the ``backpackflow_register_live_feeds`` hook: see :mod:`.feed`.
"""

from __future__ import annotations

from .feed import FeedTail, RedisFeed

__all__ = ["FeedTail", "RedisFeed"]
