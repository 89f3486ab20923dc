"""Flow graphs (DESIGN §3.3): actions and labelled edges, fan-out, joins, loops, ``when``
conditions, nested flows with composed namespaces, batch flows and node ids."""

from __future__ import annotations

import asyncio
import contextlib
import threading

import pytest

from backpackflow import (
    AsyncFlow,
    AsyncNode,
    AsyncParallelBatchFlow,
    Backpack,
    BatchFlow,
    EventStreamer,
    Flow,
    FlowError,
    Node,
    NodeDefinitionError,
    RunControl,
    StreamEventType,
)

T = StreamEventType


class Step(Node):
    """Records its id in ``trace`` and returns ``action``."""

    def __init__(self, node_id, trace, action=None, output=None, **kw):
        super().__init__(id=node_id, **kw)
        self.trace, self.action, self.output = trace, action, output

    def exec(self, prep_res):
        self.trace.append(self.id)
        return self.output

    def post(self, backpack, prep_res, exec_res):
        return self.action


class Timed(AsyncNode):
    """Sleeps ``delay`` seconds and records start/end in ``trace``."""

    def __init__(self, node_id, trace, delay=0.0, action=None, **kw):
        super().__init__(id=node_id, **kw)
        self.trace, self.delay, self.action = trace, delay, action

    async def exec_async(self, prep_res):
        self.trace.append(("start", self.id))
        await asyncio.sleep(self.delay)
        self.trace.append(("end", self.id))

    async def post_async(self, backpack, prep_res, exec_res):
        return self.action


def run(flow, backpack=None, **options):
    streamer = EventStreamer()
    backpack = Backpack() if backpack is None else backpack
    result = flow.execute_sync(backpack, events=streamer, **options)
    return result, streamer


def path(streamer):
    return [e.node_id for e in streamer.get_events(type=T.NODE_START)]


# ------------------------------------------------------------------------------- actions


def test_rshift_and_labelled_edges():
    trace = []
    decide = Step("decide", trace, action="search")
    search = Step("search", trace)
    answer = Step("answer", trace)
    decide - "search" >> search
    decide - "answer" >> answer
    assert run(Flow(decide))[0].ok
    assert trace == ["decide", "search"]
    trace.clear()
    decide.action = "answer"
    run(Flow(decide))
    assert trace == ["decide", "answer"]


def test_chaining_returns_the_target():
    trace = []
    a, b, c = Step("a", trace), Step("b", trace), Step("c", trace)
    assert (a >> b) is b
    assert (a - "x" >> c) is c
    flow = Flow()
    assert flow.start(a) is a
    a.next(c, "y")
    assert [e.target for e in a.successors["default"]] == [b]
    assert [e.target for e in a.successors["y"]] == [c]


def test_none_action_means_default():
    trace = []
    a = Step("a", trace, action=None)
    a >> Step("b", trace)
    a - "other" >> Step("c", trace)
    _, streamer = run(Flow(a))
    assert trace == ["a", "b"]
    end = streamer.get_events(node_id="a", type=T.NODE_END)[0]
    assert end.payload.action is None


def test_explicit_default_action():
    trace = []
    a = Step("a", trace, action="default")
    a >> Step("b", trace)
    run(Flow(a))
    assert trace == ["a", "b"]


def test_missing_edge_ends_the_flow_with_a_warning_log():
    trace = []
    a = Step("a", trace, action="unexpected")
    a - "expected" >> Step("b", trace)
    result, streamer = run(Flow(a))
    assert result.ok
    assert result.action == "unexpected"
    assert trace == ["a"]
    logs = streamer.get_events(type=T.LOG)
    assert len(logs) == 1
    assert logs[0].payload.level == "warning"
    assert "'unexpected'" in logs[0].payload.message
    assert "'a'" in logs[0].payload.message
    assert "expected" in logs[0].payload.message


def test_a_last_node_without_edges_ends_quietly():
    trace = []
    result, streamer = run(Flow(Step("only", trace, action="done")))
    assert result.action == "done"
    assert streamer.get_events(type=T.LOG) == []


