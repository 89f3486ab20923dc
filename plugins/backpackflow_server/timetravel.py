"""Time travel over the API: a run's Backpack commits, its state at any commit, the diff
between two commits, and forks (a new run from a commit, with a state patch and new inputs).

Everything here reads the run's **checkpoint** in the store (the kernel's
:class:`~backpackflow.Checkpointer` records: the Backpack's commits as deltas and the
runner's positions), folded by :meth:`~backpackflow.Checkpoint.fold`; nothing is read from
the trace. A run without a checkpoint (one that ran before checkpoints, or a parallel flow,
which the runner does not checkpoint) answers 404 saying so.

Values leave the service with the secrets of the run's workflow masked, as its events and
outputs are: the values of every environment variable flows may read (the operator's
allowlist, so a ``${NAME}`` of any version of the flow is covered) and the secrets of the
workflow's current version (secret-named options written into it).

A fork is the kernel's :func:`~backpackflow.runner.fork_run` writing the new run's checkpoint
into the store, then :meth:`RunManager.start_existing` starting it like any run, from that
checkpoint.
It refuses a workflow whose graph (nodes, node types, edges) changed since the source run: a
checkpoint resumes only into the graph it was made with. A workflow whose params changed is
forked with the new params (fixing a prompt and replaying from a commit is the point).

The folding and Backpack rebuilding are CPU work, done off the event loop (``off_loop``).
"""

from __future__ import annotations

import os
import re
import threading
from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from fastapi.exceptions import RequestValidationError
from starlette.concurrency import run_in_threadpool

from backpackflow import (
    Backpack,
    BackpackFlowError,
    Checkpoint,
    Checkpointer,
    CheckpointError,
    Snapshot,
)
from backpackflow.policy import SecretMasker
from backpackflow.runner import fingerprint, fork_run
from backpackflow_store_sql import NotFound
from backpackflow_store_sql.store import FINAL_STATUSES

from .models import BACKPACK_KEY_PATTERN, MAX_KEY_LENGTH, RunFork
from .runs import FlowProblems, RunConflict, RunManager, ServiceUnavailable

#: The ``node_name`` the runner packs a run's inputs with (they belong to no step).
_INPUTS_WRITER = "inputs"
_KEY = re.compile(BACKPACK_KEY_PATTERN)
_KEY_RULE = (
    "a Backpack key is a non-empty string without surrounding white space or '*', "
    f"at most {MAX_KEY_LENGTH} characters"
)


class Missing(NotFound):
    """404: what a time-travel request names is not there (a checkpoint, a commit), with a
    message saying which and why (NotFound's own says only "<kind> <id> not found")."""

    def __init__(self, kind: str, identifier: str, message: str) -> None:
        super(NotFound, self).__init__(message)
        self.kind = kind
        self.id = identifier


# ------------------------------------------------------------------------------- reading


def read_records(store: Any, run_id: str) -> list[dict[str, Any]]:
    """Run ``run_id``'s checkpoint records (in a worker thread); :class:`NotFound` when it
    has none. The caller has checked that the run exists."""
    records = store.records(run_id) if isinstance(store, Checkpointer) else None
    if not records:
        raise Missing(
            "checkpoint",
            run_id,
            f"run {run_id!r} has no checkpoint: it ran before the service checkpointed runs, "
            "or its flow runs branches in parallel (those are not checkpointed)",
        )
    return records


def load_checkpoint(store: Any, run_id: str) -> Checkpoint:
    """Run ``run_id``'s checkpoint, folded (a damaged one is a server error: 500)."""
    return Checkpoint.fold(run_id, read_records(store, run_id))


def commit_seq(checkpoint: Checkpoint, commit_id: str | None, parameter: str) -> int:
    """The seq of ``commit_id`` (``None``: the run's last commit); :class:`NotFound` naming
    ``parameter`` (``query parameter commit``, ``commit_id``) for a commit the run lacks."""
    if commit_id is None:
        return checkpoint.last_seq
    try:
        return checkpoint.commit_seq(commit_id)
    except CheckpointError:
        raise Missing(
            "commit",
            commit_id,
            f"run {checkpoint.run_id!r} has no commit {commit_id!r} ({parameter}); "
            f"GET /api/runs/{checkpoint.run_id}/commits lists them",
        ) from None


