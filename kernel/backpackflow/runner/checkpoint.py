"""Durable runs: a checkpoint is the Backpack's commit log plus the runner's position.

A :class:`Checkpointer` stores, per run, an **append-only list of JSON records**; nothing is
ever rewritten and no record holds a copy of the whole state:

- ``start``: the flow (name and a fingerprint of its graph), the inputs, the limits and the
  Backpack as the run found it (usually empty);
- ``commits``: Backpack commits as deltas (a pack's value, an append's items), in seq order;
- ``pos``: the runner's position after a top-level node: the frontier (pending node ids), the
  step and event counters, usage and cost so far, the node's output and its node marks;
- ``paused`` / ``resume``: a node asked for an answer (``current_run().interrupt(...)``), and
  the answer it was given;
- ``end``: how the run ended.

Loading folds the records (:meth:`Checkpointer.load`). Resuming rebuilds the Backpack as it was
at the last position and schedules the frontier again: the node that was in flight runs again
from the state it started with (its commits after that position are dropped; a later record
with the same seq replaces them), and the run says so in a ``log`` event.

Durability modes (``durability=``), as LangGraph's:

- ``"node"`` (default): one append per top-level node (its commits and the new position);
- ``"commit"``: every commit is appended as it is made, the position after each node;
- ``"exit"``: records are kept in memory and appended once, when the run ends or pauses (a crash
  loses the run's progress; pausing, failing and forking work as in the other modes).

The runner pays nothing when no checkpointer is given: one ``is not None`` test per node.
"""

from __future__ import annotations

import abc
import hashlib
import itertools
import json
import os
import re
import threading
import time
from collections.abc import Mapping, Sequence
from decimal import Decimal
from pathlib import Path
from typing import TYPE_CHECKING, Any

import msgspec

from backpackflow.backpack import Backpack, dump_commits
from backpackflow.config import value_problems
from backpackflow.errors import CheckpointError, FlowError, SerializationError
from backpackflow.ids import new_id
from backpackflow.jsondata import copy_out, decimal_text

if TYPE_CHECKING:  # type-only back references: the flow and run this module records
    from backpackflow.runner.base import BaseNode
    from backpackflow.runner.flow import Flow
    from backpackflow.runner.graph import _Graph
    from backpackflow.runner.run import Run

#: The durability modes, fastest last.
DURABILITY_MODES = ("commit", "node", "exit")
#: Run statuses a checkpoint can be resumed from.
RESUMABLE = frozenset({"running", "paused", "failed", "canceled"})


# ------------------------------------------------------------------------------- storage


class Checkpointer(abc.ABC):
    """Where checkpoints live: per run id, an append-only list of JSON records.

    Implementations store records in order and give them back in that order; appends of one
    call are stored together (a crash may lose a whole call, never half of one record: a torn
    last record is ignored on load). They must accept concurrent appends for different runs."""

    @abc.abstractmethod
    def append(self, run_id: str, records: Sequence[Mapping[str, Any]]) -> None:
        """Append ``records`` (JSON data) to run ``run_id``'s checkpoint."""

    @abc.abstractmethod
    def records(self, run_id: str) -> list[dict[str, Any]] | None:
        """Every record of run ``run_id``, in order; ``None`` when it has no checkpoint."""

    @abc.abstractmethod
    def run_ids(self) -> list[str]:
        """The runs that have a checkpoint."""

    @abc.abstractmethod
    def delete(self, run_id: str) -> None:
        """Forget run ``run_id``'s checkpoint (nothing happens if it has none)."""

    def load(self, run_id: str) -> Checkpoint | None:
        """Run ``run_id``'s checkpoint, folded; ``None`` when it has none."""
        records = self.records(run_id)
        if records is None:
            return None
        return Checkpoint.fold(run_id, records)


