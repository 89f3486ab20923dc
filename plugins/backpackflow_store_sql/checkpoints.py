"""The store as a :class:`~backpackflow.Checkpointer`: durable runs' checkpoints in the
``run_checkpoints`` table (SQLite or PostgreSQL).

A mixin of :class:`~backpackflow_store_sql.SqlRunStore` (it uses the store's sessions).
:meth:`CheckpointStore.append` writes records at once, one ``INSERT`` of one or a few rows per
call (a script's runs). The service writes them through its event writer instead: they ride in
the transaction of the run's trace events (:meth:`SqlRunStore.append_many` with
``checkpoints=``, :func:`insert_checkpoint_lines`), so stored events and checkpoint are always
a prefix of what the run produced, in order. Records are read back only to resume or fork.
Rows are JSON text exactly as the kernel wrote it (append-only; ordered by an autoincrement id,
so concurrent writers never collide on an ordering key).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from contextlib import AbstractContextManager
from typing import Any

from sqlalchemy import Connection, Table, delete, insert, select
from sqlalchemy.orm import Session

from backpackflow import Checkpointer, CheckpointError
from backpackflow.runner import decode_record, encode_records

from .models import RunCheckpoint

_CHECKPOINTS: Table = RunCheckpoint.__table__  # type: ignore[assignment]


def insert_checkpoint_lines(
    connection: Connection, checkpoints: Mapping[str, Sequence[bytes | str]]
) -> None:
    """Insert already encoded checkpoint records (:func:`~backpackflow.runner.encode_records`)
    of several runs in the caller's transaction, each run's in the order given."""
    rows = [
        {"run_id": run_id, "record": line.decode() if isinstance(line, bytes) else line}
        for run_id, lines in checkpoints.items()
        for line in lines
    ]
    if rows:
        connection.execute(insert(_CHECKPOINTS), rows)


class CheckpointStore(Checkpointer):
    """Implements the kernel's :class:`~backpackflow.Checkpointer` on the store's tables."""

    # provided by SqlRunStore
    def _read(self) -> AbstractContextManager[Session]:
        raise NotImplementedError

    def _write(self) -> AbstractContextManager[Session]:
        raise NotImplementedError

    def append(self, run_id: str, records: Sequence[Mapping[str, Any]]) -> None:
        if not records:
            return
        lines = encode_records(records)
        with self._write() as session:
            session.execute(
                insert(RunCheckpoint),
                [{"run_id": run_id, "record": line.decode()} for line in lines],
            )

    def records(self, run_id: str) -> list[dict[str, Any]] | None:
        with self._read() as session:
            lines = session.scalars(
                select(RunCheckpoint.record)
                .where(RunCheckpoint.run_id == run_id)
                .order_by(RunCheckpoint.id)
            ).all()
        if not lines:
            return None
        try:
            return [decode_record(line) for line in lines]
        except (ValueError, CheckpointError) as exc:
            raise CheckpointError(
                f"run {run_id!r}: a stored checkpoint record is damaged: {exc}"
            ) from None

    def run_ids(self) -> list[str]:
        with self._read() as session:
            return list(session.scalars(select(RunCheckpoint.run_id).distinct()).all())

    def delete(self, run_id: str) -> None:
        with self._write() as session:
            session.execute(delete(RunCheckpoint).where(RunCheckpoint.run_id == run_id))

    def checkpoint_size(self, run_id: str) -> int:
        """Bytes of run ``run_id``'s stored records (their JSON text)."""
        with self._read() as session:
            lines = session.scalars(
                select(RunCheckpoint.record).where(RunCheckpoint.run_id == run_id)
            ).all()
        return sum(len(line.encode()) for line in lines)
