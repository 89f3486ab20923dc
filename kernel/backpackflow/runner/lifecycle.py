"""The node lifecycle, the runner's hot path: ``prep → exec → post`` of one node execution with
its events, retries, fallback and Backpack view.

:func:`execute_node` runs the common case (one attempt of a sync node) inline instead of going
through :func:`exec_phase` and :func:`_exec_with_retries`; the inline copy sits in this one
function, and tests/kernel/test_hot_path_parity.py checks both paths give the same events.
"""

from __future__ import annotations

import asyncio
import copy
import time
from collections.abc import Mapping
from types import MappingProxyType
from typing import TYPE_CHECKING, Any

from backpackflow.backpack import StateDelta
from backpackflow.config import RedactedParams
from backpackflow.errors import NodeInterrupt
from backpackflow.events import (
    ErrorPayload,
    ExecCompletePayload,
    NodeEndPayload,
    NodeStartPayload,
    PrepCompletePayload,
    RetryPayload,
    StreamEventType,
    exception_text,
)
from backpackflow.runner.context import _current_node

if TYPE_CHECKING:  # type-only back references: the node classes are run by this module
    from backpackflow.runner.base import BaseNode
    from backpackflow.runner.run import Run


async def exec_phase(
    node: BaseNode, run: Run, prep_res: Any, namespace: str | None
) -> tuple[Any, int]:
    """The exec phase of a plain node (``BaseNode._exec_phase``): ``exec`` with retries.
    Batch nodes and flows override ``_exec_phase``."""
    return await _exec_with_retries(run, node, prep_res)


def _fell_back(run: Run, exc: BaseException, attempts: int) -> None:
    """``exec_fallback`` returned a result instead of re-raising: say so in the trace."""
    message, error_type, _ = exception_text(exc)
    run.log(
        f"exec failed after {attempts} attempt(s) ({error_type}: {message}); exec_fallback "
        "returned a result instead",
        level="warning",
        data={"error": message, "error_type": error_type, "attempts": attempts},
    )


def _redacted_params(node: BaseNode) -> Any:
    """The params events show for a node with ``env_refs``: secrets resolved from ``${NAME}``
    are shown as the reference."""
    return RedactedParams(node.params, node.env_refs)


# module constants: a global is one specialized load, an enum member through its class a
# generic attribute lookup (the hot path reads four per node)
_NODE_START = StreamEventType.NODE_START
_PREP_COMPLETE = StreamEventType.PREP_COMPLETE
_EXEC_COMPLETE = StreamEventType.EXEC_COMPLETE
_NODE_END = StreamEventType.NODE_END


_new = tuple.__new__  # build named tuples without their Python-level __new__ on the hot path
_NO_PARAMS: Mapping[str, Any] = MappingProxyType({})
_now = time.time
# bound once: _current_node.set(...) looks the method up on every call
_enter_node = _current_node.set
_leave_node = _current_node.reset
_object_new = object.__new__  # a global: object.__new__ is a generic lookup on the class


