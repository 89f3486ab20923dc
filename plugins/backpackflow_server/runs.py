"""Background runs: bounded concurrency, one event stream per run, batched storage.

Every run executes in the service's event loop as an asyncio task. A semaphore bounds how many
execute at once; the others wait in FIFO order and stay ``queued`` in the store. Each run has
its own :class:`~backpackflow.EventStreamer`; one subscriber hands every event to

* the run's :class:`RunHandle`, an in-memory buffer (seq → event) that SSE clients read live,
* the one shared :class:`~backpackflow_store_sql.EventWriter`, which stores events in batches
  from its own thread; ``put`` returns at once, so storage never slows the run.

On PostgreSQL several writers (threads) share the runs, each run staying with one writer so its
events keep their order; SQLite takes one writer at a time anyway, so there the service's own
writes and the writer's take turns on a lock instead of sleeping in SQLite's busy handler.

The writer reports back which events it stored (through :class:`_AckingSink`), so the buffer
only ever forgets events that are already in the database: an SSE client can always get any
event either from memory or from the store, which is what makes resuming exact (see
:mod:`backpackflow_server.streaming`). When the run ends, the manager waits until every one of
its events is stored (or given up on by the writer), then records the final status and totals
with ``finish_run``, wakes the SSE clients and forgets the handle: from then on the database
alone serves the run.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import itertools
import json
import logging
import re
import threading
import warnings
from collections import OrderedDict
from collections.abc import Callable, Collection, Mapping, Sequence
from contextlib import AbstractContextManager
from datetime import datetime
from decimal import Decimal
from pathlib import Path
from typing import Any, Protocol, TypeVar

import anyio
import attrs
from starlette.concurrency import run_in_threadpool
from tenacity import AsyncRetrying, RetryCallState, retry_if_exception, wait_exponential

from backpackflow import (
    Backpack,
    BackpackEvent,
    BackpackFlowError,
    Checkpoint,
    Checkpointer,
    ConfigError,
    EventStreamer,
    Flow,
    RunControl,
)
from backpackflow.config import KeepUnset, structure
from backpackflow.events import make_sink, parse_sink_spec
from backpackflow.loader import FLOW_DIR, ConfigWarning, FlowLoader, prepare_inputs
from backpackflow.plugins import EventSink, Registry
from backpackflow.policy import EgressDenied, EndpointSet, SandboxPolicy, SecretMasker
from backpackflow.runner import DependencyContainer, checkpoint_problem
from backpackflow_store_sql import (
    EventWriter,
    InvalidTransition,
    LeaseLost,
    NotFound,
    SpillFileBusy,
    WriterClosed,
)
from backpackflow_store_sql.portable import (
    MAX_DEPTH,
    make_portable,
    may_be_unportable,
    may_nest_deeper,
)
from backpackflow_store_sql.store import FINAL_STATUSES, EventDocument, event_field
from backpackflow_store_sql.writer import event_seqs, is_transient, sleep_before_retry

from .budgets import BudgetGuard
from .disclosure import (
    client_event,
    client_message,
    log_failure,
    new_error_id,
    redact,
    with_error_id,
)
from .durable import CannotResume, ResumePlan, RunCheckpointer, resume_plan
from .executors import Executor, make_executor
from .feed import FeedLink, NodeTypeCaps, open_feed, provider_limits
from .metrics import ServiceMetrics
from .settings import Settings

log = logging.getLogger("backpackflow_server.runs")

_T = TypeVar("_T")
SHUTDOWN_REASON = "the service shut down before the run finished"
#: Spill file numbers one writer tries (``index``, ``index + count``, ...) before giving up.
_SPILL_FILE_TRIES = 64
#: Threads for calls that may wait on the network for seconds (a flow's webhook sink sending
#: what it holds as its run ends): kept apart from the few threads of the store's calls.
_NETWORK_THREADS = 16
#: Why a run left active by a stopped service was failed instead of resumed (then ": why").
RECOVERY_REASON = "service restarted: the run was interrupted"
#: No answer given to a resumed run (``None`` is an answer).
UNSET: Any = object()
_MAX_ERROR_SUMMARY = 4000

#: The dependency name llm nodes look their response cache up by.
LLM_CACHE = "llm_cache"
#: ... and the service's per-provider rate limits and concurrency caps by.
LLM_LIMITS = "llm_limits"

#: Only this module's calls of the loader (see :func:`_quiet_config_warnings`).
_THIS_MODULE = re.escape(__name__) + r"\Z"


def _quiet_config_warnings() -> None:
    """Validation reports a flow's config warnings; loading it must not print them again.

    One filter for this module's calls alone, added if missing (a test harness may reset the
    filters): ``warnings.catch_warnings`` around each load would swap the process-wide filters
    from several worker threads at once.
    """
    for _action, _, category, module, _ in warnings.filters:
        if category is ConfigWarning and module is not None and module.pattern == _THIS_MODULE:
            return
    warnings.filterwarnings("ignore", category=ConfigWarning, module=_THIS_MODULE)


class RunStore(Protocol):
    """What the service needs of a run store (:class:`~backpackflow_store_sql.SqlRunStore`
    fits; a run store plugin for another database must offer the same)."""

    url: str
    dialect: str

    def ping(self) -> None: ...
    def close(self) -> None: ...
    def upgrade(self, revision: str = "head") -> None: ...
    def current_revision(self) -> str | None: ...
    def recover_interrupted(
        self, reason: str, run_ids: Sequence[str] | None = None
    ) -> list[str]: ...
    def active_runs(self) -> list[dict[str, Any]]: ...
    # durable runs (see .durable)
    def records(self, run_id: str) -> list[dict[str, Any]] | None: ...
    def run_ids(self) -> list[str]: ...
    def delete(self, run_id: str) -> None: ...
    def resume_counters(self, run_id: str, reason: str, after_step: int) -> tuple[int, int]: ...
    def pause_run(self, run_id: str, *, lease_token: int | None = None) -> dict[str, Any]: ...
    # run leases (see backpackflow_store_sql.leases): workers hold the runs they drive
    def get_lease(self, run_id: str) -> dict[str, Any]: ...
    def create_workflow(
        self, name: str, graph_json: Mapping[str, Any], description: str | None = None
    ) -> dict[str, Any]: ...
    def list_workflows(
        self, limit: int | None = None, *, before: str | None = None
    ) -> list[dict[str, Any]]: ...
    def get_workflow(self, workflow_id: str) -> dict[str, Any]: ...
    def get_workflow_version(self, workflow_id: str, version: int) -> dict[str, Any]: ...
    def update_workflow(
        self,
        workflow_id: str,
        *,
        name: str | None = None,
        description: str | None = None,
        graph_json: Mapping[str, Any] | None = None,
        expected_version: int | None = None,
    ) -> dict[str, Any]: ...
    def delete_workflow(self, workflow_id: str) -> None: ...
    def create_run(
        self,
        workflow_id: str,
        input_vars: Mapping[str, Any],
        triggered_by: str | None = None,
        *,
        forked_from: Mapping[str, str] | None = None,
    ) -> dict[str, Any]: ...
    def mark_running(self, run_id: str, *, lease_token: int | None = None) -> dict[str, Any]: ...
    def finish_run(
        self,
        run_id: str,
        status: str,
        error_summary: str | None = None,
        outputs: Mapping[str, Any] | None = None,
        *,
        lease_token: int | None = None,
    ) -> dict[str, Any]: ...
    def get_run(self, run_id: str) -> dict[str, Any]: ...
    def list_runs(
        self,
        workflow_id: str | None = None,
        status: str | None = None,
        limit: int = 50,
        *,
        before: str | None = None,
        forked_from: str | None = None,
    ) -> list[dict[str, Any]]: ...
    def get_trace(
        self,
        run_id: str,
        *,
        after_seq: int = 0,
        limit: int = 100,
        step: int | None = None,
        types: Sequence[str] | None = None,
    ) -> list[dict[str, Any]]: ...
    def append_events(
        self,
        run_id: str,
        events: Sequence[EventDocument],
        *,
        checkpoint: Sequence[bytes] = (),
        lease_token: int | None = None,
    ) -> None: ...
    def append_many(
        self,
        batches: Mapping[str, Sequence[EventDocument]],
        *,
        checkpoints: Mapping[str, Sequence[bytes]] | None = None,
        lease_tokens: Mapping[str, int] | None = None,
    ) -> None: ...
    # API tokens (see backpackflow_server.auth)
    def find_token(
        self, *, token_hash: str | None = None, token_id: str | None = None
    ) -> dict[str, Any] | None: ...
    def touch_token(self, token_id: str, when: datetime | None = None) -> None: ...
    def count_active_tokens(self) -> int: ...
    # budgets (see .budgets and .budgets_api)
    def create_budget(self, name: str, **fields: Any) -> dict[str, Any]: ...
    def list_budgets(self) -> list[dict[str, Any]]: ...
    def get_budget(self, budget_id: str) -> dict[str, Any]: ...
    def update_budget(self, budget_id: str, **changes: Any) -> dict[str, Any]: ...
    def delete_budget(self, budget_id: str) -> None: ...
    def claim_budget_alert(self, budget_id: str, period_key: str) -> bool: ...
    def budget_spend(
        self,
        *,
        start: datetime,
        end: datetime,
        workflow_id: str | None = None,
        provider: str | None = None,
        exclude: Collection[str] = (),
    ) -> Decimal: ...


class ServiceUnavailable(Exception):
    """The service cannot take a new run now (shutting down, queue full): HTTP 503."""


class RunConflict(Exception):
    """The run is not in a state that allows the request (e.g. cancel a finished run): 409."""


class FlowProblems(Exception):
    """A flow or run input is unusable; ``problems`` are ``"$.path: message"`` strings.

    ``where`` says what the paths point into: ``"graph_json"``, ``"input_vars"`` or
    ``"answer"`` of the request body, or ``"workflow"`` (the stored workflow).
    """

    def __init__(self, where: str, problems: list[str]) -> None:
        super().__init__("; ".join(problems))
        self.where = where
        self.problems = problems


def document_key(document: Mapping[str, Any]) -> str:
    """A flow document's identity: its canonical JSON (sorted keys, no spaces)."""
    return json.dumps(document, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def error_summary(
    error: BaseException | None,
    context: str = "a run failed",
    secrets: SecretMasker | None = None,
) -> str | None:
    """``"Type: message (error id …)"`` of a run's error, short enough for a summary column,
    with the flow's ``secrets`` masked and server paths redacted (the summary is shown to API
    clients as the events are); the error and its stack are logged under the id."""
    if error is None:
        return None
    error_id = new_error_id()
    log_failure(error_id, context, error)
    text = client_message(error)
    if secrets is not None:
        text = secrets.mask_text(text)
    room = _MAX_ERROR_SUMMARY - len(with_error_id("", error_id))
    text = text if len(text) <= room else text[: room - 1] + "…"
    return with_error_id(text, error_id)


def operator_sinks(settings: Settings, registry: Registry) -> list[tuple[str, dict[str, Any]]]:
    """(type, options) of the ``sinks`` setting, each built once now (and closed) so that a
    wrong one stops the service at start-up rather than failing every run. Raises
    :class:`~backpackflow.errors.BackpackFlowError` naming the sink and what is wrong."""
    options_by_type = dict(settings.sink_options)
    sinks = []
    for spec in settings.sinks:
        name, options = parse_sink_spec(registry, spec)
        options.update(options_by_type.get(name, {}))
        make_sink(registry, name, options).close()
        sinks.append((name, options))
    unused = set(options_by_type) - {name for name, _ in sinks}
    if unused:
        raise ConfigError(f"sink_options for sink(s) not in sinks: {', '.join(sorted(unused))}")
    return sinks


def _service_files(store: Any, settings: Settings) -> tuple[Path, ...]:
    """Files of the service itself that flows may never read, even inside the files folder:
    the SQLite database (and its journal files) and the LLM response cache."""
    denied: list[Path] = []
    url = str(getattr(store, "url", "") or "")
    if url.startswith("sqlite:///") and url != "sqlite:///:memory:":
        database = Path(url.removeprefix("sqlite:///").split("?", 1)[0])
        denied += [
            database,
            *(Path(f"{database}{suffix}") for suffix in ("-wal", "-shm", "-journal")),
        ]
    if settings.llm_cache is not None:
        denied.append(Path(settings.llm_cache))
    return tuple(path.absolute() for path in denied)


class _Slot:
    """One event of a run, serialized at most once for the SSE clients and the writer.

    The writer stores anything with a ``to_json()``; giving it the slot instead of the event
    means the event's JSON (lazy snapshots materialized) is built once, by whichever side
    needs it first: the writer thread, or the event loop for a live client. Built as clients
    may see it (:func:`~backpackflow_server.disclosure.client_event`: no stack, an error id)
    and as the store keeps it (no U+0000 or lone surrogate), so live and stored agree.
    """

    __slots__ = ("_document", "_lock", "_text", "event", "portable_json")

    def __init__(self, event: BackpackEvent) -> None:
        self.event = event
        self._document: dict[str, Any] | None = None
        self._text: str | None = None
        self._lock = threading.Lock()  # the writer thread and the loop may both ask at once
        #: The store may take the document as it is (strict JSON, made portable by _build).
        self.portable_json = False

    @property
    def seq(self) -> int:
        return self.event.seq

    @property
    def id(self) -> str:
        return self.event.id

    def to_json(self) -> dict[str, Any]:
        document = self._document
        if document is None:
            with self._lock:  # built once: an error event gets one error id, logged once
                if self._document is None:
                    self._build()
            document = self._document
            assert document is not None
        return document

    def _build(self) -> None:
        document = client_event(self.event.to_json())
        try:  # strict JSON, as the store checks it: then the store need not check again
            text = json.dumps(document, ensure_ascii=False, separators=(",", ":"), allow_nan=False)
            strict = True
        except (TypeError, ValueError):
            text = json.dumps(document, ensure_ascii=False, separators=(",", ":"), default=repr)
            strict = False
        if may_be_unportable(text) or may_nest_deeper(text):
            document = make_portable(document, MAX_DEPTH)
            text = json.dumps(document, ensure_ascii=False, separators=(",", ":"), default=repr)
        self._text = text
        self._document = document
        self.portable_json = strict

    def text(self) -> str:
        text = self._text
        if text is None:
            self.to_json()
            text = self._text
            assert text is not None
        return text


class RunHandle:
    """A run executing (or queued) in this process: its control, state and event buffer.

    The buffer maps seq → event. ``low`` is the smallest seq still in memory: every event
    below it is stored in the database. Above it, an event emitted (up to ``last_seq``) but not
    in the buffer was moved to the writer's spill file during a database outage (memory stays
    bounded however long the outage lasts); streams read it from the database once it is
    stored. Only the event loop thread touches the buffer.
    """

    def __init__(
        self,
        run_id: str,
        flow: Flow,
        inputs: dict[str, Any],
        *,
        buffer_limit: int,
        history_size: int,
    ) -> None:
        self.run_id = run_id
        self.flow = flow
        self.inputs = inputs
        self.control = RunControl()
        self.streamer = EventStreamer(history_size=history_size)
        self.state = "queued"  # queued → starting → running → finishing → done
        self.cancel_reason: str | None = None
        self.task: asyncio.Task[None] | None = None
        self.writer: EventWriter | None = None
        self.summary: dict[str, Any] | None = None
        #: The flow's declared outputs at the end of the run (secrets masked).
        self.outputs: dict[str, Any] = {}
        self.sinks: list[EventSink] = []  # the sinks the flow declares, for this run
        self.canceled = asyncio.Event()  # set with cancel_reason: stops waiting for a slot
        #: Durable runs: where the run checkpoints (None: not checkpointed), whether the run
        #: goes from its checkpoint (a crash recovery, a fork, an answer), the answer it
        #: resumes with, and whether the store has it ``queued`` or ``paused`` (not running).
        self.checkpointer: RunCheckpointer | None = None
        self.resuming = False
        self.answer: Any = UNSET
        self.queued_in_store = True
        self.low = 1
        self.last_seq = 0  # the last event emitted
        self._buffer_limit = buffer_limit
        self._events: dict[int, _Slot] = {}
        self._unsettled: set[int] = set()  # put to the writer, neither stored nor given up
        self._lost: set[int] = set()  # given up by the writer: only memory has them
        self._spilled: set[int] = set()  # unstored, in the writer's spill file, not in memory
        self._changed: asyncio.Event | None = None
        self._settled: asyncio.Event | None = None

    # ------------------------------------------------------------------ buffer (loop thread)

    def accept(self, event: BackpackEvent) -> _Slot:
        slot = self._events[event.seq] = _Slot(event)
        self._unsettled.add(event.seq)
        self.last_seq = event.seq
        self.wake()
        return slot

    def spill(self, seq: int) -> None:
        """The writer moved unstored event ``seq`` to its spill file: memory lets it go."""
        if seq in self._unsettled and self._events.pop(seq, None) is not None:
            self._spilled.add(seq)

    def settle(self, seqs: Sequence[int], *, stored: bool) -> None:
        """The writer stored (or gave up on) these events: memory may let them go."""
        unsettled = self._unsettled
        spilled = self._spilled
        was_spilled = False
        for seq in seqs:
            unsettled.discard(seq)
            if seq in spilled:  # stored (or lost) from the spill file: streams may read it
                spilled.discard(seq)
                was_spilled = True
            if not stored:
                self._lost.add(seq)
        events = self._events
        while len(events) > self._buffer_limit:
            low = self.low
            if low in unsettled or low in self._lost:
                break
            if events.pop(low, None) is None and low > self.last_seq:  # (spilled, now stored)
                break
            self.low = low + 1
        if was_spilled:
            self.wake()
        if not unsettled and self._settled is not None:
            self._settled.set()

    def get(self, seq: int) -> _Slot | None:
        return self._events.get(seq)

    def text(self, seq: int) -> str | None:
        """The JSON text of event ``seq`` while it is in memory (``None``: it is not)."""
        slot = self._events.get(seq)
        return None if slot is None else slot.text()

    @property
    def buffered(self) -> int:
        """Events held in memory for the streams."""
        return len(self._events)

    @property
    def has_unsettled(self) -> bool:
        """Some event is neither stored nor given up on yet."""
        return bool(self._unsettled)

    def lost_for_good(self, seq: int) -> bool:
        """Event ``seq`` was given up on after it left memory for the spill file."""
        return seq in self._lost and seq not in self._events

    def next_seq_after(self, seq: int) -> int | None:
        """The smallest buffered seq above ``seq`` (only needed to step over a lost event)."""
        later = [s for s in self._events if s > seq]
        return min(later) if later else None

    @property
    def finished(self) -> bool:
        return self.state == "done"

    async def changed(self) -> None:
        """Wait until an event arrives or the run is done."""
        if self._changed is None:
            self._changed = asyncio.Event()
        await self._changed.wait()

    def wake(self) -> None:
        """Wake every stream waiting in :meth:`changed` (they re-check what to do)."""
        waiter = self._changed
        if waiter is not None:
            self._changed = None
            waiter.set()

    async def settled(self) -> None:
        """Wait until the writer has stored (or given up on) every event accepted so far."""
        while self._unsettled:
            self._settled = asyncio.Event()
            await self._settled.wait()

    def done(self, summary: dict[str, Any]) -> None:
        self.summary = summary
        self.state = "done"
        self.wake()


def _checkpoint_outputs(
    flow: Flow, run_id: str, records: Sequence[Mapping[str, Any]]
) -> dict[str, Any]:
    """The declared outputs of a run whose checkpoint ended (its last Backpack)."""
    if not flow.output_keys:
        return {}
    checkpoint = Checkpoint.fold(run_id, records)
    backpack = checkpoint.backpack(checkpoint.last_seq)
    outputs = {key: backpack.unpack(key) for key in flow.output_keys if backpack.has(key)}
    return flow.secrets.mask(outputs) if flow.secrets else outputs


def lease_argument(tokens: Mapping[str, int], run_id: str) -> dict[str, int]:
    """``{"lease_token": token}`` for a write of a run this process drives under a lease
    (``tokens``: run id -> fencing token), else ``{}``: the one place the store's writes get
    their token from, events and status alike."""
    token = tokens.get(run_id)
    return {} if token is None else {"lease_token": token}


class _AckingSink:
    """The writer's view of the store: store a batch, then say which seqs are now safe.

    ``on_stored`` runs in the writer thread, right after the transaction committed.
    ``lease_tokens``: the fencing tokens of the runs a worker drives under a lease (run id ->
    token, kept by the manager); their writes carry them, so a worker that lost a run's lease
    has its writes refused (:class:`~backpackflow_store_sql.LeaseLost`, which the writer does
    not retry).
    """

    def __init__(
        self,
        store: RunStore,
        on_stored: Callable[[str, list[int], bool], None],
        write_lock: AbstractContextManager[Any],
        lease_tokens: Mapping[str, int] | None = None,
    ):
        self._store = store
        self._on_stored = on_stored
        self._write_lock = write_lock
        self._lease_tokens = lease_tokens if lease_tokens is not None else {}

    def append_events(
        self, run_id: str, events: Sequence[EventDocument], *, checkpoint: Sequence[bytes] = ()
    ) -> None:
        extra: dict[str, Any] = {}
        if checkpoint:
            extra["checkpoint"] = checkpoint
        extra.update(lease_argument(self._lease_tokens, run_id))
        with self._write_lock:
            self._store.append_events(run_id, events, **extra)
        self._on_stored(run_id, [event_field(e, "seq") for e in events], True)

    def append_many(
        self,
        batches: Mapping[str, Sequence[EventDocument]],
        *,
        checkpoints: Mapping[str, Sequence[bytes]] | None = None,
    ) -> None:
        """Several runs' events (and checkpoint records) in one transaction."""
        extra: dict[str, Any] = {}
        if checkpoints:
            extra["checkpoints"] = checkpoints
        held = self._lease_tokens
        tokens = {run_id: held[run_id] for run_id in batches if run_id in held}
        if tokens:
            extra["lease_tokens"] = tokens
        with self._write_lock:
            self._store.append_many(batches, **extra)
        for run_id, events in batches.items():
            self._on_stored(run_id, [event_field(e, "seq") for e in events], True)


class _StoreCheckpoints(Checkpointer):
    """The store as a :class:`~backpackflow.Checkpointer`, its writes taking turns with the
    event writers' on SQLite (the manager's write lock), as the service's other writes do."""

    def __init__(self, store: Any, write_lock: AbstractContextManager[Any]) -> None:
        self._store = store
        self._write_lock = write_lock

    def append(self, run_id: str, records: Sequence[Mapping[str, Any]]) -> None:
        with self._write_lock:
            self._store.append(run_id, records)

    def records(self, run_id: str) -> list[dict[str, Any]] | None:
        records: list[dict[str, Any]] | None = self._store.records(run_id)
        return records

    def run_ids(self) -> list[str]:
        return list(self._store.run_ids())

    def delete(self, run_id: str) -> None:
        with self._write_lock:
            self._store.delete(run_id)


class RunManager:
    """Starts, tracks, cancels and finishes the runs of one service process."""

    def __init__(
        self,
        store: RunStore,
        loader: FlowLoader,
        settings: Settings,
        flow_dirs: Mapping[str, Path] | None = None,
        *,
        executor: Executor | None = None,
    ) -> None:
        """``executor``: where runs execute (default: the one the ``executor`` setting names,
        see :mod:`.executors`; a worker process passes the in-process one)."""
        self.store = store
        self.loader = loader
        self.settings = settings
        self._cache: Any = None
        self._flow_dirs = dict(flow_dirs or {})  # seed documents → their folders
        self._files_dir = settings.resolved_files_dir()  # fixed now: cwd may change later
        #: The addresses this service is reached on (learned from the requests that start
        #: runs): flows may not call the service's own API.
        self.self_endpoints = EndpointSet()
        #: What every flow of the service may do (files, network, environment, templates).
        self.policy = settings.sandbox_policy(
            files_deny=_service_files(store, settings), self_endpoints=self.self_endpoints
        )
        self._handles: dict[str, RunHandle] = {}
        #: Runs that ended here lately, their events still in memory (see _keep_ended).
        self._ended: OrderedDict[str, RunHandle] = OrderedDict()
        self._ended_events = 0
        self._tasks: set[asyncio.Task[None]] = set()
        self._flows: OrderedDict[tuple[str, int], Flow] = OrderedDict()
        self._flows_lock = threading.Lock()  # flows load in worker threads
        self._workers: anyio.CapacityLimiter | None = None
        self._accepting = False
        self._stopping = False  # shutting down: status writes stop waiting for the database
        self._slots: asyncio.Semaphore | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._loop_thread = 0
        self.writers: list[EventWriter] = []
        self._adopted: list[EventWriter] = []  # storing spill files a stopped service left
        self._next_writer = itertools.count()
        #: The operator's sinks (the ``sinks`` setting): attached to every run.
        self.operator_sinks = operator_sinks(settings, loader.registry)
        #: Prometheus metrics of the runs (GET /metrics).
        self.metrics = ServiceMetrics()
        self.metrics.bind(self)
        # SQLite: one writer at a time; a lock hands over at once where SQLite's busy handler
        # would sleep (up to 100 ms a try). PostgreSQL writes run side by side.
        self._write_lock: AbstractContextManager[Any] = (
            threading.Lock() if store.dialect == "sqlite" else contextlib.nullcontext()
        )
        self._write_threads: anyio.CapacityLimiter | None = None  # see start()
        #: Budgets: refuses runs over a hard budget, stops them, alerts (see .budgets).
        self.budgets = BudgetGuard(store)
        #: The live feed shared with the other service processes (``live_feed``; see .feed).
        self.feed: FeedLink | None = None
        #: Per-provider rate limits and concurrency caps (None: no limit set; see .feed).
        self.llm_limits: Any = None
        #: Per-node-type concurrency caps (None: none set; see .feed).
        self.node_caps: NodeTypeCaps | None = None
        #: Where runs execute (see .executors).
        self.executor = (
            executor if executor is not None else make_executor(loader.registry, settings)
        )
        #: Fencing tokens of the runs this process drives under a lease (a worker's): run id ->
        #: token, read by the event writers' sink and the run's status writes.
        self.lease_tokens: dict[str, int] = {}

    # ------------------------------------------------------------------ lifecycle

    async def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._loop_thread = threading.get_ident()
        self._workers = anyio.CapacityLimiter(self.settings.validation_threads)
        self._network_calls = anyio.CapacityLimiter(_NETWORK_THREADS)
        # SQLite: the service's own status writes wait for the write lock in one thread, so
        # they never hold all of the few blocking_threads while reads could go on.
        if self.store.dialect == "sqlite":
            self._write_threads = anyio.CapacityLimiter(1)
        # The loop's threads for blocking calls (run_in_threadpool: the store's, mostly). A
        # burst of requests would otherwise run up to 40 threads of Python at once, each
        # taking the interpreter lock from the event loop in turn (every stream waits).
        anyio.to_thread.current_default_thread_limiter().total_tokens = (
            self.settings.blocking_threads
        )
        self._slots = asyncio.Semaphore(self.settings.max_concurrent_runs)
        count = self.settings.writer_threads
        sink = _AckingSink(
            self.store, self._settled_threadsafe, self._write_lock, self.lease_tokens
        )
        self.writers = [self._start_writer(sink, index, count) for index in range(count)]
        self._adopted = self._adopt_left_spill_files(sink)
        self.budgets.alert_sink = self._budget_alert_sink()
        self.budgets.schedule = self._in_background
        if self.settings.live_feed:
            self.feed = FeedLink(open_feed(self.loader.registry, self.settings.live_feed), self)
            await self.feed.start()
        feed = None if self.feed is None else self.feed.feed
        self.llm_limits = provider_limits(self.settings, feed)
        caps = self.settings.node_type_concurrency
        self.node_caps = NodeTypeCaps(caps, feed) if caps else None
        await self.executor.start(self)
        self._accepting = True

    def _new_writer(self, sink: _AckingSink, spill_path: Path | None, name: str) -> EventWriter:
        settings = self.settings
        return EventWriter(
            sink,
            max_batch=settings.writer_max_batch,
            max_delay=settings.writer_max_delay,
            max_buffer_bytes=settings.outage_buffer_bytes,
            spill_path=spill_path,
            max_spill_bytes=settings.spill_max_bytes,
            on_failure=lambda run_id, events, _error: self._settled_threadsafe(
                run_id, event_seqs(events), False
            ),
            on_spilled=self._spilled_threadsafe,
            name=name,
        )

    def _spill_files(self) -> tuple[Path, str] | None:
        """The spill folder and the name prefix of this database's spill files: named after
        the database, so what one service left there goes to the same database later."""
        folder = self.settings.spill_dir
        if folder is None:
            return None
        database = hashlib.sha256(self.store.url.encode()).hexdigest()[:16]
        return folder.absolute(), f"events-{database}-"

    def _start_writer(self, sink: _AckingSink, index: int, count: int) -> EventWriter:
        """Writer ``index`` with the first spill file no live writer holds: ``index``, then
        ``index + count``, ... (a second service on the same folder and database gets files
        of its own instead of writing into the first one's)."""
        name = f"backpackflow-event-writer-{index}"
        spill = self._spill_files()
        if spill is None:
            return self._new_writer(sink, None, name)
        folder, prefix = spill
        for number in range(index, index + count * _SPILL_FILE_TRIES, count):
            try:
                return self._new_writer(sink, folder / f"{prefix}{number}.jsonl", name)
            except SpillFileBusy:
                continue
        raise SpillFileBusy(
            f"event writer {index}: the first {_SPILL_FILE_TRIES} spill files of this database "
            f"in {folder} are held by other writers"
        )

    def _adopt_left_spill_files(self, sink: _AckingSink) -> list[EventWriter]:
        """Writers for the spill files a stopped service left with events in them and no live
        writer holds (their number is no longer one of ours): each stores its file, then
        closes. Events of a service that crashed during an outage are stored at the next start
        of any service on the folder, whatever its writer count."""
        spill = self._spill_files()
        if spill is None:
            return []
        folder, prefix = spill
        ours = {w.spill_path for w in self.writers}
        adopted = []
        for path in sorted(folder.glob(f"{prefix}*.jsonl")):
            if path in ours or path.stat().st_size == 0:
                continue
            try:
                writer = self._new_writer(sink, path, f"backpackflow-spill-{path.stem}")
            except SpillFileBusy:  # a live service's
                continue
            log.warning("storing the events a stopped service left in %s", path)
            adopted.append(writer)
            # close() stores the file first; not a task of the loop, which shutdown awaits:
            # during an outage this waits, until shutdown's own close() spills what is left
            threading.Thread(target=writer.close, name=f"{path.stem}-close", daemon=True).start()
        return adopted

    def _budget_alert_sink(self) -> Any:
        """The webhook sink that posts budget alerts, when the operator set a URL (built
        under no flow's policy: the operator's own endpoint)."""
        url = self.settings.budget_webhook_url
        if url is None:
            return None
        options: dict[str, Any] = {"url": url}
        if self.settings.budget_webhook_secret_env:
            options["secret_env"] = self.settings.budget_webhook_secret_env
        try:
            return make_sink(self.loader.registry, "webhook", options)
        except BackpackFlowError as exc:
            raise ConfigError(
                f"budget_webhook_url: budget alerts are sent by the webhook event sink, which "
                f"cannot be built here ({exc}); install it with pip install "
                "'backpackflow[webhook]', or unset BACKPACKFLOW_BUDGET_WEBHOOK_URL"
            ) from None

    def _in_background(self, work: Callable[[], Any]) -> None:
        """Run ``work`` in the thread pool, awaited at shutdown (budget alerts)."""
        task = asyncio.ensure_future(run_in_threadpool(work))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def shutdown(self) -> None:
        """Refuse new runs, cancel queued ones, give running ones ``shutdown_grace`` seconds,
        cancel what is left, then store every event (``EventWriter.close``)."""
        self._accepting = False
        if self._handles:
            log.info(
                "shutting down: %d run(s) executing, %d queued (canceled now)",
                self.active_count,
                self.queued_count,
            )
        for handle in list(self._handles.values()):
            if handle.state == "queued":
                self._request_cancel(handle, SHUTDOWN_REASON)
        running = [h.task for h in self._handles.values() if h.task is not None]
        if running and self.settings.shutdown_grace > 0:
            await asyncio.wait(running, timeout=self.settings.shutdown_grace)
        for handle in list(self._handles.values()):
            self._request_cancel(handle, SHUTDOWN_REASON)
        self._stopping = True
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)
        for writer in (*self.writers, *self._adopted):
            await run_in_threadpool(writer.close, self.settings.flush_timeout)
        if self.budgets.alert_sink is not None:
            await run_in_threadpool(self.budgets.alert_sink.close)
        if self.feed is not None:  # after the writers: their last events are published
            await self.feed.close(self.settings.flush_timeout)
        await self.executor.shutdown(self)

    # ------------------------------------------------------------------ queries

    def handle(self, run_id: str) -> RunHandle | None:
        return self._handles.get(run_id)

    def stream_handle(self, run_id: str) -> RunHandle | None:
        """The run's handle for a stream: the run executes here, or ended here lately (final,
        not paused) and its events are still in memory (every one stored, its end recorded)."""
        return self._handles.get(run_id) or self._ended.get(run_id)

    def _keep_ended(self, handle: RunHandle) -> None:
        """Keep an ended run's events in memory for the streams that come late: a client
        that starts a run and then opens its stream often finds it over already (a short
        run), and reading it back from the database cost several store calls per stream.
        Bounded by ``stream_buffer_events`` over all the runs kept, the oldest let go first."""
        handle.streamer.clear_history()  # the events stay as sent; the ring's copies go
        handle.checkpointer = None
        self._ended[handle.run_id] = handle
        self._ended_events += handle.buffered
        while self._ended and self._ended_events > self.settings.stream_buffer_events:
            _, oldest = self._ended.popitem(last=False)
            self._ended_events -= oldest.buffered

    def run_ids(self) -> list[str]:
        """The runs this process holds (queued or executing)."""
        return list(self._handles)

    def writer_stats(self) -> tuple[int, int]:
        """Events (pending, given up) over all writers."""
        stats = [writer.stats for writer in (*self.writers, *self._adopted)]
        return sum(s.pending for s in stats), sum(s.failed for s in stats)

    @property
    def active_count(self) -> int:
        return sum(1 for h in self._handles.values() if h.state != "queued")

    @property
    def queued_count(self) -> int:
        return sum(1 for h in self._handles.values() if h.state == "queued")

    # ------------------------------------------------------------------ flows

    async def off_loop(self, function: Callable[..., _T], *args: Any) -> _T:
        """``function(*args)`` in a worker thread, at most ``validation_threads`` at once:
        CPU work of a request (validating, loading a flow, checking a large body) must not
        stall the event loop, which serves every other request and stream."""
        return await anyio.to_thread.run_sync(function, *args, limiter=self._workers)

    async def network_call(self, function: Callable[..., _T], *args: Any) -> _T:
        """``function(*args)`` in a thread of its own kind: a call that may wait on the network
        for seconds (a webhook sink closing, a message broker) must not hold one of the few
        threads of the store's calls (``blocking_threads``)."""
        return await anyio.to_thread.run_sync(function, *args, limiter=self._network_calls)

    def check_flow(self, graph_json: Mapping[str, Any]) -> list[str]:
        """Validate a flow document as written and build it once; returns its warnings.

        Building catches what the schema cannot (an unknown dependency factory, a node class
        refusing its params, a ``base_dir`` leaving the files folder); ``${NAME}`` references
        to allowed variables stay unresolved until a run loads it, references to variables
        the policy does not let flows read are refused now; so are sinks of types the
        operator does not allow and sink URLs denied whatever DNS says.
        """
        # like ``backpackflow validate --allow-unset-env``, within the policy's allowlist
        environ = KeepUnset(self.policy.environ())
        policy = self.policy_for(graph_json)  # what _load builds the flow with
        assert policy.files_root is not None
        deps = DependencyContainer()
        deps.register(FLOW_DIR, policy.files_root)
        report = self.loader.validate(graph_json, environ=environ, policy=policy, deps=deps)
        if report.errors:
            raise FlowProblems("graph_json", list(report.errors))
        problems = self._sink_problems(graph_json)
        if problems:
            raise FlowProblems("graph_json", problems)
        self._load(graph_json, "graph_json", environ=environ)
        return list(report.warnings)

    def _sink_problems(self, graph_json: Mapping[str, Any]) -> list[str]:
        """Sinks a flow declares: types the operator allows, URLs the egress policy does not
        deny outright (DNS is checked again when each run connects)."""
        allowed = set(self.settings.flow_sinks)
        problems = []
        for i, sink in enumerate(graph_json.get("sinks") or ()):
            kind = sink.get("type") if isinstance(sink, Mapping) else None
            if kind not in allowed:
                problems.append(
                    f"$.sinks[{i}].type: sink type {kind!r} is not one flows may declare here "
                    f"(allowed: {', '.join(sorted(allowed)) or 'none'}; the operator's "
                    "flow_sinks setting)"
                )
                continue
            url = (sink.get("options") or {}).get("url")
            egress = self.policy.egress
            if isinstance(url, str) and egress is not None:
                try:
                    egress.check_url_statically(url, what=f"sink {kind!r}")
                except EgressDenied as exc:
                    problems.append(f"$.sinks[{i}].options.url: {exc}")
        return problems

    def _response_cache(self) -> Any:
        """The service-wide LLM response cache (built on first use), or None when disabled
        or when no plugin provides a SQLite cache."""
        path = self.settings.llm_cache
        factory = self.loader.registry.dependency_factories.get("sqlite_cache")
        if path is None or factory is None or factory.options is None:
            return None
        with self._flows_lock:
            if self._cache is None:
                options: Any = structure({"path": str(Path(path).resolve())}, factory.options)
                self._cache = factory.factory(options, None)
            return self._cache

    def flow_dir(self, graph_json: Mapping[str, Any]) -> Path:
        """Where the flow's relative file paths point: its seed folder if it is a demo
        workflow as seeded, else the ``files_dir`` setting."""
        folder = self._flow_dirs.get(document_key(graph_json))
        return folder if folder is not None else self._files_dir

    def policy_for(self, graph_json: Mapping[str, Any]) -> SandboxPolicy:
        """The service's policy for one flow: its files root is the flow's folder (the files
        folder, or a demo workflow's seed folder)."""
        return attrs.evolve(self.policy, files_root=self.flow_dir(graph_json).resolve())

    def _load(
        self, graph_json: Mapping[str, Any], where: str, environ: Mapping[str, str] | None = None
    ) -> Flow:
        deps = DependencyContainer()
        policy = self.policy_for(graph_json)
        assert policy.files_root is not None
        deps.register(FLOW_DIR, policy.files_root)
        declared = graph_json.get("dependencies") or {}
        cache = self._response_cache()
        if cache is not None and LLM_CACHE not in declared:
            deps.register(LLM_CACHE, cache)
        if self.llm_limits is not None:  # the operator's: a flow cannot declare its own
            if LLM_LIMITS in declared:
                raise FlowProblems(
                    where,
                    [
                        f"$.dependencies.{LLM_LIMITS}: the service's per-provider limits; a "
                        "flow cannot declare a dependency of that name here"
                    ],
                )
            deps.register(LLM_LIMITS, self.llm_limits)
        _quiet_config_warnings()
        try:
            return self.loader.load_flow(graph_json, deps, environ=environ, policy=policy)
        except ConfigError as exc:
            problems = list(exc.problems) or [f"$: {exc}"]
            cause = exc.__cause__
            if cause is not None and not isinstance(cause, ConfigError):  # a plugin's code
                error_id = new_error_id()
                log_failure(error_id, "a node type failed to build a flow", cause)
                problems = [with_error_id(redact(problem), error_id) for problem in problems]
            raise FlowProblems(where, problems) from exc
        except Exception as exc:  # a node type's own code failed to build it
            summary = error_summary(exc, "a node type failed to build a flow")
            raise FlowProblems(where, [f"$: the flow cannot be loaded: {summary}"]) from exc

    def cached_flow(self, workflow: Mapping[str, Any]) -> Flow | None:
        """The loaded flow of this workflow version if it is cached (cheap: no thread hop)."""
        key = (str(workflow["id"]), int(workflow["version"]))
        with self._flows_lock:
            flow = self._flows.get(key)
            if flow is not None:
                self._flows.move_to_end(key)
            return flow

    def load_flow(self, workflow: Mapping[str, Any]) -> Flow:
        """The runnable flow of a stored workflow version (cached per id and version).

        Called in a worker thread (:meth:`off_loop`), like :meth:`check_flow`.
        """
        flow = self.cached_flow(workflow)
        if flow is not None:
            return flow
        key = (str(workflow["id"]), int(workflow["version"]))
        flow = self._load(workflow["graph_json"], "workflow")
        if self.settings.flow_cache_size:
            with self._flows_lock:
                self._flows[key] = flow
                while len(self._flows) > self.settings.flow_cache_size:
                    self._flows.popitem(last=False)
        return flow

    @staticmethod
    def resolve_inputs(flow: Flow, input_vars: Mapping[str, Any]) -> dict[str, Any]:
        """The run's inputs: checked against the flow's declared ``inputs`` (names, required
        ones, JSON Schemas), defaults filled; the run packs them into its Backpack.

        A flow that declares no inputs takes any; one that does refuses unknown names (a
        typo would otherwise be silently ignored), requires the required ones and checks
        each value against its schema.
        """
        try:
            return prepare_inputs(flow, input_vars, path="$.input_vars")
        except ConfigError as exc:
            raise FlowProblems("input_vars", list(exc.problems)) from None

    # ------------------------------------------------------------------ runs

    async def submit(
        self,
        workflow_id: str,
        input_vars: Mapping[str, Any],
        triggered_by: str | None,
        *,
        server_address: tuple[str, int] | None = None,
    ) -> dict[str, Any]:
        """Create a ``queued`` run and start it in the background; returns the run.
        ``server_address``: where the request reached this service (flows may not call it)."""
        self.accept(server_address)
        workflow = await run_in_threadpool(self.store.get_workflow, workflow_id)
        cached = self.cached_flow(workflow)
        flow = cached if cached is not None else await self.off_loop(self.load_flow, workflow)
        inputs = self.resolve_inputs(flow, input_vars)
        await self.admit(workflow)
        run = await self._store_write(self.store.create_run, workflow_id, inputs, triggered_by)
        if run["workflow_version"] != workflow["version"]:  # updated in between: run the new one
            workflow = await run_in_threadpool(self.store.get_workflow, workflow_id)
            try:
                flow = await self.off_loop(self.load_flow, workflow)
            except FlowProblems as exc:
                await self._finish_early(run["id"], "failed", str(exc))
                raise
        if not self._accepting:
            await self._finish_early(run["id"], "canceled", SHUTDOWN_REASON)
            raise ServiceUnavailable("the service is shutting down; no new runs are started")
        return await self.executor.launch(self, run, flow, inputs)

    def accept(self, server_address: tuple[str, int] | None) -> None:
        """Refuse a new run now if the service takes none (shutting down, queue full);
        ``server_address``: where the request reached this service (flows may not call it)."""
        self._learn_address(server_address)
        self._check_accepting()

    async def admit(self, workflow: Mapping[str, Any]) -> None:
        """Refuse a new run of ``workflow`` its hard budgets do not allow (BudgetExceeded)."""
        if self.budgets.stale(self.settings.budget_refresh_seconds):
            budgets = await run_in_threadpool(self.budgets.refresh, list(self.budgets.ledgers))
            self.budgets.apply(budgets)
        self.budgets.admit(workflow["id"], workflow["graph_json"])

    @property
    def checkpoints(self) -> Checkpointer:
        """The store as the checkpointer of the service's checkpointed runs (forks)."""
        return _StoreCheckpoints(self.store, self._write_lock)

    async def launch_here(
        self, run: dict[str, Any], flow: Flow, inputs: dict[str, Any]
    ) -> dict[str, Any]:
        """Execute a new run in this process (the in-process executor)."""
        return await self._launch(run, flow, inputs)

    async def _launch(
        self,
        run: dict[str, Any],
        flow: Flow,
        inputs: dict[str, Any],
        plan: ResumePlan | None = None,
        answer: Any = UNSET,
    ) -> dict[str, Any]:
        """Make the run's handle (event subscribers, sinks, budget ledger, checkpointer) and
        start its task. ``plan``: the run goes on from its checkpoint in the store."""
        workflow_id = run["workflow_id"]
        handle = RunHandle(
            run["id"],
            flow,
            inputs,
            buffer_limit=self.settings.stream_buffer_events,
            history_size=self.settings.event_history_size,
        )
        handle.queued_in_store = run["status"] in ("queued", "paused")
        handle.streamer.subscribe("*", self._subscriber(handle))
        assert handle.writer is not None
        if plan is not None:
            handle.resuming, handle.answer = True, answer
            handle.low = plan.last_seq + 1  # every earlier event is stored
            handle.checkpointer = RunCheckpointer(
                self.store,
                handle.writer,
                handle.run_id,
                plan.records,
                last_seq=plan.last_seq,
                last_step=plan.last_step,
            )
        elif self.settings.durability != "off" and checkpoint_problem(flow) is None:
            handle.checkpointer = RunCheckpointer(self.store, handle.writer, handle.run_id)
        handle.streamer.subscribe("*", self.metrics.watch(handle.run_id))
        try:
            self._attach_sinks(handle)
        except FlowProblems as exc:
            await self._finish_early(run["id"], "failed", "; ".join(exc.problems))
            raise
        ledger = self.budgets.open(
            run["id"], workflow_id, datetime.fromisoformat(run["created_at"])
        )
        # last: every other subscriber has an event before a guardrail emitted in answer
        handle.streamer.subscribe(
            "*", self.budgets.watcher(ledger, lambda reason: self._request_cancel(handle, reason))
        )
        self._handles[handle.run_id] = handle
        task = asyncio.create_task(self._execute(handle), name=f"backpackflow run {run['id']}")
        handle.task = task
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        if self.feed is not None:  # a cancel asked before any process held the run
            self.feed.started(handle)
        if self.node_caps is not None:
            self.node_caps.apply(handle.control)
        return run

    async def start_existing(self, run_id: str, *, answer: Any = UNSET) -> dict[str, Any]:
        """Start a run that exists in the store and has a checkpoint there: it goes on from
        that checkpoint (a run a crash interrupted, a fork written by ``fork_run``, a paused
        run given ``answer``). Returns the run as stored.

        Raises :class:`RunConflict` when the run is not ``queued``, ``running`` or ``paused``
        in the store, already executes in this process, or cannot resume (no checkpoint, a
        damaged one, its workflow deleted or its flow changed: the message says which), and
        :class:`FlowProblems` (``answer``) when a paused run's answer is missing or does not
        match the schema it asked with; :class:`ServiceUnavailable` when the service is
        stopping or its queue is full."""
        self._check_accepting()
        return await self.executor.start_existing(self, run_id, answer)

    async def start_stored_here(self, run_id: str, answer: Any = UNSET) -> dict[str, Any]:
        """:meth:`start_existing` in this process (the in-process executor)."""
        return await self._start_stored(run_id, answer)

    async def _start_stored(self, run_id: str, answer: Any = UNSET) -> dict[str, Any]:
        """:meth:`start_existing` without the queue bound (a recovery starts runs that were
        admitted before the restart)."""
        if run_id in self._handles:
            raise RunConflict(f"run {run_id!r} is already executing in this service process")
        run = await run_in_threadpool(self.store.get_run, run_id)
        run.pop("steps", None)
        if run["status"] not in ("queued", "running", "paused"):
            raise RunConflict(f"run {run_id!r} is {run['status']}; it cannot be started again")
        flow = await self.flow_of(run)
        lease = self._lease_of(run_id)
        try:
            plan = await self.off_loop(resume_plan, self.store, flow, run_id)
        except CannotResume as exc:
            raise RunConflict(f"run {run_id!r} cannot resume: {exc}") from None
        if plan.status in FINAL_STATUSES:  # it ended; only recording that end was lost
            outputs = await self.off_loop(_checkpoint_outputs, flow, run_id, plan.records)
            await self._store_write(
                self.store.finish_run, run_id, plan.status, plan.error, outputs, **lease
            )
            self.metrics.ended(run_id, plan.status)
            run["status"] = plan.status
            return run
        if plan.status == "paused":
            if run["status"] == "running":  # it paused; only recording that was lost
                return await self._store_write(self.store.pause_run, run_id, **lease)
            problems = plan.answer_problems(answer, answer is not UNSET)
            if problems:
                raise FlowProblems("answer", problems)
        elif run["status"] == "paused":
            raise RunConflict(f"run {run_id!r} is paused but its checkpoint is {plan.status}")
        await self.off_loop(plan.number_on, self.store)
        return await self._launch(run, flow, {}, plan, answer)

    async def resume_paused(self, run_id: str, answer: Any = UNSET) -> dict[str, Any]:
        """Go on with a ``paused`` run, ``answer`` answering what it asked (see
        :meth:`start_existing`); :class:`RunConflict` if it is not paused."""
        run = await run_in_threadpool(self.store.get_run, run_id)
        if run["status"] != "paused":
            raise RunConflict(
                f"run {run_id!r} is {run['status']}, not paused: there is nothing to answer"
            )
        return await self.start_existing(run_id, answer=answer)

    async def flow_of(self, run: Mapping[str, Any]) -> Flow:
        """The loaded flow of a stored run's workflow (its current version)."""
        workflow_id = run.get("workflow_id")
        if workflow_id is None:
            raise RunConflict(f"run {run['id']!r} cannot resume: its workflow was deleted")
        try:
            workflow = await run_in_threadpool(self.store.get_workflow, workflow_id)
        except NotFound:
            raise RunConflict(
                f"run {run['id']!r} cannot resume: its workflow was deleted"
            ) from None
        cached = self.cached_flow(workflow)
        if cached is not None:
            return cached
        try:
            return await self.off_loop(self.load_flow, workflow)
        except FlowProblems as exc:
            raise RunConflict(
                f"run {run['id']!r} cannot resume: its workflow no longer loads ({exc})"
            ) from None

    async def recover(self) -> dict[str, list[str]]:
        """At service start: go on with the runs the last process left active.

        Events and checkpoint records a previous writer spilled are stored first (so the
        counters a resume numbers on from are complete). Then, oldest first, runs that have a
        checkpoint resume from it, ``queued`` runs without one are started, and the others
        are failed with the reason (``error_summary``); so are runs with stored events and
        no checkpoint (a flow that cannot be checkpointed, or durability ``exit``/``off``),
        while a ``running`` run with no stored event yet starts from the beginning. Where
        they go on is the executor's choice (:meth:`recover_here` in this process; a worker
        executor hands them to its workers). Runs a live process holds by an unexpired lease
        (a worker's) are left to it. Returns the run ids by outcome (``resumed``,
        ``requeued``, ``failed``, ``held``)."""
        for writer in (*self.writers, *self._adopted):
            await run_in_threadpool(writer.flush, self.settings.flush_timeout)
        return await self.executor.recover(self)

    async def unheld_active_runs(self) -> tuple[list[dict[str, Any]], list[str]]:
        """The active runs no live process holds (no lease, or an expired one), oldest first,
        and the ids of those that one holds."""
        free, held = [], []
        for run in await run_in_threadpool(self.store.active_runs):
            lease = await run_in_threadpool(self.store.get_lease, run["id"])
            if lease["owner"] is not None and not lease["expired"]:
                held.append(run["id"])
            else:
                free.append(run)
        return free, held

    async def recover_here(self) -> dict[str, list[str]]:
        """:meth:`recover` in this process (the in-process executor): every active run no
        live worker holds by its lease goes on here (the in-process executor takes no lease,
        so this still assumes one service per database when no workers are used)."""
        outcome: dict[str, list[str]] = {"resumed": [], "requeued": [], "failed": []}
        runs, outcome["held"] = await self.unheld_active_runs()
        for run in runs:
            run_id = run["id"]
            try:
                kind = await self._recover_run(run)
            except RunConflict as exc:
                reason = f"{RECOVERY_REASON}; {str(exc).removeprefix(f'run {run_id!r} ')}"
                await self._store_write(self.store.recover_interrupted, reason, [run_id])
                self.metrics.ended(run_id, "failed")
                kind = "failed"
            except Exception as exc:  # noqa: BLE001 - one run's problem must not stop the start
                summary = error_summary(exc, f"run {run_id}: recovery failed")
                await self._store_write(
                    self.store.recover_interrupted, f"{RECOVERY_REASON}; {summary}", [run_id]
                )
                kind = "failed"
            outcome[kind].append(run_id)
        return outcome

    async def drive(
        self, run_id: str, lease_token: int, answer: Any = UNSET
    ) -> RunHandle | dict[str, Any]:
        """Start stored run ``run_id`` here under a lease a worker acquired (its fencing token
        goes with every write of the run): from its checkpoint if it has one, else from the
        beginning. Returns the run's handle (await ``handle.task``), or the run as stored when
        there was nothing to execute (it had ended; only recording that was lost).

        Raises :class:`RunConflict` (it cannot start: why), :class:`FlowProblems`."""
        self.lease_tokens[run_id] = lease_token
        run = await run_in_threadpool(self.store.get_run, run_id)
        run.pop("steps", None)
        if run["status"] in FINAL_STATUSES:  # ended before the worker got its lease
            return run
        if run["status"] == "paused" and answer is not UNSET:
            stored = await self._start_stored(run_id, answer)
        else:
            await self._recover_run(run)
            stored = run
        handle = self._handles.get(run_id)
        return handle if handle is not None else stored

    def _lease_of(self, run_id: str) -> dict[str, Any]:
        """The lease argument of a write of run ``run_id`` (see :func:`lease_argument`)."""
        return lease_argument(self.lease_tokens, run_id)

    async def _recover_run(self, run: dict[str, Any]) -> str:
        run_id = run["id"]
        # A run without stored events has not started as far as the database knows (a durable
        # run's checkpoint begins before its first event): it starts now, from the beginning.
        if run["status"] == "queued" or run["last_seq"] == 0:
            records = await run_in_threadpool(self.store.records, run_id)
            if records is None:
                flow = await self.flow_of(run)
                try:
                    inputs = self.resolve_inputs(flow, run["input_vars"] or {})
                except FlowProblems as exc:
                    raise RunConflict(f"run {run_id!r} cannot start: {exc}") from None
                await self._launch(run, flow, inputs)
                return "requeued"
        await self._start_stored(run_id)
        return "resumed"

    async def cancel(self, run_id: str) -> tuple[str, str]:
        """Ask a run to stop; returns (its status then, what happens next)."""
        handle = self._handles.get(run_id)
        if handle is not None and handle.state in ("finishing", "done"):
            raise RunConflict(f"run {run_id!r} has already ended; its status is being recorded")
        if handle is None:
            run = await run_in_threadpool(self.store.get_run, run_id)
            if run["status"] in FINAL_STATUSES:
                raise RunConflict(f"run {run_id!r} has already finished ({run['status']})")
            if run["status"] == "paused":  # nothing executes: it ends here
                reason = "canceled through the API while paused"
                await self._store_write(self.store.finish_run, run_id, "canceled", reason)
                self.metrics.ended(run_id, "canceled")
                return "paused", "the run was paused; it is canceled"
            if self.executor.remote:  # a worker runs it: it reads the status at its heartbeat
                reason = "canceled through the API"
                await self._store_write(self.store.finish_run, run_id, "canceled", reason)
                self.metrics.ended(run_id, "canceled")
                if self.feed is not None:  # a worker on the live feed hears it at once
                    await self.feed.request_cancel(run_id)
                bound = self.settings.lease_seconds / 3
                return run["status"], (
                    f"the run is canceled; the worker executing it stops it within {bound:.1f} s"
                )
            if self.feed is not None:  # the process running it gets the request
                await self.feed.request_cancel(run_id)
                return run["status"], (
                    "cancellation sent to the service process running the run; it stops at "
                    "its next await or node boundary"
                )
            raise RunConflict(
                f"run {run_id!r} is {run['status']} but not executing in this service process "
                "(another process runs it); cancel it there"
            )
        status = "queued" if handle.state == "queued" else "running"
        if handle.cancel_reason is not None:
            return status, f"cancellation already requested: {handle.cancel_reason}"
        self._request_cancel(handle, "canceled through the API")
        if status == "queued":
            return status, "the run was queued; it will not start"
        return status, "the run stops at its next await or node boundary"

    def stop(self, run_id: str, reason: str) -> bool:
        """Stop run ``run_id`` if it executes in this process (a worker told by the store that
        the run was canceled, or that it lost the run's lease); ``False`` if it does not."""
        handle = self._handles.get(run_id)
        if handle is None:
            return False
        self._request_cancel(handle, reason)
        return True

    def _learn_address(self, address: tuple[str, int] | None) -> None:
        if address is None:
            return
        host, port = address
        try:
            self.self_endpoints.add(host, int(port))
        except ValueError:  # a Unix socket or a name: nothing a flow could connect to by IP
            pass

    def _attach_sinks(self, handle: RunHandle) -> None:
        """The operator's sinks, then the sinks the flow declares (built for this run under
        the service's policy)."""
        for name, options in self.operator_sinks:
            try:
                built = make_sink(self.loader.registry, name, options, secrets=handle.flow.secrets)
            except BackpackFlowError as exc:
                for earlier in handle.sinks:
                    earlier.close()
                error_id = new_error_id()
                log_failure(error_id, f"the operator's sink {name!r} failed to build", exc)
                raise FlowProblems(
                    "workflow", [with_error_id(f"$: the service's sink {name!r} failed", error_id)]
                ) from None
            handle.sinks.append(built)
            handle.streamer.subscribe("*", built.handle)
        config = getattr(handle.flow, "config", None)
        allowed = set(self.settings.flow_sinks)
        for i, sink in enumerate(getattr(config, "sinks", ()) or ()):
            where = f"$.sinks[{i}]"
            if sink.type not in allowed:  # saved before the operator changed the setting
                raise FlowProblems(
                    "workflow",
                    [f"{where}.type: sink type {sink.type!r} is not one flows may declare here"],
                )
            try:
                built = make_sink(
                    self.loader.registry,
                    sink.type,
                    sink.options,
                    policy=handle.flow.policy or self.policy,
                    secrets=handle.flow.secrets,
                )
            except BackpackFlowError as exc:
                for earlier in handle.sinks:
                    earlier.close()
                # options are resolved here: a message may quote a secret they hold
                masked = handle.flow.secrets.mask_text(str(exc)) if handle.flow.secrets else exc
                raise FlowProblems("workflow", [f"{where}: {masked}"]) from None
            handle.sinks.append(built)
            handle.streamer.subscribe("*", built.handle)

    def _check_accepting(self) -> None:
        if not self._accepting:
            raise ServiceUnavailable("the service is shutting down; no new runs are started")
        slots = self._slots
        waiting = self.queued_count
        if slots is not None and slots.locked() and waiting >= self.settings.max_queued_runs:
            raise ServiceUnavailable(
                f"{waiting} runs are already waiting for one of "
                f"{self.settings.max_concurrent_runs} slots; try again later"
            )

    def cancel_here(self, handle: RunHandle, reason: str) -> None:
        """Cancel a run this process holds (a request through the live feed)."""
        self._request_cancel(handle, reason)

    def _request_cancel(self, handle: RunHandle, reason: str) -> None:
        if handle.state in ("finishing", "done"):
            return
        if handle.cancel_reason is None:
            handle.cancel_reason = reason
        handle.canceled.set()  # a queued run stops waiting for a slot
        handle.control.cancel(handle.cancel_reason)  # a starting or running one stops

    def _subscriber(self, handle: RunHandle) -> Callable[[BackpackEvent], None]:
        """The run's only event subscriber: buffer for SSE, queue for storage."""
        writer = handle.writer = self.writers[next(self._next_writer) % len(self.writers)]
        loop = self._loop
        assert loop is not None

        def accept(event: BackpackEvent) -> None:
            slot = handle.accept(event)
            try:
                writer.put(handle.run_id, slot)  # constant time, never blocks
            except WriterClosed:  # only after shutdown; the event stays in memory
                handle.settle([event.seq], stored=False)

        def on_event(event: BackpackEvent) -> None:
            if threading.get_ident() == self._loop_thread:
                accept(event)
            else:  # emitted from a node's worker thread
                loop.call_soon_threadsafe(accept, event)

        return on_event

    def _on_loop(self, callback: Callable[..., None], *args: Any) -> None:
        """Run ``callback(*args)`` on the event loop (from a writer thread): only the loop
        touches run buffers."""
        loop = self._loop
        if loop is None or loop.is_closed():
            return
        try:
            loop.call_soon_threadsafe(callback, *args)
        except RuntimeError:  # the loop closed meanwhile: nobody is listening any more
            pass

    def _settled_threadsafe(self, run_id: str, seqs: list[int], stored: bool) -> None:
        self._on_loop(self._settled, run_id, seqs, stored)

    def _spilled_threadsafe(self, run_id: str, seq: int) -> None:
        self._on_loop(self._spilled, run_id, seq)

    def _spilled(self, run_id: str, seq: int) -> None:
        handle = self._handles.get(run_id)
        if handle is not None:
            handle.spill(seq)

    def _settled(self, run_id: str, seqs: list[int], stored: bool) -> None:
        handle = self._handles.get(run_id)
        if handle is not None:
            if stored and self.feed is not None:  # before settle may let them go
                self.feed.stored(handle, seqs)
            handle.settle(seqs, stored=stored)

    async def _acquire_slot(self, handle: RunHandle) -> bool:
        """Wait for a run slot (FIFO); ``False`` if the run was canceled meanwhile.

        Cancellation is an event raced against the semaphore rather than ``task.cancel()``:
        a task canceled before its first step would never run its bookkeeping.
        """
        slots = self._slots
        assert slots is not None
        if not slots.locked():
            await slots.acquire()  # a free slot: returns without suspending
            return handle.cancel_reason is None or self._give_back(slots)
        acquire = asyncio.ensure_future(slots.acquire())
        canceled = asyncio.ensure_future(handle.canceled.wait())
        try:
            await asyncio.wait((acquire, canceled), return_when=asyncio.FIRST_COMPLETED)
        finally:
            canceled.cancel()
            if not acquire.done():
                acquire.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await acquire
        granted = not acquire.cancelled()
        if granted and handle.cancel_reason is None:
            return True
        return granted and self._give_back(slots)

    @staticmethod
    def _give_back(slots: asyncio.Semaphore) -> bool:
        slots.release()
        return False

    async def _execute(self, handle: RunHandle) -> None:
        slots = self._slots
        assert slots is not None
        status: str
        error: str | None
        try:
            if not await self._acquire_slot(handle):
                await self._finish(handle, "canceled", handle.cancel_reason)
                return
            try:
                handle.state = "starting"
                if handle.queued_in_store:
                    await self._store_write_until_done(
                        self.store.mark_running, handle.run_id, **self._lease_of(handle.run_id)
                    )
                handle.state = "running"
                durable: dict[str, Any] = {}
                if handle.checkpointer is not None:
                    durable["checkpointer"] = handle.checkpointer
                    if self.settings.durability != "off":
                        durable["durability"] = self.settings.durability
                    if handle.answer is not UNSET:
                        durable["answer"] = handle.answer
                result = await handle.flow.execute(
                    None if handle.resuming else Backpack(),
                    inputs=None if handle.resuming else handle.inputs,
                    events=handle.streamer,
                    run_id=handle.run_id,
                    control=handle.control,
                    **durable,
                )
                status = result.status
                secrets = handle.flow.secrets
                outputs = dict(result.outputs)
                handle.outputs = secrets.mask(outputs) if secrets else outputs
                if status == "canceled" and handle.cancel_reason:  # say why, not RunCanceled
                    error = handle.cancel_reason
                else:
                    error = error_summary(
                        result.error, f"run {handle.run_id} {status}", handle.flow.secrets
                    )
            finally:
                slots.release()
        except Exception as exc:  # noqa: BLE001 - the service failed the run, not the flow
            summary = error_summary(
                exc, f"run {handle.run_id}: the service failed running it", handle.flow.secrets
            )
            status, error = "failed", f"service error: {summary}"
        await self._finish(handle, status, error)

    async def _finish(self, handle: RunHandle, status: str, error: str | None) -> None:
        """Store every event, then the final status; then let the database serve the run."""
        handle.state = "finishing"
        summary: dict[str, Any] | None = None
        recorded = False  # its events and its end are in the store
        for sink in handle.sinks:  # a webhook sends what it holds (bounded by close_timeout)
            try:
                await self.network_call(sink.close)
            except Exception:
                log.exception("run %s: a sink of the flow failed to close", handle.run_id)
        try:
            if handle.writer is not None:
                # Ask for the batch being collected now, without waiting for max_delay; the
                # wait itself is per run (settled), so no thread blocks on other runs' events.
                handle.writer.flush(timeout=0)
            try:
                await asyncio.wait_for(handle.settled(), self.settings.flush_timeout)
            except TimeoutError:
                log.error(
                    "run %s: events still unstored after %.0fs; finishing the run anyway",
                    handle.run_id,
                    self.settings.flush_timeout,
                )
            summary = await self._finish_in_store(handle.run_id, status, error, handle.outputs)
            # over for good (a paused run may go on in another process) and all stored
            recorded = summary is not None and summary.get("status") in FINAL_STATUSES
            recorded = recorded and not handle.has_unsettled
            if summary is not None and self.feed is not None:
                self.feed.ended(handle, summary)
        except Exception:
            log.exception("run %s: cannot record its end (%s)", handle.run_id, status)
        finally:
            if summary is None:
                summary = {"id": handle.run_id, "status": status, "error_summary": error}
            self.metrics.ended(handle.run_id, str(summary.get("status") or status))
            self.budgets.close(handle.run_id)
            self._handles.pop(handle.run_id, None)
            handle.done(summary)
            if recorded:
                self._keep_ended(handle)

    async def _finish_in_store(
        self, run_id: str, status: str, error: str | None, outputs: Mapping[str, Any]
    ) -> dict[str, Any] | None:
        lease = self._lease_of(run_id)
        try:
            if status == "paused":  # waits for an answer (POST /api/runs/{id}/resume)
                return await self._store_write_until_done(self.store.pause_run, run_id, **lease)
            return await self._store_write_until_done(
                self.store.finish_run, run_id, status, error, outputs, **lease
            )
        except LeaseLost as exc:  # another worker drives the run now: its end is theirs
            log.warning("run %s: not recording its end (%s): %s", run_id, status, exc)
            return None
        except InvalidTransition:
            run = await run_in_threadpool(self.store.get_run, run_id)
            run.pop("steps", None)
            log.warning("run %s was already %s; keeping that", run_id, run["status"])
            return run
        except Exception as exc:
            if not is_transient(exc):
                raise
            log.error(
                "run %s: cannot record its end (%s) before the service stops; it stays "
                "%r in the database until the next start recovers it",
                run_id,
                exc,
                "running",
            )
            return None

    async def _store_write_until_done(
        self, method: Callable[..., _T], *args: Any, **kwargs: Any
    ) -> _T:
        """A run's status write, retried while the database is unavailable: a run must not
        stay ``queued`` or ``running`` because of an outage. Gives up only once the service
        is stopping and ``flush_timeout`` has passed (the next start recovers the run)."""
        try:  # the first attempt without tenacity: building its retry loop costs more CPU
            return await self._store_write(method, *args, **kwargs)  # than the write itself
        except Exception as exc:
            if not is_transient(exc):
                raise

        def stop(state: RetryCallState) -> bool:
            elapsed = state.seconds_since_start or 0.0
            return self._stopping and elapsed > self.settings.flush_timeout

        def note(state: RetryCallState) -> None:
            outcome = state.outcome
            if state.attempt_number == 1 or state.attempt_number % 10 == 0:
                log.warning(
                    "run %s: %s: the database is unavailable (%s); retry %d in %.1fs",
                    args[0] if args else "?",
                    getattr(method, "__name__", "a status write"),
                    outcome.exception() if outcome is not None else None,
                    state.attempt_number,
                    sleep_before_retry(state),
                )

        retrying = AsyncRetrying(
            retry=retry_if_exception(is_transient),
            wait=wait_exponential(multiplier=0.1, max=2.0),
            stop=stop,
            before_sleep=note,
            reraise=True,
        )
        async for attempt in retrying:
            with attempt:
                return await self._store_write(method, *args, **kwargs)
        raise AssertionError("unreachable: tenacity re-raises the last error")  # pragma: no cover

    async def _store_write(self, method: Callable[..., _T], *args: Any, **kwargs: Any) -> _T:
        """A store write in the thread pool, taking turns with the other writes on SQLite."""

        def call() -> _T:
            with self._write_lock:
                return method(*args, **kwargs)

        return await anyio.to_thread.run_sync(call, limiter=self._write_threads)

    async def _finish_early(self, run_id: str, status: str, error: str) -> None:
        """End a run that never got a handle (refused between create and start)."""
        try:
            await self._store_write(self.store.finish_run, run_id, status, error)
        except Exception:
            log.exception("run %s: cannot mark it %s", run_id, status)
        self.metrics.ended(run_id, status)
