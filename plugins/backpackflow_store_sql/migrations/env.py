"""Alembic environment of the run store.

``SqlRunStore.upgrade()`` passes its connection (already in a transaction) through
``config.attributes["connection"]``. Without one -- a developer generating a new revision with
``alembic.command.revision(config, autogenerate=True)`` -- the URL comes from the config's
``sqlalchemy.url`` or ``$BACKPACKFLOW_DATABASE_URL``.
"""

from __future__ import annotations

import os

from alembic import context
from sqlalchemy import Connection

from backpackflow_store_sql.models import Base
from backpackflow_store_sql.store import DATABASE_URL_ENV, create_store_engine, normalize_url

config = context.config


def _url() -> str | None:
    return config.get_main_option("sqlalchemy.url") or os.environ.get(DATABASE_URL_ENV) or None


def _migrate(connection: Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=Base.metadata,
        compare_type=True,
        # SQLite cannot ALTER most things; batch mode rebuilds the table instead.
        render_as_batch=connection.dialect.name == "sqlite",
    )
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_offline() -> None:
    """Emit the SQL of the migrations instead of running them (``--sql``)."""
    context.configure(
        url=normalize_url(_url()),
        target_metadata=Base.metadata,
        literal_binds=True,
        dialect_opts={"paramstyle": "named"},
    )
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_online() -> None:
    """Run the migrations on the caller's connection, or on one to the configured URL."""
    connection = config.attributes.get("connection")
    if connection is not None:
        _migrate(connection)
        return
    engine = create_store_engine(normalize_url(_url()))
    try:
        with engine.begin() as new_connection:
            _migrate(new_connection)
    finally:
        engine.dispose()


if context.is_offline_mode():
    run_migrations_offline()
else:
    run_migrations_online()