def encode_records(records: Sequence[Mapping[str, Any]]) -> list[bytes]:
    """Checkpoint records as compact JSON (UTF-8), one document each: what every checkpointer
    stores. msgspec encodes them (measured 8x faster than ``json.dumps`` on position records:
    this runs once per node of a checkpointed run). A record holding text UTF-8 cannot encode
    (a lone surrogate, which Python strings and JSON escapes allow) is written by ``json`` with
    every non-ASCII character escaped, so it comes back exactly as the run had it."""
    lines = []
    for record in records:
        try:
            lines.append(_ENCODER.encode(record))
        except UnicodeEncodeError:
            lines.append(_encode_escaped(record))
        except (TypeError, ValueError, msgspec.EncodeError) as exc:
            raise CheckpointError(f"a checkpoint record is not JSON data: {exc}") from None
    return lines


def _encode_escaped(record: Mapping[str, Any]) -> bytes:
    def default(value: Any) -> Any:
        if isinstance(value, Decimal):  # as msgspec writes it (decimal_format="string")
            return str(value)
        return _json_default(value)

    try:
        text = json.dumps(record, ensure_ascii=True, separators=(",", ":"), default=default)
    except (TypeError, ValueError) as exc:
        raise CheckpointError(f"a checkpoint record is not JSON data: {exc}") from None
    return text.encode("ascii")


def decode_record(data: bytes | str) -> dict[str, Any]:
    """One record as :func:`encode_records` wrote it."""
    try:
        record = _DECODER.decode(data)
    except msgspec.DecodeError:  # msgspec refuses a lone surrogate's escape; json takes it
        try:
            record = json.loads(data)
        except ValueError as exc:
            raise CheckpointError(f"a checkpoint record is not JSON: {exc}") from None
    if not isinstance(record, dict):
        raise CheckpointError(f"a checkpoint record is a JSON object, not {type(record).__name__}")
    return record


def _json_default(value: Any) -> Any:
    """What msgspec does not encode itself: frozen Backpack values (a read-only mapping ...)."""
    plain = copy_out(value)
    if plain is value:
        raise TypeError(f"{type(value).__name__} is not JSON data")
    return plain


_ENCODER = msgspec.json.Encoder(enc_hook=_json_default, decimal_format="string")
_DECODER = msgspec.json.Decoder()


class MemoryCheckpointer(Checkpointer):
    """Checkpoints in this process's memory (tests, notebooks, pausing within one process).
    Records are kept as JSON text, so what is stored is exactly what a durable store keeps."""

    def __init__(self) -> None:
        self._runs: dict[str, list[bytes]] = {}
        self._lock = threading.Lock()

    def append(self, run_id: str, records: Sequence[Mapping[str, Any]]) -> None:
        lines = encode_records(records)
        with self._lock:
            self._runs.setdefault(run_id, []).extend(lines)

    def records(self, run_id: str) -> list[dict[str, Any]] | None:
        with self._lock:
            lines = self._runs.get(run_id)
            lines = None if lines is None else list(lines)
        return None if lines is None else [decode_record(line) for line in lines]

    def run_ids(self) -> list[str]:
        with self._lock:
            return list(self._runs)

    def delete(self, run_id: str) -> None:
        with self._lock:
            self._runs.pop(run_id, None)

    def size(self, run_id: str) -> int:
        """Bytes stored for run ``run_id`` (its records' JSON text)."""
        with self._lock:
            return sum(len(line) + 1 for line in self._runs.get(run_id, ()))


_SAFE_RUN_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,127}")