def _commit_steps(records: list[dict[str, Any]]) -> list[tuple[int, int]]:
    """(seq, step count) of the start and of every node boundary, in order."""
    start = records[0]["position"]
    marks = [(int(start["seq"]), int(start["node_count"]))]
    marks += [(int(r["seq"]), int(r["node_count"])) for r in records if r.get("k") == "pos"]
    return marks


@dataclass(frozen=True)
class RunHistory:
    """A run's checkpoint as the time-travel routes read it: the records, their fold and the
    Backpack at the last commit (every earlier state is a snapshot of it)."""

    records: list[dict[str, Any]]
    checkpoint: Checkpoint
    backpack: Backpack

    @classmethod
    def read(cls, store: Any, run_id: str) -> RunHistory:
        records = read_records(store, run_id)
        checkpoint = Checkpoint.fold(run_id, records)
        return cls(records, checkpoint, checkpoint.backpack(checkpoint.last_seq))

    def snapshot(self, commit_id: str | None) -> Snapshot:
        """The state right after ``commit_id`` (``None``: the last commit)."""
        if commit_id is None:
            return self.backpack.snapshot()
        return self.backpack.get_snapshot_at_commit(commit_id)


class Histories:
    """The :class:`RunHistory` of the last few *finished* runs read, so that a time slider
    moving over a run rebuilds its Backpack once, not at every step (rebuilding a 1,000-commit
    Backpack takes a few hundred milliseconds: JSON Schema validation and replay; a snapshot
    of a built one, about a millisecond).

    An entry is keyed by the run row's status, ``last_seq`` and ``finished_at``: a run
    resumed or re-finished gets a new key. Runs still active are read afresh every time."""

    def __init__(self, size: int = 8) -> None:
        self.size = size
        self._items: OrderedDict[tuple[Any, ...], RunHistory] = OrderedDict()
        self._lock = threading.Lock()

    @staticmethod
    def key(run: Mapping[str, Any]) -> tuple[Any, ...] | None:
        if run["status"] not in FINAL_STATUSES:
            return None
        return (run["id"], run["status"], run["last_seq"], run["finished_at"])

    def get(self, store: Any, run: Mapping[str, Any]) -> RunHistory:
        """The run's history (in a worker thread: it may read and fold the checkpoint)."""
        key = self.key(run)
        if key is not None:
            with self._lock:
                found = self._items.get(key)
                if found is not None:
                    self._items.move_to_end(key)
                    return found
        history = RunHistory.read(store, run["id"])
        if key is not None and self.size:
            with self._lock:
                self._items[key] = history
                while len(self._items) > self.size:
                    self._items.popitem(last=False)
        return history


def commit_page(history: RunHistory, after: int, limit: int) -> dict[str, Any]:
    """The run's commits after seq ``after`` (at most ``limit``), each with the step it was
    made in: the step of the top-level node that ran between the node boundaries around it."""
    checkpoint = history.checkpoint
    start_doc = checkpoint.start["backpack"]
    commits = [*start_doc["commits"], *checkpoint.commits]
    forked = checkpoint.forked_from
    inherited_upto = int(forked["seq"]) if forked else 0
    boundaries = _commit_steps(history.records)
    start_seq = boundaries[0][0]
    items: list[dict[str, Any]] = []
    b = 0
    for commit in commits:
        seq = int(commit["seq"])
        if seq <= after:
            continue
        if len(items) == limit:
            break
        step: int | None = None
        if seq > start_seq and commit.get("node_name") != _INPUTS_WRITER:
            while b + 1 < len(boundaries) and boundaries[b + 1][0] < seq:
                b += 1
            step = boundaries[b][1] + 1
        info = {k: v for k, v in commit.items() if k not in ("value", "items")}
        info["step"] = step
        info["inherited"] = seq <= inherited_upto
        items.append(info)
    return {
        "run_id": checkpoint.run_id,
        "status": checkpoint.status,
        "forked_from": forked,
        "last_seq": checkpoint.last_seq,
        "items": items,
        "next_after": items[-1]["seq"] if items else after,
        "has_more": bool(items) and items[-1]["seq"] < checkpoint.last_seq,
    }