@pytest.mark.parametrize("action", [42, ["a"], {"x": 1}, True])
def test_non_string_action_is_a_clear_error(action):
    trace = []
    a = Step("a", trace, action=action)
    a >> Step("b", trace)
    result, _ = run(Flow(a))
    assert result.status == "failed"
    assert isinstance(result.error, FlowError)
    assert "'a'" in str(result.error)
    assert "string" in str(result.error)
    assert trace == ["a"]


def test_bad_edges_are_refused_at_wiring_time():
    a = Node(id="a")
    with pytest.raises(NodeDefinitionError):
        a >> "not a node"  # type: ignore[operator]
    with pytest.raises(TypeError):
        a - 3 >> Node()  # type: ignore[operator]
    with pytest.raises(NodeDefinitionError):
        a.next(Node(), "")
    with pytest.raises(NodeDefinitionError, match="when"):
        a.next(Node(), when="x > 1")  # type: ignore[arg-type]


def test_a_flow_without_start_node_is_an_error():
    with pytest.raises(FlowError, match="no start node"):
        Flow().execute_sync(Backpack())


def test_a_flow_runs_on_a_backpack_only():
    with pytest.raises(TypeError, match="Backpack"):
        Flow(Node()).run({"shared": "dict"})  # type: ignore[arg-type]


# ------------------------------------------------------------------------------- fan-out


def test_fan_out_runs_successors_sequentially_in_order():
    trace = []
    a = Step("a", trace)
    for name in ("b", "c", "d"):
        a >> Step(name, trace)
    _, streamer = run(Flow(a))
    assert trace == ["a", "b", "c", "d"]
    assert path(streamer) == ["a", "b", "c", "d"]
    assert [e.step for e in streamer.get_events(type=T.NODE_START)] == [1, 2, 3, 4]


def test_fan_out_for_one_action_only():
    trace = []
    a = Step("a", trace, action="go")
    a - "go" >> Step("b", trace)
    a - "go" >> Step("c", trace)
    a - "stop" >> Step("never", trace)
    run(Flow(a))
    assert trace == ["a", "b", "c"]


def test_parallel_fan_out_runs_siblings_concurrently():
    trace = []
    a = Timed("a", trace)
    for name in ("b", "c", "d"):
        a >> Timed(name, trace, delay=0.05)
    result, _ = run(Flow(a, parallel=True))
    assert result.ok
    assert trace[:2] == [("start", "a"), ("end", "a")]
    assert {t for t in trace[2:5]} == {("start", "b"), ("start", "c"), ("start", "d")}


def test_gated_node_types_wait_for_the_run_controls_gate():
    """RunControl.gate_nodes (the service's concurrency caps per node type): with one slot,
    parallel siblings of the gated type take turns; other types do not wait."""
    trace, entered = [], []
    semaphore = asyncio.Semaphore(1)

    @contextlib.asynccontextmanager
    async def gate(node_type):
        async with semaphore:
            entered.append(node_type)
            yield

    a = Timed("a", trace)
    for name in ("b", "c", "d"):
        sibling = a >> Timed(name, trace, delay=0.02)
        sibling.node_type = "capped"
    control = RunControl()
    control.gate_nodes({"capped"}, gate)
    result, _ = run(Flow(a, parallel=True), control=control)
    assert result.ok and entered == ["capped"] * 3
    assert [kind for kind, _ in trace[2:]] == ["start", "end"] * 3  # one at a time
    # sequential flows too, nested flows' nodes included
    inner = Timed("inner", trace)
    inner.node_type = "capped"
    outer = Timed("outer", trace)
    outer >> Flow(inner)
    entered.clear()
    assert run(Flow(outer), control=control)[0].ok
    assert entered == ["capped"]


def test_parallel_fan_out_of_blocking_sync_nodes_runs_them_in_threads():
    barrier = threading.Barrier(3, timeout=2)  # only met if the three run at once

    class Meet(Node):
        def exec(self, prep_res):
            barrier.wait()

    start = Node(id="start")
    for name in ("b", "c", "d"):
        start >> Meet(id=name, blocking=True)
    result, streamer = run(Flow(start, parallel=True))
    assert result.ok, result.error
    assert path(streamer) == ["start", "b", "c", "d"]


