"""Budgets and each run's cost per provider (``run_costs``), filled from the stored events.

``run_costs`` is derived from ``llm_response`` events like the run totals; this revision
computes it for the runs already stored, with exact decimal sums, so that budgets count the
spend of runs made before the upgrade too. An index on ``workflow_runs.created_at`` serves the
budgets' period queries.

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-03
"""

from __future__ import annotations

import decimal
import json
from collections.abc import Sequence
from decimal import Decimal
from typing import Any

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

ID = sa.String(length=64)
STATUS = sa.String(length=16)
TIMESTAMP = sa.DateTime(timezone=True)
MONEY = sa.String(length=64).with_variant(postgresql.NUMERIC(), "postgresql")
JSON = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")
_EXACT = decimal.Context(prec=60, traps=[decimal.Inexact, decimal.InvalidOperation])


def upgrade() -> None:
    op.create_index(op.f("ix_workflow_runs_created_at"), "workflow_runs", ["created_at"])
    op.create_table(
        "run_costs",
        sa.Column("run_id", ID, nullable=False),
        sa.Column("provider", sa.Text(), nullable=False),
        sa.Column("cost", MONEY, nullable=False),
        sa.Column("tokens_input", sa.BigInteger(), nullable=False),
        sa.Column("tokens_output", sa.BigInteger(), nullable=False),
        sa.ForeignKeyConstraint(
            ["run_id"],
            ["workflow_runs.id"],
            name=op.f("fk_run_costs_run_id_workflow_runs"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("run_id", "provider", name=op.f("pk_run_costs")),
    )
    op.create_table(
        "budgets",
        sa.Column("id", ID, nullable=False),
        sa.Column("name", sa.Text(), nullable=False),
        sa.Column("workflow_id", ID, nullable=True),
        sa.Column("provider", sa.Text(), nullable=True),
        sa.Column("period", STATUS, nullable=False),
        sa.Column("kind", STATUS, nullable=False),
        sa.Column("amount", MONEY, nullable=False),
        sa.Column("alerted_period", sa.String(length=16), nullable=True),
        sa.Column("created_at", TIMESTAMP, nullable=False),
        sa.Column("updated_at", TIMESTAMP, nullable=False),
        sa.CheckConstraint("period IN ('run', 'day', 'month')", name=op.f("ck_budgets_period")),
        sa.CheckConstraint("kind IN ('soft', 'hard')", name=op.f("ck_budgets_kind")),
        sa.ForeignKeyConstraint(
            ["workflow_id"],
            ["workflows.id"],
            name=op.f("fk_budgets_workflow_id_workflows"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_budgets")),
        sa.UniqueConstraint("name", name=op.f("uq_budgets_name")),
    )
    op.create_index(op.f("ix_budgets_workflow_id"), "budgets", ["workflow_id"])
    _fill_run_costs()


def _number(value: Any) -> Decimal | None:
    if isinstance(value, bool) or not isinstance(value, int | str | float):
        return None
    try:
        amount = Decimal(repr(value) if isinstance(value, float) else value)
    except decimal.InvalidOperation:
        return None
    return amount if amount.is_finite() else None


def _fill_run_costs() -> None:
    """Sum the ``llm_response`` events of every stored run per provider (as the store does
    when it stores them: unusable numbers are not counted)."""
    connection = op.get_bind()
    events = sa.table(
        "trace_events", sa.column("run_id", ID), sa.column("type"), sa.column("payload", JSON)
    )
    totals: dict[tuple[str, str], list[Any]] = {}
    rows = connection.execute(
        sa.select(events.c.run_id, events.c.payload).where(events.c.type == "llm_response")
    )
    for run_id, payload in rows:
        if isinstance(payload, str):  # JSON text on a driver that does not decode it
            payload = json.loads(payload)
        if not isinstance(payload, dict):
            continue
        provider = payload.get("provider")
        provider = provider if isinstance(provider, str) and provider else "unknown"
        usage = payload.get("usage")
        usage = usage if isinstance(usage, dict) else {}
        entry = totals.setdefault((run_id, provider), [Decimal(0), 0, 0])
        cost = _number(payload.get("cost", 0))
        if cost is not None:
            entry[0] = _EXACT.add(entry[0], cost)
        for index, key in ((1, "input_tokens"), (2, "output_tokens")):
            count = usage.get(key)
            if isinstance(count, int) and not isinstance(count, bool):
                entry[index] += count
    if not totals:
        return
    run_costs = sa.table(
        "run_costs",
        sa.column("run_id", ID),
        sa.column("provider"),
        sa.column("cost", MONEY),
        sa.column("tokens_input"),
        sa.column("tokens_output"),
    )
    postgres = connection.dialect.name == "postgresql"
    connection.execute(
        sa.insert(run_costs),
        [
            {
                "run_id": run_id,
                "provider": provider,
                "cost": cost if postgres else format(cost, "f"),
                "tokens_input": tokens_in,
                "tokens_output": tokens_out,
            }
            for (run_id, provider), (cost, tokens_in, tokens_out) in totals.items()
        ],
    )


def downgrade() -> None:
    op.drop_index(op.f("ix_budgets_workflow_id"), table_name="budgets")
    op.drop_table("budgets")
    op.drop_table("run_costs")
    op.drop_index(op.f("ix_workflow_runs_created_at"), table_name="workflow_runs")
