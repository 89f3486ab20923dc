"""Node lifecycle (PRD-002 §3.2, DESIGN §3.3): prep → exec → post with automatic events, error
events per phase, retries with backoff, exec_fallback, batch and async nodes, blocking nodes,
typed and PocketFlow-style params."""

from __future__ import annotations

import asyncio
import threading
import time

import attrs
import pytest

from backpackflow import (
    AsyncBatchNode,
    AsyncNode,
    AsyncParallelBatchNode,
    Backpack,
    BackpackFlowError,
    BatchNode,
    EventStreamer,
    Flow,
    Node,
    NodeDefinitionError,
    ParallelBatchNode,
    StreamEventType,
    current_node,
    current_run,
)

T = StreamEventType
LIFECYCLE = [T.NODE_START, T.PREP_COMPLETE, T.EXEC_COMPLETE, T.NODE_END]


def run_node(node, backpack=None, **options):
    """Run ``node`` alone; return (result, streamer)."""
    streamer = EventStreamer()
    backpack = backpack if backpack is not None else Backpack()
    result = Flow(node).execute_sync(backpack, events=streamer, **options)
    return result, streamer


def lifecycle(streamer, node_id=None):
    types = set(LIFECYCLE) | {T.ERROR}
    return [e for e in streamer.get_events(node_id=node_id) if e.type in types]


class Summarize(Node):
    """Reads the text, 'calls the model', writes the summary."""

    def prep(self, backpack):
        text = backpack.unpack("text")
        style = backpack.unpack("style", "short")
        return f"Summarize ({style}): {text}"

    def exec(self, prompt):
        time.sleep(0.002)
        return {"summary": prompt.upper()}

    def post(self, backpack, prompt, result):
        backpack.pack("summary", result["summary"])
        backpack.pack("done", True)
        return "summarized"


# ------------------------------------------------------------------------------- the lifecycle


def test_every_lifecycle_event_in_order_with_exact_payloads():
    bp = Backpack({"text": "hello"})
    result, streamer = run_node(Summarize(id="sum", namespace="docs"), bp)
    assert result.ok
    events = streamer.get_events(node_id="sum")
    assert [e.type for e in events] == [
        T.NODE_START,
        T.BACKPACK_UNPACK,
        T.BACKPACK_UNPACK,
        T.PREP_COMPLETE,
        T.EXEC_COMPLETE,
        T.BACKPACK_PACK,
        T.BACKPACK_PACK,
        T.NODE_END,
    ]
    assert {e.step for e in events} == {1}
    assert {e.namespace for e in events} == {"docs"}
    start, _, _, prep, exe, _, _, end = events
    assert start.payload.node_name == "Summarize"
    assert start.payload.node_type == "Summarize"
    assert start.payload.params == {}
    assert start.payload.state.to_dict() == {"text": "hello"}
    assert start.to_json()["payload"]["state"]["changed"] == {"text": "hello"}
    assert prep.payload.prep_result == "Summarize (short): hello"
    assert prep.payload.reads == ["text", "style"]
    assert exe.payload.exec_result == {"summary": "SUMMARIZE (SHORT): HELLO"}
    assert exe.payload.attempts == 1
    assert exe.payload.duration_ms >= 2
    assert end.payload.action == "summarized"
    assert end.payload.writes == ["summary", "done"]
    assert end.payload.duration_ms >= exe.payload.duration_ms > 0
    assert start.timestamp <= prep.timestamp <= exe.timestamp <= end.timestamp


def test_a_node_with_only_defaults_still_reports_every_phase():
    class Nothing(Node):
        pass

    result, streamer = run_node(Nothing())
    assert result.ok
    events = lifecycle(streamer)
    assert [e.type for e in events] == LIFECYCLE
    assert events[1].payload.reads == []
    assert events[2].payload.exec_result is None
    assert events[3].payload.action is None
    assert events[3].payload.writes == []
    assert events[3].payload.duration_ms > 0


