"""What node code sees of its run: limits, the node frame (its event emitter), cancellation,
and the context variables behind :func:`current_run` / :func:`current_node` (so concurrent runs
and parallel branches in one event loop never see each other's run)."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable, Iterable
from contextlib import AbstractAsyncContextManager
from contextvars import ContextVar
from decimal import Decimal
from typing import TYPE_CHECKING, Any

import attrs

from backpackflow.errors import BackpackFlowError
from backpackflow.events import Emitter, StreamEventType
from backpackflow.policy.sandbox import TRUSTED, SandboxPolicy

if TYPE_CHECKING:  # type-only back references: a Run makes these frames and is their context
    from backpackflow.policy.secrets import SecretMasker
    from backpackflow.runner.run import Run


class DefaultMaxSteps(int):
    """The default ``max_steps``: not a fixed number but a rule, applied when a run starts:
    the larger of this floor (1000) and :data:`DEFAULT_STEPS_PER_NODE` node executions per
    node of the flow (nested flows' nodes included). So a 100,000-node chain runs with the
    default limit, and a loop still ends after ten passes over a large flow. Any explicit
    ``max_steps`` (1000 included) is honoured exactly; ``None`` means no limit."""

    __slots__ = ()

    def for_graph(self, steps_per_pass: int) -> int:
        """The limit for a flow whose one pass makes ``steps_per_pass`` node executions."""
        return max(int(self), DEFAULT_STEPS_PER_NODE * steps_per_pass)

    def __repr__(self) -> str:
        return f"DefaultMaxSteps({int(self)})"


#: Node executions the default ``max_steps`` allows per node of the flow.
DEFAULT_STEPS_PER_NODE = 10
DEFAULT_MAX_STEPS = DefaultMaxSteps(1000)
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
    """Per-run guardrails. ``max_steps`` bounds node executions (cycles included; its default,
    :data:`DEFAULT_MAX_STEPS`, scales with the flow: see :class:`DefaultMaxSteps`); ``timeout``
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
        self.parent_step = None


class _MaskedNodeFrame(NodeFrame):
    """A node frame of a run with secrets: every payload is masked before anyone sees it (see
    :mod:`backpackflow.policy.secrets`). Runs without secrets use :class:`NodeFrame` and pay
    nothing."""

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
    interrupts what it is awaiting when it runs in an event loop. :meth:`gate_nodes` makes
    nodes of some types wait for a slot (concurrency caps across runs)."""

    def __init__(self) -> None:
        self.canceled = False
        self.reason: str | None = None
        #: Node types whose executions hold ``node_gate(node_type)`` (empty: none).
        self.gated_types: frozenset[str] = frozenset()
        self.node_gate: Callable[[str], AbstractAsyncContextManager[Any]] | None = None
        self._task: asyncio.Task[Any] | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    def gate_nodes(
        self, types: Iterable[str], gate: Callable[[str], AbstractAsyncContextManager[Any]]
    ) -> None:
        """Hold ``gate(node_type)`` around every execution (prep, exec, post) of a node of
        one of ``types`` in this run, nested flows' nodes included: the service's concurrency
        caps per node type, which ``gate`` waits for. A run without a loop cannot wait, so
        only runs executed in an event loop (``Flow.execute``) are gated."""
        self.gated_types = frozenset(types)
        self.node_gate = gate

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
