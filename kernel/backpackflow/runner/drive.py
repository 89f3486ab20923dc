"""Driving a run: the synchronous and asynchronous entry points, run_start / run_end, limits,
cancellation and the :class:`~backpackflow.RunResult`. Knows nothing of node classes: a run's
body is any coroutine (a flow's scheduler, or one node's lifecycle)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine, Mapping
from types import MappingProxyType
from typing import TYPE_CHECKING, Any

from backpackflow.backpack import Backpack
from backpackflow.errors import FlowError, NodeInterrupt, RunCanceled
from backpackflow.events import (
    EventStreamer,
    RunEndPayload,
    RunStartPayload,
    StreamEventType,
    on_private_loop,
)
from backpackflow.jsondata import copy_out
from backpackflow.runner.context import Limits, RunControl, _current_node, _current_run
from backpackflow.runner.lifecycle import execute_node
from backpackflow.runner.run import Run, RunResult

if TYPE_CHECKING:  # type-only back reference: the node classes call these to run alone
    from backpackflow.runner.base import BaseNode

_NO_INPUTS: Mapping[str, Any] = MappingProxyType({})
_NO_OUTPUTS: Mapping[str, Any] = MappingProxyType({})
_new = tuple.__new__
_RUN_START = StreamEventType.RUN_START  # a global, not a generic lookup through the enum class
_RUN_END = StreamEventType.RUN_END


def _check_backpack(backpack: Any) -> None:
    if not isinstance(backpack, Backpack):
        hint = (
            " (wrap a PocketFlow shared dict: Backpack(shared))"
            if isinstance(backpack, dict)
            else ""
        )
        raise TypeError(f"a flow runs on a Backpack, got {type(backpack).__name__}{hint}")


def _refuse_inside_loop(flow: BaseNode) -> None:
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return
    raise FlowError(
        f"flow {flow.id!r} has async or parallel nodes and an event loop is already running "
        "here: use 'await flow.run_async(backpack)' (or 'await flow.execute(...)')"
    )


def _run_on_private_loop(coro: Coroutine[Any, Any, RunResult]) -> RunResult:
    """``asyncio.run(coro)`` for the synchronous entry points; async event handlers scheduled
    meanwhile go to the streamer's background loop, which outlives this one.

    Unlike ``asyncio.run`` it does not wait for worker threads still running when the run has
    ended: a synchronous node that a timeout or a cancel interrupted (it runs in a thread in
    such runs, see ``Limits.timeout``) cannot be stopped, and the caller must not wait for it
    (it is left to finish; it sees the run stopped at its next ``check_stopped``)."""
    token = on_private_loop.set(True)
    loop = asyncio.new_event_loop()
    try:
        return loop.run_until_complete(coro)
    finally:
        try:
            tasks = asyncio.all_tasks(loop)
            for task in tasks:
                task.cancel()
            if tasks:
                loop.run_until_complete(asyncio.gather(*tasks, return_exceptions=True))
            loop.run_until_complete(loop.shutdown_asyncgens())
        finally:
            loop.close()  # shuts the default executor down without waiting for its threads
            on_private_loop.reset(token)


def _drive(coro: Coroutine[Any, Any, RunResult]) -> RunResult:
    """Run a coroutine that never suspends, without an event loop."""
    try:
        coro.send(None)
    except StopIteration as stop:
        return stop.value  # type: ignore[no-any-return]
    coro.close()
    raise FlowError(
        "a node awaited something while the flow ran without an event loop; mark async nodes "
        "as AsyncNode (or run the flow with 'await flow.run_async(...)')"
    )


async def _drive_run(run: Run, body: Callable[[], Coroutine[Any, Any, Any]]) -> RunResult:
    """Run ``body`` as run ``run``: run_start/run_end events, Backpack events, limits,
    cancellation and the result."""
    token = _current_run.set(run)
    # a run started from inside a node (a sub-flow run in exec) must not inherit that node's frame
    node_token = _current_node.set(None)
    observer = run.on_backpack_access
    observers = run.backpack._observers
    observers.append(observer)
    control = run.control
    if not run.loopless:
        run.bind_to_loop()
        if control is not None:
            control._task = asyncio.current_task()
            control._loop = run._home_loop
    run._frame.emit(
        _RUN_START,
        _new(  # RunStartPayload(...) without its Python-level __new__, as for every event
            RunStartPayload,
            (
                run.flow_name,
                # a read-only copy: a handler must not change the run's inputs through its event
                MappingProxyType(copy_out(run.inputs)) if run.inputs else _NO_INPUTS,
                run.limits,
            ),
        ),
    )
    status, action = "succeeded", None
    error: BaseException | None = None
    reraise: BaseException | None = None
    try:
        timeout = run.limits.timeout
        if timeout is not None and not run.loopless:
            try:
                async with asyncio.timeout(timeout) as scope:
                    action = await body()
            except TimeoutError:
                if not scope.expired():
                    raise
                raise run.timeout_exceeded() from None
        else:
            action = await body()
    except NodeInterrupt as exc:  # a node asked for an answer: the run pauses
        status, error = "paused", exc.paused
    except RunCanceled as exc:
        status, error = "canceled", exc
    except asyncio.CancelledError as exc:
        status = "canceled"
        ours = control is not None and control.canceled
        reason = control.reason if ours and control is not None else "task canceled"
        error = RunCanceled(f"run {run.run_id} was canceled: {reason}")
        task = asyncio.current_task()
        if ours and task is not None:
            task.uncancel()
        else:
            reraise = exc
    except Exception as exc:  # noqa: BLE001 - a failed run is a result, not a crash
        status, error = "failed", exc
    except BaseException as exc:  # noqa: BLE001 - KeyboardInterrupt etc.: record, then re-raise
        status, error, reraise = "failed", exc, exc
    finally:
        run.stopped = True  # work left in worker threads stops at its next check
        if control is not None:
            control._task = None
            control._loop = None
        run.status = status
        duration_ms = run.elapsed * 1e3
        totals = run.totals()
        run._frame.emit(
            _RUN_END,
            _new(
                RunEndPayload,
                (
                    status,
                    duration_ms,
                    run.node_count,
                    None if error is None else (str(error) or type(error).__name__),
                    None if error is None else type(error).__name__,
                    action if isinstance(action, str) else None,
                    totals,
                ),
            ),
        )
        recorder = run._recorder
        if recorder is not None:  # a durable run: its checkpoint's last records
            recorder.finish(run, status, error)
        observers.remove(observer)
        _current_node.reset(node_token)
        _current_run.reset(token)
    if reraise is not None:
        raise reraise
    return _new(
        RunResult,
        (
            run.run_id,
            status,
            action,
            error,
            duration_ms,
            run.node_count,
            totals,
            run.backpack,
            run.events,
            _NO_OUTPUTS,  # a flow that declares outputs reads them (Flow._with_outputs)
        ),
    )


async def run_single_node(node: BaseNode, backpack: Backpack, **options: Any) -> RunResult:
    """Run one node (and nothing after it) as a run of its own."""
    _check_backpack(backpack)
    run = _single_run(node, backpack, loopless=False, **options)
    return await _drive_run(run, lambda: _single_body(run, node))


def run_single_node_sync(node: BaseNode, backpack: Backpack, **options: Any) -> RunResult:
    _check_backpack(backpack)
    if node._needs_loop():
        _refuse_inside_loop(node)
        return _run_on_private_loop(run_single_node(node, backpack, **options))
    run = _single_run(node, backpack, loopless=True, **options)
    return _drive(_drive_run(run, lambda: _single_body(run, node)))


def _single_run(
    node: BaseNode,
    backpack: Backpack,
    *,
    loopless: bool,
    inputs: Mapping[str, Any] | None = None,
    events: EventStreamer | None = None,
    run_id: str | None = None,
    limits: Limits | None = None,
    control: RunControl | None = None,
) -> Run:
    return Run(
        flow_name=node.name,
        backpack=backpack,
        events=events or EventStreamer(),
        inputs=inputs,
        limits=limits,
        run_id=run_id,
        control=control,
        loopless=loopless,
    )


async def _single_body(run: Run, node: BaseNode) -> Any:
    top_level = getattr(node, "_top_level", None)  # a flow: its whole graph, as one run
    if top_level is not None:
        return await top_level(run)
    action, _ = await execute_node(run, node, None, None)
    return action
