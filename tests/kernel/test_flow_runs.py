"""Runs (PRD-002, DESIGN §3.3): run ids and sequences, run_start/run_end, RunResult, guardrails
(max_steps, timeout, usage), cancellation, concurrent runs, loops and no loops, and the PRD-002
success criteria SC-1..SC-4."""

from __future__ import annotations

import asyncio
import itertools
import json
import threading
import time
from decimal import Decimal

import pytest

from backpackflow import (
    AsyncNode,
    Backpack,
    EventStreamer,
    Flow,
    FlowError,
    GuardrailExceeded,
    Limits,
    Node,
    RunCanceled,
    RunControl,
    RunResult,
    StreamEventType,
    current_run,
)

T = StreamEventType


class Put(Node):
    def __init__(self, node_id, key=None, value=None, action=None, **kw):
        super().__init__(id=node_id, **kw)
        self.key, self.value, self.action = key or node_id, value, action

    def post(self, backpack, prep_res, exec_res):
        backpack.pack(self.key, self.value if self.value is not None else self.id)
        return self.action


class Loop(Node):
    def post(self, backpack, prep_res, exec_res):
        return "again"


class Sleep(AsyncNode):
    """Awaits ``delay`` seconds; ``outcomes`` (shared by the copies a run makes of the node)
    says whether the run cut that await short: what the timeout and cancellation tests check,
    rather than a wall-clock bound."""

    def __init__(self, node_id="sleep", delay=1.0, **kw):
        super().__init__(id=node_id, **kw)
        self.delay = delay
        self.outcomes: list[str] = []

    async def exec_async(self, prep_res):
        try:
            await asyncio.sleep(self.delay)
        except asyncio.CancelledError:
            self.outcomes.append("interrupted")
            raise
        self.outcomes.append("woke")
        return "woke"


def chain(*nodes):
    for a, b in itertools.pairwise(nodes):
        a >> b
    return Flow(nodes[0])


def looping(**kw):
    node = Loop(id="loop")
    node - "again" >> node
    return Flow(node, **kw)


# ------------------------------------------------------------------------------- run ids, seq


def test_every_event_carries_the_run_id_and_seq_has_no_gaps():
    class Chatty(Node):
        def prep(self, backpack):
            return backpack.unpack("a")

        def exec(self, prep_res):
            current_run().emit(T.STREAM_CHUNK, {"text": "tok"})
            if self.cur_retry == 0:
                raise ValueError("retry me")

    node = Chatty(max_retries=2, id="chatty")
    node - "x" >> Node()  # returns None: ends with a log event
    streamer = EventStreamer()
    result = chain(Put("a"), node).execute_sync(Backpack(), events=streamer)
    events = streamer.get_events()
    assert {e.run_id for e in events} == {result.run_id}
    assert {T.RETRY, T.STREAM_CHUNK, T.BACKPACK_PACK, T.BACKPACK_UNPACK} <= {e.type for e in events}
    assert [e.seq for e in events] == list(range(1, len(events) + 1))
    assert events[0].type is T.RUN_START
    assert events[-1].type is T.RUN_END


def test_given_run_ids_are_used():
    streamer = EventStreamer()
    result = chain(Put("a")).execute_sync(Backpack(), events=streamer, run_id="my-run")
    assert result.run_id == "my-run"
    assert {e.run_id for e in streamer.get_events()} == {"my-run"}


def test_run_ids_differ_and_seq_restarts_per_run():
    streamer = EventStreamer()
    flow = chain(Put("a"), Put("b"))
    first = flow.execute_sync(Backpack(), events=streamer)
    second = flow.execute_sync(Backpack(), events=streamer)
    assert first.run_id != second.run_id
    for run in (first, second):
        seqs = [e.seq for e in streamer.get_events(run_id=run.run_id)]
        assert seqs == list(range(1, len(seqs) + 1))


def test_seq_has_no_gaps_in_a_parallel_run():
    trace = []

    class Branch(AsyncNode):
        async def exec_async(self, prep_res):
            for i in range(3):
                current_run().log(f"{self.id} {i}")
                trace.append(self.id)
                await asyncio.sleep(0.001)

    start = Node(id="start")
    for name in "abc":
        start >> Branch(id=name)
    streamer = EventStreamer()
    result = Flow(start, parallel=True).execute_sync(Backpack(), events=streamer)
    assert result.ok
    assert trace[:3] != ["a", "a", "a"]  # the branches interleaved
    events = streamer.get_events()
    assert [e.seq for e in events] == list(range(1, len(events) + 1))
    for log in streamer.get_events(type=T.LOG):
        assert log.payload.message.startswith(log.node_id)