def test_sequential_flow_with_async_siblings_does_not_overlap_them():
    trace = []
    a = Timed("a", trace)
    a >> Timed("b", trace, delay=0.01)
    a >> Timed("c", trace, delay=0.01)
    run(Flow(a))
    assert trace == [(p, n) for n in "abc" for p in ("start", "end")]


def test_parallel_branch_failure_cancels_the_siblings_and_fails_the_run():
    trace = []

    class Fails(AsyncNode):
        async def exec_async(self, prep_res):
            await asyncio.sleep(0.01)
            raise RuntimeError("branch failed")

    a = Timed("a", trace)
    a >> Fails(id="bad")
    a >> Timed("slow", trace, delay=60)
    result, streamer = run(Flow(a, parallel=True))
    assert result.status == "failed"
    assert str(result.error) == "branch failed"
    errors = {e.node_id: e.payload for e in streamer.get_events(type=T.ERROR)}
    assert errors["bad"].error == "branch failed"
    assert errors["slow"].error_type == "CancelledError"
    assert ("end", "slow") not in trace
    assert streamer.get_events(type=T.RUN_END)[0].payload.status == "failed"


# ------------------------------------------------------------------------------- joins


def diamond(node, trace, **kw):
    a, b, c, d = (node(n, trace, **kw) for n in "abcd")
    a >> b
    a >> c
    b >> d
    c >> d
    return a


def test_diamond_join_runs_once_after_both_branches():
    trace = []
    result, _streamer = run(Flow(diamond(Step, trace)))
    assert result.ok
    assert trace == ["a", "b", "c", "d"]


def test_parallel_diamond_join_waits_for_both_branches():
    trace = []
    a, b, c, d = (
        Timed("a", trace),
        Timed("b", trace, 0.02),
        Timed("c", trace, 0.06),
        Timed("d", trace),
    )
    a >> b
    a >> c
    b >> d
    c >> d
    result, _streamer = run(Flow(a, parallel=True))
    assert result.ok
    assert trace.count(("start", "d")) == 1
    assert trace.index(("start", "d")) > trace.index(("end", "c"))
    assert trace.index(("start", "b")) < trace.index(("end", "c"))  # b and c overlapped


@pytest.mark.parametrize("parallel", [False, True])
def test_join_with_branches_of_different_lengths(parallel):
    trace = []
    a, b, c, x, y, d = (Timed(n, trace) for n in "abcxyd")
    a >> b
    a >> c
    b >> d
    c >> x >> y >> d
    result, _streamer = run(Flow(a, parallel=parallel))
    assert result.ok
    ran = [n for p, n in trace if p == "start"]
    assert sorted(ran) == sorted("abcxyd")
    assert ran[-1] == "d"
    assert ran.count("d") == 1


def test_join_does_not_wait_for_a_branch_that_was_not_taken():
    trace = []
    a = Step("a", trace, action="left")
    left, right, join = Step("left", trace), Step("right", trace), Step("join", trace)
    a - "left" >> left
    a - "right" >> right
    left >> join
    right >> join
    run(Flow(a))
    assert trace == ["a", "left", "join"]


def test_join_where_one_predecessor_ends_without_an_edge():
    trace = []
    a = Step("a", trace)
    b = Step("b", trace)
    c = Step("c", trace, action="stop")  # no "stop" edge: this branch ends at c
    d = Step("d", trace)
    a >> b
    a >> c
    b >> d
    c - "continue" >> d
    result, _ = run(Flow(a))
    assert result.ok
    assert trace == ["a", "b", "c", "d"]


# ------------------------------------------------------------------------------- loops


class Decide(Node):
    """The agent-loop pattern: search until enough context, then answer."""

    def prep(self, backpack):
        return backpack.unpack("context", [])

    def exec(self, context):
        return "answer" if len(context) >= 3 else "search"

    def post(self, backpack, prep_res, exec_res):
        return exec_res


class Search(Node):
    def prep(self, backpack):
        return backpack.unpack("context", [])

    def post(self, backpack, context, exec_res):
        backpack.pack("context", [*context, f"result {len(context) + 1}"])
        return "decide"


class Answer(Node):
    def post(self, backpack, prep_res, exec_res):
        backpack.pack("answer", "42")
        return "done"


