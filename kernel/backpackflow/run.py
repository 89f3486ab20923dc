"""One run of a flow: its id, Backpack, events, inputs, limits, usage and cancellation.

Node code reaches its run through :func:`current_run` (a context variable, so concurrent runs and
parallel branches in one event loop never see each other's run) and emits events with
``current_run().emit(...)``; the node identity and step are stamped automatically.
"""

from __future__ import annotations

import asyncio
import itertools
import threading
import time
import weakref
from collections.abc import Callable, Mapping
from contextvars import ContextVar
from decimal import Decimal
from typing import TYPE_CHECKING, Any, NamedTuple

import attrs

from backpackflow.errors import BackpackFlowError, GuardrailExceeded, RunCanceled
from backpackflow.events import (
    BackpackPackPayload,
    BackpackUnpackPayload,
    Emitter,
    EventStreamer,
    GuardrailPayload,
    LogPayload,
    StreamEventType,
)
from backpackflow.ids import new_id
from backpackflow.jsondata import decimal_text
from backpackflow.sandbox import TRUSTED, SandboxPolicy

if TYPE_CHECKING:
    from backpackflow.backpack import AccessRecord, Backpack
    from backpackflow.secrets import SecretMasker

DEFAULT_MAX_STEPS = 1000
_ZERO = Decimal(0)


def _decimal_or_none(value: Any) -> Decimal | None:
    if value is None:
        return None
    try:
        result = Decimal(str(value))
    except ArithmeticError:
        raise ValueError(f"max_cost must be a decimal number, got {value!r}") from None
    if not result.is_finite() or result < 0:
        raise ValueError(f"max_cost must be a finite number >= 0, got {value!r}")
    return result


def _positive_or_none(name: str) -> Any:
    def check(instance: Any, attribute: Any, value: Any) -> None:
        if value is None:
            return
        if isinstance(value, bool) or not isinstance(value, (int, float)) or value <= 0:
            raise ValueError(f"{name} must be a positive number or None, got {value!r}")

    return check


@attrs.frozen
class Limits:
    """Per-run guardrails. ``max_steps`` bounds node executions (cycles included); ``timeout``
    is seconds of wall time; ``max_tokens`` and ``max_cost`` bound what nodes report through
    :meth:`Run.add_usage`."""

    max_steps: int | None = attrs.field(
        default=DEFAULT_MAX_STEPS, validator=_positive_or_none("max_steps")
    )
    timeout: float | None = attrs.field(default=None, validator=_positive_or_none("timeout"))
    max_tokens: int | None = attrs.field(default=None, validator=_positive_or_none("max_tokens"))
    max_cost: Decimal | None = attrs.field(default=None, converter=_decimal_or_none)

    def to_json(self) -> dict[str, Any]:
        return {
            "max_steps": self.max_steps,
            "timeout": self.timeout,
            "max_tokens": self.max_tokens,
            "max_cost": None if self.max_cost is None else format(self.max_cost, "f"),
        }


class NodeFrame(Emitter):
    """The node execution that code is running in (see :func:`current_node`); its
    :meth:`~backpackflow.events.Emitter.emit` stamps events with the node's identity and step
    (from another thread, the event is handed to the run's thread; see :meth:`Run.emit`)."""

    __slots__ = ()

    def __init__(
        self, run: Run, node_id: str, node_name: str, namespace: str | None, step: int | None
    ) -> None:
        # Emitter.__init__, inlined: one frame is made per node execution
        self._stream = run.events
        self._counter = run._seq
        self.run_id = run.run_id
        self.step = step
        self.node_id = node_id
        self.node_name = node_name
        self.namespace = namespace
        self._home = run._home
        self._away = run._away


class _MaskedNodeFrame(NodeFrame):
    """A node frame of a run with secrets: every payload is masked before anyone sees it (see
    :mod:`backpackflow.secrets`). Runs without secrets use :class:`NodeFrame` and pay nothing."""

    __slots__ = ("_secrets",)
    _secrets: SecretMasker | None

    def __init__(
        self, run: Run, node_id: str, node_name: str, namespace: str | None, step: int | None
    ) -> None:
        NodeFrame.__init__(self, run, node_id, node_name, namespace, step)
        self._secrets = run.secrets

    def emit(self, type: StreamEventType, payload: Any, timestamp: float | None = None) -> float:
        secrets = self._secrets
        if secrets:
            payload = secrets.mask_payload(payload)
        return Emitter.emit(self, type, payload, timestamp)


