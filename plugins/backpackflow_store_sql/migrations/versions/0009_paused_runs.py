"""Durable runs pause for a person: the ``paused`` run status, and the ``paused`` step status
(the step whose node asked).

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-04
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

revision: str = "0009"
down_revision: str | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

RUN_STATUSES_BEFORE = "status IN ('queued', 'running', 'succeeded', 'failed', 'canceled')"
RUN_STATUSES = "status IN ('queued', 'running', 'succeeded', 'failed', 'canceled', 'paused')"
STEP_STATUSES_BEFORE = "status IN ('running', 'succeeded', 'failed', 'canceled')"
STEP_STATUSES = "status IN ('running', 'succeeded', 'failed', 'canceled', 'paused')"


def upgrade() -> None:
    with op.batch_alter_table("workflow_runs") as batch:  # SQLite: the table is copied
        batch.drop_constraint(op.f("ck_workflow_runs_status"), type_="check")
        batch.create_check_constraint(op.f("ck_workflow_runs_status"), RUN_STATUSES)
    with op.batch_alter_table("run_steps") as batch:
        batch.drop_constraint(op.f("ck_run_steps_status"), type_="check")
        batch.create_check_constraint(op.f("ck_run_steps_status"), STEP_STATUSES)


def downgrade() -> None:
    op.execute("UPDATE run_steps SET status = 'failed' WHERE status = 'paused'")
    with op.batch_alter_table("run_steps") as batch:
        batch.drop_constraint(op.f("ck_run_steps_status"), type_="check")
        batch.create_check_constraint(op.f("ck_run_steps_status"), STEP_STATUSES_BEFORE)
    # a paused run cannot go on without the status: it fails, saying why
    op.execute(
        "UPDATE workflow_runs SET status = 'failed', error_summary = 'paused when the database "
        "was downgraded below 0009' WHERE status = 'paused'"
    )
    with op.batch_alter_table("workflow_runs") as batch:
        batch.drop_constraint(op.f("ck_workflow_runs_status"), type_="check")
        batch.create_check_constraint(op.f("ck_workflow_runs_status"), RUN_STATUSES_BEFORE)