# ------------------------------------------------------------------------------- run_start / end


def test_run_start_and_run_end_payloads():
    streamer = EventStreamer()
    flow = chain(Put("a"), Put("b", action="finished"))
    flow.name = "Pipeline"
    limits = Limits(max_steps=10, timeout=30)
    flow.execute_sync(Backpack(), events=streamer, inputs={"q": 1}, limits=limits)
    start, end = streamer.get_events(type=[T.RUN_START, T.RUN_END])
    assert start.seq == 1
    assert start.payload.flow_name == "Pipeline"
    assert start.payload.inputs == {"q": 1}
    assert start.to_json()["payload"]["limits"]["max_steps"] == 10
    assert start.node_id is None and start.step is None
    assert end.payload.status == "succeeded"
    assert end.payload.node_count == 2
    assert end.payload.error is None
    assert end.payload.action == "finished"
    assert 0 < end.payload.duration_ms < 5000
    assert end.to_json()["payload"]["totals"]["total_tokens"] == 0
    assert end.node_id is None


def test_run_end_of_a_failed_run_names_the_error():
    class Bad(Node):
        def exec(self, prep_res):
            raise ValueError("model returned garbage")

    streamer = EventStreamer()
    result = chain(Put("a"), Bad(id="bad")).execute_sync(Backpack(), events=streamer)
    end = streamer.get_events(type=T.RUN_END)[0]
    assert end.payload.status == "failed"
    assert end.payload.error == "model returned garbage"
    assert end.payload.error_type == "ValueError"
    assert end.payload.node_count == 2
    assert result.status == "failed"


def test_run_result():
    streamer = EventStreamer()
    bp = Backpack()
    result = chain(Put("a"), Put("b", action="end")).execute_sync(bp, events=streamer)
    assert isinstance(result, RunResult)
    assert result.ok
    assert result.status == "succeeded"
    assert result.action == "end"
    assert result.error is None
    assert result.node_count == 2
    assert result.backpack is bp
    assert result.events is streamer
    assert result.duration_ms > 0
    assert result.totals == {"tokens_input": 0, "tokens_output": 0, "total_tokens": 0, "cost": "0"}
    result.raise_for_status()  # nothing to raise


def test_run_raises_execute_returns():
    class Bad(Node):
        def exec(self, prep_res):
            raise KeyError("missing")

    flow = chain(Put("a"), Bad(id="bad"))
    result = flow.execute_sync(Backpack())
    assert result.status == "failed"
    assert isinstance(result.error, KeyError)
    assert not result.ok
    with pytest.raises(KeyError):
        result.raise_for_status()
    with pytest.raises(KeyError):
        flow.run(Backpack())
    assert asyncio.run(flow.execute(Backpack())).status == "failed"
    with pytest.raises(KeyError):
        asyncio.run(flow.run_async(Backpack()))


def test_a_failed_run_keeps_its_events_and_backpack_history():
    class Bad(Node):
        def exec(self, prep_res):
            raise RuntimeError("x")

    streamer = EventStreamer()
    bp = Backpack()
    chain(Put("a"), Put("b"), Bad(id="bad")).execute_sync(bp, events=streamer)
    assert [c.key for c in bp.get_history()] == ["a", "b"]
    assert [e.node_id for e in streamer.get_events(type=T.NODE_END)] == ["a", "b"]


def test_flow_default_events_streamer_and_a_fresh_one_otherwise():
    streamer = EventStreamer()
    flow = Flow(Put("a"), events=streamer)
    result = flow.execute_sync(Backpack())
    assert result.events is streamer
    other = Flow(Put("a")).execute_sync(Backpack())
    assert other.events is not streamer
    assert len(other.events.get_events()) == 7  # run, node lifecycle, one pack


# ------------------------------------------------------------------------------- max_steps


def test_max_steps_is_bounded_by_default():
    result = looping().execute_sync(Backpack())
    assert result.status == "failed"
    assert isinstance(result.error, GuardrailExceeded)
    assert result.node_count == Limits().max_steps
    assert Limits().max_steps is not None


