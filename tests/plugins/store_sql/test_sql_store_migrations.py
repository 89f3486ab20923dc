"""The Alembic migrations: they reach head, re-run as no-ops and match the ORM models."""

from __future__ import annotations

import copy

import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import Integer, inspect

from backpackflow_store_sql import SchemaNotReady, SqlRunStore
from backpackflow_store_sql.models import Base

TABLES = {
    "workflows",
    "workflow_runs",
    "run_steps",
    "trace_events",
    "provider_bindings",
    "api_tokens",
    "run_costs",
    "budgets",
}
HEAD = "0011"


def _differences(store: SqlRunStore, metadata=Base.metadata) -> list[object]:
    with store.engine.connect() as connection:
        context = MigrationContext.configure(connection, opts={"compare_type": True})
        return list(compare_metadata(context, metadata))


def test_upgrade_creates_the_schema_and_rerunning_it_is_a_no_op(db_url: str) -> None:
    with SqlRunStore(db_url) as store:
        assert store.current_revision() is None
        store.upgrade()
        assert store.current_revision() == store.head_revision() == HEAD
        workflow = store.create_workflow("kept", {"nodes": []})
        store.upgrade()  # a second start of the service
        assert store.current_revision() == HEAD
        assert store.get_workflow(workflow["id"])["name"] == "kept"
        assert set(inspect(store.engine).get_table_names()) >= TABLES


def test_models_and_migrations_agree(db_url: str) -> None:
    with SqlRunStore(db_url) as store:
        store.upgrade()
        assert _differences(store) == []
        # The comparison is not vacuous: a model change it should see, it sees.
        changed = copy.deepcopy(Base.metadata)
        changed.tables["workflow_runs"].c.total_cost.type = Integer()
        assert any("total_cost" in repr(d) for d in _differences(store, changed))


def test_downgrade_to_base_and_back(db_url: str) -> None:
    with SqlRunStore(db_url) as store:
        store.upgrade()
        with store.engine.begin() as connection:
            command.downgrade(store.alembic_config(connection), "base")
        assert not TABLES & set(inspect(store.engine).get_table_names())
        store.upgrade()
        assert store.current_revision() == HEAD


def test_operations_before_upgrade_fail_loudly(db_url: str) -> None:
    with (
        SqlRunStore(db_url) as store,
        pytest.raises(SchemaNotReady, match=rf"revision None .* needs {HEAD}.*upgrade\(\)"),
    ):
        store.list_workflows()


def test_upgrade_from_the_first_revision_keeps_the_data(db_url: str) -> None:
    with SqlRunStore(db_url) as store:
        store.upgrade("0001")
        assert "api_tokens" not in inspect(store.engine).get_table_names()
        with store.engine.begin() as connection:
            connection.exec_driver_sql(
                "INSERT INTO workflows (id, name, description, graph_json, version, created_at,"
                " updated_at) VALUES ('w1', 'old', NULL, '{}', 1, '2025-01-01 00:00:00',"
                " '2025-01-01 00:00:00')"
            )
        store.upgrade()
        assert store.current_revision() == HEAD
        assert store.get_workflow("w1")["name"] == "old"
        assert store.list_tokens() == []