class FileCheckpointer(Checkpointer):
    """Checkpoints as files: ``DIRECTORY/<run id>.jsonl``, one JSON record per line, appended
    with one ``write`` per call (``O_APPEND``: concurrent writers never interleave records).

    ``fsync=True`` makes every append survive a power cut, at the cost of a disk flush per
    append; without it a process crash (kill -9) loses nothing the OS has been handed."""

    def __init__(self, directory: str | os.PathLike[str], *, fsync: bool = False) -> None:
        self.directory = Path(directory)
        self.directory.mkdir(parents=True, exist_ok=True)
        self.fsync = fsync
        self._fds: dict[str, int] = {}
        self._lock = threading.Lock()

    def _path(self, run_id: str) -> Path:
        if not isinstance(run_id, str) or not _SAFE_RUN_ID.fullmatch(run_id):
            raise CheckpointError(
                f"run id {run_id!r}: a file checkpoint needs 1-128 letters, digits, '_', '.' "
                "or '-', starting with a letter or digit"
            )
        return self.directory / f"{run_id}.jsonl"

    def append(self, run_id: str, records: Sequence[Mapping[str, Any]]) -> None:
        if not records:
            return
        data = b"\n".join(encode_records(records)) + b"\n"
        path = self._path(run_id)
        with self._lock:
            fd = self._fds.get(run_id)
            if fd is None:
                fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
                self._fds[run_id] = fd
            written = os.write(fd, data)
            while written < len(data):  # a short write (rare): the rest, still appended
                written += os.write(fd, data[written:])
            if self.fsync:
                os.fsync(fd)
            if records[-1].get("k") in ("end", "paused"):  # the run stopped: let go of the file
                os.close(self._fds.pop(run_id))

    def records(self, run_id: str) -> list[dict[str, Any]] | None:
        path = self._path(run_id)
        try:
            text = path.read_bytes()
        except FileNotFoundError:
            return None
        lines = text.split(b"\n")
        # the last piece is '' after a complete record; anything else is a record torn by a
        # crash mid-write: it was never acknowledged, so it is dropped
        records = []
        for number, line in enumerate(lines[:-1], 1):
            try:
                records.append(decode_record(line))
            except (ValueError, CheckpointError) as exc:
                raise CheckpointError(f"{path}:{number}: not a checkpoint record ({exc})") from None
        return records

    def run_ids(self) -> list[str]:
        return sorted(p.stem for p in self.directory.glob("*.jsonl"))

    def delete(self, run_id: str) -> None:
        path = self._path(run_id)
        with self._lock:
            fd = self._fds.pop(run_id, None)
            if fd is not None:
                os.close(fd)
        path.unlink(missing_ok=True)

    def close(self) -> None:
        """Close the files of runs still being written."""
        with self._lock:
            for fd in self._fds.values():
                os.close(fd)
            self._fds.clear()

    def size(self, run_id: str) -> int:
        """Bytes stored for run ``run_id``."""
        try:
            return self._path(run_id).stat().st_size
        except FileNotFoundError:
            return 0


# ------------------------------------------------------------------------------- folding