def test_max_steps_guardrail_event_and_clear_error():
    streamer = EventStreamer()
    result = looping(max_steps=5).execute_sync(Backpack(), events=streamer)
    assert result.status == "failed"
    error = result.error
    assert isinstance(error, GuardrailExceeded)
    assert (error.limit, error.maximum) == ("max_steps", 5)
    assert "max_steps=5" in str(error)
    assert result.run_id in str(error)
    assert result.node_count == 5
    guardrails = streamer.get_events(type=T.GUARDRAIL)
    assert len(guardrails) == 1
    assert guardrails[0].payload.limit == "max_steps"
    assert guardrails[0].payload.maximum == 5
    assert guardrails[0].payload.message == str(error)
    assert len(streamer.get_events(type=T.NODE_START)) == 5
    end = streamer.get_events(type=T.RUN_END)[0]
    assert (end.payload.status, end.payload.error_type) == ("failed", "GuardrailExceeded")
    with pytest.raises(GuardrailExceeded):
        looping(max_steps=3).run(Backpack())


def test_limits_given_to_the_run_override_the_flow():
    result = looping(max_steps=50).execute_sync(Backpack(), limits=Limits(max_steps=2))
    assert result.node_count == 2
    result = looping(max_steps=2).execute_sync(
        Backpack(), limits=Limits(max_steps=None, timeout=0.05)
    )
    assert result.error.limit == "timeout"  # max_steps=None: only the timeout stops it
    assert result.node_count > 2


def test_max_steps_counts_nodes_of_nested_flows():
    inner = Loop(id="inner")
    inner - "again" >> inner
    outer = Node(id="outer")
    outer >> Flow(inner, id="sub")
    streamer = EventStreamer()
    result = Flow(outer, max_steps=6).execute_sync(Backpack(), events=streamer)
    assert result.error.limit == "max_steps"
    assert [e.node_id for e in streamer.get_events(type=T.NODE_START)] == [
        "outer",
        "sub",
        "inner",
        "inner",
        "inner",
        "inner",
    ]
    # the guardrail stops the inner loop; the flow node reports the failure
    assert [e.node_id for e in streamer.get_events(type=T.ERROR)] == ["sub"]


@pytest.mark.parametrize(
    "kwargs",
    [
        {"max_steps": 0},
        {"max_steps": -1},
        {"max_steps": True},
        {"timeout": 0},
        {"timeout": "1"},
        {"max_tokens": -5},
        {"max_cost": "abc"},
        {"max_cost": -1},
        {"max_cost": "NaN"},
    ],
)
def test_bad_limits_are_refused(kwargs):
    with pytest.raises(ValueError):
        Limits(**kwargs)


# ------------------------------------------------------------------------------- timeout


def test_timeout_interrupts_an_awaiting_node():
    streamer = EventStreamer()
    sleeper = Sleep(delay=60)
    result = Flow(sleeper, timeout=0.05).execute_sync(Backpack(), events=streamer)
    assert sleeper.outcomes == ["interrupted"]  # cut short, not waited out
    assert result.status == "failed"
    assert isinstance(result.error, GuardrailExceeded)
    assert result.error.limit == "timeout"
    assert "timeout" in str(result.error)
    guardrail = streamer.get_events(type=T.GUARDRAIL)[0]
    assert guardrail.payload.limit == "timeout"
    assert guardrail.payload.maximum == 0.05
    error = streamer.get_events(type=T.ERROR)[0]
    assert (error.node_id, error.payload.phase) == ("sleep", "exec")
    assert streamer.get_events(type=T.RUN_END)[0].payload.status == "failed"


def test_timeout_of_a_sync_flow_is_checked_between_nodes():
    class Slow(Node):
        def exec(self, prep_res):
            time.sleep(0.03)

    nodes = [Slow(id=f"s{i}") for i in range(10)]
    streamer = EventStreamer()
    result = chain(*nodes).execute_sync(Backpack(), events=streamer, limits=Limits(timeout=0.07))
    assert result.status == "failed"
    assert result.error.limit == "timeout"
    assert 2 <= result.node_count <= 4
    assert len(streamer.get_events(type=T.GUARDRAIL)) == 1


