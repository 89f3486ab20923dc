"""The SQL run store: workflows, runs, per-node steps and every trace event.

Synchronous SQLAlchemy 2.0: every method opens its own session and transaction, so one
:class:`SqlRunStore` can be shared by all the threads of a pool (the async service calls it
through ``run_in_threadpool``). Results are JSON-ready ``dict``s: datetimes as ISO 8601 UTC
strings, money as decimal strings (``"0.000369"``), exactly what an HTTP layer sends.

Steps and run totals are *derived* from the trace events inside the same transaction that stores
them, so they can never disagree with the trace, and a retried batch changes nothing.
"""

from __future__ import annotations

import decimal
import functools
import itertools
import json
import logging
import math
import os
import re
from collections.abc import Iterator, Mapping, Sequence
from contextlib import AbstractContextManager, contextmanager
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from types import SimpleNamespace
from typing import Any, Protocol, Self

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import (
    JSON,
    Connection,
    Dialect,
    Engine,
    Row,
    Select,
    Table,
    TextClause,
    bindparam,
    create_engine,
    delete,
    event,
    func,
    select,
    text,
)
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import (
    ArgumentError,
    DBAPIError,
    IntegrityError,
    NoSuchModuleError,
    OperationalError,
    ProgrammingError,
)
from sqlalchemy.orm import Session
from sqlalchemy.sql.base import Executable

from backpackflow.ids import new_id

from .budgets import BudgetStore
from .checkpoints import CheckpointStore, insert_checkpoint_lines
from .errors import (
    DatabaseUnavailable,
    EventConflict,
    InvalidData,
    InvalidEvent,
    InvalidTransition,
    NotFound,
    SchemaNotReady,
    StoreConfigError,
    StoreError,
    VersionConflict,
)
from .leases import LeaseStore, check_lease_tokens
from .models import (
    RUN_STATUSES,
    TOKEN_ROLES,
    ApiToken,
    ProviderBinding,
    RunCost,
    RunStep,
    TraceEvent,
    Workflow,
    WorkflowRun,
    WorkflowVersion,
)
from .portable import (
    MAX_DEPTH,
    UNPORTABLE,
    make_portable,
    may_be_unportable,
    may_nest_deeper,
    unportable_problems,
    unportable_text,
)

log = logging.getLogger("backpackflow_store_sql")

#: Where ``SqlRunStore(None)`` keeps its SQLite database (relative to the working directory).
DEFAULT_DATABASE_PATH = Path(".backpackflow") / "backpackflow.db"
#: The environment variable :meth:`SqlRunStore.from_env` reads.
DATABASE_URL_ENV = "BACKPACKFLOW_DATABASE_URL"

FINAL_STATUSES = ("succeeded", "failed", "canceled")
ACTIVE_STATUSES = ("queued", "running")
TRANSITIONS: dict[str, tuple[str, ...]] = {
    "queued": ("running", "failed", "canceled"),
    "running": (*FINAL_STATUSES, "paused"),
    "paused": ("running", "failed", "canceled"),  # answered, or given up on
}

_MIGRATIONS = "backpackflow_store_sql:migrations"
_MIGRATION_LOCK = 0x6270_665F_7371_6C  # PostgreSQL advisory lock key serialising upgrades
_WRITE = "backpackflow_write"  # execution option: on SQLite, begin with BEGIN IMMEDIATE
_IN_CHUNK = 500  # ids per IN (...) list; far below SQLite's bound-parameter limit
# Money sums are exact: 60 digits hold any realistic total and Inexact is trapped, not rounded.
_MONEY = decimal.Context(
    prec=60, traps=[decimal.Inexact, decimal.InvalidOperation, decimal.Overflow]
)
_ZERO = Decimal(0)


class JsonEvent(Protocol):
    """An event object that serializes itself, like the kernel's ``BackpackEvent``."""

    def to_json(self) -> Mapping[str, Any]: ...


#: What :meth:`SqlRunStore.append_events` and :meth:`EventWriter.put` accept.
EventDocument = Mapping[str, Any] | JsonEvent


def event_field(event: EventDocument, key: str) -> Any:
    """One envelope field (``id``, ``seq`` ...) of either kind of event, for messages."""
    if isinstance(event, Mapping):
        return event.get(key)
    return getattr(event, key, None)


# --------------------------------------------------------------------------- URLs and engines


def mask_url(url: str | URL) -> str:
    """The URL with its password replaced by ``***`` (also for URLs that do not parse)."""
    if isinstance(url, URL):
        return url.render_as_string(hide_password=True)
    try:
        return make_url(url).render_as_string(hide_password=True)
    except (ArgumentError, ValueError):
        return re.sub(r"(://[^:/@]*:)[^@]*@", r"\1***@", url)


def normalize_url(url: str | None) -> URL:
    """Parse ``url`` and pick the driver: psycopg 3 for PostgreSQL, the default SQLite file."""
    if url is None:
        return URL.create("sqlite", database=str(DEFAULT_DATABASE_PATH.absolute()))
    try:
        parsed = make_url(url)
    except (ArgumentError, ValueError) as exc:
        raise StoreConfigError(
            f"malformed database URL {mask_url(url)!r}: use sqlite:///path/to/file.db or "
            f"postgresql://user:password@host:5432/dbname (set {DATABASE_URL_ENV})"
        ) from exc
    backend = parsed.get_backend_name()
    if backend in ("postgresql", "postgres"):
        driver = parsed.drivername.partition("+")[2] or "psycopg"  # psycopg 3 unless named
        return parsed.set(drivername=f"postgresql+{driver}")
    if backend == "sqlite":
        if parsed.database in (None, "", ":memory:"):
            raise StoreConfigError(
                f"in-memory SQLite ({mask_url(parsed)!r}) is not supported: the store is shared "
                "by threads, each with its own connection; use a file, e.g. sqlite:///run.db"
            )
        return parsed.set(database=str(Path(parsed.database).absolute()))
    raise StoreConfigError(
        f"unsupported database {mask_url(parsed)!r}: the run store supports "
        "sqlite:///path/to/file.db and postgresql://user:password@host:5432/dbname"
    )


def _load_json(text: str | bytes) -> Any:
    """Read a JSON column. Rows written before the store refused lone surrogates or deep
    nesting may hold them; they read back replaced (U+FFFD) and cut (at ``MAX_DEPTH``), so
    such a row can never again break a list of runs or workflows. Two C-speed checks of the
    text decide whether the document needs a look at all (psycopg hands JSONB over as bytes)."""
    if not isinstance(text, str):
        text = bytes(text).decode("utf-8")
    value = json.loads(text)
    if may_be_unportable(text) or may_nest_deeper(text):
        return make_portable(value, MAX_DEPTH)
    return value


def _sqlite_on_connect(dbapi_connection: Any, _record: Any) -> None:
    # The SQLAlchemy recipe for real SQLite transactions: the driver stops issuing its own
    # BEGIN (which it defers to the first write, too late for read-modify-write) and
    # _sqlite_on_begin issues it instead. WAL lets readers run beside the single writer.
    dbapi_connection.isolation_level = None
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.close()


def _sqlite_on_begin(connection: Connection) -> None:
    # Writers take the write lock up front so two read-modify-write transactions serialise
    # instead of one failing with "database is locked" when it upgrades its lock.
    write = connection.get_execution_options().get(_WRITE, False)
    connection.exec_driver_sql("BEGIN IMMEDIATE" if write else "BEGIN")


#: Seconds a PostgreSQL session of the store may sit in an open transaction between two
#: statements before the server ends it (``idle_in_transaction_session_timeout``).
IDLE_IN_TRANSACTION_TIMEOUT = 10.0


def create_store_engine(
    url: URL,
    *,
    idle_in_transaction_timeout: float = IDLE_IN_TRANSACTION_TIMEOUT,
    **engine_options: Any,
) -> Engine:
    """An engine configured for the store (SQLite pragmas and locking, PostgreSQL timeouts).

    On PostgreSQL every session ends a transaction left idle for ``idle_in_transaction_timeout``
    seconds: the store's transactions run their statements back to back, so one that idles is
    held by a process that stalled (a frozen worker, a paused VM) with the rows it locked, and
    every other process writing those runs (the worker taking its runs over) would wait for it
    for as long as it stays stalled. Its lease has expired by then: its writes would be refused
    anyway. Set with ``SET`` on each new connection, not as a startup option, so that it also
    passes a connection pooler."""
    if isinstance(idle_in_transaction_timeout, bool) or not (
        isinstance(idle_in_transaction_timeout, int | float) and idle_in_transaction_timeout > 0
    ):
        raise StoreConfigError(
            "idle_in_transaction_timeout must be a number of seconds > 0, got "
            f"{idle_in_transaction_timeout!r}"
        )
    try:
        if url.get_backend_name() == "sqlite":
            assert url.database is not None  # normalize_url refuses in-memory databases
            try:
                Path(url.database).parent.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                raise DatabaseUnavailable(
                    f"cannot create the directory of the SQLite database {mask_url(url)!r}: "
                    f"{exc}; choose a writable location with {DATABASE_URL_ENV}"
                ) from exc
            connect_args = {"check_same_thread": False, "timeout": 30.0}
            connect_args.update(engine_options.pop("connect_args", {}))
            engine_options.setdefault("json_deserializer", _load_json)
            engine = create_engine(url, connect_args=connect_args, **engine_options)
            event.listen(engine, "connect", _sqlite_on_connect)
            event.listen(engine, "begin", _sqlite_on_begin)
            return engine
        pg_args: dict[str, Any] = {}
        if "connect_timeout" not in url.query:
            pg_args["connect_timeout"] = 10
        pg_args.update(engine_options.pop("connect_args", {}))
        # No pool_pre_ping: a round trip before every checkout, for what a failed statement
        # says anyway. A connection the server dropped fails its next use as "disconnect",
        # which makes SQLAlchemy invalidate the whole pool; the event writer and run status
        # writes retry, a request answers 503 with Retry-After.
        engine_options.setdefault("json_deserializer", _load_json)  # psycopg reads JSONB with it
        engine = create_engine(url, connect_args=pg_args, **engine_options)
        milliseconds = max(1, round(idle_in_transaction_timeout * 1000))
        event.listen(engine, "connect", functools.partial(_pg_on_connect, milliseconds))
        return engine
    except (ArgumentError, NoSuchModuleError, ImportError) as exc:
        raise StoreConfigError(
            f"cannot use database URL {mask_url(url)!r}: {exc}; for PostgreSQL install "
            "psycopg 3 (the 'postgres' extra) and use postgresql://user:password@host/dbname"
        ) from exc


