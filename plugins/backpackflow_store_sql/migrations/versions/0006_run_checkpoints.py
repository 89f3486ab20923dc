"""Durable runs: the ``run_checkpoints`` table (append-only checkpoint records per run) and
the ``canceled`` step status.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-03
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

STEP_STATUSES_BEFORE = "status IN ('running', 'succeeded', 'failed')"
STEP_STATUSES = "status IN ('running', 'succeeded', 'failed', 'canceled')"


def upgrade() -> None:
    op.create_table(
        "run_checkpoints",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column("run_id", sa.String(length=64), nullable=False),
        sa.Column("record", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_run_checkpoints")),
    )
    op.create_index(
        op.f("ix_run_checkpoints_run_id_id"), "run_checkpoints", ["run_id", "id"], unique=False
    )
    with op.batch_alter_table("run_steps") as batch:  # SQLite: the table is copied
        batch.drop_constraint(op.f("ck_run_steps_status"), type_="check")
        batch.create_check_constraint(op.f("ck_run_steps_status"), STEP_STATUSES)


def downgrade() -> None:
    op.execute("UPDATE run_steps SET status = 'failed' WHERE status = 'canceled'")
    with op.batch_alter_table("run_steps") as batch:
        batch.drop_constraint(op.f("ck_run_steps_status"), type_="check")
        batch.create_check_constraint(op.f("ck_run_steps_status"), STEP_STATUSES_BEFORE)
    op.drop_index(op.f("ix_run_checkpoints_run_id_id"), table_name="run_checkpoints")
    op.drop_table("run_checkpoints")
