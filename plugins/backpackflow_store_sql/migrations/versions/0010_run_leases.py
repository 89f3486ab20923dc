"""Run leases with fencing tokens: who drives a run (``lease_owner``), until when
(``lease_expires_at``), and the run's fencing token (``lease_token``, grows by one on every
acquisition, never reset), so that a worker whose lease was taken over has its writes refused.

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-04
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0010"
down_revision: str | None = "0009"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # Types spelled out, as in 0001. Plain ADD COLUMNs (no table copy on SQLite): the runs
    # stored already start free, at token 0.
    op.add_column("workflow_runs", sa.Column("lease_owner", sa.Text(), nullable=True))
    op.add_column(
        "workflow_runs",
        sa.Column("lease_token", sa.Integer(), server_default=sa.text("0"), nullable=False),
    )
    op.add_column(
        "workflow_runs", sa.Column("lease_expires_at", sa.DateTime(timezone=True), nullable=True)
    )


def downgrade() -> None:
    with op.batch_alter_table("workflow_runs") as batch:  # SQLite: the table is copied
        batch.drop_column("lease_expires_at")
        batch.drop_column("lease_token")
        batch.drop_column("lease_owner")
