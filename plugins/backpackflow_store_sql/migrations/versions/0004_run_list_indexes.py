"""Indexes that keep filtered run lists flat in the number of stored runs.

``list_runs(workflow_id=...)`` and ``list_runs(status=...)`` return the newest runs first
(``ORDER BY id DESC LIMIT n``, ids being time-ordered). With an index on ``workflow_id`` or
``status`` alone the database must read and sort every matching run to find the newest few;
with ``(workflow_id, id)`` and ``(status, id)`` it walks the index backwards and stops after
``n`` rows, whatever the number of runs. Both composite indexes also serve every lookup the
single-column ones served (their first column), so those are replaced, not kept beside them.

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-03
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_index(op.f("ix_workflow_runs_workflow_id_id"), "workflow_runs", ["workflow_id", "id"])
    op.create_index(op.f("ix_workflow_runs_status_id"), "workflow_runs", ["status", "id"])
    op.drop_index(op.f("ix_workflow_runs_workflow_id"), table_name="workflow_runs")
    op.drop_index(op.f("ix_workflow_runs_status"), table_name="workflow_runs")


def downgrade() -> None:
    op.create_index(op.f("ix_workflow_runs_status"), "workflow_runs", ["status"])
    op.create_index(op.f("ix_workflow_runs_workflow_id"), "workflow_runs", ["workflow_id"])
    op.drop_index(op.f("ix_workflow_runs_status_id"), table_name="workflow_runs")
    op.drop_index(op.f("ix_workflow_runs_workflow_id_id"), table_name="workflow_runs")
