"""Run leases with fencing tokens: the store's building block for one driver per run.

A process that wants to drive a run (a worker) *acquires* its lease: it gets it only if no one
holds it or the holder's lease has expired, and it gets the run's next **fencing token** (the
token grows by one on every acquisition and is never reset, so a later holder always has a
higher token). It *renews* the lease (a heartbeat) before it expires and *releases* it when done.

Expiry only decides when another process may take a run over. Whose writes count is decided by
the token: every write of a run may carry the token it was made under (``lease_token=`` on
:meth:`~backpackflow_store_sql.SqlRunStore.append_events` and the status changes,
``lease_tokens=`` on ``append_many``), and the store compares it with the run's current token
inside the write's own transaction, on the run's row locked for it (``SELECT ... FOR UPDATE`` on
PostgreSQL; SQLite runs one writer at a time; a status change is one ``UPDATE`` whose ``WHERE``
holds the check, the row locked by the statement itself). A stale token raises
:class:`LeaseLost` and nothing of the write is stored. So a worker that paused (GC, network
partition) past its expiry while another took over cannot write over the new holder's work,
even if it has not noticed. A holder whose lease expired but was not taken over still holds the
current token: its writes and renewals go through (nobody else has written). After a release,
writes with its token are refused too.

**Clock**: expiry is measured on the database's clock, read in the same transaction after the
row is locked: ``clock_timestamp()`` on PostgreSQL, so that workers on hosts with skewed clocks
agree on when a lease expires; on SQLite the database is a file of the store's host, whose clock
(the one SQLite's own ``CURRENT_TIMESTAMP`` reads) is the database's.

Writes without a token behave as before (the in-process executor does not use leases).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from contextlib import AbstractContextManager
from datetime import UTC, datetime, timedelta
from typing import Any

import attrs
from sqlalchemy import Connection, Engine, Table, bindparam, func, select

from .errors import InvalidData, LeaseLost, NotFound
from .models import WorkflowRun

_RUNS: Table = WorkflowRun.__table__  # type: ignore[assignment]
_READ_LEASES = (
    select(_RUNS.c.id, _RUNS.c.lease_owner, _RUNS.c.lease_token, _RUNS.c.lease_expires_at)
    .where(_RUNS.c.id.in_(bindparam("run_ids", expanding=True)))
    .order_by(_RUNS.c.id)  # rows locked in one order, as the event batches lock them
)
_SELECT_LEASES = _READ_LEASES.with_for_update()
_UPDATE_LEASE = _RUNS.update().where(_RUNS.c.id == bindparam("b_id"))
#: Longest lease a caller may ask for: a day (a worker heartbeats far more often).
MAX_TTL_SECONDS = 86_400.0


@attrs.frozen
class Lease:
    """A run's lease as acquired or renewed: the fencing ``token`` to carry on every write."""

    run_id: str
    owner: str
    token: int
    expires_at: datetime


def _ttl(ttl: float) -> timedelta:
    if (
        isinstance(ttl, bool)
        or not isinstance(ttl, int | float)
        or not math.isfinite(ttl)
        or not 0 < ttl <= MAX_TTL_SECONDS
    ):
        raise InvalidData(f"a lease ttl is seconds > 0 and <= {MAX_TTL_SECONDS:g}, not {ttl!r}")
    return timedelta(seconds=ttl)


def _owner(owner: str) -> str:
    if not isinstance(owner, str) or not owner.strip() or len(owner) > 200 or "\x00" in owner:
        raise InvalidData(
            f"a lease owner is a non-empty string of at most 200 characters, not {owner!r}"
        )
    return owner


def _token(token: int) -> int:
    if isinstance(token, bool) or not isinstance(token, int) or token < 1:
        raise InvalidData(f"a lease token is an integer >= 1 (from acquire_lease), not {token!r}")
    return token


def lock_leases(connection: Connection, run_ids: list[str]) -> dict[str, Any]:
    """The runs' lease columns, their rows locked for the rest of the transaction."""
    rows = {row.id: row for row in connection.execute(_SELECT_LEASES, {"run_ids": run_ids})}
    for run_id in run_ids:
        if run_id not in rows:
            raise NotFound("run", run_id)
    return rows


