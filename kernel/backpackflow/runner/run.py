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
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from decimal import Decimal
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, NamedTuple

from backpackflow.backpack import access_event
from backpackflow.config import schema_problems
from backpackflow.errors import (
    BackpackFlowError,
    FlowError,
    GuardrailExceeded,
    InterruptTimeout,
    NodeInterrupt,
    RunCanceled,
    RunPaused,
)
from backpackflow.events import (
    Emitter,
    EventStreamer,
    GuardrailPayload,
    LogPayload,
    StreamEventType,
)
from backpackflow.ids import new_id
from backpackflow.jsondata import copy_out, decimal_text
from backpackflow.policy.sandbox import TRUSTED, SandboxPolicy
from backpackflow.runner.context import (
    DefaultMaxSteps,
    Limits,
    NodeFrame,
    RunControl,
    _current_node,
    _current_run,
    _MaskedEmitter,
    _MaskedNodeFrame,
)

if TYPE_CHECKING:  # annotations only: nothing here is needed at run time
    from backpackflow.backpack import AccessRecord, Backpack
    from backpackflow.policy.secrets import SecretMasker
    from backpackflow.runner.checkpoint import Recorder

_ZERO = Decimal(0)
#: The answers of a run that was not resumed: none (shared, never written: a resume makes its
#: own dict; node_done's pop on it is a no-op).
_NO_ANSWERS: dict[str, list[dict[str, Any]]] = {}