@pytest.mark.parametrize("driven", ["sync", "async"])
def test_timeout_is_enforced_during_retry_waits(driven):
    class Flaky(Node):
        def exec(self, prep_res):
            raise ConnectionError("provider down")

    flow = Flow(Flaky(max_retries=3, wait=10, id="flaky"))
    streamer = EventStreamer()
    limits = Limits(timeout=0.05)
    if driven == "sync":  # no event loop: the engine itself must stop waiting
        result = flow.execute_sync(Backpack(), events=streamer, limits=limits)
    else:
        result = asyncio.run(flow.execute(Backpack(), events=streamer, limits=limits))
    # the timeout fell in the first 10 s wait: one failed attempt, never a second
    assert [e.payload.attempt for e in streamer.get_events(type=T.RETRY)] == [1]
    assert result.status == "failed"
    assert isinstance(result.error, GuardrailExceeded)
    assert result.error.limit == "timeout"
    assert [e.payload.limit for e in streamer.get_events(type=T.GUARDRAIL)] == ["timeout"]
    assert streamer.get_events(type=T.ERROR)[0].node_id == "flaky"


# ------------------------------------------------------------------------------- cancellation


def test_cancel_a_sync_flow_from_another_thread():
    class Slow(Node):
        def exec(self, prep_res):
            time.sleep(0.02)

        def post(self, backpack, prep_res, exec_res):
            return "again"

    node = Slow(id="slow")
    node - "again" >> node
    control = RunControl()
    timer = threading.Timer(0.07, control.cancel, kwargs={"reason": "user pressed stop"})
    streamer = EventStreamer()
    timer.start()
    result = Flow(node, max_steps=500).execute_sync(Backpack(), events=streamer, control=control)
    timer.join()
    assert result.status == "canceled"
    assert isinstance(result.error, RunCanceled)
    assert "user pressed stop" in str(result.error)
    assert 2 <= result.node_count < 20
    end = streamer.get_events(type=T.RUN_END)[0]
    assert end.payload.status == "canceled"
    assert "user pressed stop" in end.payload.error
    with pytest.raises(RunCanceled):
        Flow(node).run(Backpack(), control=control)  # canceled before it starts


def test_cancel_an_async_flow_from_a_task():
    async def main():
        control = RunControl()
        streamer = EventStreamer()

        async def stop_soon():
            await asyncio.sleep(0.03)
            control.cancel("enough")

        stopper = asyncio.ensure_future(stop_soon())
        sleeper, after = Sleep(delay=60), Put("after")
        sleeper >> after
        result = await Flow(sleeper).execute(Backpack(), events=streamer, control=control)
        await stopper
        # the task that ran the flow is not left canceled
        await asyncio.sleep(0)
        return result, streamer, sleeper

    result, streamer, sleeper = asyncio.run(main())
    assert sleeper.outcomes == ["interrupted"]
    assert result.status == "canceled"
    assert "enough" in str(result.error)
    error = streamer.get_events(type=T.ERROR)[0]
    assert error.payload.error_type == "CancelledError"
    end = streamer.get_events(type=T.RUN_END)[0]
    assert end.payload.status == "canceled"
    assert "after" not in result.backpack


def test_cancel_from_another_thread_interrupts_an_awaiting_async_flow():
    control = RunControl()
    timer = threading.Timer(0.05, control.cancel)
    timer.start()
    sleeper = Sleep(delay=60)
    result = Flow(sleeper).execute_sync(Backpack(), control=control)
    timer.join()
    assert sleeper.outcomes == ["interrupted"]
    assert result.status == "canceled"


@pytest.mark.parametrize("kind", ["sync", "async"])
def test_cancel_from_inside_the_run_leaves_the_callers_task_alone(kind):
    control = RunControl()

    class StopSync(Node):
        def exec(self, prep_res):
            control.cancel("guard tripped")

    class StopAsync(AsyncNode):
        async def exec_async(self, prep_res):
            control.cancel("guard tripped")

    stop = StopSync(id="stop") if kind == "sync" else StopAsync(id="stop")
    stop >> Put("after")

    async def main():
        result = await Flow(stop).execute(Backpack(), control=control)
        await asyncio.sleep(0.01)  # a stray cancel of this task would raise here
        return result

    result = asyncio.run(main())
    assert result.status == "canceled"
    assert "guard tripped" in str(result.error)
    assert "after" not in result.backpack