def test_agent_loop_with_an_exit_action():
    decide, search, answer = Decide(), Search(), Answer()
    decide - "search" >> search
    decide - "answer" >> answer
    search - "decide" >> decide
    result, streamer = run(Flow(decide))
    assert result.ok
    assert result.action == "done"
    assert result.backpack.unpack("answer") == "42"
    assert path(streamer) == ["decide", "search"] * 3 + ["decide", "answer"]
    assert [e.step for e in streamer.get_events(type=T.NODE_START)] == list(range(1, 9))
    assert result.node_count == 8


def test_a_loop_node_sees_its_own_earlier_output_in_conditions():
    seen = []
    counter = Step("counter", [], action="again")

    def until_three(ctx):
        seen.append(ctx["node"]["counter"]["output"])
        return len(seen) < 3

    counter.output = "out"
    counter.next(counter, "again", when=until_three)
    result, streamer = run(Flow(counter))
    assert result.ok
    assert path(streamer) == ["counter"] * 3
    assert seen == ["out"] * 3


# ------------------------------------------------------------------------------- when conditions


def test_when_conditions_select_edges():
    trace = []
    router = Step("router", trace, output={"branch": "deep", "score": 0.9})
    router.next(Step("deep", trace), when=lambda ctx: ctx["branch"] == "deep")
    router.next(Step("shallow", trace), when=lambda ctx: ctx["branch"] == "shallow")
    router.next(Step("scored", trace), when=lambda ctx: ctx["output"]["score"] > 0.5)
    router.next(Step("always", trace))
    run(Flow(router))
    assert trace == ["router", "deep", "scored", "always"]


@pytest.mark.parametrize(
    ("value", "follows"),
    [(1, True), ("yes", True), ([0], True), (0, False), ("", False), ([], False), (None, False)],
)
def test_when_uses_truthiness(value, follows):
    trace = []
    a = Step("a", trace)
    a.next(Step("b", trace), when=lambda ctx: value)
    run(Flow(a))
    assert trace == (["a", "b"] if follows else ["a"])


def test_condition_context_contents():
    contexts = []

    def capture(ctx):
        contexts.append({k: ctx[k] for k in ctx})
        return False

    first = Step("first", [], output="first output")
    second = Step("second", [], action="route", output={"branch": "b", "n": 2})
    first >> second
    second.next(Node(id="target"), "route", when=capture)

    class Seed(Node):
        def post(self, backpack, prep_res, exec_res):
            backpack.pack("memory", {"turns": 1})

    seed = Seed()
    seed >> first
    run(Flow(seed), Backpack({"k": "v"}), inputs={"question": "why"})
    (ctx,) = contexts
    assert ctx["action"] == "route"
    assert ctx["output"] == {"branch": "b", "n": 2}
    assert ctx["branch"] == "b"  # keys of a dict output are top-level names
    assert ctx["n"] == 2
    assert ctx["inputs"] == {"question": "why"}
    assert dict(ctx["state"]) == {"k": "v", "memory": {"turns": 1}}
    assert ctx["node"]["first"]["output"] == "first output"
    assert ctx["node"]["second"]["output"] == {"branch": "b", "n": 2}


def test_condition_context_action_defaults():
    contexts = []
    a = Step("a", [], action=None)
    a.next(Node(id="b"), when=lambda ctx: contexts.append(ctx["action"]))
    run(Flow(a))
    assert contexts == ["default"]


def test_condition_state_is_read_only():
    def mutate(ctx):
        ctx["state"]["k"] = "changed"
        return True

    a = Step("a", [])
    a.next(Node(id="b"), when=mutate)
    result, _ = run(Flow(a), Backpack({"k": "v"}))
    assert result.status == "failed"
    assert result.backpack.unpack("k") == "v"


def test_a_raising_condition_is_a_flow_error_naming_the_edge():
    class Cond:
        source = "output.score > limit"

        def __call__(self, ctx):
            return ctx["output"]["score"] > ctx["limit"]

    a = Step("scorer", [], action="check", output={"score": 1})
    a.next(Node(id="accept"), "check", when=Cond())
    result, streamer = run(Flow(a))
    assert result.status == "failed"
    assert isinstance(result.error, FlowError)
    message = str(result.error)
    assert "'scorer' -> 'accept'" in message
    assert "'check'" in message
    assert "output.score > limit" in message
    assert "limit" in message
    assert isinstance(result.error.__cause__, KeyError)
    assert streamer.get_events(type=T.RUN_END)[0].payload.status == "failed"


