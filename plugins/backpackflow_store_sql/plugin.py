"""Registers the SQL run store (SQLite by default, PostgreSQL by URL)."""

from __future__ import annotations

import sys

from backpackflow import hookimpl
from backpackflow.plugins import RunStoreRegistrar
from backpackflow_store_sql.store import SqlRunStore


@hookimpl
def backpackflow_register_run_stores(register: RunStoreRegistrar) -> None:
    register(
        "sql",
        SqlRunStore,
        schemes=("sqlite", "postgresql", "postgres"),
        description="SQLAlchemy run store: SQLite file by default, PostgreSQL by URL",
    )


#: What the entry point names ("<module>:plugin [extra]"): this module itself.
plugin = sys.modules[__name__]
