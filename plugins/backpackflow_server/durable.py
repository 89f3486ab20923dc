"""Durable runs in the service: checkpoints written with the trace events, resumed after a crash.

The kernel's :class:`~backpackflow.Checkpointer` is called synchronously by the run's task (at
node boundaries, or per commit): in the service that task runs on the event loop, which must
never wait on SQL. :class:`RunCheckpointer` therefore hands the records to the run's
:class:`~backpackflow_store_sql.EventWriter` (``put_checkpoint``: constant time), which stores
them in the transaction of the events queued before them. Whatever a crash leaves in the
database is a prefix of the run's events and a prefix of its checkpoint, consistent with each
other: a stored position never runs ahead of the events that led to it.

A run resumes (:func:`resume_plan`) when its checkpoint folds cleanly, was written by the same
flow graph (the checkpoint's fingerprint) and has not ended. Its events go on after the highest
stored seq and its steps after the highest stored step (nested steps included), so the trace
stays contiguous: the node that was in flight keeps its stored events (its step is closed as
failed, saying why: so is a step that ended but whose position a crash kept from the
checkpoint) and runs again as a new step.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping, Sequence
from typing import Any, Protocol

import attrs

from backpackflow import Checkpoint, Checkpointer, CheckpointError, Flow
from backpackflow.config import value_problems
from backpackflow.runner import encode_records, fingerprint
from backpackflow_store_sql import EventWriter, WriterClosed

log = logging.getLogger("backpackflow_server.durable")

#: Why a step the service stopped in (or before its result was checkpointed) was closed: its
#: node runs again as a later step.
RERUN_REASON = (
    "the service stopped before this step's result was checkpointed; the node runs again as a "
    "later step"
)
#: Why the step that paused for an answer was closed: its node runs again with the answer.
ANSWERED_REASON = "the node paused for an answer; it runs again with the answer as a later step"


class CheckpointSource(Protocol):
    """What resuming needs of the run store (:class:`~backpackflow_store_sql.SqlRunStore`)."""

    def records(self, run_id: str) -> list[dict[str, Any]] | None: ...
    def run_ids(self) -> list[str]: ...
    def delete(self, run_id: str) -> None: ...
    def resume_counters(self, run_id: str, reason: str, after_step: int) -> tuple[int, int]: ...


class RunCheckpointer(Checkpointer):
    """One service run's checkpointer: appends go through the run's event writer (never
    blocking the event loop), reads come from the store.

    ``records`` of its own run are the ones it was made with (loaded off the loop before the
    run started or resumed; ``None`` for a new run), so the kernel's ``open_run`` reads no SQL
    on the loop. ``last_seq`` / ``last_step``: the highest event seq and step number stored for
    the run; a resume numbers on after them."""

    def __init__(
        self,
        store: CheckpointSource,
        writer: EventWriter,
        run_id: str,
        records: Sequence[Mapping[str, Any]] | None = None,
        *,
        last_seq: int = 0,
        last_step: int = 0,
    ) -> None:
        self._store = store
        self._writer = writer
        self.run_id = run_id
        self._records = None if records is None else [dict(r) for r in records]
        self.last_seq = last_seq
        self.last_step = last_step

    def append(self, run_id: str, records: Sequence[Mapping[str, Any]]) -> None:
        if not records:
            return
        try:
            self._writer.put_checkpoint(run_id, encode_records(records))
        except WriterClosed:  # only after shutdown: the run cannot resume past this point
            log.error("run %s: the event writer is closed; checkpoint records not stored", run_id)

    def records(self, run_id: str) -> list[dict[str, Any]] | None:
        if run_id == self.run_id:
            return None if self._records is None else [dict(r) for r in self._records]
        return self._store.records(run_id)  # blocking: call it off the event loop

    def run_ids(self) -> list[str]:
        return self._store.run_ids()

    def delete(self, run_id: str) -> None:
        self._store.delete(run_id)

    def load(self, run_id: str) -> Checkpoint | None:
        checkpoint = super().load(run_id)
        if checkpoint is not None and run_id == self.run_id:
            checkpoint.event_seq = max(checkpoint.event_seq, self.last_seq)
            checkpoint.last_step = max(checkpoint.last_step, self.last_step)
        return checkpoint


class CannotResume(Exception):
    """A run's checkpoint cannot be resumed; the message says why (for ``error_summary``)."""


@attrs.define
class ResumePlan:
    """What resuming one run needs: its records, how its checkpoint stands, and (once
    :meth:`number_on` ran) the counters to number on from."""

    records: list[dict[str, Any]]
    status: str
    error: str | None
    #: What the run asked when it paused (prompt, schema, node id, deadline), else None.
    paused: dict[str, Any] | None
    #: The step counter at the checkpoint's last position.
    after_step: int
    last_seq: int = 0
    last_step: int = 0

    def number_on(self, store: CheckpointSource) -> None:
        """Close the steps the resume runs again and read the counters (blocking)."""
        reason = ANSWERED_REASON if self.status == "paused" else RERUN_REASON
        self.last_seq, self.last_step = store.resume_counters(
            self.records[0]["run_id"], reason, self.after_step
        )

    def answer_problems(self, answer: Any, given: bool) -> list[str]:
        """Why ``answer`` cannot resume this paused run (``"$.answer: ..."``), if it cannot."""
        paused = self.paused or {}
        if not given:
            deadline = paused.get("deadline")
            if deadline is not None and time.time() >= deadline:
                return []  # the node takes its timeout path
            return [
                f"$.answer: required: the run waits at node {paused.get('node_id')!r} for an "
                f"answer to {paused.get('prompt')!r}"
            ]
        return value_problems(paused.get("schema", True), answer, "$.answer")


def resume_plan(store: CheckpointSource, flow: Flow, run_id: str) -> ResumePlan:
    """Read run ``run_id``'s checkpoint and check it against ``flow`` (blocking: run it off
    the loop).

    Raises :class:`CannotResume` when there is no checkpoint, it is damaged, or the flow's
    graph changed since it was written. A checkpoint that ended (the process stopped between
    the run's end and recording it) comes back with its ``status`` and ``error``: the caller
    records that end instead of resuming."""
    try:
        records = store.records(run_id)
        if records is None:
            raise CannotResume("it has no checkpoint to resume from")
        checkpoint = Checkpoint.fold(run_id, records)
    except CheckpointError as exc:
        raise CannotResume(f"its checkpoint is damaged ({exc})") from None
    if checkpoint.fingerprint != fingerprint(flow):
        raise CannotResume(
            "its workflow's flow changed since the run was checkpointed (its nodes, node types "
            "or edges differ), so it cannot resume"
        )
    after_step = checkpoint.last_step or int(checkpoint.position["node_count"])
    return ResumePlan(records, checkpoint.status, checkpoint.error, checkpoint.paused, after_step)