class Checkpoint:
    """A run's checkpoint, folded from its records (:meth:`Checkpointer.load`)."""

    def __init__(self, run_id: str, start: Mapping[str, Any]) -> None:
        self.run_id = run_id
        self.start = dict(start)
        self.flow: str = start["flow"]
        self.fingerprint: str = start["fingerprint"]
        self.inputs: dict[str, Any] = dict(start.get("inputs") or {})
        self.forked_from: dict[str, Any] | None = start.get("forked_from")
        backpack = start["backpack"]
        self._base_seq: int = backpack["seq"]
        #: The run's commits (JSON records), seq order, contiguous after the start's Backpack.
        self.commits: list[dict[str, Any]] = []
        self.marks: list[tuple[str, int]] = []
        #: The runner's position after the last top-level node (its frontier and counters).
        self.position: dict[str, Any] = dict(start["position"])
        #: The latest output of each node id (``node.<id>.output`` in templates).
        self.outputs: dict[str, Any] = dict(start.get("outputs") or {})
        self.status = "running"
        self.error: str | None = None
        #: What the run asked when it paused (prompt, schema, node id, deadline), else None.
        self.paused: dict[str, Any] | None = None
        #: Answers given to node ids that have not completed since (consumed by interrupt()).
        self.answers: dict[str, list[dict[str, Any]]] = {}
        self.updated_at: float = start.get("t", 0.0)
        #: The last event seq the run is known to have used (a resume counts on from it).
        self.event_seq: int = 0
        #: The last step number the run is known to have used, nested steps included (a
        #: resume numbers its steps on from it). A store that kept the events of the node in
        #: flight may raise this and ``event_seq`` before resuming, so the resumed run's
        #: events follow every stored one.
        self.last_step: int = int(start["position"].get("step", 0))

    @classmethod
    def fold(cls, run_id: str, records: Sequence[Mapping[str, Any]]) -> Checkpoint:
        if not records or records[0].get("k") != "start":
            raise CheckpointError(f"run {run_id!r}: its checkpoint does not begin with 'start'")
        try:
            checkpoint = cls(run_id, records[0])
            for i, record in enumerate(records[1:], 1):
                checkpoint._apply(record, i)
        except (KeyError, TypeError) as exc:
            raise CheckpointError(f"run {run_id!r}: damaged checkpoint ({exc!r})") from None
        return checkpoint

    def _apply(self, record: Mapping[str, Any], i: int) -> None:
        kind = record["k"]
        self.updated_at = record.get("t", self.updated_at)
        self.event_seq = max(self.event_seq, record.get("event_seq", 0))
        if kind == "commits":
            commits = self.commits
            for commit in record["commits"]:
                index = commit["seq"] - self._base_seq - 1
                if index < 0 or index > len(commits):
                    raise CheckpointError(
                        f"run {self.run_id!r}: checkpoint record {i}: commit seq {commit['seq']}"
                        f" does not follow seq {self._base_seq + len(commits)}"
                    )
                del commits[index:]  # a re-run after a resume replaces the dropped attempt
                commits.append(commit)
        elif kind == "pos":
            self.position = dict(record)
            self.last_step = max(self.last_step, record.get("step", 0))
            node_id, output = record["output"]
            if node_id is not None:
                self.outputs[node_id] = output
                self.answers.pop(node_id, None)  # that node is done with its answers
            self.marks.extend((n, s) for n, s in record["marks"])
            self.status, self.paused = "running", None
        elif kind == "paused":
            self.status, self.paused = "paused", dict(record)
        elif kind == "resume":
            answer = record.get("answer")
            if answer is not None:
                self.answers.setdefault(answer["node_id"], []).append(answer)
            self.status, self.paused, self.error = "running", None, None
        elif kind == "end":
            self.status, self.error = record["status"], record.get("error")
        else:
            raise CheckpointError(f"run {self.run_id!r}: checkpoint record {i}: unknown kind")

    @property
    def seq(self) -> int:
        """The Backpack seq of the last position (what a resume restores)."""
        return int(self.position["seq"])

    @property
    def last_seq(self) -> int:
        """The Backpack seq of the last commit stored (``seq`` or beyond)."""
        return self._base_seq + len(self.commits)

    def backpack(self, seq: int | None = None) -> Backpack:
        """The Backpack as it was at ``seq`` (default: the last position): the start's
        Backpack with the run's commits replayed, history and node marks included."""
        upto = self.seq if seq is None else seq
        doc = dict(self.start["backpack"])
        doc["commits"] = [*doc["commits"], *self.commits[: max(0, upto - self._base_seq)]]
        doc["seq"] = doc["commits"][-1]["seq"] if doc["commits"] else doc["seq"]
        marks: dict[str, list[int]] = {n: list(m) for n, m in doc["node_marks"].items()}
        for node_id, mark in self.marks:
            if mark <= upto:
                marks.setdefault(node_id, []).append(mark)
        doc["node_marks"] = marks
        try:
            return Backpack.from_json(doc, validate=False)  # written by Recorder
        except SerializationError as exc:
            raise CheckpointError(f"run {self.run_id!r}: damaged checkpoint: {exc}") from None

    def commit_seq(self, commit_id: str) -> int:
        """The seq of commit ``commit_id`` of this run's history."""
        for commit in (*self.start["backpack"]["commits"], *self.commits):
            if commit["commit_id"] == commit_id:
                return int(commit["seq"])
        raise CheckpointError(f"run {self.run_id!r} has no commit {commit_id!r}")

    def summary(self) -> dict[str, Any]:
        """What lists of checkpoints show."""
        return {
            "run_id": self.run_id,
            "flow": self.flow,
            "status": self.status,
            "steps": self.position["node_count"],
            "seq": self.last_seq,
            "paused": self.paused,
            "forked_from": self.forked_from,
            "updated_at": self.updated_at,
        }


