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
from collections.abc import Mapping
from types import MappingProxyType
from typing import TYPE_CHECKING, Any

from backpackflow.backpack import Backpack
from backpackflow.errors import FlowError
from backpackflow.events import EventStreamer
from backpackflow.runner.base import BaseNode
from backpackflow.runner.checkpoint import Checkpointer, fork_run, open_run
from backpackflow.runner.context import Limits, RunControl
from backpackflow.runner.drive import (
    _check_backpack,
    _drive,
    _drive_run,
    _refuse_inside_loop,
    _run_on_private_loop,
)
from backpackflow.runner.graph import _follow, _Graph, _pick, _runnable
from backpackflow.runner.inputs import InputSpec, pack_inputs, read_outputs, resolve_inputs
from backpackflow.runner.lifecycle import execute_node
from backpackflow.runner.run import Run, RunResult

if TYPE_CHECKING:  # annotations only: nothing here is needed at run time
    from backpackflow.backpack import BackpackView
    from backpackflow.policy.sandbox import SandboxPolicy
    from backpackflow.policy.secrets import SecretMasker

_UNSET: Any = object()  # no answer given (None is an answer)


def _no_durable_options(options: Mapping[str, Any]) -> None:
    for name in ("durability", "answer"):
        if name in options:
            raise FlowError(f"run option {name!r} needs a checkpointer (checkpointer=...)")


