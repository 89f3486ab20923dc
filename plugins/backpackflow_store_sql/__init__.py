"""SQL storage for workflows, runs, per-node steps and trace events (SQLite or PostgreSQL).

``SqlRunStore`` is the synchronous store the service calls from its thread pool;
``EventWriter`` batches a run's trace events into it from a background thread. The schema lives
in Alembic migrations inside this package: call ``SqlRunStore.upgrade()`` at start-up.

The store and the writer (SQLAlchemy and Alembic, ~0.4 s of imports) are re-exported lazily:
every ``backpackflow`` command loads this package's plugin, and only the commands that open a
store need them.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from .errors import (
    DatabaseUnavailable,
    EventConflict,
    InvalidData,
    InvalidEvent,
    InvalidTransition,
    LeaseLost,
    NotFound,
    SchemaNotReady,
    SpillFileBusy,
    StoreConfigError,
    StoreError,
    VersionConflict,
    WriterClosed,
)

if TYPE_CHECKING:
    from .store import DATABASE_URL_ENV, DEFAULT_DATABASE_PATH, SqlRunStore, mask_url
    from .writer import EventWriter, WriterStats

#: Names re-exported from the heavy modules, imported on first access.
_LAZY = {
    "DATABASE_URL_ENV": ".store",
    "DEFAULT_DATABASE_PATH": ".store",
    "SqlRunStore": ".store",
    "mask_url": ".store",
    "EventWriter": ".writer",
    "WriterStats": ".writer",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(module, __name__), name)
    globals()[name] = value
    return value


__all__ = [
    "DATABASE_URL_ENV",
    "DEFAULT_DATABASE_PATH",
    "DatabaseUnavailable",
    "EventConflict",
    "EventWriter",
    "InvalidData",
    "InvalidEvent",
    "InvalidTransition",
    "LeaseLost",
    "NotFound",
    "SchemaNotReady",
    "SpillFileBusy",
    "SqlRunStore",
    "StoreConfigError",
    "StoreError",
    "VersionConflict",
    "WriterClosed",
    "WriterStats",
    "mask_url",
]