# ------------------------------------------------------------------------------- flows


def checkpoint_problem(flow: Flow) -> str | None:
    """Why runs of ``flow`` cannot be checkpointed (a parallel or batch flow), or ``None``:
    a service runs such flows without a checkpoint rather than refusing them."""
    try:
        flow._check_checkpointable()
    except FlowError as exc:
        return str(exc)
    return None


def fingerprint(flow: Flow) -> str:
    """A hash of a flow's graph (node ids, types and edges, nested flows included): a run
    resumes only into the graph it was checkpointed with."""
    parts: list[Any] = []

    def walk(f: Flow, prefix: str) -> None:
        graph = f._compiled()
        for node in graph.nodes:
            edges = {
                action: sorted(e.target.id for e in targets)
                for action, targets in node.successors.items()
            }
            kind = node.node_type or f"{type(node).__module__}.{type(node).__qualname__}"
            parts.append([prefix + node.id, kind, edges])
            inner = getattr(node, "_compiled", None)
            if inner is not None and getattr(node, "start_node", None) is not None:
                walk(node, f"{prefix}{node.id}/")  # type: ignore[arg-type]

    walk(flow, "")
    start = flow.start_node.id if flow.start_node is not None else None
    text = json.dumps([start, parts], sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:32]


class Recorder:
    """Writes one run's checkpoint as it goes (the runner calls it at node boundaries), and
    carries what a resume restores into the run."""

    def __init__(
        self,
        flow: Flow,
        checkpointer: Checkpointer,
        run_id: str,
        durability: str,
        *,
        resume: Checkpoint | None = None,
    ) -> None:
        self.flow = flow
        self.checkpointer = checkpointer
        self.run_id = run_id
        self.durability = durability
        self.resume = resume
        self._buffer: list[dict[str, Any]] | None = [] if durability == "exit" else None
        self._lock = threading.Lock()
        self._seq = 0  # the Backpack seq up to which commits are written
        self._backpack: Backpack | None = None
        self._journal: list[tuple[str, int]] = []

    # -------------------------------------------------------------- writing

    def _write(self, records: list[dict[str, Any]]) -> None:
        buffer = self._buffer
        if buffer is not None:
            buffer.extend(records)
        else:
            self.checkpointer.append(self.run_id, records)

    def _commits(self) -> list[dict[str, Any]]:
        """Records of the commits made since the last write (empty list: none)."""
        backpack = self._backpack
        assert backpack is not None
        if backpack._seq <= self._seq:
            return []
        records = [{"k": "commits", "commits": dump_commits(backpack, self._seq)}]
        self._seq = backpack._seq
        return records

    def _on_commit(self, commit: Any) -> None:
        with self._lock:
            records = self._commits()
            if records:
                self._write(records)

    def begin(self, run: Run, start: dict[str, Any] | None) -> None:
        """Attach to ``run`` (its Backpack's hooks; a resume's counters) and write the
        ``start`` record of a new run (``start``) or the ``resume`` record of a resumed one."""
        backpack = run.backpack
        self._backpack = backpack
        self._seq = backpack._seq
        backpack._mark_journal = self._journal
        if self.durability == "commit":
            backpack._on_commit = self._on_commit
        run._recorder = self
        resume = self.resume
        if resume is None:
            assert start is not None
            self._write([start])
            return
        position = resume.position
        run.node_count = position["node_count"]
        run._steps = itertools.count(max(position["node_count"], resume.last_step) + 1)
        run._seq = itertools.count(resume.event_seq + 1)
        run.tokens_input = position["tokens_input"]
        run.tokens_output = position["tokens_output"]
        run.cost = Decimal(position["cost"])
        run._frame = run._run_frame()  # run-level events count on from the checkpoint too
        run.outputs.update(copy_out(resume.outputs))
        run._answers = {n: list(a) for n, a in resume.answers.items()}

    def node_done(self, run: Run, node: BaseNode, pending: list[BaseNode], action: Any) -> None:
        """A top-level node completed and the frontier is ``pending``: write the position."""
        journal = self._journal
        marks = [list(m) for m in journal]
        journal.clear()
        run._answers.pop(node.id, None)
        with self._lock:
            records = self._commits()
            records.append(
                {
                    "k": "pos",
                    "t": time.time(),
                    "pending": [n.id for n in pending],
                    "seq": run.backpack._seq,
                    "node_count": run.node_count,
                    "step": _peek(run._steps),
                    "event_seq": _peek(run._seq),
                    "tokens_input": run.tokens_input,
                    "tokens_output": run.tokens_output,
                    "cost": decimal_text(run.cost),
                    "last_action": action if isinstance(action, str) else None,
                    "output": [node.id, run.outputs.get(node.id)],
                    "marks": marks,
                }
            )
            self._write(records)

    def finish(self, run: Run, status: str, error: BaseException | None) -> None:
        """The run ended (or paused): write what is left, and detach from its Backpack."""
        backpack = self._backpack
        if backpack is None:
            return
        backpack._on_commit = None
        backpack._mark_journal = None
        with self._lock:
            records = self._commits()
            now = time.time()
            if status == "paused":
                paused = error
                records.append(
                    {
                        "k": "paused",
                        "t": now,
                        "node_id": getattr(paused, "node_id", None),
                        "prompt": getattr(paused, "prompt", None),
                        "schema": getattr(paused, "schema", True),
                        "deadline": getattr(paused, "deadline", None),
                        "event_seq": _peek(run._seq),
                    }
                )
            else:
                message = None if error is None else (str(error) or type(error).__name__)
                records.append(
                    {
                        "k": "end",
                        "t": now,
                        "status": status,
                        "error": message,
                        "event_seq": _peek(run._seq),
                    }
                )
            buffer, self._buffer = self._buffer, None
            if buffer is not None:
                records = [*buffer, *records]
            self.checkpointer.append(self.run_id, records)

    # -------------------------------------------------------------- resuming

    def frontier(self, run: Run, graph: _Graph) -> tuple[list[BaseNode], Any] | None:
        """The pending nodes a resumed run starts from (and the last action), once; ``None``
        for a new run. Says which node runs again."""
        resume = self.resume
        if resume is None:
            return None
        self.resume = None
        by_id = {node.id: node for node in graph.nodes}
        position = resume.position
        pending = [by_id[node_id] for node_id in position["pending"]]
        again = pending[0].id if pending else None
        # a fork that has not passed a node boundary of its own: nothing of it runs "again"
        forked = resume.forked_from if "k" not in position else None
        if forked is not None:
            message = (
                f"run forked from run {forked['run_id']!r} at commit {forked['commit_id']!r}, "
                f"after step {position['node_count']}"
                + (f"; it goes on at node {again!r}" if again else "")
            )
        else:
            message = (
                f"run resumed from its checkpoint after step {position['node_count']}"
                + (f"; node {again!r} runs again" if again and resume.status != "paused" else "")
                + (f"; node {again!r} gets its answer" if resume.status == "paused" else "")
            )
        run.log(
            message,
            data={
                "resumed": True,
                "from_status": resume.status,
                "step": position["node_count"],
                "seq": position["seq"],
                "pending": position["pending"],
                "rerun": None if forked is not None else again,
                "forked_from": forked,
            },
        )
        return pending, position.get("last_action")


