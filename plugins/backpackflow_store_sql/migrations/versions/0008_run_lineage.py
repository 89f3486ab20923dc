"""Run lineage: the run and Backpack commit a run was forked from (``POST
/api/runs/{id}/fork``), and an index that lists a run's forks newest first.

Plain columns, no foreign key: a fork keeps naming its source after the source run is gone,
as a run keeps ``workflow_name`` after its workflow is deleted.

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-04
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0008"
down_revision: str | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column(
        "workflow_runs", sa.Column("forked_from_run_id", sa.String(length=64), nullable=True)
    )
    op.add_column(
        "workflow_runs", sa.Column("forked_from_commit_id", sa.String(length=64), nullable=True)
    )
    # GET /api/runs?forked_from=RUN walks this index backwards, like the other filters (0004)
    op.create_index(
        op.f("ix_workflow_runs_forked_from_run_id_id"),
        "workflow_runs",
        ["forked_from_run_id", "id"],
    )


def downgrade() -> None:
    op.drop_index(op.f("ix_workflow_runs_forked_from_run_id_id"), table_name="workflow_runs")
    with op.batch_alter_table("workflow_runs") as batch:  # SQLite before 3.35: a table copy
        batch.drop_column("forked_from_commit_id")
        batch.drop_column("forked_from_run_id")
