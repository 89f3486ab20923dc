"""Database fixtures: the SQL store on SQLite and on a real, throwaway PostgreSQL database.

The PostgreSQL part is self-contained (SQLAlchemy + psycopg only) so the service tests can reuse
it by moving the first three fixtures to ``tests/conftest.py``:

- ``postgres_databases`` (session): a factory; each call creates ``bpf_test_<random>`` through
  ``$BACKPACKFLOW_TEST_POSTGRES_URL`` (default ``postgresql://postgres@127.0.0.1:5432/test``)
  and returns its URL; all are dropped when the session ends.
- ``postgres_url`` (session): one such fresh, empty database.
- When PostgreSQL cannot be reached, tests using them skip with the reason, or fail when
  ``BACKPACKFLOW_REQUIRE_SERVICES=1`` (CI sets it so a missing service cannot pass silently).

The store fixtures below (``db_url``, ``store``) run a test once per backend.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from sqlalchemy import create_engine, select
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import DBAPIError, NoSuchModuleError
from sqlalchemy.pool import NullPool

from backpackflow.ids import new_id
from backpackflow_store_sql import SqlRunStore
from backpackflow_store_sql.models import Base

POSTGRES_URL_ENV = "BACKPACKFLOW_TEST_POSTGRES_URL"
DEFAULT_POSTGRES_URL = "postgresql://postgres@127.0.0.1:5432/test"
REQUIRE_SERVICES_ENV = "BACKPACKFLOW_REQUIRE_SERVICES"
BACKENDS = ("sqlite", "postgresql")


def _service_unavailable(reason: str) -> None:
    if os.environ.get(REQUIRE_SERVICES_ENV) == "1":
        pytest.fail(f"{reason} ({REQUIRE_SERVICES_ENV}=1 requires it)", pytrace=False)
    pytest.skip(reason)


def _admin_url() -> URL:
    url = make_url(os.environ.get(POSTGRES_URL_ENV) or DEFAULT_POSTGRES_URL)
    if url.drivername in ("postgresql", "postgres"):
        url = url.set(drivername="postgresql+psycopg")
    return url


@pytest.fixture(scope="session")
def postgres_databases() -> Iterator[Callable[[], str]]:
    """A factory of empty PostgreSQL databases, all dropped at the end of the session."""
    admin = _admin_url()
    shown = admin.render_as_string(hide_password=True)
    try:
        engine = create_engine(
            admin,
            isolation_level="AUTOCOMMIT",  # CREATE/DROP DATABASE cannot run in a transaction
            poolclass=NullPool,
            connect_args={"connect_timeout": 3},
        )
        with engine.connect() as connection:
            connection.execute(select(1))
    except (DBAPIError, NoSuchModuleError, ImportError) as exc:
        reason = " ".join(str(getattr(exc, "orig", None) or exc).split())[:300]
        _service_unavailable(
            f"PostgreSQL at {shown} is unavailable ({reason}); start it or set {POSTGRES_URL_ENV}"
        )
    created: list[str] = []

    def create() -> str:
        name = f"bpf_test_{secrets.token_hex(6)}"
        with engine.connect() as connection:
            connection.exec_driver_sql(f'CREATE DATABASE "{name}"')
        created.append(name)
        return admin.set(database=name).render_as_string(hide_password=False)

    yield create
    with engine.connect() as connection:
        for name in created:
            connection.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    engine.dispose()


@pytest.fixture(scope="session")
def postgres_url(postgres_databases: Callable[[], str]) -> str:
    """The URL of one fresh, empty PostgreSQL database for the whole session."""
    return postgres_databases()


# --------------------------------------------------------------------------- store fixtures


@pytest.fixture(scope="session")
def migrated_postgres_url(postgres_url: str) -> str:
    store = SqlRunStore(postgres_url)
    try:
        store.upgrade()
    finally:
        store.close()
    return postgres_url


@pytest.fixture(params=BACKENDS)
def db_url(request: pytest.FixtureRequest, tmp_path: Any) -> str:
    """The URL of an empty database (no schema) on each backend."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'store.db'}"
    factory: Callable[[], str] = request.getfixturevalue("postgres_databases")
    return factory()


@pytest.fixture(params=BACKENDS)
def store(request: pytest.FixtureRequest, tmp_path: Any) -> Iterator[SqlRunStore]:
    """A migrated, empty store on each backend (PostgreSQL: the session database, emptied)."""
    if request.param == "sqlite":
        sql_store = SqlRunStore(f"sqlite:///{tmp_path / 'store.db'}")
        sql_store.upgrade()
    else:
        sql_store = SqlRunStore(request.getfixturevalue("migrated_postgres_url"))
        with sql_store.engine.begin() as connection:
            for table in reversed(Base.metadata.sorted_tables):
                connection.execute(table.delete())
    yield sql_store
    sql_store.close()


class TraceBuilder:
    """Envelopes of one run as the runner emits them: ``seq`` from 1, time moving on."""

    def __init__(self, run_id: str) -> None:
        self.run_id = run_id
        self.seq = 0
        self.clock = 1_763_712_000.0

    def event(
        self,
        type: str,
        payload: Any = None,
        *,
        step: int | None = None,
        node_id: str | None = None,
        node_name: str | None = None,
        namespace: str | None = None,
        dt: float = 0.25,
    ) -> dict[str, Any]:
        self.seq += 1
        self.clock += dt
        if step is not None and node_id is None:
            node_id = f"node{step}"
        return {
            "id": new_id(),
            "seq": self.seq,
            "timestamp": self.clock,
            "run_id": self.run_id,
            "step": step,
            "node_id": node_id,
            "node_name": node_name or (node_id.title() if node_id else None),
            "namespace": namespace or (f"flow.{node_id}" if node_id else None),
            "type": type,
            "payload": {} if payload is None else payload,
        }


@pytest.fixture
def trace() -> Callable[[str], TraceBuilder]:
    """``trace(run_id)`` → a :class:`TraceBuilder` for that run."""
    return TraceBuilder


@pytest.fixture
def run(store: SqlRunStore) -> dict[str, Any]:
    """A queued run of a small workflow, in the test's store."""
    workflow = store.create_workflow("research", {"nodes": [], "edges": []})
    return store.create_run(workflow["id"], {"topic": "decimals"}, triggered_by="test")