class _MaskedEmitter(Emitter):
    """The run-level emitter of a run with secrets (``run_start``, ``run_end``, logs)."""

    __slots__ = ("_secrets",)
    _secrets: SecretMasker | None

    def emit(self, type: StreamEventType, payload: Any, timestamp: float | None = None) -> float:
        secrets = self._secrets
        if secrets:
            payload = secrets.mask_payload(payload)
        return Emitter.emit(self, type, payload, timestamp)


_thread_id = threading.get_ident


class RunControl:
    """Cancel a run from outside: ``control.cancel()`` stops it before its next node, and
    interrupts what it is awaiting when it runs in an event loop."""

    def __init__(self) -> None:
        self.canceled = False
        self.reason: str | None = None
        self._task: asyncio.Task[Any] | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    def cancel(self, reason: str = "canceled") -> None:
        self.canceled = True
        self.reason = reason
        task, loop = self._task, self._loop
        if task is not None and loop is not None and not task.done():
            loop.call_soon_threadsafe(self._interrupt, task)

    def _interrupt(self, task: asyncio.Task[Any]) -> None:
        # Runs later, on the run's loop: only while that run is still going, so a cancel that
        # arrives as the run ends never hits the caller's task afterwards.
        if self._task is task and not task.done():
            task.cancel()


_current_run: ContextVar[Run | None] = ContextVar("backpackflow_run", default=None)
_current_node: ContextVar[NodeFrame | None] = ContextVar("backpackflow_node", default=None)


def current_run() -> Run:
    """The run the calling code belongs to. Raises outside a run."""
    run = _current_run.get()
    if run is None:
        raise BackpackFlowError(
            "no flow run is active here: current_run() works inside a node that a Flow (or "
            "node.run) is executing"
        )
    return run


def current_run_or_none() -> Run | None:
    return _current_run.get()


def current_node() -> NodeFrame | None:
    """The node execution the calling code runs in, or ``None``."""
    return _current_node.get()


def current_policy() -> SandboxPolicy:
    """The sandbox policy of the run the calling code belongs to (:data:`TRUSTED` outside
    runs and for runs of one's own flows)."""
    run = _current_run.get()
    return run.policy if run is not None else TRUSTED