def _pg_on_connect(idle_ms: int, dbapi_connection: Any, _record: Any) -> None:
    """A new PostgreSQL connection's session settings (see :func:`create_store_engine`), set
    outside any transaction."""
    autocommit = dbapi_connection.autocommit
    dbapi_connection.autocommit = True
    try:
        with dbapi_connection.cursor() as cursor:
            cursor.execute(f"SET idle_in_transaction_session_timeout = {int(idle_ms)}")
    finally:
        dbapi_connection.autocommit = autocommit


def _one_line(exc: BaseException) -> str:
    cause = exc.orig if isinstance(exc, DBAPIError) and exc.orig is not None else exc
    return " ".join(str(cause).split())[:400] or type(cause).__name__


# --------------------------------------------------------------------------- value helpers


def _now() -> datetime:
    return datetime.now(UTC)


def _iso(value: datetime | None) -> str | None:
    return None if value is None else value.isoformat()


def _money(value: Decimal) -> str:
    return format(value, "f")


def _add(a: Decimal, b: Decimal) -> Decimal:
    return _MONEY.add(a, b)


def _elapsed_ms(start: datetime | None, end: datetime) -> float | None:
    return None if start is None else (end - start).total_seconds() * 1000.0


def _int_field(value: Any) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return None


def _float_field(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    number = float(value)
    return number if math.isfinite(number) else None


def _decimal_field(value: Any) -> Decimal | None:
    """A cost as the envelope carries it (a decimal string); ``None`` if unusable."""
    if value is None:
        return _ZERO
    if isinstance(value, bool):
        return None
    if isinstance(value, float):
        value = repr(value)  # the shortest text that reads back as this float
    if isinstance(value, int | str | Decimal):
        try:
            amount = Decimal(value)
        except decimal.InvalidOperation:
            return None
        return amount if amount.is_finite() else None
    return None


def _workflow_dict(w: Workflow | Row[Any]) -> dict[str, Any]:
    return {
        "id": w.id,
        "name": w.name,
        "description": w.description,
        "graph_json": w.graph_json,
        "version": w.version,
        "created_at": _iso(w.created_at),
        "updated_at": _iso(w.updated_at),
    }


def _run_dict(r: WorkflowRun | SimpleNamespace) -> dict[str, Any]:
    return {
        "id": r.id,
        "workflow_id": r.workflow_id,
        "workflow_name": r.workflow_name,
        "workflow_version": r.workflow_version,
        "triggered_by": r.triggered_by,
        "status": r.status,
        "input_vars": r.input_vars,
        "created_at": _iso(r.created_at),
        "started_at": _iso(r.started_at),
        "finished_at": _iso(r.finished_at),
        "total_tokens_input": r.total_tokens_input,
        "total_tokens_output": r.total_tokens_output,
        "total_cost": _money(r.total_cost),
        "total_latency_ms": r.total_latency_ms,
        "error_summary": r.error_summary,
        "event_count": r.event_count,
        "last_seq": r.last_seq,
        "outputs": r.outputs if r.outputs is not None else {},
        "forked_from": (
            None
            if r.forked_from_run_id is None
            else {"run_id": r.forked_from_run_id, "commit_id": r.forked_from_commit_id}
        ),
    }


def _step_dict(s: RunStep) -> dict[str, Any]:
    return {
        "id": s.id,
        "run_id": s.run_id,
        "step": s.step,
        "node_id": s.node_id,
        "node_name": s.node_name,
        "node_type": s.node_type,
        "namespace": s.namespace,
        "status": s.status,
        "started_at": _iso(s.started_at),
        "finished_at": _iso(s.finished_at),
        "latency_ms": s.latency_ms,
        "tokens_input": s.tokens_input,
        "tokens_output": s.tokens_output,
        "cost": _money(s.cost),
        "attempts": s.attempts,
        "retries": s.retries,
        "cache_hit": s.cache_hit,
        "action": s.action,
        "error": s.error,
        "parent_step": s.parent_step,
    }


def _event_dict(e: TraceEvent) -> dict[str, Any]:
    event = {
        "id": e.id,
        "seq": e.seq,
        "timestamp": e.ts,
        "run_id": e.run_id,
        "step": e.step,
        "node_id": e.node_id,
        "node_name": e.node_name,
        "namespace": e.namespace,
        "type": e.type,
        "payload": e.payload,
    }
    if e.parent_step is not None:  # as the kernel's envelope: only on a nested step's events
        event["parent_step"] = e.parent_step
    return event


def _binding_dict(b: ProviderBinding) -> dict[str, Any]:
    return {
        "id": b.id,
        "workflow_id": b.workflow_id,
        "node_id": b.node_id,
        "provider": b.provider,
        "model": b.model,
        "temperature": b.temperature,
        "created_at": _iso(b.created_at),
    }


def _token_dict(t: ApiToken, now: datetime) -> dict[str, Any]:
    expired = t.expires_at is not None and t.expires_at <= now
    return {
        "id": t.id,
        "name": t.name,
        "role": t.role,
        "hint": t.hint,
        "created_at": _iso(t.created_at),
        "expires_at": _iso(t.expires_at),
        "last_used_at": _iso(t.last_used_at),
        "revoked_at": _iso(t.revoked_at),
        "active": t.revoked_at is None and not expired,
    }


def _chunks(items: Sequence[Any]) -> Iterator[Sequence[Any]]:
    for start in range(0, len(items), _IN_CHUNK):
        yield items[start : start + _IN_CHUNK]


def _check_name(name: Any) -> None:
    if not isinstance(name, str) or not name.strip():
        raise InvalidData(f"a workflow needs a non-empty name, not {name!r}")
    _check_text("the workflow name", name)


def _check_text(what: str, value: str | None) -> None:
    """Refuse user text neither database can store (the same on both, see ``portable``)."""
    reason = None if value is None else unportable_text(value)
    if reason is not None:
        raise InvalidData(f"{what} {reason}")


def _portable_text(value: str | None) -> str | None:
    """Text a run produced, with what the databases cannot hold replaced by U+FFFD."""
    return value if value is None or UNPORTABLE.search(value) is None else make_portable(value)


def _positive(name: str, value: int, minimum: int = 1) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise InvalidData(f"{name} must be an integer >= {minimum}, not {value!r}")
    return value


_RUNS: Table = WorkflowRun.__table__  # type: ignore[assignment]
_STEPS: Table = RunStep.__table__  # type: ignore[assignment]
_COSTS: Table = RunCost.__table__  # type: ignore[assignment]
_EVENTS: Table = TraceEvent.__table__  # type: ignore[assignment]
# Built once: their compiled forms are cached, so a batch pays for executing them only. Each
# serves every run of a writer's batch at once (ids in an expanding IN list).
_SELECT_RUNS = (
    select(_RUNS)
    .where(_RUNS.c.id.in_(bindparam("run_ids", expanding=True)))
    .order_by(_RUNS.c.id)  # rows locked in one order: concurrent batches cannot deadlock
    .with_for_update()
)
_SELECT_RUN = select(_RUNS).where(_RUNS.c.id == bindparam("run_id")).with_for_update()
_SELECT_STEPS = select(_STEPS).where(
    _STEPS.c.run_id.in_(bindparam("run_ids", expanding=True)),
    _STEPS.c.step.in_(bindparam("steps", expanding=True)),
)
_SELECT_COSTS = select(_COSTS).where(
    _COSTS.c.run_id.in_(bindparam("run_ids", expanding=True)),
    _COSTS.c.provider.in_(bindparam("providers", expanding=True)),
)
_UPDATE_RUN = _RUNS.update().where(_RUNS.c.id == bindparam("b_id"))
#: A status change as one statement: ``UPDATE ... WHERE`` the run is in a status it may leave
#: for the new one (and, under a lease, holds that fencing token) ``RETURNING`` the row. A
#: change it refuses updates nothing, and the checked path (:meth:`SqlRunStore._transition`)
#: then says why. Keyed by (new status, under a lease).
_MOVES: dict[tuple[str, bool], tuple[Any, frozenset[str]]] = {}
#: What a new run copies from its workflow's row (not the flow document: each run would parse
#: it); the statement below is given every other column the run starts with.
_FROM_WORKFLOW: dict[str, Any] = {
    "workflow_id": Workflow.id,
    "workflow_name": Workflow.name,
    "workflow_version": Workflow.version,
}
_GIVEN_RUN_COLUMNS = [
    column
    for column in _RUNS.c
    if column.name not in _FROM_WORKFLOW
    and not column.name.startswith("lease_")  # a new run is under no lease: the defaults
]
#: A new run as one statement: ``INSERT ... SELECT`` from its workflow's row, ``RETURNING`` what
#: it copied (no row: there is no such workflow). On PostgreSQL one round trip in autocommit
#: mode instead of four (BEGIN, SELECT, INSERT, COMMIT).
_INSERT_RUN_OF_WORKFLOW = (
    _RUNS.insert()
    .from_select(
        [*(column.name for column in _GIVEN_RUN_COLUMNS), *_FROM_WORKFLOW],
        select(
            *(bindparam(f"b_{column.name}", type_=column.type) for column in _GIVEN_RUN_COLUMNS),
            *_FROM_WORKFLOW.values(),
        ).where(Workflow.id == bindparam("b_workflow_id")),
    )
    .returning(*(_RUNS.c[name] for name in _FROM_WORKFLOW))
)
_SELECT_WORKFLOW = select(*Workflow.__table__.columns).where(
    Workflow.id == bindparam("workflow_id")
)
_UPDATE_STEP = _STEPS.update().where(_STEPS.c.id == bindparam("b_id"))
_UPDATE_COST = _COSTS.update().where(
    _COSTS.c.run_id == bindparam("b_run_id"), _COSTS.c.provider == bindparam("b_provider")
)
_RUN_TOTALS = (
    "total_tokens_input",
    "total_tokens_output",
    "total_cost",
    "total_latency_ms",
    "event_count",
    "last_seq",
)


def _move_statement(status: str, leased: bool) -> tuple[Any, frozenset[str]]:
    """The ``UPDATE ... RETURNING`` of a move to ``status`` (see :data:`_MOVES`). Moving to
    ``running`` records ``started_at`` the first time; a final status records ``finished_at``
    and, for the statement to apply, the run must already have its ``total_latency_ms`` (from
    its ``run_end`` event): without it, the latency is worked out on the checked path.
    Returned with the names of its parameters (an UPDATE takes any other name for a column)."""
    found = _MOVES.get((status, leased))
    if found is not None:
        return found
    sources = [source for source, targets in TRANSITIONS.items() if status in targets]
    where = [_RUNS.c.id == bindparam("b_id"), _RUNS.c.status.in_(sources)]
    if leased:  # as check_lease_tokens: the current token, of a lease not released
        where += [_RUNS.c.lease_token == bindparam("b_token"), _RUNS.c.lease_owner.is_not(None)]
    values: dict[str, Any] = {"status": status}
    if status == "running":
        values["started_at"] = func.coalesce(
            _RUNS.c.started_at, bindparam("b_now", type_=_RUNS.c.started_at.type)
        )
    if status in FINAL_STATUSES:
        where.append(_RUNS.c.total_latency_ms.is_not(None))
        values["finished_at"] = bindparam("b_now", type_=_RUNS.c.finished_at.type)
    statement = _RUNS.update().where(*where).values(values).returning(*_RUNS.c)
    found = _MOVES[(status, leased)] = (statement, frozenset(statement.compile().params))
    return found


class _Batch:
    """What one run's new trace events change, as plain records: the run's totals, its steps,
    its cost per provider. :func:`_load_batches` reads them for every run of a writer's batch
    with one statement per table, :func:`_save_batches` writes them back with one statement per
    kind of change (new rows, changed rows), whatever the number of runs and events."""

    def __init__(self, run: SimpleNamespace, rows: list[dict[str, Any]]) -> None:
        self.run = run
        self.rows = rows  # the run's newly stored events, in seq order
        self.steps: dict[int, SimpleNamespace] = {}
        self._costs: dict[str, SimpleNamespace] = {}
        self._stored: dict[tuple[str, Any], dict[str, Any]] = {}  # rows as read
        self._new_steps: list[SimpleNamespace] = []
        self._new_costs: list[SimpleNamespace] = []

    def step_numbers(self) -> set[int]:
        return {r["step"] for r in self.rows if r["step"] is not None}

    def providers(self) -> set[str]:
        return {
            _provider_name(r["payload"])
            for r in self.rows
            if r["type"] == "llm_response" and isinstance(r["payload"], dict)
        }

    def add_stored_step(self, found: Any) -> None:
        self.steps[found.step] = SimpleNamespace(**found._mapping)
        self._stored["step", found.step] = dict(found._mapping)

    def add_stored_cost(self, found: Any) -> None:
        self._costs[found.provider] = SimpleNamespace(**found._mapping)
        self._stored["cost", found.provider] = dict(found._mapping)

    def open_step(self, row: dict[str, Any], when: datetime) -> SimpleNamespace:
        """A new step (its first event in the store)."""
        step = SimpleNamespace(
            id=new_id(),
            run_id=self.run.id,
            step=row["step"],
            node_id=row["node_id"],
            node_name=row["node_name"],
            node_type=None,
            namespace=row["namespace"],
            status="running",
            started_at=when,
            finished_at=None,
            latency_ms=None,
            tokens_input=0,
            tokens_output=0,
            cost=_ZERO,
            attempts=0,
            retries=0,
            cache_hit=False,
            action=None,
            error=None,
            parent_step=row["parent_step"],
        )
        self._new_steps.append(step)
        return step

    def provider(self, name: str) -> SimpleNamespace:
        """The run's cost record of one provider, made if it has none yet."""
        cost = self._costs.get(name)
        if cost is None:
            cost = self._costs[name] = SimpleNamespace(
                run_id=self.run.id, provider=name, cost=_ZERO, tokens_input=0, tokens_output=0
            )
            self._new_costs.append(cost)
        return cost

    def new_steps(self) -> list[dict[str, Any]]:
        return [vars(step) for step in self._new_steps]

    def changed_steps(self) -> list[dict[str, Any]]:
        return [
            {**vars(step), "b_id": step.id}
            for number, step in self.steps.items()
            if ("step", number) in self._stored and vars(step) != self._stored["step", number]
        ]

    def new_costs(self) -> list[dict[str, Any]]:
        return [vars(cost) for cost in self._new_costs]

    def changed_costs(self) -> list[dict[str, Any]]:
        return [
            {**vars(cost), "b_run_id": cost.run_id, "b_provider": cost.provider}
            for name, cost in self._costs.items()
            if ("cost", name) in self._stored and vars(cost) != self._stored["cost", name]
        ]

    def totals(self) -> dict[str, Any]:
        return {"b_id": self.run.id, **{name: getattr(self.run, name) for name in _RUN_TOTALS}}


def _lock_runs(connection: Connection, run_ids: list[str]) -> dict[str, SimpleNamespace]:
    """The runs' rows, locked (PostgreSQL ``FOR UPDATE``; SQLite's write lock is held)."""
    runs: dict[str, SimpleNamespace] = {}
    for chunk in _chunks(run_ids):
        for row in connection.execute(_SELECT_RUNS, {"run_ids": list(chunk)}):
            runs[row.id] = SimpleNamespace(**row._mapping)
    for run_id in run_ids:
        if run_id not in runs:
            raise NotFound("run", run_id)
    return runs


def _recordset_insert(table: Table, dialect: Dialect) -> TextClause:
    """PostgreSQL: ``INSERT ... SELECT ... FROM jsonb_to_recordset(:rows) ON CONFLICT (id) DO
    NOTHING RETURNING id``: a batch of any size is one short statement with one parameter,
    the rows as one JSON document (:func:`_rows_document`), which the server takes apart.

    SQLAlchemy's insertmanyvalues makes a multi-row ``VALUES`` instead that grows with the
    batch, and psycopg caches its conversion of a statement only under 4,096 characters and 50
    parameters: each batch's statement was parsed again (17% of the service's CPU at 50
    concurrent runs). Arrays, one per column (``unnest``), are no better: psycopg escapes every
    element of a text array with a regular expression, and JSON payloads are full of quotes.
    """
    names = ", ".join(column.name for column in table.columns)
    # a JSON null stays JSON (SQLAlchemy's JSON type stores None so), not SQL NULL
    values = ", ".join(
        f"COALESCE({column.name}, 'null'::jsonb)" if isinstance(column.type, JSON) else column.name
        for column in table.columns
    )
    record = ", ".join(
        f"{column.name} {column.type.compile(dialect=dialect)}" for column in table.columns
    )
    return text(
        f"INSERT INTO {table.name} ({names}) SELECT {values} "
        f"FROM jsonb_to_recordset(CAST(:rows AS jsonb)) AS r({record}) "
        "ON CONFLICT (id) DO NOTHING RETURNING id"
    )


class _SqliteEventInsert:
    """SQLite: ``INSERT INTO trace_events (...) VALUES (...), (...) ON CONFLICT (id) DO
    NOTHING RETURNING id`` sent through the driver; returns the ids inserted (a retried
    batch's stored ids are skipped).

    It is the statement SQLAlchemy's insertmanyvalues makes, as many rows a statement (up to
    the dialect's ``insertmanyvalues_max_parameters``), but SQLAlchemy builds each row's
    parameters through the compiled statement's ``construct_params``: more CPU than SQLite's
    own work on the rows. Here a row is a tuple in the table's column order, its JSON columns
    serialized as SQLAlchemy's ``JSON`` type does on SQLite (``json.dumps``: a JSON null is
    the text ``null``).
    """

    def __init__(self, table: Table, max_parameters: int) -> None:
        self.columns = [(column.name, isinstance(column.type, JSON)) for column in table.columns]
        self.rows_per_statement = max(1, max_parameters // len(self.columns))
        names = ", ".join(name for name, _ in self.columns)
        self._head = f"INSERT INTO {table.name} ({names}) VALUES "
        self._row = "(" + ", ".join("?" * len(self.columns)) + ")"

    def __call__(self, connection: Connection, rows: list[dict[str, Any]]) -> set[str]:
        dumps = json.dumps
        columns = self.columns
        inserted: set[str] = set()
        size = self.rows_per_statement
        for start in range(0, len(rows), size):
            chunk = rows[start : start + size]
            parameters = tuple(
                [
                    dumps(row[name]) if is_json else row[name]
                    for row in chunk
                    for name, is_json in columns
                ]
            )
            values = ", ".join([self._row] * len(chunk))
            statement = f"{self._head}{values} ON CONFLICT (id) DO NOTHING RETURNING id"
            inserted.update(connection.exec_driver_sql(statement, parameters).scalars())
        return inserted


def _rows_document(rows: list[dict[str, Any]]) -> dict[str, str]:
    """The parameter of :func:`_recordset_insert`: the rows (checked, so JSON data) as one
    JSON array, encoded in one call."""
    return {"rows": json.dumps(rows, ensure_ascii=False)}


def _save_run(connection: Connection, run: SimpleNamespace, *columns: str) -> None:
    """Write these columns of a run read with :data:`_SELECT_RUN` back to its row."""
    connection.execute(_UPDATE_RUN, {"b_id": run.id, **{c: getattr(run, c) for c in columns}})


def _load_batches(connection: Connection, batches: list[_Batch]) -> None:
    """The steps and provider costs the batches' events touch that are stored already: one
    query per table for all the runs (a superset, sorted out here)."""
    by_run = {batch.run.id: batch for batch in batches}
    run_ids = sorted(by_run)
    numbers = sorted(set().union(*(batch.step_numbers() for batch in batches)))
    wanted = {(batch.run.id, n) for batch in batches for n in batch.step_numbers()}
    for chunk in _chunks(numbers):
        query = {"run_ids": run_ids, "steps": list(chunk)}
        for found in connection.execute(_SELECT_STEPS, query):
            if (found.run_id, found.step) in wanted:
                by_run[found.run_id].add_stored_step(found)
    providers = sorted(set().union(*(batch.providers() for batch in batches)))
    for chunk in _chunks(providers):
        query = {"run_ids": run_ids, "providers": list(chunk)}
        for found in connection.execute(_SELECT_COSTS, query):
            by_run[found.run_id].add_stored_cost(found)


def _save_batches(connection: Connection, batches: list[_Batch]) -> None:
    """Write back what changed: a statement per kind of change, each an executemany."""
    for statement, rows in (
        (_STEPS.insert(), [row for batch in batches for row in batch.new_steps()]),
        (_UPDATE_STEP, [row for batch in batches for row in batch.changed_steps()]),
        (_COSTS.insert(), [row for batch in batches for row in batch.new_costs()]),
        (_UPDATE_COST, [row for batch in batches for row in batch.changed_costs()]),
        (_UPDATE_RUN, [batch.totals() for batch in batches]),
    ):
        if rows:
            connection.execute(statement, rows)


def _derive_nested(step: Any, kind: str, payload: dict[str, Any], when: datetime) -> None:
    """A nested step (an agent's tool call): ``tool_request`` opens it, ``tool_response``
    ends it, succeeded or failed (the tool's error) with its latency."""
    if kind == "tool_request":
        step.started_at = when
        step.node_type = "tool"
        tool = payload.get("tool")
        if isinstance(tool, str) and tool:
            step.node_name = _portable_text(tool)
    elif kind == "tool_response":
        error = payload.get("error")
        step.status = "failed" if error else "succeeded"
        step.error = _portable_text(str(error)) if error else None
        step.finished_at = when
        step.latency_ms = _float_field(payload.get("duration_ms"))


def _provider_name(payload: Mapping[str, Any]) -> str:
    name = payload.get("provider")
    return name if isinstance(name, str) and name else "unknown"


def runs_query(
    workflow_id: str | None,
    status: str | None,
    limit: int,
    *,
    before: str | None = None,
    forked_from: str | None = None,
) -> Select[Any]:
    """The query of :meth:`SqlRunStore.list_runs`: newest first, one page.

    Filtered by workflow, status or source run it walks the ``(workflow_id, id)``,
    ``(status, id)`` or ``(forked_from_run_id, id)`` index backwards and stops after ``limit``
    rows, so its cost does not grow with the number of stored runs (tests EXPLAIN it on both
    databases).
    """
    query = select(WorkflowRun).order_by(WorkflowRun.id.desc()).limit(limit)
    if workflow_id is not None:
        query = query.where(WorkflowRun.workflow_id == workflow_id)
    if status is not None:
        query = query.where(WorkflowRun.status == status)
    if forked_from is not None:
        query = query.where(WorkflowRun.forked_from_run_id == forked_from)
    if before is not None:
        query = query.where(WorkflowRun.id < before)
    return query


# --------------------------------------------------------------------------- the store


class SqlRunStore(BudgetStore, CheckpointStore, LeaseStore):
    """Workflows, runs, steps and trace events in SQLite (default) or PostgreSQL.

    ``url``: ``None`` for ``./.backpackflow/backpackflow.db`` (directory created),
    ``sqlite:///path``, ``postgresql://...`` (driven by psycopg 3) or
    ``postgresql+psycopg://...``. The constructor connects once so that a wrong URL fails here,
    with the URL (password masked) and what to check; :meth:`upgrade` creates or migrates the
    schema. ``engine_options`` go to :func:`sqlalchemy.create_engine` (``pool_size`` ...).
    """

    def __init__(self, url: str | None = None, *, engine_options: Mapping[str, Any] | None = None):
        self._url = normalize_url(url)
        #: The URL with the password masked, for messages and logs.
        self.url = mask_url(self._url)
        #: ``"sqlite"`` or ``"postgresql"``.
        self.dialect = self._url.get_backend_name()
        self._pg = self.dialect == "postgresql"
        self.engine = create_store_engine(self._url, **dict(engine_options or {}))
        self._writer = self.engine.execution_options(**{_WRITE: True})
        self._autocommit = self.engine.execution_options(isolation_level="AUTOCOMMIT")
        #: ``INSERT ... ON CONFLICT (id) DO NOTHING RETURNING id``: on PostgreSQL one statement
        #: per batch from one JSON document (:func:`_recordset_insert`), on SQLite through the
        #: driver (:class:`_SqliteEventInsert`).
        self._insert_events: Executable | None = (
            _recordset_insert(_EVENTS, self.engine.dialect) if self._pg else None
        )
        self._insert_sqlite_events = _SqliteEventInsert(
            _EVENTS, self.engine.dialect.insertmanyvalues_max_parameters
        )
        # A read of several tables (a run and its steps) sees one snapshot. SQLite's
        # transactions already do; PostgreSQL's default READ COMMITTED would not.
        self._reader = (
            self.engine.execution_options(isolation_level="REPEATABLE READ")
            if self._pg
            else self.engine
        )
        try:
            self.ping()
        except DatabaseUnavailable:
            self.engine.dispose()
            raise

    @classmethod
    def from_env(cls, *, engine_options: Mapping[str, Any] | None = None) -> SqlRunStore:
        """A store at ``$BACKPACKFLOW_DATABASE_URL``, or the default SQLite file if unset."""
        return cls(os.environ.get(DATABASE_URL_ENV) or None, engine_options=engine_options)

    def ping(self) -> None:
        """Check the database answers; raise :class:`DatabaseUnavailable` saying what to do."""
        try:
            with self.engine.connect() as connection:
                connection.execute(select(1))
        except DBAPIError as exc:
            if self._pg:
                hint = (
                    "check that the PostgreSQL server is running and reachable, the user and "
                    "password, and that the database exists (createdb <name>)"
                )
            else:
                hint = "check that the file's directory exists and is writable"
            raise DatabaseUnavailable(
                f"cannot connect to the database {self.url!r}: {_one_line(exc)}; {hint}, "
                f"or point {DATABASE_URL_ENV} at another database"
            ) from exc

    def close(self) -> None:
        """Close every pooled connection (the store can be used again; it reconnects)."""
        self.engine.dispose()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"SqlRunStore({self.url!r})"

    # ----------------------------------------------------------------------- migrations

    def alembic_config(self, connection: Connection) -> Config:
        """An Alembic config for this package's migrations, running on ``connection``."""
        config = Config()
        config.set_main_option("script_location", _MIGRATIONS)
        config.attributes["connection"] = connection
        return config

    def upgrade(self, revision: str = "head") -> None:
        """Create or migrate the schema to ``revision``; a database already there is untouched.

        Runs in one transaction, serialised against concurrent upgrades (an advisory lock on
        PostgreSQL, the write lock on SQLite), so several service processes may start at once.
        """
        with self._writer.connect() as connection:
            driver: Any = connection.connection.driver_connection
            sqlite = connection.dialect.name == "sqlite"
            if sqlite:  # before BEGIN (SQLite ignores it inside a transaction): see below
                driver.execute("PRAGMA foreign_keys=OFF")
            try:
                with connection.begin():
                    if self._pg:
                        connection.execute(select(func.pg_advisory_xact_lock(_MIGRATION_LOCK)))
                    command.upgrade(self.alembic_config(connection), revision)
                    if sqlite:
                        self._check_foreign_keys(connection)
            finally:
                if sqlite:
                    driver.execute("PRAGMA foreign_keys=ON")

    @staticmethod
    def _check_foreign_keys(connection: Connection) -> None:
        """SQLite rebuilds a table to alter it (batch mode: copy, drop, rename). With foreign
        keys enforced, dropping ``workflow_runs`` would delete every row referring to it (ON
        DELETE CASCADE); they are off during migrations, as SQLite's own procedure for
        altering a table says, and checked before the transaction commits."""
        broken = connection.exec_driver_sql("PRAGMA foreign_key_check").fetchall()
        if broken:
            raise StoreError(f"a migration left rows that break a foreign key: {broken[:5]!r}")

    def current_revision(self) -> str | None:
        """The schema revision the database is at (``None``: never upgraded)."""
        with self.engine.connect() as connection:
            return MigrationContext.configure(connection).get_current_revision()

    def head_revision(self) -> str | None:
        """The newest schema revision this package knows."""
        with self.engine.connect() as connection:
            script = ScriptDirectory.from_config(self.alembic_config(connection))
            return script.get_current_head()

    # ----------------------------------------------------------------------- sessions

    @contextmanager
    def _session(self, engine: Engine) -> Iterator[Session]:
        try:
            with Session(engine) as session, session.begin():
                yield session
        except (OperationalError, ProgrammingError) as exc:
            self._check_schema(exc)
            raise

    def _read(self) -> AbstractContextManager[Session]:
        return self._session(self._reader)

    def _new_id(self) -> str:
        return new_id()

    def _write(self) -> AbstractContextManager[Session]:
        return self._session(self._writer)

    def _check_schema(self, error: DBAPIError) -> None:
        """Turn "no such table" and the like into advice when the schema is not at head."""
        try:
            current, head = self.current_revision(), self.head_revision()
        except DBAPIError:
            return  # the database itself is the problem; the original error says so
        if current != head:
            raise SchemaNotReady(
                f"the database {self.url!r} is at schema revision {current} but this version "
                f"of backpackflow needs {head}: call SqlRunStore.upgrade() at start-up"
            ) from error

    @staticmethod
    def _json_text(value: Any, what: str, error: type[StoreError]) -> str:
        try:
            return json.dumps(value, allow_nan=False, ensure_ascii=False)
        except (TypeError, ValueError) as exc:
            raise error(f"{what} is not JSON data: {exc}") from exc

    def _json(self, value: Any, what: str, error: type[StoreError] = InvalidData) -> Any:
        """A run's JSON data to store: U+0000 and lone surrogates become U+FFFD, nesting is
        cut at ``MAX_DEPTH`` (on both backends alike: PostgreSQL cannot hold the characters,
        nothing can send back what is too deep, and SQLite must not differ)."""
        try:
            text = self._json_text(value, what, error)
        except RecursionError:  # deeper than json.dumps goes: cut, then check the rest
            value = make_portable(value, MAX_DEPTH)
            text = self._json_text(value, what, error)
        if may_be_unportable(text) or may_nest_deeper(text):
            return make_portable(value, MAX_DEPTH)
        return value

    def _json_object(self, value: Any, what: str) -> dict[str, Any]:
        """A user's JSON object to store; refused if a string in it cannot be stored."""
        if not isinstance(value, Mapping):
            raise InvalidData(f"{what} must be a JSON object, not {type(value).__name__}")
        document = dict(value)
        try:
            text = self._json_text(document, what, InvalidData)
            suspect = may_be_unportable(text) or may_nest_deeper(text)
        except RecursionError:  # surely too deep: the walk below says where
            suspect = True
        if suspect:
            problems = unportable_problems(document, max_depth=MAX_DEPTH, limit=1)
            if problems:
                raise InvalidData(f"{what}: {problems[0]}")
        return document

    @staticmethod
    def _get_workflow(session: Session, workflow_id: str, *, lock: bool = False) -> Workflow:
        query = select(Workflow).where(Workflow.id == workflow_id)
        workflow = session.scalars(query.with_for_update() if lock else query).one_or_none()
        if workflow is None:
            raise NotFound("workflow", workflow_id)
        return workflow

    @staticmethod
    def _get_run(session: Session, run_id: str, *, lock: bool = False) -> WorkflowRun:
        query = select(WorkflowRun).where(WorkflowRun.id == run_id)
        run = session.scalars(query.with_for_update() if lock else query).one_or_none()
        if run is None:
            raise NotFound("run", run_id)
        return run

    # ----------------------------------------------------------------------- workflows

    def create_workflow(
        self, name: str, graph_json: Mapping[str, Any], description: str | None = None
    ) -> dict[str, Any]:
        """Store a flow config document as version 1 of a new workflow."""
        _check_name(name)
        _check_text("the workflow description", description)
        document = self._json_object(graph_json, "graph_json")
        now = _now()
        workflow = Workflow(
            id=new_id(),
            name=name,
            description=description,
            graph_json=document,
            version=1,
            created_at=now,
            updated_at=now,
        )
        with self._write() as session:
            session.add(workflow)
            session.flush()
            return _workflow_dict(workflow)

    def list_workflows(
        self, limit: int | None = None, *, before: str | None = None
    ) -> list[dict[str, Any]]:
        """Workflows newest first: at most ``limit`` (``None``: all), older than the workflow
        ``before`` (an id: the last of the previous page)."""
        query = select(Workflow).order_by(Workflow.id.desc())
        if limit is not None:
            query = query.limit(_positive("limit", limit))
        if before is not None:
            query = query.where(Workflow.id < before)
        with self._read() as session:
            return [_workflow_dict(w) for w in session.scalars(query)]

    def get_workflow(self, workflow_id: str) -> dict[str, Any]:
        """One workflow; :class:`NotFound` if there is none with this id."""
        with self._one_read() as connection:  # Core: read once per run started
            workflow = connection.execute(
                _SELECT_WORKFLOW, {"workflow_id": workflow_id}
            ).one_or_none()
            if workflow is None:
                raise NotFound("workflow", workflow_id)
            return _workflow_dict(workflow)

    def update_workflow(
        self,
        workflow_id: str,
        *,
        name: str | None = None,
        description: str | None = None,
        graph_json: Mapping[str, Any] | None = None,
        expected_version: int | None = None,
    ) -> dict[str, Any]:
        """Change the given fields and bump ``version``; ``None`` leaves a field as it is.

        ``expected_version`` makes the update conditional (optimistic locking for HTTP
        ``If-Match``): if the stored version differs, :class:`VersionConflict` is raised.
        """
        if name is not None:
            _check_name(name)
        _check_text("the workflow description", description)
        document = None if graph_json is None else self._json_object(graph_json, "graph_json")
        with self._write() as session:
            workflow = self._get_workflow(session, workflow_id, lock=True)
            if expected_version is not None and workflow.version != expected_version:
                raise VersionConflict(
                    f"workflow {workflow_id!r} is at version {workflow.version}, not "
                    f"{expected_version}: reload it and apply the change again"
                )
            if name is None and description is None and document is None:
                return _workflow_dict(workflow)
            if name is not None:
                workflow.name = name
            if description is not None:
                workflow.description = description
            # the version replaced is kept: its runs show the graph they ran
            session.add(
                WorkflowVersion(
                    workflow_id=workflow.id,
                    version=workflow.version,
                    graph_json=workflow.graph_json,
                    created_at=workflow.updated_at,
                )
            )
            if document is not None:
                workflow.graph_json = document
            workflow.version += 1
            workflow.updated_at = _now()
            session.flush()
            return _workflow_dict(workflow)

    def get_workflow_version(self, workflow_id: str, version: int) -> dict[str, Any]:
        """The workflow with the flow document of one of its versions (the current one, or one
        an update replaced); :class:`NotFound` if the workflow or that version is not kept."""
        with self._read() as session:
            workflow = self._get_workflow(session, workflow_id)
            found = _workflow_dict(workflow)
            if version == workflow.version:
                return found
            old = session.get(WorkflowVersion, (workflow_id, version))
            if old is None:
                raise NotFound("workflow version", f"{workflow_id} v{version}")
            found.update(graph_json=old.graph_json, version=old.version)
            found["updated_at"] = _iso(old.created_at)
            return found

    def delete_workflow(self, workflow_id: str) -> None:
        """Delete a workflow and its provider bindings; its runs stay, with no workflow_id."""
        with self._write() as session:
            result = session.execute(delete(Workflow).where(Workflow.id == workflow_id))
            if result.rowcount == 0:  # type: ignore[attr-defined]
                raise NotFound("workflow", workflow_id)

    # ----------------------------------------------------------------------- provider bindings

    def set_provider_binding(
        self,
        workflow_id: str,
        *,
        provider: str,
        model: str,
        node_id: str | None = None,
        temperature: float | None = None,
    ) -> dict[str, Any]:
        """Bind a workflow (``node_id=None``) or one node to a provider and model.

        Replaces the binding for the same (workflow, node) if there is one.
        """
        for field, value in (("provider", provider), ("model", model)):
            if not isinstance(value, str) or not value:
                raise InvalidData(f"a provider binding needs a non-empty {field}, not {value!r}")
        if temperature is not None and _float_field(temperature) is None:
            raise InvalidData(f"temperature must be a finite number, not {temperature!r}")
        with self._write() as session:
            self._get_workflow(session, workflow_id, lock=True)  # serialises replace-or-add
            node = (
                ProviderBinding.node_id.is_(None)
                if node_id is None
                else ProviderBinding.node_id == node_id
            )
            session.execute(
                delete(ProviderBinding).where(ProviderBinding.workflow_id == workflow_id, node)
            )
            binding = ProviderBinding(
                id=new_id(),
                workflow_id=workflow_id,
                node_id=node_id,
                provider=provider,
                model=model,
                temperature=None if temperature is None else float(temperature),
                created_at=_now(),
            )
            session.add(binding)
            session.flush()
            return _binding_dict(binding)

    def list_provider_bindings(self, workflow_id: str) -> list[dict[str, Any]]:
        """A workflow's bindings: the workflow-wide one (node_id None) first, then by node."""
        with self._read() as session:
            self._get_workflow(session, workflow_id)
            rows = session.scalars(
                select(ProviderBinding)
                .where(ProviderBinding.workflow_id == workflow_id)
                .order_by(ProviderBinding.node_id.is_not(None), ProviderBinding.node_id)
            )
            return [_binding_dict(b) for b in rows]

    def delete_provider_binding(self, binding_id: str) -> None:
        """Delete one binding; :class:`NotFound` if there is none with this id."""
        with self._write() as session:
            result = session.execute(
                delete(ProviderBinding).where(ProviderBinding.id == binding_id)
            )
            if result.rowcount == 0:  # type: ignore[attr-defined]
                raise NotFound("provider binding", binding_id)

    # ----------------------------------------------------------------------- API tokens

    def create_token(
        self,
        name: str,
        role: str,
        token_hash: str,
        *,
        hint: str,
        expires_at: datetime | None = None,
    ) -> dict[str, Any]:
        """Record a new API token by the SHA-256 digest of its secret (64 hex characters).

        ``hint`` is the first characters of the secret, shown by listings so a person can
        tell tokens apart. Names are unique among tokens that still work.
        """
        if role not in TOKEN_ROLES:
            raise InvalidData(f"unknown role {role!r}; one of {', '.join(TOKEN_ROLES)}")
        if not isinstance(name, str) or not name.strip() or len(name) > 200:
            raise InvalidData(f"a token needs a name of 1-200 characters, not {name!r}")
        _check_text("the token name", name)
        if not re.fullmatch(r"[0-9a-f]{64}", token_hash):
            raise InvalidData("token_hash must be a SHA-256 digest as 64 lower-case hex digits")
        if expires_at is not None and expires_at.tzinfo is None:
            raise InvalidData("expires_at must be time-zone aware")
        now = _now()
        token = ApiToken(
            id=new_id(),
            name=name,
            role=role,
            token_hash=token_hash,
            hint=hint[:16],
            created_at=now,
            expires_at=expires_at,
        )
        with self._write() as session:
            if self._active_tokens(session, now, name=name):
                raise InvalidData(f"a token named {name!r} exists; revoke it or pick a new name")
            session.add(token)
            session.flush()
            return _token_dict(token, now)

    @staticmethod
    def _active_tokens(session: Session, now: datetime, **where: Any) -> list[ApiToken]:
        query = select(ApiToken).where(
            ApiToken.revoked_at.is_(None),
            (ApiToken.expires_at.is_(None)) | (ApiToken.expires_at > now),
        )
        for column, value in where.items():
            query = query.where(getattr(ApiToken, column) == value)
        return list(session.scalars(query))

    def list_tokens(self, *, include_inactive: bool = False) -> list[dict[str, Any]]:
        """Tokens newest first (those revoked or expired only with ``include_inactive``);
        never their secrets, which the store does not have."""
        now = _now()
        with self._read() as session:
            if include_inactive:
                rows = list(session.scalars(select(ApiToken)))
            else:
                rows = self._active_tokens(session, now)
            rows.sort(key=lambda token: token.id, reverse=True)
            return [_token_dict(token, now) for token in rows]

    def find_token(
        self, *, token_hash: str | None = None, token_id: str | None = None
    ) -> dict[str, Any] | None:
        """The token with this digest (or id) if it still works: not revoked, not expired."""
        if (token_hash is None) == (token_id is None):
            raise InvalidData("find_token takes exactly one of token_hash and token_id")
        where = {"token_hash": token_hash} if token_hash is not None else {"id": token_id}
        now = _now()
        with self._read() as session:
            found = self._active_tokens(session, now, **where)
            return _token_dict(found[0], now) if found else None

    def count_active_tokens(self) -> int:
        """How many tokens work now."""
        with self._read() as session:
            return len(self._active_tokens(session, _now()))

    def touch_token(self, token_id: str, when: datetime | None = None) -> None:
        """Record that a token was used (the service does so at most once a minute)."""
        with self._write() as session:
            token = session.get(ApiToken, token_id)
            if token is not None:
                token.last_used_at = when or _now()

    def revoke_token(self, id_or_name: str) -> dict[str, Any]:
        """Revoke a token named by its id, or by the name of a token that still works."""
        now = _now()
        with self._write() as session:
            token = session.get(ApiToken, id_or_name)
            if token is None:
                named = self._active_tokens(session, now, name=id_or_name)
                if not named:
                    raise NotFound("token", id_or_name)
                token = named[0]
            if token.revoked_at is None:
                token.revoked_at = now
            session.flush()
            return _token_dict(token, now)

    # ----------------------------------------------------------------------- runs

    def create_run(
        self,
        workflow_id: str,
        input_vars: Mapping[str, Any],
        triggered_by: str | None = None,
        *,
        forked_from: Mapping[str, str] | None = None,
    ) -> dict[str, Any]:
        """A new ``queued`` run of the workflow's current version; ``forked_from``
        (``{"run_id", "commit_id"}``): the run and commit it is forked from."""
        variables = self._json_object(input_vars, "input_vars")
        _check_text("triggered_by", triggered_by)
        source = forked_from or {}
        run = SimpleNamespace(
            id=new_id(),
            triggered_by=triggered_by,
            status="queued",
            input_vars=variables,
            created_at=_now(),
            started_at=None,
            finished_at=None,
            total_tokens_input=0,
            total_tokens_output=0,
            total_cost=_ZERO,
            total_latency_ms=None,
            error_summary=None,
            event_count=0,
            last_seq=0,
            outputs=None,
            forked_from_run_id=source.get("run_id"),
            forked_from_commit_id=source.get("commit_id"),
        )
        parameters = {f"b_{name}": value for name, value in vars(run).items()}
        # Core, one statement: the service creates a run per request
        with self._one_statement() as connection:
            workflow = connection.execute(
                _INSERT_RUN_OF_WORKFLOW, {**parameters, "b_workflow_id": workflow_id}
            ).one_or_none()
        if workflow is None:
            raise NotFound("workflow", workflow_id)
        run.workflow_id, run.workflow_name, run.workflow_version = workflow
        return _run_dict(run)

    def _transition(
        self, connection: Connection, run_id: str, status: str, lease_token: int | None
    ) -> SimpleNamespace:
        """The run's row, locked, with its status moved to ``status`` in memory
        (:func:`_save_run` writes it back). Core statements, not the ORM: a run's status
        changes are on every run's path, where a session's unit of work costs more than the
        two statements (``SELECT ... FOR UPDATE``, ``UPDATE``)."""
        if lease_token is not None:  # locks the run's row first, as the line below would
            check_lease_tokens(connection, {run_id: lease_token})
        found = connection.execute(_SELECT_RUN, {"run_id": run_id}).one_or_none()
        if found is None:
            raise NotFound("run", run_id)
        run = SimpleNamespace(**found._mapping)
        allowed = TRANSITIONS.get(run.status, ())
        if status not in allowed:
            raise InvalidTransition(run_id, run.status, status, allowed)
        run.status = status
        return run

    def _move(
        self, run_id: str, status: str, lease_token: int | None, **columns: Any
    ) -> dict[str, Any] | None:
        """The run moved to ``status`` (and ``columns`` set) by one statement, committed on
        its own (:data:`_MOVES`); ``None`` if that statement changed nothing: a run missing,
        in a status it may not leave for this one, under another lease, or without its
        latency yet. The caller then takes the checked path, which raises what applies
        (or makes the change, if the run changed meanwhile). On PostgreSQL one round trip
        instead of four (BEGIN, SELECT ... FOR UPDATE, UPDATE, COMMIT)."""
        leased = lease_token is not None
        if leased and (
            isinstance(lease_token, bool) or not isinstance(lease_token, int) or lease_token < 1
        ):
            return None  # the checked path refuses it
        statement, names = _move_statement(status, leased)
        given = {"b_id": run_id, "b_now": _now(), "b_token": lease_token}
        parameters = {name: value for name, value in given.items() if name in names}
        with self._one_statement() as connection:
            found = connection.execute(statement, {**parameters, **columns}).one_or_none()
        return None if found is None else _run_dict(SimpleNamespace(**found._mapping))

    def mark_running(self, run_id: str, *, lease_token: int | None = None) -> dict[str, Any]:
        """``queued`` (or ``paused``) → ``running``; records ``started_at`` (the first time).
        ``lease_token``: refused with :class:`LeaseLost` unless it is the run's current one
        (as for every status change and event write; see :mod:`~backpackflow_store_sql.leases`)."""
        moved = self._move(run_id, "running", lease_token)
        if moved is not None:
            return moved
        with self._write_connection() as connection:
            run = self._transition(connection, run_id, "running", lease_token)
            run.started_at = run.started_at or _now()
            _save_run(connection, run, "status", "started_at")
            return _run_dict(run)

    def finish_run(
        self,
        run_id: str,
        status: str,
        error_summary: str | None = None,
        outputs: Mapping[str, Any] | None = None,
        *,
        lease_token: int | None = None,
    ) -> dict[str, Any]:
        """End a run: ``running`` → succeeded/failed/canceled, ``queued`` → failed/canceled;
        ``outputs``: the values of the outputs its flow declares.

        Records ``finished_at`` and, unless the runner's ``run_end`` event already gave it,
        ``total_latency_ms`` (from ``started_at``). Flush the run's :class:`EventWriter` first
        so the totals are complete when the caller reads them back.
        """
        if status not in FINAL_STATUSES:
            raise InvalidData(
                f"a run finishes as one of {', '.join(FINAL_STATUSES)}, not {status!r}"
            )
        values: dict[str, Any] = {}
        if error_summary is not None:
            values["error_summary"] = _portable_text(error_summary)
        try:
            if outputs:
                values["outputs"] = self._json(dict(outputs), "outputs", InvalidData)
        except InvalidData:
            pass  # the checked path refuses them, after its own checks, as it always did
        else:
            moved = self._move(run_id, status, lease_token, **values)
            if moved is not None:
                return moved
        with self._write_connection() as connection:
            run = self._transition(connection, run_id, status, lease_token)
            self._close_run(run, _now(), error_summary)
            columns = ["status", "finished_at", "total_latency_ms", "error_summary"]
            if outputs:
                run.outputs = self._json(dict(outputs), "outputs", InvalidData)
                columns.append("outputs")
            _save_run(connection, run, *columns)
            return _run_dict(run)

    def pause_run(self, run_id: str, *, lease_token: int | None = None) -> dict[str, Any]:
        """``running`` → ``paused``: the run waits for an answer (its checkpoint says to what)."""
        moved = self._move(run_id, "paused", lease_token)
        if moved is not None:
            return moved
        with self._write_connection() as connection:
            run = self._transition(connection, run_id, "paused", lease_token)
            _save_run(connection, run, "status")
            return _run_dict(run)

    @staticmethod
    def _close_run(
        run: WorkflowRun | SimpleNamespace, now: datetime, error_summary: str | None
    ) -> None:
        run.finished_at = now
        if run.total_latency_ms is None:
            run.total_latency_ms = _elapsed_ms(run.started_at, now)
        if error_summary is not None:
            run.error_summary = _portable_text(error_summary)

    def get_run(self, run_id: str) -> dict[str, Any]:
        """A run with its totals and ``steps`` (one dict per node execution, by step)."""
        with self._read() as session:
            result = _run_dict(self._get_run(session, run_id))
            steps = session.scalars(
                select(RunStep).where(RunStep.run_id == run_id).order_by(RunStep.step)
            )
            result["steps"] = [_step_dict(s) for s in steps]
            return result

    def list_runs(
        self,
        workflow_id: str | None = None,
        status: str | None = None,
        limit: int = 50,
        *,
        before: str | None = None,
        forked_from: str | None = None,
    ) -> list[dict[str, Any]]:
        """Runs newest first, without steps; ``before`` (a run id) pages to older runs;
        ``forked_from`` (a run id): only the runs forked from that run."""
        _positive("limit", limit)
        if status is not None and status not in RUN_STATUSES:
            raise InvalidData(f"unknown run status {status!r}; one of {', '.join(RUN_STATUSES)}")
        query = runs_query(workflow_id, status, limit, before=before, forked_from=forked_from)
        with self._read() as session:
            return [_run_dict(r) for r in session.scalars(query)]

    def active_runs(self) -> list[dict[str, Any]]:
        """The runs ``queued`` or ``running``, oldest first (at service start: what the last
        process left active)."""
        with self._read() as session:
            runs = session.scalars(
                select(WorkflowRun)
                .where(WorkflowRun.status.in_(ACTIVE_STATUSES))
                .order_by(WorkflowRun.created_at, WorkflowRun.id)
            )
            return [_run_dict(run) for run in runs]

    def recover_interrupted(self, reason: str, run_ids: Sequence[str] | None = None) -> list[str]:
        """Fail the runs a crash left ``queued`` or ``running`` (only ``run_ids`` of them, if
        given); return their ids.

        Their steps still ``running`` fail too, with ``reason`` as the error. Call it once at
        service start, before any run is started: it cannot tell a crashed run from one that
        another live process is executing.
        """
        now = _now()
        with self._write() as session:
            query = select(WorkflowRun).where(WorkflowRun.status.in_(ACTIVE_STATUSES))
            if run_ids is not None:
                query = query.where(WorkflowRun.id.in_(list(run_ids)))
            runs = session.scalars(query.order_by(WorkflowRun.id).with_for_update()).all()
            if not runs:
                return []
            ids = [run.id for run in runs]
            for run in runs:
                run.status = "failed"
                self._close_run(run, now, reason)
            self._fail_running_steps(session, ids, now, reason)
            return ids

    @staticmethod
    def _fail_running_steps(
        session: Session, run_ids: Sequence[str], now: datetime, reason: str
    ) -> None:
        steps = session.scalars(
            select(RunStep).where(RunStep.run_id.in_(list(run_ids)), RunStep.status == "running")
        )
        for step in steps:
            step.status = "failed"
            step.finished_at = now
            step.error = reason

    def resume_counters(self, run_id: str, reason: str, after_step: int) -> tuple[int, int]:
        """Before resuming a run a crash interrupted: its last stored event seq and step number
        (nested steps included), so the resumed run's events follow them. Its steps after
        ``after_step`` (the checkpoint's last position) are work the resume does again: those
        still ``running``, or ``succeeded`` without their result reaching the checkpoint, are
        closed as failed with ``reason``; a step that paused for an answer stays ``paused``,
        closed with ``reason``."""
        with self._write() as session:
            run = self._get_run(session, run_id, lock=True)
            last_step = session.scalar(
                select(func.max(RunStep.step)).where(RunStep.run_id == run_id)
            )
            steps = session.scalars(
                select(RunStep).where(
                    RunStep.run_id == run_id,
                    RunStep.step > after_step,
                    RunStep.status.in_(("running", "succeeded", "paused")),
                )
            )
            now = _now()
            for step in steps:
                if step.status != "paused":
                    step.status = "failed"
                step.finished_at = step.finished_at or now
                step.error = reason
            return int(run.last_seq), int(last_step or 0)

    # ----------------------------------------------------------------------- events

    def _event_row(self, run_id: str, index: int, raw: Any) -> dict[str, Any]:
        """Validate one envelope and turn it into a ``trace_events`` row."""
        source, to_json = raw, getattr(raw, "to_json", None)
        if not isinstance(raw, Mapping) and callable(to_json):
            raw = to_json()  # a kernel BackpackEvent: serialized here, off the run's thread
        portable = getattr(source, "portable_json", False) is True
        if not isinstance(raw, Mapping):
            raise InvalidEvent(f"event #{index} of the batch is not a JSON object: {raw!r:.80}")
        event_id = raw.get("id")
        if (
            not isinstance(event_id, str)
            or not 0 < len(event_id) <= 64
            or UNPORTABLE.search(event_id)
        ):
            raise InvalidEvent(f"event #{index} of the batch needs an id (1-64 characters)")
        where = f"event {event_id!r} (#{index} of the batch)"

        def text(key: str) -> str | None:
            value = raw.get(key)
            if value is not None and not isinstance(value, str):
                raise InvalidEvent(f"{where}: {key} must be a string, not {value!r:.80}")
            return _portable_text(value)

        seq, step, ts = raw.get("seq"), raw.get("step"), raw.get("timestamp")
        if isinstance(seq, bool) or not isinstance(seq, int) or seq < 1:
            raise InvalidEvent(f"{where}: seq must be an integer >= 1, not {seq!r}")
        if step is not None and (isinstance(step, bool) or not isinstance(step, int)):
            raise InvalidEvent(f"{where}: step must be an integer or null, not {step!r}")
        parent = raw.get("parent_step")
        if parent is not None and (
            isinstance(parent, bool) or not isinstance(parent, int) or step is None
        ):
            raise InvalidEvent(
                f"{where}: parent_step must be an integer on an event of a step, or absent, "
                f"not {parent!r}"
            )
        if _float_field(ts) is None:
            raise InvalidEvent(f"{where}: timestamp must be finite epoch seconds, not {ts!r}")
        if raw.get("run_id") not in (None, run_id):
            raise InvalidEvent(f"{where} belongs to run {raw['run_id']!r}, not {run_id!r}")
        event_type, node_id = text("type"), text("node_id")
        event_type = None if event_type is None else str.__str__(event_type)  # enum -> its str
        if not event_type:
            raise InvalidEvent(f"{where}: type must be a non-empty string")
        if step is not None and not node_id:
            raise InvalidEvent(f"{where}: an event of step {step} needs a node_id")
        return {
            "id": event_id,
            "run_id": run_id,
            "seq": seq,
            "step": step,
            "ts": float(ts),  # type: ignore[arg-type]
            "type": event_type,
            "node_id": node_id,
            "node_name": text("node_name"),
            "namespace": text("namespace"),
            # an event that vouches for its JSON (the service's, built once for its clients
            # and made portable then) is not serialized once more only to be checked
            "payload": raw.get("payload", {})
            if portable
            else self._json(raw.get("payload", {}), f"{where}: payload", InvalidEvent),
            "parent_step": parent,
        }

    def append_events(
        self,
        run_id: str,
        events: Sequence[EventDocument],
        *,
        checkpoint: Sequence[bytes | str] = (),
        lease_token: int | None = None,
    ) -> None:
        """Store a batch of trace events of one run in one transaction.

        An event is the envelope as a JSON object, or anything with a ``to_json()`` giving one
        (the kernel's ``BackpackEvent``). ``checkpoint``: encoded checkpoint records of the run
        stored in the same transaction (see :func:`insert_checkpoint_lines`).

        Also derives the run's steps and totals from them (see :meth:`_derive`). Events whose
        id is already stored are skipped, so a retried batch neither duplicates rows nor counts
        twice. An event reusing another event's ``seq`` raises :class:`EventConflict`; a
        malformed one :class:`InvalidEvent`; in both cases nothing of the batch is stored.
        ``lease_token``: the batch is refused (:class:`LeaseLost`, nothing stored) unless it is
        the run's current fencing token (see :mod:`~backpackflow_store_sql.leases`).
        """
        ordered = self._checked_rows(run_id, events)
        if not ordered and not checkpoint:
            return
        try:
            with self._write_connection() as connection:
                if lease_token is not None:
                    check_lease_tokens(connection, {run_id: lease_token})
                if ordered:
                    self._store_rows(connection, {run_id: ordered})
                insert_checkpoint_lines(connection, {run_id: checkpoint})
        except IntegrityError as exc:
            # a seq of the run already belongs to another event (its unique index refused
            # the batch, which rolled back); say which, reading the store afresh
            self._explain_seq_conflict(run_id, ordered)
            raise EventConflict(f"run {run_id!r}: {_one_line(exc)}") from exc

    def append_many(
        self,
        batches: Mapping[str, Sequence[EventDocument]],
        *,
        checkpoints: Mapping[str, Sequence[bytes | str]] | None = None,
        lease_tokens: Mapping[str, int] | None = None,
    ) -> None:
        """Store the events of several runs in one transaction, as :meth:`append_events` does
        for each, with one statement per table for all of them (the event writer's batches
        hold many runs' events), and ``checkpoints`` (encoded records by run) with them. Any
        refusal refuses everything; :meth:`append_events` per run says which run and event.
        ``lease_tokens``: fencing tokens by run, for the runs written under a lease; one stale
        token refuses the whole batch (:class:`LeaseLost`)."""
        checked = {run_id: self._checked_rows(run_id, events) for run_id, events in batches.items()}
        checked = {run_id: rows for run_id, rows in checked.items() if rows}
        if not checked and not checkpoints:
            return
        try:
            with self._write_connection() as connection:
                check_lease_tokens(connection, lease_tokens or {})
                if checked:
                    self._store_rows(connection, checked)
                if checkpoints:
                    insert_checkpoint_lines(connection, checkpoints)
        except IntegrityError as exc:
            raise EventConflict(f"a batch of {len(checked)} runs: {_one_line(exc)}") from exc

    def _checked_rows(self, run_id: str, events: Sequence[EventDocument]) -> list[dict[str, Any]]:
        """The batch's rows, validated, once per id, in seq order (two ids, one seq: refused)."""
        rows: dict[str, dict[str, Any]] = {}
        for index, raw in enumerate(events):
            row = self._event_row(run_id, index, raw)
            rows.setdefault(row["id"], row)  # a batch repeating an event stores it once
        ordered = sorted(rows.values(), key=lambda r: r["seq"])
        for previous, row in itertools.pairwise(ordered):
            if previous["seq"] == row["seq"]:
                raise EventConflict(
                    f"events {previous['id']!r} and {row['id']!r} of run {run_id!r} "
                    f"both have seq {row['seq']}"
                )
        return ordered

    def _store_rows(self, connection: Connection, checked: dict[str, list[dict[str, Any]]]) -> None:
        """Insert the runs' new events and derive their steps and totals: a fixed number of
        statements whatever the number of runs and events."""
        run_ids = sorted(checked)
        runs = _lock_runs(connection, run_ids)  # batches of the same run serialise here
        everything = [row for run_id in run_ids for row in checked[run_id]]
        # One statement for all the events: rows whose id is stored are skipped by the
        # database and the ids of those inserted come back. Only a batch with skipped ids (a
        # retry) looks further, at who owns them.
        if self._insert_events is not None:
            statement, document = self._insert_events, _rows_document(everything)
            inserted = set(connection.execute(statement, document).scalars())
        else:
            inserted = self._insert_sqlite_events(connection, everything)
        batches = []
        for run_id in run_ids:
            rows = checked[run_id]
            if len(inserted) < len(everything):
                skipped = [row["id"] for row in rows if row["id"] not in inserted]
                if skipped:
                    self._check_owners(connection, run_id, skipped)
                    rows = [row for row in rows if row["id"] in inserted]
            if rows:
                batches.append(_Batch(runs[run_id], rows))
        if batches:
            _load_batches(connection, batches)
            for batch in batches:
                self._derive(batch, batch.rows)
            _save_batches(connection, batches)

    @contextmanager
    def _transaction(self, engine: Engine) -> Iterator[Connection]:
        """A transaction on a Core connection (errors explained as :meth:`_session` does): the
        paths of every run, where the ORM's unit of work would cost more than the SQL itself."""
        try:
            with engine.begin() as connection:
                yield connection
        except (OperationalError, ProgrammingError) as exc:
            self._check_schema(exc)
            raise

    def _write_connection(self) -> AbstractContextManager[Connection]:
        return self._transaction(self._writer)

    def _one_statement(self) -> AbstractContextManager[Connection]:
        """A connection for one write that needs no transaction around it (a single
        statement is atomic and sees one snapshot): on PostgreSQL in autocommit mode, so it
        costs one round trip, not three (BEGIN, the statement, COMMIT); on SQLite a write
        transaction, as every write there."""
        return self._transaction(self._autocommit if self._pg else self._writer)

    def _one_read(self) -> AbstractContextManager[Connection]:
        """A connection for one read (one statement sees one snapshot): on PostgreSQL in
        autocommit mode, one round trip instead of three, as :meth:`_one_statement`."""
        return self._transaction(self._autocommit if self._pg else self._reader)

    def _check_owners(self, connection: Connection, run_id: str, ids: list[str]) -> None:
        """Ids of the batch already stored must be this run's (a retried batch)."""
        for chunk in _chunks(ids):
            stored = connection.execute(
                select(TraceEvent.id, TraceEvent.run_id).where(TraceEvent.id.in_(chunk))
            )
            for event_id, owner in stored:
                if owner != run_id:
                    raise EventConflict(
                        f"event id {event_id!r} is already stored for run {owner!r}, not {run_id!r}"
                    )

    def _explain_seq_conflict(self, run_id: str, rows: list[dict[str, Any]]) -> None:
        """Raise :class:`EventConflict` naming the stored event whose seq a new one reuses."""
        by_seq = {row["seq"]: row["id"] for row in rows}
        with self._read() as session:
            for chunk in _chunks(list(by_seq)):
                taken = session.execute(
                    select(TraceEvent.seq, TraceEvent.id).where(
                        TraceEvent.run_id == run_id, TraceEvent.seq.in_(chunk)
                    )
                )
                for seq, event_id in taken:
                    if by_seq[seq] != event_id:
                        raise EventConflict(
                            f"seq {seq} of run {run_id!r} already belongs to event "
                            f"{event_id!r}; an event with a new id cannot reuse it"
                        )

    def _derive(self, batch: _Batch, rows: list[dict[str, Any]]) -> None:
        """Update ``run_steps`` and the run totals from newly stored events (in seq order).

        ``node_start`` opens the step, ``node_end`` succeeds it (unless an ``error`` failed
        it), ``exec_complete`` sets attempts, ``retry`` counts, ``llm_response`` adds tokens and
        cost to the step and the run, ``cache_hit`` marks the step, ``run_end`` records the
        runner's duration. A step event that arrives before its ``node_start`` opens the step
        too, so the result does not depend on how batches were cut.
        """
        run, steps = batch.run, batch.steps
        for row in rows:
            payload = row["payload"] if isinstance(row["payload"], dict) else {}
            when = datetime.fromtimestamp(row["ts"], UTC)
            kind = row["type"]
            step = None
            if row["step"] is not None:
                step = steps.get(row["step"])
                if step is None:
                    step = steps[row["step"]] = batch.open_step(row, when)
                step.node_name = step.node_name or row["node_name"]
                step.namespace = step.namespace or row["namespace"]
            if kind == "run_end":
                duration = _float_field(payload.get("duration_ms"))
                if duration is not None:
                    run.total_latency_ms = duration
            elif kind == "llm_response":
                self._add_usage(run, step, row, payload)
                self._add_provider_cost(batch, payload)
            elif step is None:
                continue
            elif kind == "node_start":
                step.started_at = when
                node_type = payload.get("node_type")
                step.node_type = node_type if isinstance(node_type, str) else step.node_type
                node_name = payload.get("node_name")
                if isinstance(node_name, str) and not step.node_name:
                    step.node_name = node_name
            elif kind == "node_end":
                if step.status not in ("failed", "canceled"):
                    step.status = "succeeded"
                step.finished_at = when
                step.latency_ms = _float_field(payload.get("duration_ms"))
                action = payload.get("action")
                step.action = None if action is None else str(action)
            elif kind == "error":
                error_type = payload.get("error_type")
                # a step stopped by a cancel did not fail (0006 added the status)
                canceled = error_type in ("CancelledError", "RunCanceled")
                step.status = "canceled" if canceled else "failed"
                step.finished_at = step.finished_at or when
                message = str(payload.get("error") or "")
                step.error = f"{error_type}: {message}" if error_type else message or "error"
            elif kind == "custom" and payload.get("name") == "interrupt":
                step.status = "paused"  # its node asked for an answer (0009 added the status)
            elif kind == "exec_complete":
                attempts = _int_field(payload.get("attempts"))
                if attempts is not None:
                    step.attempts = attempts
            elif kind == "retry":
                step.retries += 1
            elif kind == "cache_hit":
                step.cache_hit = True
            elif row["parent_step"] is not None:
                _derive_nested(step, kind, payload, when)
        run.event_count += len(rows)
        run.last_seq = max(run.last_seq, rows[-1]["seq"])

    @staticmethod
    def _add_usage(
        run: Any, step: Any | None, row: dict[str, Any], payload: dict[str, Any]
    ) -> None:
        usage = payload.get("usage")
        usage = usage if isinstance(usage, dict) else {}
        tokens_in = _int_field(usage.get("input_tokens", 0))
        tokens_out = _int_field(usage.get("output_tokens", 0))
        cost = _decimal_field(payload.get("cost"))
        for name, parsed, value in (
            ("usage.input_tokens", tokens_in, usage.get("input_tokens")),
            ("usage.output_tokens", tokens_out, usage.get("output_tokens")),
            ("cost", cost, payload.get("cost")),
        ):
            if parsed is None and value is not None:
                log.warning(
                    "run %s: llm_response %s has an unusable %s %r; it is stored but not counted",
                    run.id,
                    row["id"],
                    name,
                    value,
                )
        try:
            if tokens_in is not None:
                run.total_tokens_input += tokens_in
            if tokens_out is not None:
                run.total_tokens_output += tokens_out
            if cost is not None:
                run.total_cost = _add(run.total_cost, cost)
            if step is not None:
                step.tokens_input += tokens_in or 0
                step.tokens_output += tokens_out or 0
                step.cost = _add(step.cost, cost or _ZERO)
        except decimal.Inexact as exc:
            raise InvalidEvent(
                f"event {row['id']!r}: cost {payload.get('cost')!r} has too many digits to add "
                "exactly"
            ) from exc

    @staticmethod
    def _add_provider_cost(batch: _Batch, payload: dict[str, Any]) -> None:
        """Add an ``llm_response``'s cost and tokens to the run's row of its provider (what
        provider budgets sum); unusable numbers count as in the run totals: not at all."""
        row = batch.provider(_provider_name(payload))
        usage = payload.get("usage")
        usage = usage if isinstance(usage, dict) else {}
        row.tokens_input += _int_field(usage.get("input_tokens", 0)) or 0
        row.tokens_output += _int_field(usage.get("output_tokens", 0)) or 0
        cost = _decimal_field(payload.get("cost"))
        if cost is not None:
            row.cost = _add(row.cost, cost)

    def get_trace(
        self,
        run_id: str,
        *,
        after_seq: int = 0,
        limit: int = 100,
        step: int | None = None,
        types: Sequence[str] | None = None,
    ) -> list[dict[str, Any]]:
        """Up to ``limit`` events with ``seq > after_seq``, by seq, as envelopes.

        Page through a trace (or resume an SSE stream from ``Last-Event-ID``) by passing the
        last ``seq`` seen as ``after_seq``. ``step`` keeps the events of that step only (a
        step's detail), ``types`` those of the named types (a run diff reads prompts and
        outputs); both walk the run's events in the ``(run_id, seq)`` index.
        """
        _positive("after_seq", after_seq, 0)
        _positive("limit", limit)
        query = select(TraceEvent).where(TraceEvent.run_id == run_id, TraceEvent.seq > after_seq)
        if step is not None:
            query = query.where(TraceEvent.step == step)
        if types is not None:
            query = query.where(TraceEvent.type.in_(list(types)))
        with self._read() as session:
            rows = session.scalars(query.order_by(TraceEvent.seq).limit(limit)).all()
            if not rows:
                self._get_run(session, run_id)  # an empty page, or no such run?
            return [_event_dict(e) for e in rows]

    def count_events(self, run_id: str) -> int:
        """How many events the run has stored."""
        with self._read() as session:
            return self._get_run(session, run_id).event_count