def _peek(counter: itertools.count[int]) -> int:
    """The last number a run's counter (event seqs, steps) has given, read without consuming
    it: an ``itertools.count`` reduces to the next value it gives."""
    return int(counter.__reduce__()[1][0]) - 1


def open_run(
    flow: Flow,
    checkpointer: Checkpointer,
    *,
    backpack: Backpack | None,
    inputs: Mapping[str, Any] | None,
    run_id: str | None,
    durability: str = "node",
    answer: Any = None,
    answered: bool = False,
    resolve: Any = None,
) -> tuple[Backpack, Mapping[str, Any] | None, str, Recorder, dict[str, Any] | None]:
    """Start or resume a checkpointed run of ``flow``: returns its Backpack, inputs, run id,
    recorder and (for a new run) the ``start`` record to write.

    A ``run_id`` that has a checkpoint resumes it: the Backpack comes from the checkpoint (a
    given one must be empty), the inputs too; a paused run needs ``answer`` (valid against
    the schema it asked with) unless its deadline has passed (then the answer is a timeout)."""
    if durability not in DURABILITY_MODES:
        raise FlowError(f"durability {durability!r}: expected one of {', '.join(DURABILITY_MODES)}")
    flow._check_checkpointable()
    print_ = fingerprint(flow)
    checkpoint = checkpointer.load(run_id) if run_id is not None else None
    if checkpoint is None:
        if answered:
            raise CheckpointError(f"run {run_id!r} has no checkpoint to answer")
        run_id = run_id or new_id()
        backpack = backpack if backpack is not None else Backpack()
        inputs = resolve(inputs) if resolve is not None else inputs
        start = {
            "k": "start",
            "t": time.time(),
            "run_id": run_id,
            "flow": flow.name,
            "fingerprint": print_,
            "inputs": copy_out(dict(inputs)) if inputs else {},
            "backpack": backpack.to_json(),
            "forked_from": None,
            "position": _start_position(flow, backpack),
        }
        return backpack, inputs, run_id, Recorder(flow, checkpointer, run_id, durability), start
    assert run_id is not None
    if checkpoint.fingerprint != print_:
        raise CheckpointError(
            f"run {run_id!r} cannot resume: flow {flow.name!r} changed since it was "
            "checkpointed (its nodes, types or edges differ)"
        )
    if checkpoint.status not in RESUMABLE:
        raise CheckpointError(f"run {run_id!r} has already {checkpoint.status}: nothing to resume")
    if backpack is not None and (len(backpack) or backpack._seq):
        raise CheckpointError(
            f"run {run_id!r} resumes with the Backpack of its checkpoint; do not pass one"
        )
    if inputs:
        raise CheckpointError(f"run {run_id!r} resumes with the inputs it started with")
    record: dict[str, Any] = {"k": "resume", "t": time.time(), "from": checkpoint.status}
    paused = checkpoint.paused
    if paused is not None:
        record["answer"] = _answer_record(run_id, paused, answer, answered)
    elif answered:
        raise CheckpointError(f"run {run_id!r} is {checkpoint.status}, not waiting for an answer")
    checkpointer.append(run_id, [record])
    checkpoint._apply(record, -1)
    restored = checkpoint.backpack()
    recorder = Recorder(flow, checkpointer, run_id, durability, resume=checkpoint)
    return restored, checkpoint.inputs, run_id, recorder, None