def test_task_cancel_marks_the_run_canceled_and_propagates():
    streamer = EventStreamer()

    async def main():
        task = asyncio.ensure_future(Flow(Sleep(delay=2)).execute(Backpack(), events=streamer))
        await asyncio.sleep(0.03)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        return task

    task = asyncio.run(main())
    assert task.cancelled()
    end = streamer.get_events(type=T.RUN_END)[0]
    assert end.payload.status == "canceled"
    assert streamer.get_events(type=T.ERROR)[0].payload.error_type == "CancelledError"


def test_a_canceled_run_leaves_a_reusable_control_state():
    control = RunControl()
    assert control.canceled is False
    control.cancel("why")
    assert (control.canceled, control.reason) == (True, "why")
    result = Flow(Put("a")).execute_sync(Backpack(), control=control)
    assert result.status == "canceled"
    assert result.node_count == 0
    assert "a" not in result.backpack


def test_a_handler_mutating_payload_containers_cannot_change_the_run():
    seen = {}

    class Probe(Node):
        def exec(self, prep_res):
            seen["mode"] = current_run().inputs["mode"]
            seen["k"] = self.params["k"]

    def vandal(event):
        if event.type is T.RUN_START:
            event.payload.inputs["mode"] = "changed by a handler"
        if event.type is T.NODE_START:
            event.payload.params["k"] = "changed by a handler"

    streamer = EventStreamer()
    streamer.subscribe("*", vandal)
    node = Probe(params={"k": "v"})
    Flow(node).run(Backpack(), events=streamer, inputs={"mode": "safe"})
    assert seen == {"mode": "safe", "k": "v"}
    assert node.params == {"k": "v"}


# ------------------------------------------------------------------------------- usage limits


class Spend(Node):
    def exec(self, prep_res):
        current_run().add_usage(input_tokens=60, output_tokens=40, cost="0.015")


def spending(n):
    return chain(*(Spend(id=f"spend{i}") for i in range(n)))


def test_usage_is_totalled_exactly():
    result = spending(3).execute_sync(Backpack())
    assert result.ok
    assert result.totals == {
        "tokens_input": 180,
        "tokens_output": 120,
        "total_tokens": 300,
        "cost": "0.045",
    }
    assert Decimal(result.totals["cost"]) == Decimal("0.045")


def test_max_tokens_stops_the_next_node_with_a_guardrail():
    streamer = EventStreamer()
    result = spending(5).execute_sync(Backpack(), events=streamer, limits=Limits(max_tokens=250))
    assert result.status == "failed"
    assert result.error.limit == "max_tokens"
    assert result.node_count == 3  # 300 tokens after the third: the fourth never starts
    guardrail = streamer.get_events(type=T.GUARDRAIL)[0].payload
    assert (guardrail.limit, guardrail.value, guardrail.maximum) == ("max_tokens", 300, 250)
    assert (
        streamer.get_events(type=T.RUN_END)[0].to_json()["payload"]["totals"]["total_tokens"] == 300
    )


def test_max_cost_stops_the_next_node_with_a_guardrail():
    streamer = EventStreamer()
    result = spending(5).execute_sync(Backpack(), events=streamer, limits=Limits(max_cost="0.02"))
    assert result.status == "failed"
    assert result.error.limit == "max_cost"
    assert result.node_count == 2
    assert "0.03" in str(result.error)
    guardrail = streamer.get_events(type=T.GUARDRAIL)[0].payload
    assert (guardrail.value, guardrail.maximum) == ("0.030", "0.02")


def test_a_limit_exceeded_by_the_last_node_is_reported():
    streamer = EventStreamer()
    result = spending(1).execute_sync(Backpack(), events=streamer, limits=Limits(max_tokens=50))
    assert [e.payload.limit for e in streamer.get_events(type=T.GUARDRAIL)] == ["max_tokens"]
    assert result.status == "failed"


# ------------------------------------------------------------------------------- concurrency