def check_lease_tokens(connection: Connection, tokens: Mapping[str, int]) -> dict[str, Any]:
    """Raise :class:`LeaseLost` unless each run's current fencing token is the one given and
    its lease is not released; the rows stay locked until the caller's transaction ends, so the
    check holds for its writes. Returns the locked rows' lease columns by run."""
    if not tokens:
        return {}
    given = {run_id: _token(token) for run_id, token in tokens.items()}
    rows = lock_leases(connection, sorted(given))
    for run_id, token in given.items():
        row = rows[run_id]
        if row.lease_token != token or row.lease_owner is None:
            raise LeaseLost(run_id, token, row.lease_token, row.lease_owner)
    return rows


class LeaseStore:
    """Acquire, renew, release and read run leases (mixed into the SQL run store)."""

    _pg: bool  # set by the store
    _reader: Engine  # set by the store

    def _write_connection(self) -> AbstractContextManager[Connection]:  # provided by the store
        raise NotImplementedError

    def _db_now(self, connection: Connection) -> datetime:
        """The database's clock (see the module docstring)."""
        if self._pg:
            now: datetime = connection.execute(select(func.clock_timestamp())).scalar_one()
            return now.astimezone(UTC)
        return datetime.now(UTC)

    def acquire_lease(self, run_id: str, owner: str, ttl: float) -> Lease | None:
        """Take run ``run_id``'s lease for ``ttl`` seconds if it is free or expired, with the
        run's next fencing token; ``None`` if another holds it (an unexpired lease, whoever
        holds it, even ``owner``: a holder renews instead). Raises :class:`NotFound`."""
        owner, span = _owner(owner), _ttl(ttl)
        with self._write_connection() as connection:
            row = lock_leases(connection, [run_id])[run_id]
            now = self._db_now(connection)
            if row.lease_owner is not None and row.lease_expires_at > now:
                return None
            lease = Lease(run_id, owner, row.lease_token + 1, now + span)
            self._save(connection, lease)
            return lease

    def renew_lease(self, run_id: str, token: int, ttl: float) -> Lease:
        """The heartbeat: the holder of the current ``token`` extends its lease to ``ttl``
        seconds from now. Raises :class:`LeaseLost` if the token is not current or the lease
        was released."""
        token, span = _token(token), _ttl(ttl)
        with self._write_connection() as connection:
            row = self._held(connection, run_id, token)
            lease = Lease(run_id, row.lease_owner, token, self._db_now(connection) + span)
            self._save(connection, lease)
            return lease

    def release_lease(self, run_id: str, token: int) -> None:
        """Give the lease up (the run may be acquired at once); the token is kept, so the next
        holder's is higher. Raises :class:`LeaseLost` if ``token`` is not the holder's."""
        token = _token(token)
        with self._write_connection() as connection:
            self._held(connection, run_id, token)
            connection.execute(
                _UPDATE_LEASE, {"b_id": run_id, "lease_owner": None, "lease_expires_at": None}
            )

    def get_lease(self, run_id: str) -> dict[str, Any]:
        """The run's lease as stored: ``owner`` (``None`` when free), ``token`` (the last one
        given out, 0 if never), ``expires_at`` (ISO 8601) and ``expired`` (by the database's
        clock)."""
        with self._reader.connect() as connection:
            rows = list(connection.execute(_READ_LEASES, {"run_ids": [run_id]}))
            if not rows:
                raise NotFound("run", run_id)
            row, now = rows[0], self._db_now(connection)
        expires = row.lease_expires_at
        return {
            "run_id": run_id,
            "owner": row.lease_owner,
            "token": row.lease_token,
            "expires_at": None if expires is None else expires.isoformat(),
            "expired": row.lease_owner is not None and expires <= now,
        }

    @staticmethod
    def _held(connection: Connection, run_id: str, token: int) -> Any:
        return check_lease_tokens(connection, {run_id: token})[run_id]

    @staticmethod
    def _save(connection: Connection, lease: Lease) -> None:
        connection.execute(
            _UPDATE_LEASE,
            {
                "b_id": lease.run_id,
                "lease_owner": lease.owner,
                "lease_token": lease.token,
                "lease_expires_at": lease.expires_at,
            },
        )


__all__ = ["MAX_TTL_SECONDS", "Lease", "LeaseStore", "check_lease_tokens", "lock_leases"]
