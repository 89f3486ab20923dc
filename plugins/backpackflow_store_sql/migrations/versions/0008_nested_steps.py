"""Nested steps: the step a step is nested in (an agent's tool calls), on steps and events.

Revision ID: 0008
Revises: 0005
Create Date: 2026-12-03

(Numbered 0008 to leave 0006 and 0007 to work landing at the same time; when those land,
``down_revision`` becomes the last of them.)
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0008"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # null: a node execution (or a step stored before nested steps were recorded)
    op.add_column("run_steps", sa.Column("parent_step", sa.Integer(), nullable=True))
    op.add_column("trace_events", sa.Column("parent_step", sa.Integer(), nullable=True))


def downgrade() -> None:
    op.drop_column("trace_events", "parent_step")
    op.drop_column("run_steps", "parent_step")
