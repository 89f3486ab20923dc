"""Flows: graphs of nodes joined by action-labelled edges, and the one engine that runs them.

The engine is asyncio at its core (``await flow.execute(backpack)``). ``flow.run(backpack)`` is a
thin synchronous entry: a flow made only of synchronous nodes is driven without an event loop at
all (nothing in it ever suspends), anything else runs under ``asyncio.run``.

Scheduling: a node's returned action selects its edges (``None`` means ``"default"``); edges may
carry a ``when`` condition; several selected edges fan out. Selected targets wait in a pending
list; a pending node runs once no other pending or running node can still reach it, which makes
a node with several active predecessors wait for all of them (a join) and run once. Sequential
flows run pending nodes one at a time in order; ``parallel=True`` flows run every runnable node
concurrently. Loops are allowed in code (PocketFlow agents loop); ``limits.max_steps`` bounds
every run.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine, Iterator, Mapping, Sequence
from types import MappingProxyType
from typing import TYPE_CHECKING, Any

from backpackflow.backpack import Backpack
from backpackflow.errors import FlowError, NodeDefinitionError, RunCanceled
from backpackflow.events import (
    EventStreamer,
    LogPayload,
    RunEndPayload,
    RunStartPayload,
    StreamEventType,
    on_private_loop,
)
from backpackflow.jsondata import copy_out
from backpackflow.namespaces import join
from backpackflow.node import BaseNode, default_node_id, execute_node, graph_version, iter_nodes
from backpackflow.run import (
    Limits,
    Run,
    RunControl,
    RunResult,
    _current_node,
    _current_run,
)

if TYPE_CHECKING:
    from backpackflow.backpack import BackpackView
    from backpackflow.sandbox import SandboxPolicy
    from backpackflow.secrets import SecretMasker


_NO_INPUTS: Mapping[str, Any] = MappingProxyType({})
_new = tuple.__new__


class _Graph:
    """What the scheduler needs of a flow's graph, computed once per graph change.

    Joins ask whether an active node can still reach a pending one (:meth:`can_reach`). The
    answer comes from a topological order where the graph has one (a node never reaches one
    ordered before it) and otherwise from the target's ancestors, found by an iterative search
    on first need and kept; a long chain never pays for all-pairs reachability, which would be
    quadratic in time and memory."""

    __slots__ = ("_ancestors", "_order", "_predecessors", "needs_loop", "nodes", "version")

    def __init__(self, flow: Flow) -> None:
        self.version = graph_version[0]
        start = flow.start_node
        if start is None:
            raise FlowError(
                f"flow {flow.id!r} has no start node: use Flow(start) or flow.start(node)"
            )
        self.nodes = list(iter_nodes(start))
        self._ancestors: dict[int, set[int]] = {}
        self._predecessors: dict[int, list[BaseNode]] | None = None
        self._order: dict[int, int] | bool | None = False  # False: not computed yet
        self.needs_loop = flow.parallel or flow.is_async or any(n._needs_loop() for n in self.nodes)
        _assign_ids(flow, self.nodes)

    def can_reach(self, source: BaseNode, target: BaseNode) -> bool:
        """Whether ``source`` leads to ``target`` through edges."""
        order = self._topological_order()
        if order is not None and order[id(source)] >= order[id(target)]:
            return False
        return id(source) in self._ancestors_of(target)

    def _topological_order(self) -> dict[int, int] | None:
        """Node id → position in a topological order (Kahn's algorithm), ``None`` if the graph
        has a cycle."""
        if self._order is False:
            incoming = {id(n): 0 for n in self.nodes}
            for node in self.nodes:
                for edges in node.successors.values():
                    for edge in edges:
                        incoming[id(edge.target)] += 1
            ready = [n for n in self.nodes if incoming[id(n)] == 0]
            order: dict[int, int] = {}
            while ready:
                node = ready.pop()
                order[id(node)] = len(order)
                for edges in node.successors.values():
                    for edge in edges:
                        incoming[id(edge.target)] -= 1
                        if incoming[id(edge.target)] == 0:
                            ready.append(edge.target)
            self._order = order if len(order) == len(self.nodes) else None
        return self._order  # type: ignore[return-value]

    def _ancestors_of(self, node: BaseNode) -> set[int]:
        """Ids of every node that leads to ``node`` (iterative search backwards, cached)."""
        found = self._ancestors.get(id(node))
        if found is not None:
            return found
        predecessors = self._predecessors
        if predecessors is None:
            predecessors = self._predecessors = {id(n): [] for n in self.nodes}
            for other in self.nodes:
                for edges in other.successors.values():
                    for edge in edges:
                        predecessors[id(edge.target)].append(other)
        found = set()
        stack = list(predecessors.get(id(node), ()))
        while stack:
            other = stack.pop()
            if id(other) not in found:
                found.add(id(other))
                stack.extend(predecessors.get(id(other), ()))
        self._ancestors[id(node)] = found
        return found


def _assign_ids(flow: Flow, nodes: Sequence[BaseNode]) -> None:
    """Node ids are unique within a flow (each nested flow is a scope of its own): explicit
    duplicates are an error; generated ids get a numeric suffix, in graph order."""
    taken: dict[str, BaseNode] = {}
    for node in nodes:
        if node._auto_id:
            continue
        other = taken.get(node.id)
        if other is not None and other is not node:
            raise FlowError(
                f"flow {flow.id!r}: two different nodes have the id {node.id!r} "
                f"({type(other).__name__} and {type(node).__name__}); give each a unique id"
            )
        taken[node.id] = node
    for node in nodes:
        if not node._auto_id:
            continue
        base = default_node_id(type(node))
        candidate, n = base, 1
        while candidate in taken:
            n += 1
            candidate = f"{base}-{n}"
        node.id = candidate
        taken[candidate] = node


class _ConditionContext(Mapping[str, Any]):
    """What an edge condition sees: ``action``, ``output`` (the node's exec result, whose keys
    are also top-level names when it is a dict, e.g. a router's ``branch``), ``inputs`` (run
    inputs), ``state`` (the Backpack, read-only) and ``node`` (``node.<id>.output``)."""

    __slots__ = ("_data",)

    def __init__(self, run: Run, action: Any, output: Any) -> None:
        data: dict[str, Any] = dict(output) if isinstance(output, Mapping) else {}
        data.update(
            action=action if action is not None else "default",
            output=output,
            inputs=run.inputs,
            state=run.backpack.snapshot(),
            node={k: {"output": v} for k, v in run.outputs.items()},
        )
        self._data = data

    def __getitem__(self, key: str) -> Any:
        return self._data[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._data)

    def __len__(self) -> int:
        return len(self._data)


def _follow(
    run: Run, node: BaseNode, action: Any, output: Any, namespace: str | None
) -> Sequence[BaseNode]:
    key = "default" if action is None else action
    if not isinstance(key, str):
        raise FlowError(
            f"node {node.id!r} returned {action!r} from post(); an action must be a string or None"
        )
    edges = node.successors.get(key)
    if not edges:
        if node.successors:
            run.emit(
                StreamEventType.LOG,
                LogPayload(
                    "warning",
                    f"flow ends after node {node.id!r}: it returned action {key!r}, which has "
                    f"no edge (edges: {sorted(node.successors)})",
                ),
                frame=run.node_frame(node.id, node.name, join(namespace, node.namespace), None),
            )
        return ()
    if len(edges) == 1 and edges[0].when is None:
        return (edges[0].target,)
    context = None
    targets = []
    for edge in edges:
        if edge.when is not None:
            if context is None:
                context = _ConditionContext(run, action, output)
            try:
                ok = edge.when(context)
            except Exception as exc:
                raise FlowError(
                    f"edge {node.id!r} -> {edge.target.id!r} (action {key!r}): its condition "
                    f"{getattr(edge.when, 'source', edge.when)!r} failed: {exc}"
                ) from exc
            if not isinstance(ok, bool) and getattr(edge.when, "language", None) == "cel":
                source = getattr(edge.when, "source", edge.when)
                raise FlowError(
                    f"edge {node.id!r} -> {edge.target.id!r}: its condition {source!r} gave "
                    f"{ok!r}; an edge condition must be true or false (compare it: e.g. "
                    "branch == 'deep')"
                )
            if not ok:
                continue
        targets.append(edge.target)
    return targets


class Flow(BaseNode):
    """A graph of nodes, itself usable as a node (nested flows).

    ``parallel=True`` runs runnable branches concurrently. ``max_steps`` / ``timeout`` set the
    default :class:`~backpackflow.Limits` of its runs; ``events`` is the default
    :class:`~backpackflow.EventStreamer` (a fresh one per run when neither is given).
    """

    #: The :class:`~backpackflow.config.FlowConfig` a flow was loaded from (``None`` for a flow
    #: built in code), and its top-level document as written (``${NAME}`` references intact).
    config: Any = None
    config_source: dict[str, Any] | None = None
    #: The sandbox policy its runs apply (``None``: :data:`~backpackflow.sandbox.TRUSTED`) and
    #: the secrets its events mask (``None``: none); the loader sets both.
    policy: SandboxPolicy | None = None
    secrets: SecretMasker | None = None

    def __init__(
        self,
        start: BaseNode | None = None,
        *,
        parallel: bool = False,
        max_steps: int | None = None,
        timeout: float | None = None,
        events: EventStreamer | None = None,
        id: str | None = None,
        name: str | None = None,
        namespace: str | None = None,
        params: Any = None,
    ) -> None:
        super().__init__(id=id, name=name, namespace=namespace, params=params)
        self.start_node = start
        self.parallel = parallel
        self.limits = Limits(
            max_steps=max_steps if max_steps is not None else Limits().max_steps,
            timeout=timeout,
        )
        self.events = events
        self._graph: _Graph | None = None

    def start(self, node: BaseNode) -> BaseNode:
        """Set the start node; returns it for chaining (``flow.start(a) >> b``)."""
        self.start_node = node
        graph_version[0] += 1
        return node

    def post(self, backpack: BackpackView, prep_res: Any, exec_res: Any) -> Any:
        """A flow's action is the action of its last node (PocketFlow)."""
        return exec_res

    def nodes(self) -> list[BaseNode]:
        """The nodes reachable from the start node, in breadth-first order."""
        return list(self._compiled().nodes)

    def _compiled(self) -> _Graph:
        graph = self._graph
        if graph is None or graph.version != graph_version[0]:
            graph = self._graph = _Graph(self)
        return graph

    def _needs_loop(self) -> bool:
        return self._compiled().needs_loop

    # -------------------------------------------------------------- running

    async def _exec_phase(self, run: Run, prep_res: Any, namespace: str | None) -> tuple[Any, int]:
        return await self._run_graph(run, namespace, self._graph_params()), 1

    def _graph_params(self) -> Mapping[str, Any] | None:
        """The params a flow hands its nodes: its own, unless they are a typed Params class."""
        return self.params if type(self).Params is None else None

    async def _run_graph(
        self, run: Run, namespace: str | None, params: Mapping[str, Any] | None
    ) -> Any:
        graph = self._compiled()
        assert self.start_node is not None
        if self.parallel and not run.loopless:
            return await self._run_parallel(run, graph, namespace, params)
        pending: list[BaseNode] = [self.start_node]
        last_action = None
        while pending:
            node = pending.pop(0 if len(pending) == 1 else _pick(graph, pending, ()))
            action, output = await execute_node(run, node, namespace, params)
            if run._watch:  # usage limits: a node that went over ends the run here
                run.check_limits()
            last_action = action
            key = "default" if action is None else action
            edges = node.successors.get(key) if type(key) is str else None
            if edges is not None and len(edges) == 1 and edges[0].when is None:
                target = edges[0].target  # one unconditional successor: _follow's common case
                if target not in pending:
                    pending.append(target)
                continue
            if run.offload:  # conditions are flow-supplied expressions: off the event loop
                targets = await asyncio.to_thread(_follow, run, node, action, output, namespace)
            else:
                targets = _follow(run, node, action, output, namespace)
            for target in targets:
                if target not in pending:
                    pending.append(target)
        return last_action

    async def _run_parallel(
        self, run: Run, graph: _Graph, namespace: str | None, params: Mapping[str, Any] | None
    ) -> Any:
        assert self.start_node is not None
        pending: list[BaseNode] = [self.start_node]
        running: dict[asyncio.Task[tuple[Any, Any]], BaseNode] = {}
        last_action = None
        try:
            while pending or running:
                busy = list(running.values())
                for node in [n for n in pending if _runnable(graph, n, pending, busy)] or (
                    [pending[0]] if pending and not running else []
                ):
                    pending.remove(node)
                    task = asyncio.ensure_future(execute_node(run, node, namespace, params))
                    running[task] = node
                done, _ = await asyncio.wait(running, return_when=asyncio.FIRST_COMPLETED)
                for task in done:
                    node = running.pop(task)
                    action, output = task.result()
                    if run._watch:
                        run.check_limits()
                    last_action = action
                    if run.offload:
                        targets = await asyncio.to_thread(
                            _follow, run, node, action, output, namespace
                        )
                    else:
                        targets = _follow(run, node, action, output, namespace)
                    for target in targets:
                        if target not in pending:
                            pending.append(target)
        finally:
            for task in running:
                task.cancel()
            if running:
                await asyncio.gather(*running, return_exceptions=True)
        return last_action

    async def execute(
        self,
        backpack: Backpack,
        *,
        inputs: Mapping[str, Any] | None = None,
        events: EventStreamer | None = None,
        run_id: str | None = None,
        limits: Limits | None = None,
        control: RunControl | None = None,
    ) -> RunResult:
        """Run the flow and return a :class:`~backpackflow.RunResult` (failures included: a
        failed run returns ``status="failed"`` with its error; see ``run`` to raise instead).

        ``limits`` replaces the flow's own limits for this run (give every limit you want);
        ``events`` is the EventStreamer to emit into (default: the flow's, else a new one);
        ``control`` lets another task or thread cancel the run."""
        _check_backpack(backpack)
        self._compiled()  # validates the graph before the run starts
        run = self._make_run(backpack, inputs, events, run_id, limits, control, loopless=False)
        return await _drive_run(run, lambda: self._top_level(run))

    def execute_sync(self, backpack: Backpack, **options: Any) -> RunResult:
        """Synchronous :meth:`execute`: without an event loop when the flow allows it."""
        if self._compiled().needs_loop:  # also validates the graph before the run starts
            _refuse_inside_loop(self)
            return _run_on_private_loop(self.execute(backpack, **options))
        _check_backpack(backpack)
        run = self._make_run(backpack, loopless=True, **options)
        return _drive(_drive_run(run, lambda: self._top_level(run)))

    def run(self, backpack: Backpack, **options: Any) -> Any:
        """Run the flow; returns its last action and raises the run's error if it failed.
        Options: ``inputs``, ``events``, ``run_id``, ``limits``, ``control``."""
        result = self.execute_sync(backpack, **options)
        result.raise_for_status()
        return result.action

    async def run_async(self, backpack: Backpack, **options: Any) -> Any:
        result = await self.execute(backpack, **options)
        result.raise_for_status()
        return result.action

    def _make_run(
        self,
        backpack: Backpack,
        inputs: Mapping[str, Any] | None = None,
        events: EventStreamer | None = None,
        run_id: str | None = None,
        limits: Limits | None = None,
        control: RunControl | None = None,
        *,
        loopless: bool,
    ) -> Run:
        return Run(
            flow_name=self.name,
            backpack=backpack,
            events=events or self.events or EventStreamer(),
            inputs=inputs,
            limits=limits or self.limits,
            run_id=run_id,
            control=control,
            loopless=loopless,
            policy=self.policy,
            secrets=self.secrets,
        )

    async def _top_level(self, run: Run) -> Any:
        # the flow's own namespace was validated when the flow was made
        view = run.backpack._view(self.id, self.name, self.namespace)
        if self.is_async:
            prep_res = await self.prep_async(view)  # type: ignore[attr-defined]
            exec_res, _ = await self._exec_phase(run, prep_res, self.namespace)
            return await self.post_async(view, prep_res, exec_res)  # type: ignore[attr-defined]
        prep_res = self.prep(view)
        if type(self)._exec_phase is Flow._exec_phase:  # a plain graph: one coroutine fewer
            exec_res = await self._run_graph(run, self.namespace, self._graph_params())
        else:
            exec_res, _ = await self._exec_phase(run, prep_res, self.namespace)
        return self.post(view, prep_res, exec_res)


def _pick(graph: _Graph, pending: Sequence[BaseNode], running: Sequence[BaseNode]) -> int:
    """Index of the first pending node that nothing else can still reach (else the first, so
    that mutually reachable pending nodes cannot deadlock)."""
    for i, node in enumerate(pending):
        if _runnable(graph, node, pending, running):
            return i
    return 0


def _runnable(
    graph: _Graph, node: BaseNode, pending: Sequence[BaseNode], running: Sequence[BaseNode]
) -> bool:
    """True when no other pending or running node can still reach ``node``."""
    for others in (pending, running):
        for other in others:
            if other is not node and graph.can_reach(other, node):
                return False
    return True


class AsyncFlow(Flow):
    """A flow with ``prep_async``/``post_async`` (PocketFlow's AsyncFlow). Every flow can run
    async nodes; this class exists for ported code and async flow hooks."""

    is_async = True

    async def prep_async(self, backpack: BackpackView) -> Any:
        return None

    async def post_async(self, backpack: BackpackView, prep_res: Any, exec_res: Any) -> Any:
        return exec_res


class BatchFlow(Flow):
    """Runs its graph once per params dict that ``prep`` returns (PocketFlow's BatchFlow); each
    run's params reach the nodes through ``self.params``."""

    concurrent = False

    async def _exec_phase(self, run: Run, prep_res: Any, namespace: str | None) -> tuple[Any, int]:
        batches = list(prep_res or ())
        base = self.params if isinstance(self.params, Mapping) else {}
        for i, batch in enumerate(batches):
            if not isinstance(batch, Mapping):
                raise FlowError(
                    f"batch flow {self.id!r}: prep() must return dicts of params, item {i} is "
                    f"{type(batch).__name__}"
                )
        if self.concurrent and not run.loopless:
            await asyncio.gather(*(self._run_graph(run, namespace, {**base, **b}) for b in batches))
        else:
            for batch in batches:
                await self._run_graph(run, namespace, {**base, **batch})
        return None, len(batches)

    def post(self, backpack: BackpackView, prep_res: Any, exec_res: Any) -> Any:
        return None

    def _needs_loop(self) -> bool:
        return self.concurrent or super()._needs_loop()


class AsyncBatchFlow(AsyncFlow, BatchFlow):
    """Batch flow with async hooks; batches one after another."""

    async def post_async(self, backpack: BackpackView, prep_res: Any, exec_res: Any) -> Any:
        return None


class AsyncParallelBatchFlow(AsyncBatchFlow):
    """Batch flow whose batches run concurrently."""

    concurrent = True


# ------------------------------------------------------------------------------- run driver


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
    meanwhile go to the streamer's background loop, which outlives this one."""
    token = on_private_loop.set(True)
    try:
        return asyncio.run(coro)
    finally:
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
        StreamEventType.RUN_START,
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
            StreamEventType.RUN_END,
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
    if isinstance(node, Flow):
        return await node._top_level(run)
    action, _ = await execute_node(run, node, None, None)
    return action


__all__ = [
    "AsyncBatchFlow",
    "AsyncFlow",
    "AsyncParallelBatchFlow",
    "BatchFlow",
    "Flow",
    "NodeDefinitionError",
]