async def execute_node(
    run: Run, node: BaseNode, parent_namespace: str | None, params: Mapping[str, Any] | None
) -> tuple[Any, Any]:
    """Run one node through its whole lifecycle with events. Returns (action, exec_result)."""
    step = run.next_step()
    # A shallow per-execution copy, so attributes a node sets in prep are its own even when the
    # same node object runs concurrently (PocketFlow copies nodes the same way).
    cls = type(node)  # read once (a clone has its node's class)
    try:
        clone = _object_new(cls)
        clone.__dict__ = node.__dict__.copy()  # measured 1.6x faster than __dict__.update
        node = clone
    except (TypeError, AttributeError):
        node = copy.copy(node)
        cls = type(node)
    if params:
        if cls.Params is None:
            node.params = {**node.params, **params}
        else:
            node.set_params(params)
    own = node.namespace
    namespace = (  # namespaces.join(parent_namespace, own), inlined: the hot path
        (f"{parent_namespace}.{own}" if own else parent_namespace) if parent_namespace else own
    )
    # read once: attribute reads on a node (a copied __dict__) are generic lookups
    node_id = node.id
    node_name = node.name
    make_frame = run._node_frame  # a slot read, then a call (run._node_frame() is slower)
    frame = make_frame(run, node_id, node_name, namespace, step)
    token = _enter_node(frame)
    backpack = run.backpack
    emit = frame.emit
    view = backpack._view(node_id, node_name, namespace, emit)  # reports its own accesses
    params = node.params
    if node.env_refs:
        params = _redacted_params(node)
    elif type(params) is dict:  # a handler may not change the node through its event
        params = MappingProxyType(params) if params else _NO_PARAMS
    # the state a node starts with, as a delta from the run's previous node_start (see
    # StateDelta): serialized runs then cost what was written, not a state copy per node
    seq = backpack._seq
    base = run._state_seq
    run._state_seq = seq
    # durations are measured between the events' own timestamps (one clock read per event)
    started = emit(
        _NODE_START,
        _new(
            NodeStartPayload,
            (
                node_name,
                node.node_type or cls.__name__,
                params,
                _new(StateDelta, (backpack, seq, base)),
            ),
        ),
    )
    phase = "prep"
    try:
        is_async = node.is_async
        prep_res = await node.prep_async(view) if is_async else node.prep(view)  # type: ignore[attr-defined]
        exec_started = emit(_PREP_COMPLETE, _new(PrepCompletePayload, (prep_res, [*view._reads])))
        phase = "exec"
        if (
            cls._exec_phase is exec_phase
            and not is_async
            and (node.max_retries == 1 and not node.blocking and not run.offload)
        ):
            # the common case, inline: one attempt of a sync node, then its fallback
            try:
                exec_res = node.exec(prep_res)
            except Exception as exc:  # noqa: BLE001 - exec_fallback decides (default: re-raise)
                exec_res = node.exec_fallback(prep_res, exc)
                _fell_back(run, exc, 1)
            attempts = 1
        else:
            exec_res, attempts = await node._exec_phase(run, prep_res, namespace)
        run.outputs[node.id] = exec_res  # post may replace it (e.g. with parsed JSON)
        now = _now()
        took = (now - exec_started) * 1e3
        emit(
            _EXEC_COMPLETE,
            _new(ExecCompletePayload, (exec_res, attempts, took if took > 0.0 else 0.0)),
            now,
        )
        phase = "post"
        if is_async:
            action = await node.post_async(view, prep_res, exec_res)  # type: ignore[attr-defined]
        else:
            action = node.post(view, prep_res, exec_res)
        now = _now()
        took = (now - started) * 1e3  # 0 if the wall clock was set back meanwhile
        emit(
            _NODE_END,
            _new(NodeEndPayload, (action, [*view._writes], took if took > 0.0 else 0.0)),
            now,
        )
        return action, run.outputs.get(node.id, exec_res)
    except BaseException as exc:
        if isinstance(exc, NodeInterrupt):  # not an error: the node asked for an answer
            if not exc.reported:
                exc.reported = True
                paused = exc.paused
                emit(
                    StreamEventType.CUSTOM,
                    {
                        "name": "interrupt",
                        "prompt": paused.prompt,
                        "schema": paused.schema,
                        "deadline": paused.deadline,
                    },
                )
            raise
        message, error_type, stack = exception_text(exc)
        if isinstance(exc, asyncio.CancelledError):
            timeout = run.limits.timeout
            if timeout is not None and run.elapsed >= timeout:  # the run's timeout, not a cancel
                message = f"interrupted by the run's timeout of {timeout}s"
                error_type = "GuardrailExceeded"
            else:
                message, error_type = "canceled", "CancelledError"
        emit(
            StreamEventType.ERROR,
            ErrorPayload(phase, message, error_type, stack, run.backpack.snapshot_ref()),
        )
        raise
    finally:
        _leave_node(token)


async def _exec_with_retries(
    run: Run, node: BaseNode, prep_res: Any, *, threaded: bool = False
) -> tuple[Any, int]:
    """``exec`` with retries, backoff and fallback; returns (result, attempts made)."""
    max_retries: int = getattr(node, "max_retries", 1)
    is_async = node.is_async
    # a run that offloads (the service's) sends every sync exec to a worker thread, so that no
    # node's CPU work stalls the event loop the service answers on
    to_thread = (
        (threaded or run.offload or getattr(node, "blocking", False))
        and not run.loopless
        and not is_async
    )
    for attempt in range(1, max_retries + 1):
        node.cur_retry = attempt - 1  # type: ignore[attr-defined]
        try:
            if is_async:
                return await node.exec_async(prep_res), attempt  # type: ignore[attr-defined]
            if to_thread:
                return await asyncio.to_thread(node.exec, prep_res), attempt
            return node.exec(prep_res), attempt
        except Exception as exc:  # noqa: BLE001 - retried, then exec_fallback decides
            if attempt >= max_retries:
                if is_async:
                    result = await node.exec_fallback_async(prep_res, exc)  # type: ignore[attr-defined]
                else:
                    result = node.exec_fallback(prep_res, exc)
                _fell_back(run, exc, attempt)
                return result, attempt
            delay = node.retry_delay(attempt)  # type: ignore[attr-defined]
            message, error_type, _ = exception_text(exc)
            run.emit(StreamEventType.RETRY, RetryPayload(message, error_type, attempt, delay))
            await run.sleep(delay)
    raise AssertionError("unreachable")  # pragma: no cover
