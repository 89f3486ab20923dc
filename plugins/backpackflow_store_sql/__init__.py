"""SQL storage for workflows, runs, per-node steps and trace events (SQLite or PostgreSQL).

``SqlRunStore`` is the synchronous store the service calls from its thread pool;
``EventWriter`` batches a run's trace events into it from a background thread. The schema lives
in Alembic migrations inside this package: call ``SqlRunStore.upgrade()`` at start-up.
"""

from __future__ import annotations

from .errors import (
    DatabaseUnavailable,
    EventConflict,
    InvalidData,
    InvalidEvent,
    InvalidTransition,
    NotFound,
    SchemaNotReady,
    StoreConfigError,
    StoreError,
    VersionConflict,
    WriterClosed,
)
from .store import DATABASE_URL_ENV, DEFAULT_DATABASE_PATH, SqlRunStore, mask_url
from .writer import EventWriter, WriterStats

__all__ = [
    "DATABASE_URL_ENV",
    "DEFAULT_DATABASE_PATH",
    "DatabaseUnavailable",
    "EventConflict",
    "EventWriter",
    "InvalidData",
    "InvalidEvent",
    "InvalidTransition",
    "NotFound",
    "SchemaNotReady",
    "SqlRunStore",
    "StoreConfigError",
    "StoreError",
    "VersionConflict",
    "WriterClosed",
    "WriterStats",
    "mask_url",
]