class Run:
    """State of one run. Made by the flow runner; node code uses :func:`current_run`."""

    def __init__(
        self,
        *,
        flow_name: str,
        backpack: Backpack,
        events: EventStreamer,
        inputs: Mapping[str, Any] | None = None,
        limits: Limits | None = None,
        run_id: str | None = None,
        control: RunControl | None = None,
        loopless: bool = False,
        policy: SandboxPolicy | None = None,
        secrets: SecretMasker | None = None,
    ) -> None:
        self.run_id = run_id or new_id()
        self.flow_name = flow_name
        self.backpack = backpack
        self.events = events
        self.inputs: dict[str, Any] = dict(inputs) if inputs else {}
        self.limits = limits or Limits()
        self.control = control  # None: nobody can cancel this run from outside
        self.loopless = loopless
        #: What the flow may do (files, network, environment, template work); see
        #: :mod:`backpackflow.sandbox`. Nodes, tools and templates read it here.
        self.policy = policy if policy is not None else TRUSTED
        #: Run CPU-bound node work in worker threads (the policy's ``offload``; never without
        #: an event loop, where there is nothing to keep responsive).
        self.offload = self.policy.offload and not loopless
        #: Secrets masked in every event of this run (``None``: nothing to mask).
        self.secrets = secrets
        #: The node frame class: masking when the run has secrets.
        self._node_frame: type[NodeFrame] = NodeFrame if secrets is None else _MaskedNodeFrame
        #: Set when the run has ended: work still going on in worker threads (a template being
        #: rendered) stops at its next check.
        self.stopped = False
        self.started_at = time.time()
        self._started = time.perf_counter()
        self._seq = itertools.count(1)
        self._steps = itertools.count(1)
        self.node_count = 0
        #: The latest exec result of each node id (templates: ``node.<id>.output``).
        self.outputs: dict[str, Any] = {}
        self.tokens_input = 0
        self.tokens_output = 0
        self.cost = _ZERO
        self.status = "running"
        #: The event-loop thread running this run (None when driven without a loop): events
        #: emitted from other threads are handed to it (see :meth:`emit`).
        self._home: int | None = None
        self._home_loop: asyncio.AbstractEventLoop | None = None
        self._away: Callable[[Emitter, StreamEventType, Any, float], None] | None = None
        self._frame = self._run_frame()  # stamps run-level events
        limits = self.limits
        #: Whether any limit beyond max_steps needs checking before each node.
        self._watch = (
            limits.timeout is not None
            or limits.max_tokens is not None
            or limits.max_cost is not None
        )

    # -------------------------------------------------------------- events

    def emit(
        self, type: StreamEventType, payload: Any = None, *, frame: Emitter | None = None
    ) -> None:
        """Emit an event in this run, stamped with the current node (or ``frame``); run-level
        when no node of this run is executing.

        From a worker thread (a ``blocking`` node's exec, a parallel batch item) the event is
        handed to the run's event-loop thread, so subscribers see every run's events in one
        thread, in ``seq`` order; it keeps the time it was emitted at."""
        if frame is None:
            frame = _current_node.get()
            if frame is None or frame._counter is not self._seq:  # none, or another run's
                frame = self._frame
        frame.emit(type, payload)

    def bind_to_loop(self) -> None:
        """Make the running event loop's thread this run's home: events emitted from other
        threads are handed to it."""
        self._home_loop = asyncio.get_running_loop()
        self._home = threading.get_ident()
        run = weakref.ref(self)  # the run holds this function: no reference cycle

        def away(frame: Emitter, type: StreamEventType, payload: Any, timestamp: float) -> None:
            me = run()
            if me is not None:
                me._from_thread(frame, type, payload, timestamp)

        self._away = away
        self._frame = self._run_frame()

    def _run_frame(self) -> Emitter:
        if self.secrets is None:
            return Emitter(
                self.events, self._seq, self.run_id, None, None, None, None, self._home, self._away
            )
        frame = _MaskedEmitter(
            self.events, self._seq, self.run_id, None, None, None, None, self._home, self._away
        )
        frame._secrets = self.secrets
        return frame

    def node_frame(
        self, node_id: str, node_name: str, namespace: str | None, step: int | None
    ) -> NodeFrame:
        """A frame emitting as node ``node_id`` of this run (masking when it has secrets)."""
        return self._node_frame(self, node_id, node_name, namespace, step)

    def check_stopped(self) -> None:
        """Raise when the run has ended, was canceled or is over its timeout: work that goes
        on in a worker thread (a template render) calls this between steps."""
        if self.stopped:
            raise RunCanceled(f"run {self.run_id} has ended")
        control = self.control
        if control is not None and control.canceled:
            raise RunCanceled(f"run {self.run_id} was canceled: {control.reason}")
        timeout = self.limits.timeout
        if timeout is not None and self.elapsed > timeout:
            raise GuardrailExceeded(
                f"run {self.run_id} hit its timeout of {timeout}s",
                limit="timeout",
                value=self.elapsed,
                maximum=timeout,
            )

    def _from_thread(
        self, frame: Emitter, type: StreamEventType, payload: Any, timestamp: float
    ) -> None:
        """Hand an event emitted on another thread to the run's thread: the frame emits it
        there, with the time it was emitted at."""
        assert self._home_loop is not None
        self._home_loop.call_soon_threadsafe(frame.emit, type, payload, timestamp)

    def log(self, message: str, *, level: str = "info", data: Any = None) -> None:
        """Emit a ``log`` event from node code."""
        self.emit(StreamEventType.LOG, LogPayload(level, message, data))

    def on_backpack_access(self, record: AccessRecord) -> None:
        """Backpack observer: turn accesses made in this run into Backpack events."""
        if _current_run.get() is not self:
            return
        if record.op == "unpack":
            self.emit(
                StreamEventType.BACKPACK_UNPACK,
                BackpackUnpackPayload(record.key, record.granted, record.reason, record.found),
            )
        else:
            commit = record.commit
            self.emit(
                StreamEventType.BACKPACK_PACK,
                BackpackPackPayload(
                    record.key,
                    record.op,
                    record.value,
                    commit.commit_id if commit else None,
                    commit.version if commit else None,
                    commit.tags if commit else (),
                    record.granted,
                    record.reason,
                ),
            )

    # -------------------------------------------------------------- steps and limits

    def next_step(self) -> int:
        """Account for one more node execution, after checking every limit."""
        if self._watch or (self.control is not None and self.control.canceled):
            self.check_limits()
        limit = self.limits.max_steps
        if limit is not None and self.node_count >= limit:
            self._guardrail(
                "max_steps",
                self.node_count + 1,
                limit,
                f"run {self.run_id} would execute more than max_steps={limit} nodes; raise "
                "limits.max_steps if the flow really loops that long",
            )
        self.node_count += 1
        return next(self._steps)

    @property
    def elapsed(self) -> float:
        """Seconds since the run started."""
        return time.perf_counter() - self._started

    def check_limits(self) -> None:
        """Raise (after a ``guardrail`` event) when the run is canceled or over a limit. Long
        loops inside one node may call this between iterations."""
        control = self.control
        if control is not None and control.canceled:
            raise RunCanceled(f"run {self.run_id} was canceled: {control.reason}")
        limits = self.limits
        if limits.timeout is not None and self.elapsed > limits.timeout:
            self._guardrail(
                "timeout",
                round(self.elapsed, 3),
                limits.timeout,
                f"run {self.run_id} ran {self.elapsed:.2f}s, over its timeout of {limits.timeout}s",
            )
        if limits.max_tokens is not None and self.total_tokens > limits.max_tokens:
            self._guardrail(
                "max_tokens",
                self.total_tokens,
                limits.max_tokens,
                f"run {self.run_id} used {self.total_tokens} tokens, over max_tokens="
                f"{limits.max_tokens}",
            )
        if limits.max_cost is not None and self.cost > limits.max_cost:
            self._guardrail(
                "max_cost",
                str(self.cost),
                str(limits.max_cost),
                f"run {self.run_id} cost {self.cost}, over max_cost={limits.max_cost}",
            )

    def _guardrail(self, limit: str, value: Any, maximum: Any, message: str) -> None:
        self.emit(StreamEventType.GUARDRAIL, GuardrailPayload(limit, value, maximum, message))
        raise GuardrailExceeded(message, limit=limit, value=value, maximum=maximum)

    def timeout_exceeded(self) -> GuardrailExceeded:
        """The error (after its ``guardrail`` event) for a timeout hit while awaiting."""
        limit = self.limits.timeout
        message = f"run {self.run_id} hit its timeout of {limit}s"
        self.emit(
            StreamEventType.GUARDRAIL,
            GuardrailPayload("timeout", round(self.elapsed, 3), limit, message),
        )
        return GuardrailExceeded(message, limit="timeout", value=self.elapsed, maximum=limit)

    # -------------------------------------------------------------- usage

    def add_usage(
        self,
        *,
        input_tokens: int = 0,
        output_tokens: int = 0,
        cost: Decimal | str | int = 0,
    ) -> None:
        """Account tokens and cost (exact decimal) reported by a node (e.g. an LLM call)."""
        self.tokens_input += input_tokens
        self.tokens_output += output_tokens
        self.cost += cost if isinstance(cost, Decimal) else Decimal(str(cost))

    @property
    def total_tokens(self) -> int:
        return self.tokens_input + self.tokens_output

    def totals(self) -> dict[str, Any]:
        return {
            "tokens_input": self.tokens_input,
            "tokens_output": self.tokens_output,
            "total_tokens": self.total_tokens,
            "cost": decimal_text(self.cost),
        }

    # -------------------------------------------------------------- sleeping

    async def sleep(self, seconds: float) -> None:
        """Wait (retry backoff): ``asyncio.sleep`` in a loop, a plain sleep when driven
        without one. Cancellation is checked before and after."""
        if seconds <= 0:
            return
        control = self.control
        if control is not None and control.canceled:
            raise RunCanceled(f"run {self.run_id} was canceled: {control.reason}")
        if self.loopless:
            # no event loop to interrupt the wait: the timeout is enforced here
            timeout = self.limits.timeout
            if timeout is not None and self.elapsed + seconds > timeout:
                time.sleep(max(0.0, timeout - self.elapsed))
                raise self.timeout_exceeded()
            time.sleep(seconds)
        else:
            await asyncio.sleep(seconds)
        if control is not None and control.canceled:
            raise RunCanceled(f"run {self.run_id} was canceled: {control.reason}")


class RunResult(NamedTuple):
    """What a run produced. ``status`` is ``succeeded``, ``failed`` or ``canceled``."""

    run_id: str
    status: str
    action: str | None
    error: BaseException | None
    duration_ms: float
    node_count: int
    totals: dict[str, Any]
    backpack: Backpack
    events: EventStreamer

    @property
    def ok(self) -> bool:
        return self.status == "succeeded"

    def raise_for_status(self) -> None:
        """Re-raise the run's error, if it failed or was canceled."""
        if self.error is not None:
            raise self.error