def _start_position(flow: Flow, backpack: Backpack) -> dict[str, Any]:
    assert flow.start_node is not None
    return {
        "pending": [flow.start_node.id],
        "seq": backpack._seq,
        "node_count": 0,
        "event_seq": 0,
        "tokens_input": 0,
        "tokens_output": 0,
        "cost": "0",
        "last_action": None,
    }


def _answer_record(
    run_id: str, paused: Mapping[str, Any], answer: Any, answered: bool
) -> dict[str, Any]:
    node_id = paused["node_id"]
    deadline = paused.get("deadline")
    if not answered:
        if deadline is not None and time.time() >= deadline:
            return {"node_id": node_id, "timeout": True}
        raise CheckpointError(
            f"run {run_id!r} is paused at node {node_id!r} waiting for an answer to "
            f"{paused.get('prompt')!r}: resume it with an answer"
        )
    schema = paused.get("schema", True)
    problems = value_problems(schema, copy_out(answer), "answer")
    if problems:
        raise CheckpointError(
            f"run {run_id!r}: the answer does not match the schema node {node_id!r} asked "
            f"with: {'; '.join(problems)}"
        )
    return {"node_id": node_id, "value": copy_out(answer)}


def _inherited_from(checkpoint: Checkpoint, seq: int) -> str | None:
    """The run a fork inherited the commit at ``seq`` from, when it came before the fork's own
    commit (``None``: the commit is the run's own, or the one it was forked at). A fork cannot
    be forked again there: the node boundaries around it are in that run's checkpoint."""
    forked = checkpoint.forked_from
    if forked is None or seq >= int(forked["seq"]):
        return None
    return str(forked["run_id"])


