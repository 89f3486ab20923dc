"""The ORM model: workflows, their runs, the runs' steps and trace events, provider bindings,
the runs' cost per provider and the service's budgets.

The migrations in ``migrations/versions`` create exactly these tables; a test compares the two
on SQLite and PostgreSQL. Constraint names follow :data:`NAMING_CONVENTION` so later migrations
can alter them by name (SQLite batch mode needs named constraints).

API tokens of the service (``api_tokens``) are stored as SHA-256 digests, never as the token.

``run_costs`` holds each run's cost per LLM provider, derived from its ``llm_response`` events
like the run totals; budgets (``budgets``) sum it, or the run totals, over a period.

Delete behaviour: deleting a workflow keeps its runs (``workflow_id`` becomes NULL; the run keeps
``workflow_name`` and ``workflow_version``) so trace history is never lost by accident; its
provider bindings go with it. Deleting a run deletes its steps and events. A forked run names
its source run and commit (``forked_from_run_id``, ``forked_from_commit_id``) without a foreign
key: the lineage outlives the source.

A run's lease (``lease_owner``, ``lease_token``, ``lease_expires_at``) lives on its
``workflow_runs`` row: every write of a run already locks that row, so checking the fencing
token costs no extra lock.

``run_checkpoints`` holds durable runs' checkpoints (the kernel's ``Checkpointer`` records: the
Backpack's commits as deltas and the runner's position), append-only, in ``id`` order per run.
"""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import (
    BigInteger,
    Boolean,
    CheckConstraint,
    Double,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Text,
    UniqueConstraint,
    text,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from .sqltypes import JSONDocument, Money, UTCDateTime

NAMING_CONVENTION = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

#: ``paused``: a durable run waits for an answer (0009).
RUN_STATUSES = ("queued", "running", "succeeded", "failed", "canceled", "paused")
#: Roles of API tokens, most privileged first (the service's docs/security.md says what each may).
TOKEN_ROLES = ("admin", "runner", "viewer")
#: A step stopped by a cancel is ``canceled`` (0006), not ``failed``.
STEP_STATUSES = ("running", "succeeded", "failed", "canceled", "paused")
#: What a budget limits: each run's spend, or the spend of a UTC calendar day or month.
BUDGET_PERIODS = ("run", "day", "month")
#: A soft budget alerts once per period when reached; a hard one refuses and stops runs.
BUDGET_KINDS = ("soft", "hard")

ID = String(64)  # new_id() makes 32 hex characters; room for ids made elsewhere
STATUS = String(16)


def _in(column: str, values: tuple[str, ...]) -> str:
    return f"{column} IN ({', '.join(repr(v) for v in values)})"


class Base(DeclarativeBase):
    """Declarative base holding the store's metadata."""

    metadata = MetaData(naming_convention=NAMING_CONVENTION)


class Workflow(Base):
    """A stored flow config document; ``version`` grows by one on every update."""

    __tablename__ = "workflows"

    id: Mapped[str] = mapped_column(ID, primary_key=True)
    name: Mapped[str] = mapped_column(Text)
    description: Mapped[str | None] = mapped_column(Text)
    graph_json: Mapped[Any] = mapped_column(JSONDocument)
    version: Mapped[int] = mapped_column(Integer)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime)


class WorkflowVersion(Base):
    """A workflow's flow document as it was before an update replaced it, so that a run shows
    the graph it ran (a run keeps its ``workflow_version``). The current version lives in
    ``workflows`` alone; a version replaced before this table existed is not kept."""

    __tablename__ = "workflow_versions"

    workflow_id: Mapped[str] = mapped_column(
        ID, ForeignKey("workflows.id", ondelete="CASCADE"), primary_key=True
    )
    version: Mapped[int] = mapped_column(Integer, primary_key=True)
    graph_json: Mapped[Any] = mapped_column(JSONDocument)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)  # when that version was saved