def _backpack_or_new(backpack: Backpack | None) -> Backpack:
    if backpack is None:
        return Backpack()
    _check_backpack(backpack)
    return backpack


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
    #: The sandbox policy its runs apply (``None``: :data:`~backpackflow.policy.TRUSTED`)
    #: and the secrets its events mask (``None``: none); the loader sets both.
    policy: SandboxPolicy | None = None
    secrets: SecretMasker | None = None
    #: The run inputs the flow declares (checked, defaults filled, and packed into the Backpack
    #: when a run starts; none declared: any inputs, left out of the Backpack) and the Backpack
    #: keys it returns as outputs (``RunResult.outputs``, and ``run()``'s result).
    input_specs: Mapping[str, InputSpec] = MappingProxyType({})
    output_keys: tuple[str, ...] = ()

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
        self._invalidate()
        return node

    def _invalidate(self) -> None:
        """Forget the compiled graph (it is compiled again on next use), and tell the flows
        that hold this one as a node: their graph facts (``needs_loop``, step counts) read it."""
        if self.__dict__.get("_graph") is not None:
            self._graph = None
            self._graph_changed()

    def post(self, backpack: BackpackView, prep_res: Any, exec_res: Any) -> Any:
        """A flow's action is the action of its last node (PocketFlow)."""
        return exec_res

    def nodes(self) -> list[BaseNode]:
        """The nodes reachable from the start node, in breadth-first order."""
        return list(self._compiled().nodes)

    def _compiled(self) -> _Graph:
        graph = self._graph
        if graph is None:
            graph = self._graph = _Graph(self)
        return graph

    def _needs_loop(self) -> bool:
        return self._compiled().needs_loop

    def _steps_per_run(self) -> int:
        return 1 + self._compiled().steps

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
        recorder = run._recorder
        if recorder is not None:  # a durable run: the top-level graph records its position
            if recorder.flow is not self:
                recorder = None
            else:
                resumed = recorder.frontier(run, graph)
                if resumed is not None:
                    pending, last_action = resumed
        control = run.control
        gated = control.gated_types if control is not None and not run.loopless else ()
        while pending:
            node = pending.pop(0 if len(pending) == 1 else _pick(graph, pending, ()))
            if gated and node.node_type in gated:
                action, output = await _execute_gated(run, node, namespace, params)
            else:
                action, output = await execute_node(run, node, namespace, params)
            if run._watch:  # usage limits: a node that went over ends the run here
                run.check_limits()
            last_action = action
            key = "default" if action is None else action
            edges = node.successors.get(key) if type(key) is str else None
            # one unconditional successor, _follow's common case; Edge fields by index
            # (target, action, when, ...): a named field is a generic attribute lookup
            if edges is not None and len(edges) == 1 and edges[0][2] is None:
                target = edges[0][0]
                if target not in pending:
                    pending.append(target)
            else:
                if run.offload:  # conditions are flow-supplied expressions: off the event loop
                    targets = await asyncio.to_thread(_follow, run, node, action, output, namespace)
                else:
                    targets = _follow(run, node, action, output, namespace)
                for target in targets:
                    if target not in pending:
                        pending.append(target)
            if recorder is not None:
                recorder.node_done(run, node, pending, action)
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
                    task = asyncio.ensure_future(_execute_gated(run, node, namespace, params))
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
        backpack: Backpack | None = None,
        *,
        inputs: Mapping[str, Any] | None = None,
        events: EventStreamer | None = None,
        run_id: str | None = None,
        limits: Limits | None = None,
        control: RunControl | None = None,
        checkpointer: Checkpointer | None = None,
        durability: str = "node",
        answer: Any = _UNSET,
    ) -> RunResult:
        """Run the flow and return a :class:`~backpackflow.RunResult` (failures included: a
        failed run returns ``status="failed"`` with its error; see ``run`` to raise instead).

        ``limits`` replaces the flow's own limits for this run (give every limit you want);
        ``events`` is the EventStreamer to emit into (default: the flow's, else a new one);
        ``control`` lets another task or thread cancel the run. Inputs the flow does not
        declare, or that break their schemas, raise :class:`~backpackflow.ConfigError` before
        the run starts.

        ``checkpointer`` makes the run durable (see :mod:`backpackflow.runner.checkpoint` and
        docs/durable-runs.md): a ``run_id`` that has a checkpoint there resumes (the Backpack
        and inputs come from it; ``answer`` answers a paused run), any other run is
        checkpointed as it goes, with ``durability`` ``"node"``, ``"commit"`` or ``"exit"``."""
        self._compiled()  # validates the graph before the run starts
        if checkpointer is None:
            options = {"durability": durability} if durability != "node" else {}
            if answer is not _UNSET:
                options["answer"] = answer
            _no_durable_options(options)
            backpack = _backpack_or_new(backpack)
            inputs = resolve_inputs(self.input_specs, inputs)
            run = self._make_run(backpack, inputs, events, run_id, limits, control, loopless=False)
        else:
            run = self._durable_run(
                backpack,
                inputs,
                events,
                run_id,
                limits,
                control,
                checkpointer,
                durability,
                answer,
                loopless=False,
            )
        return self._with_outputs(await _drive_run(run, lambda: self._top_level(run)))

    def execute_sync(self, backpack: Backpack | None = None, **options: Any) -> RunResult:
        """Synchronous :meth:`execute`: without an event loop when the flow allows it."""
        limits = options.get("limits") or self.limits
        # also validates the graph before the run starts; a timeout needs a loop to interrupt
        # a running node at (see Limits.timeout)
        if self._compiled().needs_loop or limits.timeout is not None:
            _refuse_inside_loop(self)
            return _run_on_private_loop(self.execute(backpack, **options))
        if options.get("checkpointer") is not None:
            run = self._durable_run(
                backpack,
                options.get("inputs"),
                options.get("events"),
                options.get("run_id"),
                options.get("limits"),
                options.get("control"),
                options["checkpointer"],
                options.get("durability", "node"),
                options.get("answer", _UNSET),
                loopless=True,
            )
        else:
            _no_durable_options(options)
            options.pop("checkpointer", None)
            backpack = _backpack_or_new(backpack)
            options["inputs"] = resolve_inputs(self.input_specs, options.get("inputs"))
            run = self._make_run(backpack, loopless=True, **options)
        return self._with_outputs(_drive(_drive_run(run, lambda: self._top_level(run))))

    def run(self, backpack: Backpack | None = None, **options: Any) -> Any:
        """Run the flow; returns its last action (a flow that declares outputs: the dict of
        its outputs) and raises the run's error if it failed (:class:`~backpackflow.RunPaused`
        if it paused for an answer).
        Options: ``inputs``, ``events``, ``run_id``, ``limits``, ``control``, and for durable
        runs ``checkpointer``, ``durability``, ``answer`` (see :meth:`execute`)."""
        result = self.execute_sync(backpack, **options)
        result.raise_for_status()
        return result.outputs if self.output_keys else result.action

    async def run_async(self, backpack: Backpack | None = None, **options: Any) -> Any:
        result = await self.execute(backpack, **options)
        result.raise_for_status()
        return result.outputs if self.output_keys else result.action

    def fork(
        self,
        checkpointer: Checkpointer,
        run_id: str,
        commit_id: str | None = None,
        *,
        new_run_id: str | None = None,
        patch: Mapping[str, Any] | None = None,
        inputs: Mapping[str, Any] | None = None,
    ) -> str:
        """Fork run ``run_id`` at ``commit_id`` into a new checkpointed run (see
        :func:`~backpackflow.runner.checkpoint.fork_run`); returns its id, which
        ``flow.run(checkpointer=..., run_id=...)`` then runs."""
        return fork_run(
            self, checkpointer, run_id, commit_id, run_id=new_run_id, patch=patch, inputs=inputs
        )

    def _check_checkpointable(self) -> None:
        """Raise unless runs of this flow can be checkpointed: the recorder follows the
        position of one sequential graph."""
        if self.parallel or type(self)._exec_phase is not Flow._exec_phase:
            kind = "a parallel flow" if self.parallel else type(self).__name__
            raise FlowError(
                f"flow {self.id!r}: checkpoints record the position of a sequential flow's "
                f"graph; {kind} cannot be checkpointed (nest it as a node of a sequential flow: "
                "on resume it then runs again whole)"
            )

    def _durable_run(
        self,
        backpack: Backpack | None,
        inputs: Mapping[str, Any] | None,
        events: EventStreamer | None,
        run_id: str | None,
        limits: Limits | None,
        control: RunControl | None,
        checkpointer: Checkpointer,
        durability: str,
        answer: Any,
        *,
        loopless: bool,
    ) -> Run:
        if backpack is not None:
            _check_backpack(backpack)
        backpack, inputs, run_id, recorder, start = open_run(
            self,
            checkpointer,
            backpack=backpack,
            inputs=inputs,
            run_id=run_id,
            durability=durability,
            answer=None if answer is _UNSET else answer,
            answered=answer is not _UNSET,
            resolve=lambda given: resolve_inputs(self.input_specs, given),
        )
        run = self._make_run(backpack, inputs, events, run_id, limits, control, loopless=loopless)
        recorder.begin(run, start)
        return run

    def _with_outputs(self, result: RunResult) -> RunResult:
        if not self.output_keys:
            return result
        return result._replace(outputs=read_outputs(result.backpack, self.output_keys))

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
            steps_per_pass=self._compiled().steps,
        )

    async def _top_level(self, run: Run) -> Any:
        recorder = run._recorder
        resuming = recorder is not None and recorder.resume is not None
        if self.input_specs and not resuming:  # the first commits of the run: its inputs
            pack_inputs(run.backpack, self.input_specs, run.inputs, self.namespace)
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


async def _execute_gated(
    run: Run, node: BaseNode, namespace: str | None, params: Mapping[str, Any] | None
) -> tuple[Any, Any]:
    """:func:`execute_node`, holding the run control's node gate when the node's type is
    gated (see :meth:`~backpackflow.RunControl.gate_nodes`)."""
    control = run.control
    if control is None or control.node_gate is None or node.node_type not in control.gated_types:
        return await execute_node(run, node, namespace, params)
    async with control.node_gate(node.node_type):
        return await execute_node(run, node, namespace, params)