def _head(history: RunHistory, commit_id: str | None) -> str | None:
    """``commit_id``, or (``None``) the id of the run's last commit (``None``: it has none)."""
    if commit_id is not None:
        return commit_id
    last = history.backpack.get_history(limit=1)
    return last[0].commit_id if last else None


def state_at(history: RunHistory, commit_id: str | None, include: bool) -> dict[str, Any]:
    """The Backpack at ``commit_id`` (``None``: the last commit): values and who wrote them;
    with ``include``, also the Backpack's JSON form up to that commit."""
    checkpoint = history.checkpoint
    seq = commit_seq(checkpoint, commit_id, "query parameter commit")
    snapshot = history.snapshot(commit_id)
    items = {}
    for key in snapshot:
        item = snapshot.get_item(key)
        items[key] = {
            "node_id": item.node_id,
            "node_name": item.node_name,
            "namespace": item.namespace,
            "timestamp": item.timestamp,
            "version": item.version,
            "commit_id": item.commit_id,
        }
    return {
        "run_id": checkpoint.run_id,
        "commit_id": _head(history, commit_id),
        "seq": seq,
        "state": snapshot.to_dict(),
        "items": items,
        # only when asked: the JSON form of a long history is large, and rebuilt for the seq
        "backpack": checkpoint.backpack(seq).to_json() if include else None,
    }


def diff_between(
    history: RunHistory, from_commit: str | None, to_commit: str | None
) -> dict[str, Any]:
    """What changed from commit ``from_commit`` (``None``: the empty state before any
    commit) to ``to_commit`` (``None``: the last commit): :meth:`Backpack.diff`'s JSON form."""
    checkpoint = history.checkpoint
    from_seq = 0
    if from_commit is not None:
        from_seq = commit_seq(checkpoint, from_commit, "query parameter from")
    to_seq = commit_seq(checkpoint, to_commit, "query parameter to")
    before: Any = history.snapshot(from_commit) if from_commit is not None else {}
    return {
        "run_id": checkpoint.run_id,
        "from_commit": from_commit,
        "from_seq": from_seq,
        "to_commit": _head(history, to_commit),
        "to_seq": to_seq,
        **Backpack.diff(before, history.snapshot(to_commit)).to_json(),
    }


async def masker_for(manager: RunManager, run: Mapping[str, Any]) -> SecretMasker:
    """What the values of ``run`` are masked with before they leave the service: every
    environment variable flows may read, and the secrets of the run's workflow as it is now
    (none when it was deleted or no longer loads)."""
    allowed = manager.policy.env_allowlist or ()
    masker = SecretMasker({name: os.environ[name] for name in allowed if name in os.environ})
    workflow_id = run.get("workflow_id")
    if workflow_id is None:
        return masker
    try:
        workflow = await run_in_threadpool(manager.store.get_workflow, workflow_id)
        cached = manager.cached_flow(workflow)
        flow = cached if cached is not None else await manager.off_loop(manager.load_flow, workflow)
    except (NotFound, FlowProblems):
        return masker
    secrets = getattr(flow, "secrets", None)
    if secrets is not None:
        masker.add_all(secrets)
    return masker