def test_two_concurrent_runs_of_one_flow_stay_separate():
    class Step(AsyncNode):
        async def prep_async(self, backpack):
            return backpack.unpack("x")

        async def exec_async(self, x):
            await asyncio.sleep(0.02)
            return x * 2

        async def post_async(self, backpack, x, doubled):
            backpack.pack("x", doubled)
            current_run().log(f"x={doubled}")

    first, second = Step(id="first"), Step(id="second")
    first >> second
    flow = Flow(first)
    streamer = EventStreamer()

    async def main():
        return await asyncio.gather(
            flow.execute(Backpack({"x": 1}), events=streamer),
            flow.execute(Backpack({"x": 100}), events=streamer),
        )

    one, two = asyncio.run(main())
    assert one.run_id != two.run_id
    assert one.backpack.unpack("x") == 4
    assert two.backpack.unpack("x") == 400
    for result, values in ((one, ["x=2", "x=4"]), (two, ["x=200", "x=400"])):
        events = streamer.get_events(run_id=result.run_id)
        assert [e.seq for e in events] == list(range(1, len(events) + 1))
        assert [e.payload.message for e in events if e.type is T.LOG] == values
        assert result.node_count == 2
    runs = [e.run_id for e in streamer.get_events()]
    assert runs != sorted(runs, key=[one.run_id, two.run_id].index)  # interleaved


def test_a_sync_flow_runs_without_an_event_loop():
    seen = {}

    class Probe(Node):
        def exec(self, prep_res):
            try:
                asyncio.get_running_loop()
                seen["loop"] = True
            except RuntimeError:
                seen["loop"] = False

    assert Flow(Probe()).execute_sync(Backpack()).ok
    assert seen["loop"] is False


def test_a_sync_flow_can_run_inside_a_running_loop():
    async def main():
        return Flow(Put("a", action="done")).run(Backpack())

    assert asyncio.run(main()) == "done"


def test_an_async_flow_inside_a_running_loop_tells_the_user_to_await():
    async def main():
        with pytest.raises(FlowError, match=r"await flow\.run_async"):
            Flow(Sleep(delay=0)).run(Backpack())
        with pytest.raises(FlowError, match="await"):
            Sleep(delay=0).run(Backpack())
        return await Flow(Sleep(delay=0)).run_async(Backpack())

    assert asyncio.run(main()) is None


def test_a_run_started_inside_a_node_has_events_of_its_own():
    class Sub(Node):
        def exec(self, prep_res):
            inner = Put("inner", action="nowhere")
            inner - "somewhere" >> Node()
            streamer = EventStreamer()
            Flow(inner).run(Backpack(), events=streamer)
            return [(e.type.value, e.node_id, e.step) for e in streamer.get_events()]

    streamer = EventStreamer()
    result = Flow(Sub(id="outer")).execute_sync(Backpack(), events=streamer)
    assert result.ok
    inner_events = streamer.get_events(type=T.EXEC_COMPLETE)[0].payload.exec_result
    run_level = [e for e in inner_events if e[0] in ("run_start", "run_end", "log")]
    # the inner run's own events: never stamped with the outer node; the "flow ends" warning
    # names the inner node that had no edge for its action (outside that node's steps)
    assert run_level == [
        ("run_start", None, None),
        ("log", "inner", None),
        ("run_end", None, None),
    ]


# ------------------------------------------------------------------------------- PRD-002 SC-1..4


class LLM:
    """A canned model: answers by prompt prefix."""

    def __init__(self, answers):
        self.answers = answers

    def complete(self, prompt):
        for prefix, answer in self.answers.items():
            if prompt.startswith(prefix):
                return answer
        return "I'm sorry, I can't do that."


llm = LLM(
    {
        "Classify": '{"intent": "research"}',
        "Plan": '{"steps": ["search", "write"]}',
        "Write": "Lisbon hosts the summit.",
    }
)


class Receive(Node):
    def post(self, backpack, prep_res, exec_res):
        backpack.pack("question", "Which city hosts the summit?")


class Classify(Node):
    def prep(self, backpack):
        return f"Classify the intent of: {backpack.unpack('question')}"

    def exec(self, prompt):
        return llm.complete(prompt)

    def post(self, backpack, prompt, raw):
        intent = json.loads(raw)["intent"]
        backpack.pack("intent", intent)
        return intent


class Plan(Node):
    def prep(self, backpack):
        return f"Plan how to answer: {backpack.unpack('question')}"

    def exec(self, prompt):
        return llm.complete(prompt)

    def post(self, backpack, prompt, raw):
        backpack.pack("plan", json.loads(raw)["steps"])


class Research(Node):
    def prep(self, backpack):
        return backpack.unpack("plan")

    def exec(self, plan):
        return ["summit 2025: Lisbon"]

    def post(self, backpack, prep_res, results):
        backpack.pack("notes", results)
        return "write"