class WorkflowRun(Base):
    """One execution of a workflow, with totals derived from its trace events."""

    __tablename__ = "workflow_runs"
    __table_args__ = (
        CheckConstraint(_in("status", RUN_STATUSES), name="status"),
        # Filtered lists, newest first, read these backwards and stop after a page (0004).
        Index(None, "workflow_id", "id"),
        Index(None, "status", "id"),
        # A run's forks, newest first (0008).
        Index(None, "forked_from_run_id", "id"),
    )

    id: Mapped[str] = mapped_column(ID, primary_key=True)
    workflow_id: Mapped[str | None] = mapped_column(
        ID, ForeignKey("workflows.id", ondelete="SET NULL")
    )
    workflow_name: Mapped[str | None] = mapped_column(Text)
    workflow_version: Mapped[int | None] = mapped_column(Integer)
    triggered_by: Mapped[str | None] = mapped_column(Text)
    status: Mapped[str] = mapped_column(STATUS)
    input_vars: Mapped[Any] = mapped_column(JSONDocument)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, index=True)  # budget periods
    started_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    total_tokens_input: Mapped[int] = mapped_column(BigInteger)
    total_tokens_output: Mapped[int] = mapped_column(BigInteger)
    total_cost: Mapped[Decimal] = mapped_column(Money)
    total_latency_ms: Mapped[float | None] = mapped_column(Double)
    error_summary: Mapped[str | None] = mapped_column(Text)
    event_count: Mapped[int] = mapped_column(Integer)
    last_seq: Mapped[int] = mapped_column(Integer)
    #: The flow's declared outputs at the end of the run (null until it ends).
    outputs: Mapped[Any | None] = mapped_column(JSONDocument, nullable=True)
    #: The run and Backpack commit this run was forked from (0008); null for other runs.
    forked_from_run_id: Mapped[str | None] = mapped_column(ID, nullable=True)
    forked_from_commit_id: Mapped[str | None] = mapped_column(ID, nullable=True)
    #: The run's lease (0010, see :mod:`backpackflow_store_sql.leases`): who drives it, until
    #: when, and the fencing token (one more on every acquisition, never reset).
    lease_owner: Mapped[str | None] = mapped_column(Text, nullable=True)
    lease_token: Mapped[int] = mapped_column(Integer, server_default=text("0"))
    lease_expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)


class RunStep(Base):
    """One node execution of a run (``step`` is its 1-based index), derived from events, or a
    step nested in one (``parent_step`` names it: an agent's tool call, ``node_type`` "tool",
    ``node_name`` the tool's)."""

    __tablename__ = "run_steps"
    __table_args__ = (
        # The unique index leads with run_id, so it also serves every lookup by run.
        UniqueConstraint("run_id", "step"),
        CheckConstraint(_in("status", STEP_STATUSES), name="status"),
    )

    id: Mapped[str] = mapped_column(ID, primary_key=True)
    run_id: Mapped[str] = mapped_column(ID, ForeignKey("workflow_runs.id", ondelete="CASCADE"))
    step: Mapped[int] = mapped_column(Integer)
    node_id: Mapped[str] = mapped_column(Text)
    node_name: Mapped[str | None] = mapped_column(Text)
    node_type: Mapped[str | None] = mapped_column(Text)
    namespace: Mapped[str | None] = mapped_column(Text)
    status: Mapped[str] = mapped_column(STATUS)
    started_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    latency_ms: Mapped[float | None] = mapped_column(Double)
    tokens_input: Mapped[int] = mapped_column(BigInteger)
    tokens_output: Mapped[int] = mapped_column(BigInteger)
    cost: Mapped[Decimal] = mapped_column(Money)
    attempts: Mapped[int] = mapped_column(Integer)
    retries: Mapped[int] = mapped_column(Integer)
    cache_hit: Mapped[bool] = mapped_column(Boolean)
    action: Mapped[str | None] = mapped_column(Text)
    error: Mapped[str | None] = mapped_column(Text)
    #: The step this one is nested in (0007); null for a node execution.
    parent_step: Mapped[int | None] = mapped_column(Integer, nullable=True)


