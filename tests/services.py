"""External services for tests: a real, throwaway PostgreSQL database (loaded as a pytest plugin
by ``tests/conftest.py``, so every test directory can use it).

- ``postgres_databases`` (session): a factory; each call creates ``bpf_test_<random>`` through
  ``$BACKPACKFLOW_TEST_POSTGRES_URL`` (default ``postgresql://postgres@127.0.0.1:5432/test``)
  and returns its URL; all are dropped when the session ends.
- ``postgres_url`` (session): one such fresh, empty database.
- ``new_database(request, backend, sqlite_file)``: a new, empty database on either of
  :data:`BACKENDS`, for fixtures parametrized over them.
- ``redis_url`` (session): the test Redis (``$BACKPACKFLOW_TEST_REDIS_URL``, default the local
  one), for the live feed's tests.
- When PostgreSQL (or Redis) cannot be reached, tests using them skip with the reason, or fail when
  ``BACKPACKFLOW_REQUIRE_SERVICES=1`` (CI sets it so a missing service cannot pass silently).

Self-contained (SQLAlchemy + psycopg only), so it serves the store's and the service's tests.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

POSTGRES_URL_ENV = "BACKPACKFLOW_TEST_POSTGRES_URL"
DEFAULT_POSTGRES_URL = "postgresql://postgres@127.0.0.1:5432/test"
REQUIRE_SERVICES_ENV = "BACKPACKFLOW_REQUIRE_SERVICES"
BACKENDS = ("sqlite", "postgresql")


def service_unavailable(reason: str) -> None:
    """Skip the test, or fail it when ``BACKPACKFLOW_REQUIRE_SERVICES=1``."""
    if os.environ.get(REQUIRE_SERVICES_ENV) == "1":
        pytest.fail(f"{reason} ({REQUIRE_SERVICES_ENV}=1 requires it)", pytrace=False)
    pytest.skip(reason)


@pytest.fixture(scope="session")
def postgres_databases() -> Iterator[Callable[[], str]]:
    """A factory of empty PostgreSQL databases, all dropped at the end of the session."""
    try:
        from sqlalchemy import create_engine, select
        from sqlalchemy.engine import make_url
        from sqlalchemy.exc import DBAPIError, NoSuchModuleError
        from sqlalchemy.pool import NullPool
    except ImportError as exc:  # the server extra is not installed
        service_unavailable(f"PostgreSQL tests need SQLAlchemy and psycopg: {exc}")
        raise  # unreachable: service_unavailable always raises

    admin = make_url(os.environ.get(POSTGRES_URL_ENV) or DEFAULT_POSTGRES_URL)
    if admin.drivername in ("postgresql", "postgres"):
        admin = admin.set(drivername="postgresql+psycopg")
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
        service_unavailable(
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


def new_database(request: pytest.FixtureRequest, backend: str, sqlite_file: Path) -> str:
    """The URL of a new, empty database: the SQLite file ``sqlite_file``, or (``backend``
    ``"postgresql"``) one from ``postgres_databases``."""
    if backend == "sqlite":
        return f"sqlite:///{sqlite_file}"
    factory: Callable[[], str] = request.getfixturevalue("postgres_databases")
    return factory()


@pytest.fixture(scope="session")
def postgres_url(postgres_databases: Callable[[], str]) -> str:
    """The URL of one fresh, empty PostgreSQL database for the whole session."""
    return postgres_databases()


REDIS_URL_ENV = "BACKPACKFLOW_TEST_REDIS_URL"
DEFAULT_REDIS_URL = "redis://127.0.0.1:6379/0"


@pytest.fixture(scope="session")
def redis_url() -> str:
    """The URL of the test Redis (``$BACKPACKFLOW_TEST_REDIS_URL``, default the local one);
    tests using it skip when it cannot be reached, or fail with
    ``BACKPACKFLOW_REQUIRE_SERVICES=1``. Keys of tests are named after fresh ids: tests share
    the server without clearing it."""
    url = os.environ.get(REDIS_URL_ENV) or DEFAULT_REDIS_URL
    try:
        import redis
    except ImportError as exc:  # the redis extra is not installed
        service_unavailable(f"Redis tests need redis-py (the redis extra): {exc}")
        raise  # unreachable: service_unavailable always raises
    try:
        client = redis.Redis.from_url(url, socket_connect_timeout=3)
        client.ping()
        client.close()
    except (redis.RedisError, OSError) as exc:
        service_unavailable(
            f"Redis at {url} is unavailable ({exc}); start it or set {REDIS_URL_ENV}"
        )
    return url