def test_reads_are_those_of_prep_writes_those_of_the_whole_node():
    class Both(Node):
        def prep(self, backpack):
            backpack.pack("from_prep", 1)
            return backpack.unpack("a")

        def post(self, backpack, prep_res, exec_res):
            backpack.unpack("b")
            backpack.append("log", ["x"])
            backpack.delete("a")

    result, streamer = run_node(Both(), Backpack({"a": 1, "b": 2}))
    assert result.ok
    prep = streamer.get_events(type=T.PREP_COMPLETE)[0]
    end = streamer.get_events(type=T.NODE_END)[0]
    assert prep.payload.reads == ["a"]
    assert end.payload.writes == ["from_prep", "log", "a"]


@pytest.mark.parametrize("phase", ["prep", "exec", "post"])
def test_error_event_names_the_phase_with_stack_and_state(phase):
    class Fails(Node):
        def prep(self, backpack):
            backpack.pack("seen", "prep")
            if phase == "prep":
                raise KeyError("no such thing")
            return "prompt"

        def exec(self, prep_res):
            if phase == "exec":
                raise TimeoutError("model timed out")
            return "raw"

        def post(self, backpack, prep_res, exec_res):
            backpack.pack("seen", "post")
            if phase == "post":
                raise ValueError("cannot parse 'raw'")

    result, streamer = run_node(Fails(id="fails"), Backpack({"k": 1}))
    assert result.status == "failed"
    events = lifecycle(streamer)
    expected = [*LIFECYCLE[: ["prep", "exec", "post"].index(phase) + 1], T.ERROR]
    assert [e.type for e in events] == expected
    error = events[-1]
    assert error.node_id == "fails"
    assert error.payload.phase == phase
    assert (
        error.payload.error_type
        == {
            "prep": "KeyError",
            "exec": "TimeoutError",
            "post": "ValueError",
        }[phase]
    )
    assert {"prep": "no such thing", "exec": "model timed out", "post": "cannot parse"}[
        phase
    ] in error.payload.error
    assert "Traceback" in error.payload.stack
    assert f"in {phase}" in error.payload.stack
    state = error.to_json()["payload"]["state"]
    assert state == {"k": 1, "seen": "post" if phase == "post" else "prep"}
    assert type(result.error).__name__ == error.payload.error_type


def test_node_run_returns_the_action_and_raises_the_original_error():
    assert Summarize().run(Backpack({"text": "x"})) == "summarized"

    class Boom(Node):
        def exec(self, prep_res):
            raise LookupError("gone")

    with pytest.raises(LookupError, match="gone"):
        Boom().run(Backpack())


def test_node_run_does_not_follow_successors():
    ran = []

    class Mark(Node):
        def exec(self, prep_res):
            ran.append(self.id)

    a, b = Mark(id="a"), Mark(id="b")
    a >> b
    a.run(Backpack())
    assert ran == ["a"]


# ------------------------------------------------------------------------------- retries


class Flaky(Node):
    """Fails ``fails`` times, then answers; records ``cur_retry`` of every attempt."""

    def __init__(self, fails, log, **kw):
        super().__init__(**kw)
        self.fails, self.log = fails, log

    def exec(self, prep_res):
        self.log.append(self.cur_retry)
        if len(self.log) <= self.fails:
            raise ConnectionError(f"attempt {len(self.log)} failed")
        return "ok"