# ------------------------------------------------------------------------------- nested flows


def build_nested(trace):
    inner_a = Step("fetch", trace, namespace="web")
    inner_b = Step("summarize", trace, action="summarized")
    inner_a >> inner_b
    sub = Flow(inner_a, id="research", namespace="research")
    intro = Step("intro", trace, namespace="chat")
    outro = Step("outro", trace)
    intro >> sub
    sub - "summarized" >> outro
    return Flow(intro, id="sales_flow", namespace="sales")


def test_nested_flow_namespaces_compose_down_the_graph():
    trace = []
    result, streamer = run(build_nested(trace))
    assert result.ok
    assert trace == ["intro", "fetch", "summarize", "outro"]
    starts = [(e.node_id, e.namespace, e.step) for e in streamer.get_events(type=T.NODE_START)]
    assert starts == [
        ("intro", "sales.chat", 1),
        ("research", "sales.research", 2),
        ("fetch", "sales.research.web", 3),
        ("summarize", "sales.research", 4),
        ("outro", "sales", 5),
    ]


def test_nested_flow_node_has_its_own_lifecycle_and_takes_the_last_inner_action():
    trace = []
    result, streamer = run(build_nested(trace))
    flow_events = [e.type for e in streamer.get_events(node_id="research") if e.type in set(T)]
    assert flow_events[0] == T.NODE_START
    assert flow_events[-1] == T.NODE_END
    inner = [e.node_id for e in streamer.get_events(type=T.NODE_END)]
    assert inner == ["intro", "fetch", "summarize", "research", "outro"]
    end = streamer.get_events(node_id="research", type=T.NODE_END)[0]
    assert end.payload.action == "summarized"
    exec_complete = streamer.get_events(node_id="research", type=T.EXEC_COMPLETE)[0]
    assert exec_complete.payload.exec_result == "summarized"
    assert result.node_count == 5


def test_a_failing_inner_node_fails_the_flow_node_too():
    class Bad(Node):
        def exec(self, prep_res):
            raise ValueError("inner failure")

    sub = Flow(Bad(id="bad"), id="sub", namespace="inner")
    outer = Node(id="outer")
    outer >> sub
    result, streamer = run(Flow(outer))
    assert result.status == "failed"
    errors = [(e.node_id, e.namespace, e.payload.phase) for e in streamer.get_events(type=T.ERROR)]
    assert errors == [("bad", "inner", "exec"), ("sub", "inner", "exec")]


def test_nested_flow_without_namespaces_inherits_the_parents():
    trace = []
    sub = Flow(Step("inner", trace), id="sub")
    a = Step("a", trace)
    a >> sub
    _, streamer = run(Flow(a, namespace="top"))
    assert {e.namespace for e in streamer.get_events(type=T.NODE_START)} == {"top"}
    _, streamer = run(Flow(a))
    assert {e.namespace for e in streamer.get_events(type=T.NODE_START)} == {None}


def test_a_flow_run_alone_as_a_node():
    trace = []
    flow = build_nested(trace)
    assert flow.run(Backpack()) is None  # outro returns None
    assert trace == ["intro", "fetch", "summarize", "outro"]


def test_async_flow_hooks():
    class Wrap(AsyncFlow):
        async def prep_async(self, backpack):
            backpack.pack("started", True)

        async def post_async(self, backpack, prep_res, exec_res):
            backpack.pack("last_action", exec_res)
            return "wrapped"

    trace = []
    bp = Backpack()
    result, _ = run(Wrap(Step("x", trace, action="inner")), bp)
    assert result.action == "wrapped"
    assert bp.unpack("started") is True
    assert bp.unpack("last_action") == "inner"


# ------------------------------------------------------------------------------- batch flows


class Record(Node):
    def prep(self, backpack):
        return dict(self.params)

    def post(self, backpack, params, exec_res):
        backpack.append("seen", [params])


