"""Store fixtures: the SQL store on SQLite and on a real, throwaway PostgreSQL database.

The PostgreSQL databases come from ``postgres_databases`` / ``postgres_url`` in
``tests/services.py`` (skipped with the reason when PostgreSQL is unreachable, failed when
``BACKPACKFLOW_REQUIRE_SERVICES=1``). The fixtures below (``db_url``, ``store``) run a test once
per backend.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest

from backpackflow.ids import new_id
from backpackflow_store_sql import SqlRunStore
from backpackflow_store_sql.models import Base
from services import BACKENDS, new_database

# --------------------------------------------------------------------------- store fixtures


@pytest.fixture(scope="session")
def migrated_postgres_url(postgres_url: str) -> str:
    with SqlRunStore(postgres_url) as store:
        store.upgrade()
    return postgres_url


@pytest.fixture(params=BACKENDS)
def db_url(request: pytest.FixtureRequest, tmp_path: Any) -> str:
    """The URL of an empty database (no schema) on each backend."""
    return new_database(request, request.param, tmp_path / "store.db")


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