def test_retries_count_attempts_and_emit_retry_events():
    attempts = []
    result, streamer = run_node(Flaky(2, attempts, max_retries=3, id="flaky"))
    assert result.ok
    assert attempts == [0, 1, 2]  # cur_retry, as in PocketFlow
    retries = streamer.get_events(type=T.RETRY)
    assert [(e.node_id, e.step) for e in retries] == [("flaky", 1), ("flaky", 1)]
    assert [e.payload.error for e in retries] == ["attempt 1 failed", "attempt 2 failed"]
    assert [e.payload.error_type for e in retries] == ["ConnectionError"] * 2
    assert [e.payload.attempt for e in retries] == [1, 2]
    assert [e.payload.delay_s for e in retries] == [0, 0]
    exec_complete = streamer.get_events(type=T.EXEC_COMPLETE)[0]
    assert exec_complete.payload.attempts == 3
    assert exec_complete.payload.exec_result == "ok"
    types = [e.type for e in streamer.get_events(node_id="flaky")]
    assert types == [T.NODE_START, T.PREP_COMPLETE, T.RETRY, T.RETRY, T.EXEC_COMPLETE, T.NODE_END]


def test_wait_backoff_and_max_wait():
    node = Node(max_retries=5, wait=0.5, backoff=2, max_wait=1.5)
    assert [node.retry_delay(n) for n in range(1, 5)] == [0.5, 1.0, 1.5, 1.5]
    assert [Node(wait=0.25).retry_delay(n) for n in (1, 2, 3)] == [0.25] * 3


def test_retry_events_carry_the_delays_and_the_run_waits_them():
    attempts = []
    node = Flaky(3, attempts, max_retries=4, wait=0.01, backoff=2, max_wait=0.03)
    started = time.perf_counter()
    result, streamer = run_node(node)
    elapsed = time.perf_counter() - started
    assert result.ok
    delays = [e.payload.delay_s for e in streamer.get_events(type=T.RETRY)]
    assert delays == [0.01, 0.02, 0.03]
    assert elapsed >= sum(delays)
    assert streamer.get_events(type=T.EXEC_COMPLETE)[0].payload.attempts == 4


def test_async_retries_wait_without_blocking_the_loop():
    attempts = []

    class AsyncFlaky(AsyncNode):
        async def exec_async(self, prep_res):
            attempts.append(self.cur_retry)
            if len(attempts) < 3:
                raise ConnectionError("again")
            return "ok"

    ticks = []

    async def ticker():
        for _ in range(20):
            ticks.append(time.perf_counter())
            await asyncio.sleep(0.005)

    async def main():
        streamer = EventStreamer()
        tick = asyncio.ensure_future(ticker())
        result = await Flow(AsyncFlaky(max_retries=3, wait=0.03)).execute(
            Backpack(), events=streamer
        )
        await tick
        return result, streamer

    result, streamer = asyncio.run(main())
    assert result.ok
    assert attempts == [0, 1, 2]
    assert [e.payload.delay_s for e in streamer.get_events(type=T.RETRY)] == [0.03, 0.03]
    assert len(ticks) == 20  # the loop kept running during the waits


def test_exhausted_retries_go_to_exec_fallback_with_the_last_error():
    seen = []

    class Fallback(Node):
        def exec(self, prep_res):
            raise ValueError(f"failure {self.cur_retry}")

        def exec_fallback(self, prep_res, exc):
            seen.append(str(exc))
            return "fallback answer"

        def post(self, backpack, prep_res, exec_res):
            backpack.pack("answer", exec_res)

    result, streamer = run_node(Fallback(max_retries=3))
    assert result.ok
    assert seen == ["failure 2"]
    assert result.backpack.unpack("answer") == "fallback answer"
    exec_complete = streamer.get_events(type=T.EXEC_COMPLETE)[0]
    assert exec_complete.payload.exec_result == "fallback answer"
    assert exec_complete.payload.attempts == 3
    assert len(streamer.get_events(type=T.RETRY)) == 2


def test_exec_fallback_without_retries():
    class Fallback(Node):
        def exec(self, prep_res):
            raise ValueError("once")

        def exec_fallback(self, prep_res, exc):
            return f"fell back after {exc}"

    result, streamer = run_node(Fallback())
    assert result.ok
    payload = streamer.get_events(type=T.EXEC_COMPLETE)[0].payload
    assert (payload.exec_result, payload.attempts) == ("fell back after once", 1)
    assert streamer.get_events(type=T.RETRY) == []