def fork_run(
    flow: Flow,
    checkpointer: Checkpointer,
    source_run_id: str,
    commit_id: str | None = None,
    *,
    run_id: str | None = None,
    patch: Mapping[str, Any] | None = None,
    inputs: Mapping[str, Any] | None = None,
) -> str:
    """Start a new run's checkpoint from commit ``commit_id`` of run ``source_run_id`` (default:
    its last position): the Backpack as at that commit (``patch`` packed on top, the new
    ``inputs`` packed as the flow declares them) and the frontier of the last position at or
    before it. Returns the new run's id; ``flow.run(checkpointer=..., run_id=...)`` runs it.

    A commit made inside a node forks with that node's frontier: the node runs again on the
    state at the commit."""
    from backpackflow.runner.inputs import pack_inputs, resolve_inputs  # the flow's inputs

    flow._check_checkpointable()
    source = checkpointer.load(source_run_id)
    if source is None:
        raise CheckpointError(f"run {source_run_id!r} has no checkpoint to fork")
    if source.fingerprint != fingerprint(flow):
        raise CheckpointError(
            f"run {source_run_id!r} cannot be forked with flow {flow.name!r}: the flow changed "
            "since it was checkpointed"
        )
    seq = source.seq if commit_id is None else source.commit_seq(commit_id)
    inherited_from = _inherited_from(source, seq)
    if inherited_from is not None:
        raise CheckpointError(
            f"commit {commit_id!r} of run {source_run_id!r} is inherited from run "
            f"{inherited_from!r}, which it was forked from: its node boundaries are in that "
            f"run's checkpoint; fork run {inherited_from!r} at it"
        )
    records = checkpointer.records(source_run_id) or []
    position = dict(records[0]["position"])
    outputs: dict[str, Any] = {}
    for record in records[1:]:
        if record.get("k") == "pos" and record["seq"] <= seq:
            position = dict(record)
            node_id, output = record["output"]
            if node_id is not None:
                outputs[node_id] = output
    full = source.backpack(source.last_seq)
    backpack = full.replay_from_commit(commit_id) if commit_id is not None else source.backpack()
    backpack.forked_from = {"backpack_id": full.id, "commit_id": commit_id or ""}
    if patch:
        for key, value in patch.items():
            backpack.pack(key, value, node_id="fork", node_name="fork")
    if inputs:
        resolved = resolve_inputs(flow.input_specs, inputs)
        if flow.input_specs:
            pack_inputs(backpack, flow.input_specs, resolved, flow.namespace)
    run_id = run_id or new_id()
    if checkpointer.records(run_id) is not None:
        raise CheckpointError(f"run {run_id!r} already has a checkpoint")
    position["seq"] = backpack._seq
    position["event_seq"] = 0
    start = {
        "k": "start",
        "t": time.time(),
        "run_id": run_id,
        "flow": flow.name,
        "fingerprint": source.fingerprint,
        "inputs": copy_out(dict(inputs)) if inputs else source.inputs,
        "backpack": backpack.to_json(),
        "forked_from": {"run_id": source_run_id, "commit_id": commit_id, "seq": seq},
        "position": {k: v for k, v in position.items() if k not in ("k", "t", "output", "marks")},
        "outputs": outputs,
    }
    checkpointer.append(run_id, [start])
    return run_id