async def read_masked(
    manager: RunManager, histories: Histories, run_id: str, work: Any, *args: Any
) -> dict[str, Any]:
    """``work(history, *args)`` on run ``run_id``'s :class:`RunHistory`, off the event loop,
    its answer masked as the run's values are (:func:`masker_for`)."""
    store = manager.store
    run = await run_in_threadpool(store.get_run, run_id)  # NotFound: no such run

    def answer() -> dict[str, Any]:
        result: dict[str, Any] = work(histories.get(store, run), *args)
        return result

    masker = await masker_for(manager, run)
    masked: dict[str, Any] = masker.mask(await manager.off_loop(answer))
    return masked


# ------------------------------------------------------------------------------- forking


def patch_problems(patch: Mapping[str, Any]) -> list[dict[str, Any]]:
    """FastAPI-style errors for the patch keys the Backpack would refuse."""
    return [
        {
            "loc": ("body", "patch", key),
            "msg": f"invalid key {key!r}: {_KEY_RULE}",
            "type": "backpack_key",
        }
        for key in patch
        if len(key) > MAX_KEY_LENGTH or not _KEY.match(key)
    ]


async def fork(
    manager: RunManager,
    run_id: str,
    body: RunFork,
    *,
    server_address: tuple[str, int] | None = None,
) -> dict[str, Any]:
    """Fork run ``run_id`` at ``body.commit_id`` into a new run, started in the background;
    returns the new run (``queued``). Refusals: 404 (no run, checkpoint or commit), 409 (the
    workflow is gone or its graph changed), 422 (patch keys, input_vars), 429 (budget), 503."""
    problems = patch_problems(body.patch)
    if problems:
        raise RequestValidationError(problems)
    manager.accept(server_address)
    store = manager.store
    source = await run_in_threadpool(store.get_run, run_id)
    checkpoint = await manager.off_loop(load_checkpoint, store, run_id)
    seq = commit_seq(checkpoint, body.commit_id, "commit_id")
    forked = checkpoint.forked_from
    if forked is not None and seq < int(forked["seq"]):  # its boundaries are the source's
        raise RunConflict(
            f"commit {body.commit_id!r} of run {run_id!r} is inherited from run "
            f"{forked['run_id']!r}, which it was forked from: fork run {forked['run_id']!r} "
            "at that commit"
        )
    workflow_id = source["workflow_id"]
    if workflow_id is None:
        raise RunConflict(
            f"run {run_id!r}: its workflow was deleted; there is no flow to fork it with"
        )
    workflow = await run_in_threadpool(store.get_workflow, workflow_id)
    cached = manager.cached_flow(workflow)
    flow = cached if cached is not None else await manager.off_loop(manager.load_flow, workflow)
    if await manager.off_loop(fingerprint, flow) != checkpoint.fingerprint:
        raise RunConflict(
            f"run {run_id!r} cannot be forked: workflow {workflow_id!r} changed since the run "
            f"(version {source['workflow_version']} -> {workflow['version']}): its nodes, node "
            "types or edges differ, and a checkpoint goes on only in the graph it was made with"
        )
    inputs = None if body.input_vars is None else manager.resolve_inputs(flow, body.input_vars)
    await manager.admit(workflow)
    lineage = {"run_id": run_id, "commit_id": body.commit_id}
    run = await manager._store_write(
        lambda: store.create_run(
            workflow_id,
            source["input_vars"] if inputs is None else inputs,
            body.triggered_by or "fork",
            forked_from=lineage,
        )
    )

    def write_checkpoint() -> None:
        fork_run(
            flow,
            manager.checkpoints,
            run_id,
            body.commit_id,
            run_id=run["id"],
            patch=body.patch,
            inputs=inputs,
        )

    try:
        await manager.off_loop(write_checkpoint)
    except BackpackFlowError as exc:  # the checkpoint changed meanwhile (deleted, damaged)
        await manager._finish_early(run["id"], "failed", f"the fork failed: {exc}")
        raise RunConflict(f"run {run_id!r} cannot be forked: {exc}") from None
    try:
        return await manager.start_existing(run["id"])
    except (ServiceUnavailable, RunConflict) as exc:  # shutting down, the workflow just deleted
        await manager._finish_early(run["id"], "canceled", f"the fork did not start: {exc}")
        raise