def test_default_fallback_reraises_after_every_attempt():
    attempts = []
    result, streamer = run_node(Flaky(10, attempts, max_retries=2))
    assert result.status == "failed"
    assert isinstance(result.error, ConnectionError)
    assert attempts == [0, 1]
    error = streamer.get_events(type=T.ERROR)[0]
    assert error.payload.phase == "exec"
    assert error.payload.error == "attempt 2 failed"


def test_async_exec_fallback():
    class AsyncFallback(AsyncNode):
        async def exec_async(self, prep_res):
            raise ValueError("down")

        async def exec_fallback_async(self, prep_res, exc):
            return f"cached ({exc})"

    result, streamer = run_node(AsyncFallback(max_retries=2))
    assert result.ok
    payload = streamer.get_events(type=T.EXEC_COMPLETE)[0].payload
    assert (payload.exec_result, payload.attempts) == ("cached (down)", 2)


@pytest.mark.parametrize(
    "options",
    [
        {"max_retries": 0},
        {"max_retries": 1.5},
        {"wait": -1},
        {"backoff": 0.5},
        {"max_wait": -0.1},
    ],
)
def test_bad_retry_settings_are_refused(options):
    with pytest.raises(NodeDefinitionError):
        Node(**options)


# ------------------------------------------------------------------------------- batch nodes


def test_batch_node_runs_exec_per_item_in_order():
    class Chunks(BatchNode):
        def prep(self, backpack):
            return backpack.unpack("chunks")

        def exec(self, chunk):
            return chunk.upper()

        def post(self, backpack, prep_res, exec_res):
            backpack.pack("out", exec_res)

    result, streamer = run_node(Chunks(), Backpack({"chunks": ["a", "b", "c"]}))
    assert result.backpack.unpack("out") == ["A", "B", "C"]
    assert streamer.get_events(type=T.EXEC_COMPLETE)[0].payload.exec_result == ["A", "B", "C"]


def test_batch_node_retries_per_item_and_counts_every_attempt():
    calls = {}

    class PerItem(BatchNode):
        def __init__(self):
            super().__init__(max_retries=3)

        def prep(self, backpack):
            return [1, 2, 3]

        def exec(self, item):
            calls[item] = calls.get(item, 0) + 1
            if item == 2 and calls[item] < 3:
                raise ValueError("item 2 flaky")
            return item * 10

        def post(self, backpack, prep_res, exec_res):
            backpack.pack("out", exec_res)

    result, streamer = run_node(PerItem())
    assert result.backpack.unpack("out") == [10, 20, 30]
    assert calls == {1: 1, 2: 3, 3: 1}
    assert streamer.get_events(type=T.EXEC_COMPLETE)[0].payload.attempts == 5
    assert len(streamer.get_events(type=T.RETRY)) == 2


def test_batch_node_with_no_items():
    class Empty(BatchNode):
        def prep(self, backpack):
            return None

        def post(self, backpack, prep_res, exec_res):
            backpack.pack("out", exec_res)

    result, _ = run_node(Empty())
    assert result.backpack.unpack("out") == []


def test_parallel_batch_node_runs_items_concurrently_in_threads_keeping_order():
    threads = []
    # every item waits for all three: run one after another, they would never meet
    barrier = threading.Barrier(3, timeout=2)

    class Meet(ParallelBatchNode):
        def prep(self, backpack):
            return [0.03, 0.0, 0.01]

        def exec(self, delay):
            threads.append(threading.get_ident())
            time.sleep(delay)
            barrier.wait()
            node = current_node()
            return (delay, node.node_id if node else None)

        def post(self, backpack, prep_res, exec_res):
            backpack.pack("out", exec_res)

    result, _ = run_node(Meet(id="meet"))
    assert result.ok, result.error
    assert result.backpack.unpack("out") == [[0.03, "meet"], [0.0, "meet"], [0.01, "meet"]]
    assert threading.get_ident() not in threads
    assert len(set(threads)) == 3