class TraceEvent(Base):
    """One trace event, stored as the runner emitted it (``id`` is the event's own id)."""

    __tablename__ = "trace_events"
    __table_args__ = (
        # The unique index leads with run_id, so it also serves every lookup by run.
        UniqueConstraint("run_id", "seq"),
    )

    id: Mapped[str] = mapped_column(ID, primary_key=True)
    run_id: Mapped[str] = mapped_column(ID, ForeignKey("workflow_runs.id", ondelete="CASCADE"))
    seq: Mapped[int] = mapped_column(Integer)
    step: Mapped[int | None] = mapped_column(Integer)
    ts: Mapped[float] = mapped_column(Double)
    type: Mapped[str] = mapped_column(Text)
    node_id: Mapped[str | None] = mapped_column(Text)
    node_name: Mapped[str | None] = mapped_column(Text)
    namespace: Mapped[str | None] = mapped_column(Text)
    payload: Mapped[Any] = mapped_column(JSONDocument)
    #: The envelope's ``parent_step`` (0007): set on the events of a nested step.
    parent_step: Mapped[int | None] = mapped_column(Integer, nullable=True)


class ProviderBinding(Base):
    """Which provider and model a workflow (``node_id`` NULL) or one of its nodes uses."""

    __tablename__ = "provider_bindings"

    id: Mapped[str] = mapped_column(ID, primary_key=True)
    workflow_id: Mapped[str] = mapped_column(
        ID, ForeignKey("workflows.id", ondelete="CASCADE"), index=True
    )
    node_id: Mapped[str | None] = mapped_column(Text)
    provider: Mapped[str] = mapped_column(Text)
    model: Mapped[str] = mapped_column(Text)
    temperature: Mapped[float | None] = mapped_column(Double)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)


class ApiToken(Base):
    """An API token of the service: the SHA-256 digest of its secret (the secret itself is
    shown once, when made, and never stored), a name, a role, and when it stops working."""

    __tablename__ = "api_tokens"
    __table_args__ = (CheckConstraint(_in("role", TOKEN_ROLES), name="role"),)

    id: Mapped[str] = mapped_column(ID, primary_key=True)
    name: Mapped[str] = mapped_column(Text)
    role: Mapped[str] = mapped_column(STATUS)
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    hint: Mapped[str] = mapped_column(String(16))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    last_used_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


class RunCost(Base):
    """What one run spent on one LLM provider (from its ``llm_response`` events)."""

    __tablename__ = "run_costs"

    run_id: Mapped[str] = mapped_column(
        ID, ForeignKey("workflow_runs.id", ondelete="CASCADE"), primary_key=True
    )
    provider: Mapped[str] = mapped_column(Text, primary_key=True)
    cost: Mapped[Decimal] = mapped_column(Money)
    tokens_input: Mapped[int] = mapped_column(BigInteger)
    tokens_output: Mapped[int] = mapped_column(BigInteger)


class Budget(Base):
    """A spending limit of the service: over the runs of one workflow (or all, ``workflow_id``
    NULL), on one provider (or all, ``provider`` NULL), per run, UTC day or UTC month.

    ``alerted_period`` is the period (``2026-12``, ``2026-12-03``) whose soft-limit alert was
    sent, so that an alert goes out once per period across restarts and service processes."""

    __tablename__ = "budgets"
    __table_args__ = (
        CheckConstraint(_in("period", BUDGET_PERIODS), name="period"),
        CheckConstraint(_in("kind", BUDGET_KINDS), name="kind"),
    )

    id: Mapped[str] = mapped_column(ID, primary_key=True)
    name: Mapped[str] = mapped_column(Text, unique=True)
    workflow_id: Mapped[str | None] = mapped_column(
        ID, ForeignKey("workflows.id", ondelete="CASCADE"), index=True
    )
    provider: Mapped[str | None] = mapped_column(Text)
    period: Mapped[str] = mapped_column(STATUS)
    kind: Mapped[str] = mapped_column(STATUS)
    amount: Mapped[Decimal] = mapped_column(Money)
    alerted_period: Mapped[str | None] = mapped_column(String(16))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime)


class RunCheckpoint(Base):
    """One record of a run's checkpoint (see :mod:`backpackflow_store_sql.checkpoints`): JSON
    text as the kernel wrote it, in ``id`` order within the run. No foreign key: a checkpoint
    may be written before (or without) a ``workflow_runs`` row, as the kernel's own runs do."""

    __tablename__ = "run_checkpoints"
    __table_args__ = (Index(None, "run_id", "id"),)

    id: Mapped[int] = mapped_column(
        BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True
    )
    run_id: Mapped[str] = mapped_column(ID)
    record: Mapped[str] = mapped_column(Text)
