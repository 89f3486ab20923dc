"""Nested steps: the step a step is nested in (an agent's tool calls), on steps and events.

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-03
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # null: a node execution (or a step stored before nested steps were recorded)
    op.add_column("run_steps", sa.Column("parent_step", sa.Integer(), nullable=True))
    op.add_column("trace_events", sa.Column("parent_step", sa.Integer(), nullable=True))


def downgrade() -> None:
    op.drop_column("trace_events", "parent_step")
    op.drop_column("run_steps", "parent_step")