def test_async_batch_node_runs_items_one_after_another():
    trace = []

    class Seq(AsyncBatchNode):
        async def prep_async(self, backpack):
            return ["a", "b", "c"]

        async def exec_async(self, item):
            trace.append(("start", item))
            await asyncio.sleep(0.01)
            trace.append(("end", item))
            return item * 2

        async def post_async(self, backpack, prep_res, exec_res):
            backpack.pack("out", exec_res)

    result, _ = run_node(Seq())
    assert result.backpack.unpack("out") == ["aa", "bb", "cc"]
    assert trace == [(p, i) for i in "abc" for p in ("start", "end")]


def test_async_parallel_batch_node_interleaves_items_keeping_order():
    trace = []

    class Par(AsyncParallelBatchNode):
        async def prep_async(self, backpack):
            return [0.05, 0.01, 0.03]

        async def exec_async(self, delay):
            trace.append(("start", delay))
            await asyncio.sleep(delay)
            trace.append(("end", delay))
            return delay

        async def post_async(self, backpack, prep_res, exec_res):
            backpack.pack("out", exec_res)

    result, _ = run_node(Par())
    assert result.backpack.unpack("out") == [0.05, 0.01, 0.03]
    assert [p for p, _ in trace[:3]] == ["start"] * 3
    assert [d for p, d in trace if p == "end"] == [0.01, 0.03, 0.05]


# ------------------------------------------------------------------------------- async nodes


def test_async_node_reports_the_same_lifecycle():
    class Fetch(AsyncNode):
        async def prep_async(self, backpack):
            return backpack.unpack("url")

        async def exec_async(self, url):
            await asyncio.sleep(0.01)
            return f"<html>{url}</html>"

        async def post_async(self, backpack, prep_res, exec_res):
            backpack.pack("page", exec_res)
            return "fetched"

    result, streamer = run_node(Fetch(id="fetch"), Backpack({"url": "x.org"}))
    assert result.action == "fetched"
    events = lifecycle(streamer)
    assert [e.type for e in events] == LIFECYCLE
    assert events[1].payload.reads == ["url"]
    assert events[2].payload.exec_result == "<html>x.org</html>"
    assert events[2].payload.duration_ms >= 10
    assert events[3].payload.writes == ["page"]


def test_sync_and_async_nodes_in_one_flow():
    class SyncStep(Node):
        def post(self, backpack, prep_res, exec_res):
            backpack.pack("order", [*backpack.unpack("order", []), "sync"])

    class AsyncStep(AsyncNode):
        async def post_async(self, backpack, prep_res, exec_res):
            await asyncio.sleep(0)
            backpack.pack("order", [*backpack.unpack("order", []), "async"])

    a, b, c = SyncStep(), AsyncStep(), SyncStep()
    a >> b >> c
    bp = Backpack()
    assert Flow(a).execute_sync(bp).ok
    assert bp.unpack("order") == ["sync", "async", "sync"]


def test_blocking_node_runs_exec_in_a_worker_thread_under_a_loop():
    where = {}
    ticked = threading.Event()

    class Blocking(Node):
        def exec(self, prep_res):
            where["thread"] = threading.get_ident()
            where["run"] = current_run().run_id
            # on the loop thread this would block the ticker and time out
            where["ticker_ran_meanwhile"] = ticked.wait(timeout=2)
            return "done"

    class Ticker(AsyncNode):
        async def exec_async(self, prep_res):
            for _ in range(3):
                await asyncio.sleep(0.005)
            ticked.set()

    async def main():
        loop_thread = threading.get_ident()
        start = Node(id="start")
        start >> Blocking(blocking=True, id="blocking")
        start >> Ticker(id="ticker")
        result = await Flow(start, parallel=True).execute(Backpack(), run_id="r1")
        return loop_thread, result

    loop_thread, result = asyncio.run(main())
    assert result.ok
    assert where["thread"] != loop_thread
    assert where["run"] == "r1"  # the run context reaches the worker thread
    assert where["ticker_ran_meanwhile"] is True


