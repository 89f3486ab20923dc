"""Run lists read an index, never every run: EXPLAIN the store's own queries on both databases.

Filtered lists newest first must walk ``(workflow_id, id)``, ``(status, id)`` or
``(forked_from_run_id, id)`` backwards and stop after a page; a plan that names another index or
sorts (SQLite's ``TEMP B-TREE``, PostgreSQL's ``Sort``) would read every matching run.
PostgreSQL's planner prefers a sequential scan on a table this small, so the check turns that off
for its session: it asks which index the query can use, which is what keeps it flat once the
table is large (``bench/scaling_store.py`` measures that).
"""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import inspect

from backpackflow_store_sql import SqlRunStore
from backpackflow_store_sql.store import runs_query


def _plan(store: SqlRunStore, query: Any) -> str:
    with store.engine.connect() as connection:
        sql = str(query.compile(dialect=connection.dialect, compile_kwargs={"literal_binds": True}))
        if store.dialect == "sqlite":
            rows = connection.exec_driver_sql(f"EXPLAIN QUERY PLAN {sql}").all()
            return "\n".join(str(row[-1]) for row in rows)
        connection.exec_driver_sql("SET enable_seqscan = off")
        return "\n".join(row[0] for row in connection.exec_driver_sql(f"EXPLAIN {sql}").all())


def test_the_run_list_indexes_exist(store: SqlRunStore) -> None:
    indexes = {
        index["name"]: index["column_names"]
        for index in inspect(store.engine).get_indexes("workflow_runs")
    }
    assert indexes["ix_workflow_runs_workflow_id_id"] == ["workflow_id", "id"]
    assert indexes["ix_workflow_runs_status_id"] == ["status", "id"]
    assert indexes["ix_workflow_runs_forked_from_run_id_id"] == ["forked_from_run_id", "id"]
    # the composite indexes serve what the single-column ones did: those are gone
    assert "ix_workflow_runs_workflow_id" not in indexes
    assert "ix_workflow_runs_status" not in indexes


@pytest.mark.parametrize(
    ("filters", "index"),
    [
        ({"workflow_id": "w1"}, "ix_workflow_runs_workflow_id_id"),
        ({"workflow_id": "w1", "before": "r9"}, "ix_workflow_runs_workflow_id_id"),
        ({"status": "succeeded"}, "ix_workflow_runs_status_id"),
        ({"status": "running", "before": "r9"}, "ix_workflow_runs_status_id"),
        ({"forked_from": "r1"}, "ix_workflow_runs_forked_from_run_id_id"),
        ({"forked_from": "r1", "before": "r9"}, "ix_workflow_runs_forked_from_run_id_id"),
    ],
)
def test_filtered_run_lists_walk_their_index_without_sorting(
    store: SqlRunStore, run: dict[str, Any], filters: dict[str, str], index: str
) -> None:
    query = runs_query(
        filters.get("workflow_id"),
        filters.get("status"),
        50,
        before=filters.get("before"),
        forked_from=filters.get("forked_from"),
    )
    plan = _plan(store, query)
    assert index in plan, plan
    assert "TEMP B-TREE" not in plan and "Sort" not in plan, plan
    # and the store answers through that query
    assert store.list_runs(**filters) == []


def test_the_unfiltered_run_list_walks_the_primary_key(
    store: SqlRunStore, run: dict[str, Any]
) -> None:
    plan = _plan(store, runs_query(None, None, 50))
    assert "TEMP B-TREE" not in plan and "Sort" not in plan, plan
    assert [listed["id"] for listed in store.list_runs()] == [run["id"]]