class Write(Node):
    def prep(self, backpack):
        return f"Write an answer from {backpack.unpack('notes')}"

    def exec(self, prompt):
        return llm.complete(prompt)

    def post(self, backpack, prompt, text):
        backpack.pack("answer", text)
        return "done"


def five_node_flow():
    receive, classify, plan, research, write = (
        Receive(),
        Classify(),
        Plan(),
        Research(),
        Write(),
    )
    receive >> classify
    classify - "research" >> plan
    classify - "chitchat" >> write
    plan >> research
    research - "write" >> write
    return Flow(receive, namespace="assistant")


def test_sc1_five_nodes_every_lifecycle_event_without_logging_code():
    streamer = EventStreamer()
    result = five_node_flow().execute_sync(Backpack(), events=streamer)
    assert result.ok
    assert result.backpack.unpack("answer") == "Lisbon hosts the summit."
    nodes = ["receive", "classify", "plan", "research", "write"]
    assert [e.node_id for e in streamer.get_events(type=T.NODE_START)] == nodes
    for node_id in nodes:
        types = [
            e.type
            for e in streamer.get_events(node_id=node_id)
            if e.type in (T.NODE_START, T.PREP_COMPLETE, T.EXEC_COMPLETE, T.NODE_END)
        ]
        assert types == [T.NODE_START, T.PREP_COMPLETE, T.EXEC_COMPLETE, T.NODE_END], node_id
    assert {e.namespace for e in streamer.get_events(type=T.NODE_START)} == {"assistant"}


def test_sc2_prep_complete_holds_the_exact_prompt():
    streamer = EventStreamer()
    five_node_flow().execute_sync(Backpack(), events=streamer)
    prompts = {
        e.node_id: e.payload.prep_result
        for e in streamer.get_events(type=T.PREP_COMPLETE)
        if isinstance(e.payload.prep_result, str)
    }
    assert prompts["classify"] == "Classify the intent of: Which city hosts the summit?"
    assert prompts["write"] == "Write an answer from ['summit 2025: Lisbon']"
    exported = [e for e in streamer.to_json(type="prep_complete") if e["node_id"] == "classify"]
    assert exported[0]["payload"]["prep_result"] == prompts["classify"]


def test_sc3_exec_complete_holds_the_raw_result_before_a_post_parse_failure():
    broken = LLM({"Classify": "I'm sorry, I can't do that."})

    class FragileClassify(Classify):
        def exec(self, prompt):
            return broken.complete(prompt)

    receive = Receive()
    receive >> FragileClassify(id="classify")
    streamer = EventStreamer()
    result = Flow(receive).execute_sync(Backpack(), events=streamer)
    assert result.status == "failed"
    assert isinstance(result.error, json.JSONDecodeError)
    error = streamer.get_events(type=T.ERROR)[0]
    assert (error.node_id, error.payload.phase) == ("classify", "post")
    raw = streamer.get_events(node_id=error.node_id, type=T.EXEC_COMPLETE)[0]
    assert raw.payload.exec_result == "I'm sorry, I can't do that."
    assert raw.seq < error.seq


def test_sc4_rebuild_the_path_from_node_end_actions_in_exported_json():
    streamer = EventStreamer()
    flow = five_node_flow()
    result = flow.execute_sync(Backpack(), events=streamer)
    exported = json.loads(streamer.to_json_str(run_id=result.run_id))

    # a UI knows the graph (node id -> {action: [targets]}) and replays the actions
    graph = {
        n.id: {a: [e.target.id for e in edges] for a, edges in n.successors.items()}
        for n in flow.nodes()
    }
    ends = [e for e in exported if e["type"] == "node_end"]
    actions = {e["node_id"]: e["payload"]["action"] or "default" for e in ends}
    position, rebuilt = exported[1]["node_id"], []
    while position is not None:
        rebuilt.append(position)
        targets = graph[position].get(actions[position], [])
        position = targets[0] if targets else None
    assert rebuilt == [e["node_id"] for e in ends]
    assert rebuilt == ["receive", "classify", "plan", "research", "write"]
    taken = [(e["node_id"], e["payload"]["action"]) for e in ends]
    assert taken == [
        ("receive", None),
        ("classify", "research"),
        ("plan", None),
        ("research", "write"),
        ("write", "done"),
    ]