class Run:
    """State of one run. Made by the flow runner; node code uses :func:`current_run`."""

    # Slots: a run has more attributes than CPython 3.11 keeps inline in an instance (30), so
    # without them every run would build a dict and every attribute read on the node's hot
    # path would be a dict lookup.
    __slots__ = (
        "__weakref__",
        "_answers",
        "_asked",
        "_away",
        "_frame",
        "_home",
        "_home_loop",
        "_node_frame",
        "_recorder",
        "_seq",
        "_started",
        "_state_seq",
        "_steps",
        "_watch",
        "backpack",
        "control",
        "cost",
        "events",
        "flow_name",
        "inputs",
        "limits",
        "loopless",
        "max_steps",
        "node_count",
        "offload",
        "outputs",
        "policy",
        "run_id",
        "secrets",
        "started_at",
        "status",
        "stopped",
        "tokens_input",
        "tokens_output",
    )

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
        steps_per_pass: int = 1,
    ) -> None:
        self.run_id = run_id or new_id()
        self.flow_name = flow_name
        self.backpack = backpack
        self.events = events
        self.inputs: dict[str, Any] = dict(inputs) if inputs else {}
        self.limits = limits or Limits()
        max_steps = self.limits.max_steps
        if isinstance(max_steps, DefaultMaxSteps):  # the default is a rule: see its class
            max_steps = max_steps.for_graph(steps_per_pass)
        #: The node executions this run may make (``limits.max_steps``, the default resolved
        #: for the flow's size); ``None``: no limit.
        self.max_steps: int | None = max_steps
        self.control = control  # None: nobody can cancel this run from outside
        self.loopless = loopless
        #: What the flow may do (files, network, environment, template work); see
        #: :mod:`backpackflow.policy.sandbox`. Nodes, tools and templates read it here.
        self.policy = policy if policy is not None else TRUSTED
        #: Run CPU-bound node work in worker threads (the policy's ``offload``; never without
        #: an event loop, where there is nothing to keep responsive).
        #: A run with a timeout sends sync node work to threads as well: the timeout then
        #: ends the run while such a node is still running (see ``Limits.timeout``).
        self.offload = (self.policy.offload or self.limits.timeout is not None) and not loopless
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
        #: The Backpack seq of the run's latest ``node_start`` (-1: none yet): the base of the
        #: next one's :class:`~backpackflow.backpack.StateDelta`.
        self._state_seq = -1
        #: The latest exec result of each node id (templates: ``node.<id>.output``).
        self.outputs: dict[str, Any] = {}
        self.tokens_input = 0
        self.tokens_output = 0
        self.cost = _ZERO
        self.status = "running"
        #: Durable runs (:mod:`backpackflow.runner.checkpoint`): the recorder writing this
        #: run's checkpoint (``None``: not checkpointed), the answers given to interrupts, by
        #: node id, and how many interrupts each node execution (step) has asked so far.
        self._recorder: Recorder | None = None
        self._answers: dict[str, list[dict[str, Any]]] = _NO_ANSWERS  # a resume sets its own
        self._asked: dict[int | None, int] | None = None  # made by the first interrupt()
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
        self,
        type: StreamEventType,
        payload: Any = None,
        *,
        frame: Emitter | None = None,
        timestamp: float | None = None,
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
        frame.emit(type, payload, timestamp)

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
        type_, payload, timestamp = access_event(record)
        self.emit(type_, payload, timestamp=timestamp)

    # -------------------------------------------------------------- human in the loop

    def interrupt(self, prompt: str, schema: Any = True, *, timeout: float | None = None) -> Any:
        """Ask a person (or any caller) for an answer: the run pauses here (status
        ``paused``, a ``custom`` event named ``interrupt``, and in its checkpoint) and this
        node runs again from its start once the run is resumed with an answer valid against
        ``schema`` (a JSON Schema); this call then returns that answer. Code before the call
        runs again on resume, so keep side effects after it.

        ``timeout`` (seconds): a resume after that time without an answer makes this call
        raise :class:`InterruptTimeout` (the ``approval`` node turns it into its ``timeout``
        action). Pausing needs a checkpointer to resume from (``flow.run(checkpointer=...)``);
        without one the run ends ``paused`` and cannot go on."""
        frame = _current_node.get()
        if frame is None or frame._counter is not self._seq:
            raise FlowError("interrupt() asks from inside a node of a running flow")
        node_id = frame.node_id
        assert node_id is not None
        asked = self._asked
        if asked is None:
            asked = self._asked = {}
        index = asked.get(frame.step, 0)
        asked[frame.step] = index + 1
        answers = self._answers.get(node_id)
        if answers is not None and index < len(answers):
            answer = answers[index]
            if answer.get("timeout"):
                raise InterruptTimeout(
                    f"node {node_id!r}: nobody answered {prompt!r} within {timeout}s"
                )
            return copy_out(answer.get("value"))
        problems = schema_problems(schema, f"node {node_id!r}: interrupt schema")
        if problems:
            raise FlowError("; ".join(problems))
        if timeout is not None and (isinstance(timeout, bool) or not timeout > 0):
            raise FlowError(f"node {node_id!r}: interrupt timeout must be > 0, got {timeout!r}")
        paused = RunPaused(
            f"run {self.run_id} paused at node {node_id!r}: {prompt}",
            run_id=self.run_id,
            node_id=node_id,
            prompt=prompt,
            schema=copy_out(schema) if not isinstance(schema, bool) else schema,
            deadline=None if timeout is None else time.time() + timeout,
        )
        raise NodeInterrupt(paused)

    # -------------------------------------------------------------- steps and limits

    def next_step(self) -> int:
        """Account for one more node execution, after checking every limit."""
        if self._watch or (self.control is not None and self.control.canceled):
            self.check_limits()
        limit = self.max_steps
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

    @contextmanager
    def nested_step(self, name: str | None = None) -> Iterator[NodeFrame]:
        """A step nested in the executing node's step, for work a node does as steps of its
        own (an agent's tool calls): its events get a step number of their own and
        ``parent_step`` naming the node's step, and code inside the ``with`` block (its task,
        for concurrent ones) emits as that step. ``name`` is the step's ``node_name`` (default:
        the node's). Nested steps are trace structure, not node executions: they do not count
        against ``max_steps``."""
        parent = _current_node.get()
        if parent is None or parent._counter is not self._seq or parent.step is None:
            raise BackpackFlowError(
                f"run {self.run_id}: nested_step() is for code inside a node this run executes"
            )
        frame = self._node_frame(
            self,
            parent.node_id or "",
            (parent.node_name or "") if name is None else name,
            parent.namespace,
            next(self._steps),
        )
        frame.parent_step = parent.step
        token = _current_node.set(frame)
        try:
            yield frame
        finally:
            _current_node.reset(token)

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
    """What a run produced. ``status`` is ``succeeded``, ``failed``, ``canceled`` or ``paused``
    (a node asked for an answer: ``error`` is the :class:`~backpackflow.RunPaused` saying
    what)."""

    run_id: str
    status: str
    action: str | None
    error: BaseException | None
    duration_ms: float
    node_count: int
    totals: dict[str, Any]
    backpack: Backpack
    events: EventStreamer
    #: The values of the outputs the flow declares (``FlowConfig.outputs``) at the end of
    #: the run; empty when it declares none.
    outputs: Mapping[str, Any] = MappingProxyType({})

    @property
    def ok(self) -> bool:
        return self.status == "succeeded"

    def raise_for_status(self) -> None:
        """Re-raise the run's error, if it failed or was canceled."""
        if self.error is not None:
            raise self.error