def test_non_blocking_sync_exec_runs_on_the_loop_thread():
    where = {}

    class Inline(Node):
        def exec(self, prep_res):
            where["thread"] = threading.get_ident()

    class Async(AsyncNode):
        pass

    async def main():
        a = Inline()
        a >> Async()
        await Flow(a).execute(Backpack())
        return threading.get_ident()

    assert asyncio.run(main()) == where["thread"]


# ------------------------------------------------------------------------------- params


@attrs.frozen
class SummaryParams:
    max_words: int = 50
    style: str = "short"


class TypedSummarize(Node):
    Params = SummaryParams

    def exec(self, prep_res):
        return f"{self.params.style}:{self.params.max_words}"


def test_typed_params_default_instance_and_set_params():
    node = TypedSummarize()
    assert node.params == SummaryParams()
    node = TypedSummarize(params=SummaryParams(max_words=10))
    assert node.params.max_words == 10
    node.set_params({"style": "long"})
    assert node.params == SummaryParams(max_words=10, style="long")
    node.set_params({})
    assert node.params == SummaryParams(max_words=10, style="long")
    with pytest.raises(NodeDefinitionError, match="unknown params"):
        node.set_params({"temperature": 1})
    with pytest.raises(NodeDefinitionError):
        TypedSummarize(params=[("max_words", 1)])


def test_typed_params_from_a_mapping_are_checked():
    node = TypedSummarize(params={"max_words": 7})
    assert node.params == SummaryParams(max_words=7)
    with pytest.raises(BackpackFlowError, match="max_words"):
        TypedSummarize(params={"max_words": "seven"})
    with pytest.raises(BackpackFlowError, match="temperature"):
        TypedSummarize(params={"temperature": 0.2})


def test_typed_params_reach_exec_and_the_node_start_event():
    _result, streamer = run_node(TypedSummarize(params=SummaryParams(max_words=3)))
    assert streamer.get_events(type=T.EXEC_COMPLETE)[0].payload.exec_result == "short:3"
    params = streamer.get_events(type=T.NODE_START)[0].to_json()["payload"]["params"]
    assert params == {"max_words": 3, "style": "short"}


def test_typed_params_without_defaults_must_be_given():
    @attrs.frozen
    class Needs:
        model: str

    class NeedsModel(Node):
        Params = Needs

    with pytest.raises(NodeDefinitionError, match="needs params"):
        NeedsModel()
    assert NeedsModel(params=Needs("m")).params.model == "m"


def test_pocketflow_dict_params():
    class Plain(Node):
        def exec(self, prep_res):
            return dict(self.params)

    node = Plain(params={"a": 1})
    assert node.params == {"a": 1}
    node.set_params({"b": 2})  # PocketFlow: set_params replaces
    assert node.params == {"b": 2}
    _result, streamer = run_node(node)
    assert streamer.get_events(type=T.EXEC_COMPLETE)[0].payload.exec_result == {"b": 2}
    assert streamer.get_events(type=T.NODE_START)[0].payload.params == {"b": 2}
    assert Plain().params == {}
    with pytest.raises(NodeDefinitionError, match="mapping"):
        Plain(params=["a"])


# ------------------------------------------------------------------------------- node context


