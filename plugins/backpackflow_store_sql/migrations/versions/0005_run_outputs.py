"""The outputs a run returned (the Backpack keys its flow declares as ``outputs``).

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-03
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

JSON = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")


def upgrade() -> None:
    # null: the run has not ended, or was stored before outputs were recorded
    op.add_column("workflow_runs", sa.Column("outputs", JSON, nullable=True))


def downgrade() -> None:
    op.drop_column("workflow_runs", "outputs")
