"""Registers the SQL run store (SQLite by default, PostgreSQL by URL).

The store module (SQLAlchemy and Alembic, ~0.4 s of imports) is imported when a store is
opened, not when the plugin loads: every ``backpackflow`` command loads every plugin. Checking
that the stack is installed keeps the plugin listed as unavailable (with the install hint of
its "server" extra) instead of failing later.
"""

from __future__ import annotations

import importlib.util
import sys
from typing import TYPE_CHECKING

from backpackflow import hookimpl
from backpackflow.plugins import RunStoreRegistrar

if TYPE_CHECKING:
    from backpackflow_store_sql.store import SqlRunStore

for _module in ("sqlalchemy", "alembic"):
    if importlib.util.find_spec(_module) is None:
        raise ModuleNotFoundError(f"No module named {_module!r}", name=_module)


def open_sql_store(url: str | None) -> SqlRunStore:
    """The SQL run store of ``url`` (``None``: the default SQLite file)."""
    from backpackflow_store_sql.store import SqlRunStore

    return SqlRunStore(url)


@hookimpl
def backpackflow_register_run_stores(register: RunStoreRegistrar) -> None:
    register(
        "sql",
        open_sql_store,
        schemes=("sqlite", "postgresql", "postgres"),
        description="SQLAlchemy run store: SQLite file by default, PostgreSQL by URL",
    )


#: What the entry point names ("<module>:plugin [extra]"): this module itself.
plugin = sys.modules[__name__]