def test_current_node_and_current_run_inside_a_node():
    seen = {}

    class Inspect(Node):
        def prep(self, backpack):
            node = current_node()
            seen["prep"] = (node.node_id, node.node_name, node.namespace, node.step)
            return None

        def exec(self, prep_res):
            run = current_run()
            seen["run"] = (run.run_id, dict(run.inputs))
            run.emit(T.TOOL_CALL, {"tool": "search"})
            run.log("looking", level="debug")

    first = Node(id="first")
    first >> Inspect(id="inspect", name="Inspector", namespace="ns")
    streamer = EventStreamer()
    result = Flow(first).execute_sync(
        Backpack(), events=streamer, run_id="run-1", inputs={"q": "x"}
    )
    assert result.ok
    assert seen["prep"] == ("inspect", "Inspector", "ns", 2)
    assert seen["run"] == ("run-1", {"q": "x"})
    tool = streamer.get_events(type=T.TOOL_CALL)[0]
    assert (tool.node_id, tool.step, tool.namespace) == ("inspect", 2, "ns")
    assert streamer.get_events(type=T.LOG)[0].payload.level == "debug"
    assert current_node() is None
    with pytest.raises(BackpackFlowError, match="no flow run is active"):
        current_run()


def test_node_state_set_in_prep_is_its_own_per_execution():
    class Stateful(AsyncNode):
        async def prep_async(self, backpack):
            self.value = backpack.unpack("v")

        async def exec_async(self, prep_res):
            await asyncio.sleep(0.01)  # the other run sets its value meanwhile
            return self.value

        async def post_async(self, backpack, prep_res, exec_res):
            backpack.pack("seen", exec_res)

    node = Stateful()

    async def main():
        flow = Flow(node)
        return await asyncio.gather(
            *(flow.execute(bp) for bp in (Backpack({"v": 1}), Backpack({"v": 2})))
        )

    first, second = asyncio.run(main())
    assert (first.backpack.unpack("seen"), second.backpack.unpack("seen")) == (1, 2)
    assert not hasattr(node, "value")  # each execution works on its own copy


class Fans(AsyncNode):
    """Does two pieces of work concurrently, each a step nested in its own execution."""

    async def exec_async(self, prep_res):
        run = current_run()

        async def piece(name):
            with run.nested_step(name) as frame:
                run.log(f"{name} working")  # anything emitted inside goes to the nested step
                await asyncio.sleep(0.001)
                run.emit(T.TOOL_RESPONSE, None)
                return frame.step

        return await asyncio.gather(piece("left"), piece("right"))

    async def post_async(self, backpack, prep_res, steps):
        backpack.pack("fans", list(steps))


def test_nested_steps_get_step_numbers_of_their_own_and_name_their_parent():
    from backpackflow.runner import Limits

    result, streamer = run_node(Fans(id="fans"), limits=Limits(max_steps=1))
    assert result.ok, result.error  # nested steps do not count against max_steps
    (start,) = streamer.get_events(type=T.NODE_START)
    nested = [e for e in streamer.get_events() if e.parent_step is not None]
    assert {e.parent_step for e in nested} == {start.step}
    assert sorted({e.step for e in nested}) == sorted(result.backpack.peek("fans"))
    logs = [e for e in nested if e.type is T.LOG]
    assert sorted((e.node_name, e.node_id) for e in logs) == [("left", "fans"), ("right", "fans")]
    assert len({e.step for e in logs}) == 2 and start.step not in {e.step for e in logs}
    # the node's own events after the nested ones are its step's again
    (end,) = streamer.get_events(type=T.NODE_END)
    assert (end.step, end.parent_step) == (start.step, None)
    # the JSON form: parent_step only where set (traces without nested steps are unchanged)
    assert "parent_step" not in start.to_json()
    assert logs[0].to_json()["parent_step"] == start.step
    assert result.node_count == 1


def test_a_nested_step_is_for_code_a_node_of_the_run_executes():
    from backpackflow.runner import Run

    run = Run(flow_name="f", backpack=Backpack(), events=EventStreamer())
    with pytest.raises(BackpackFlowError, match="nested_step"), run.nested_step("x"):
        pass