def test_batch_flow_runs_the_graph_once_per_params():
    class PerFile(BatchFlow):
        def prep(self, backpack):
            return [{"file": f} for f in backpack.unpack("files")]

    flow = PerFile(Record(), params={"user": "ann"})
    result, streamer = run(flow, Backpack({"files": ["a.txt", "b.txt"]}))
    assert result.ok
    assert result.backpack.unpack("seen") == [
        {"user": "ann", "file": "a.txt"},
        {"user": "ann", "file": "b.txt"},
    ]
    assert len(streamer.get_events(type=T.NODE_START)) == 2


def test_batch_flow_rejects_non_mapping_params():
    class Bad(BatchFlow):
        def prep(self, backpack):
            return ["a.txt"]

    result, _ = run(Bad(Record(), id="bad_batch"))
    assert result.status == "failed"
    assert isinstance(result.error, FlowError)
    assert "'bad_batch'" in str(result.error)


def test_nested_batch_flow_gets_params_per_batch():
    class PerFile(BatchFlow):
        def prep(self, backpack):
            return [{"file": "a"}, {"file": "b"}]

    start = Node(id="start")
    start >> PerFile(Record(), id="files")
    result, streamer = run(Flow(start))
    assert result.backpack.unpack("seen") == [{"file": "a"}, {"file": "b"}]
    assert path(streamer) == ["start", "files", "record", "record"]


def test_async_parallel_batch_flow_runs_batches_concurrently():
    trace = []

    class Work(AsyncNode):
        async def exec_async(self, prep_res):
            trace.append(("start", self.params["i"]))
            await asyncio.sleep(0.05)
            trace.append(("end", self.params["i"]))

    class Batches(AsyncParallelBatchFlow):
        async def prep_async(self, backpack):
            return [{"i": i} for i in range(4)]

    result, _ = run(Batches(Work()))
    assert result.ok
    assert [p for p, _ in trace[:4]] == ["start"] * 4
    assert sorted(i for p, i in trace if p == "end") == [0, 1, 2, 3]


# ------------------------------------------------------------------------------- node ids


def test_default_ids_are_the_class_name_in_snake_case_with_suffixes():
    class SummarizeNode(Node):
        pass

    class HTTPFetch(Node):
        pass

    a, b, c = SummarizeNode(), SummarizeNode(), SummarizeNode()
    f = HTTPFetch()
    a >> b >> f >> c
    flow = Flow(a)
    assert [n.id for n in flow.nodes()] == [
        "summarize_node",
        "summarize_node-2",
        "http_fetch",
        "summarize_node-3",
    ]
    assert a.name == "SummarizeNode"
    _, streamer = run(flow)
    assert path(streamer) == [
        "summarize_node",
        "summarize_node-2",
        "http_fetch",
        "summarize_node-3",
    ]


def test_auto_ids_avoid_explicit_ids():
    class Work(Node):
        pass

    explicit, auto = Work(id="work"), Work()
    auto >> explicit
    assert [n.id for n in Flow(auto).nodes()] == ["work-2", "work"]


def test_duplicate_explicit_ids_are_an_error_naming_both():
    class Fetch(Node):
        pass

    class Parse(Node):
        pass

    a, b = Fetch(id="step"), Parse(id="step")
    a >> b
    with pytest.raises(FlowError) as info:
        Flow(a, id="pipeline").execute_sync(Backpack())
    message = str(info.value)
    assert "'step'" in message
    assert "Fetch" in message
    assert "Parse" in message
    assert "'pipeline'" in message


def test_the_same_node_twice_is_not_a_duplicate():
    trace = []
    a = Step("a", trace, action="again")
    a.next(a, "again", when=lambda ctx: len(trace) < 2)
    assert run(Flow(a))[0].ok
    assert trace == ["a", "a"]


def test_nested_flows_are_id_scopes_of_their_own():
    class Work(Node):
        pass

    inner = Flow(Work(id="work"), id="inner")
    outer_work = Work(id="work")
    outer_work >> inner
    result, streamer = run(Flow(outer_work))
    assert result.ok
    assert path(streamer) == ["work", "inner", "work"]


@pytest.mark.parametrize("bad", ["", "has space", "-leading", "a/b", "é"])
def test_invalid_ids_are_refused(bad):
    with pytest.raises(NodeDefinitionError, match="invalid node id"):
        Node(id=bad)
