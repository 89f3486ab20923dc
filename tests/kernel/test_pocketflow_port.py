"""Porting from PocketFlow: canonical PocketFlow examples, written as PocketFlow users write
them, ported by changing the imports and ``shared[...]`` → ``backpack.unpack/pack``, behave the
same. When ``pocketflow`` is installed the originals run side by side and the results are
compared; the expected results are also written out, so the ports are checked either way."""

from __future__ import annotations

import asyncio
import importlib.util
import warnings

import pytest

import backpackflow as bf

HAVE_POCKETFLOW = importlib.util.find_spec("pocketflow") is not None
side_by_side = pytest.mark.skipif(not HAVE_POCKETFLOW, reason="pocketflow is not installed")


def call_llm(prompt: str) -> str:
    """A deterministic stand-in for the model of the cookbook examples."""
    if prompt.startswith("DECIDE"):
        searches = prompt.count("RESULT:")
        if searches < 2:
            return f"action: search\nsearch_query: summit city {searches + 1}"
        return "action: answer"
    if prompt.startswith("ANSWER"):
        return f"Lisbon (from {prompt.count('RESULT:')} results)"
    if prompt.startswith("SUMMARIZE"):
        text = prompt.split(":", 1)[1].strip()
        if "corrupt" in text:
            raise ValueError("the model choked")
        return " ".join(text.split()[:3]) + " ..."
    raise AssertionError(f"unexpected prompt {prompt!r}")


def search_web(query: str) -> str:
    return f"RESULT: page about {query}"


def parse(response: str) -> dict:
    return dict(line.split(": ", 1) for line in response.splitlines())


# ============================================================================ 1. the agent
# PocketFlow cookbook "pocketflow-agent": decide → search → decide ... → answer.


def pocketflow_agent(pf, trace):
    class DecideAction(pf.Node):
        def prep(self, shared):
            context = shared.get("context", "No previous search")
            return shared["question"], context

        def exec(self, inputs):
            question, context = inputs
            trace.append("decide")
            return parse(call_llm(f"DECIDE {question}\n{context}"))

        def post(self, shared, prep_res, exec_res):
            if exec_res["action"] == "search":
                shared["search_query"] = exec_res["search_query"]
            return exec_res["action"]

    class SearchWeb(pf.Node):
        def prep(self, shared):
            return shared["search_query"]

        def exec(self, search_query):
            trace.append("search")
            return search_web(search_query)

        def post(self, shared, prep_res, exec_res):
            previous = shared.get("context", "")
            shared["context"] = previous + "\n\nSEARCH: " + prep_res + "\n" + exec_res
            return "decide"

    class AnswerQuestion(pf.Node):
        def prep(self, shared):
            return shared["question"], shared.get("context", "")

        def exec(self, inputs):
            question, context = inputs
            trace.append("answer")
            return call_llm(f"ANSWER {question}\n{context}")

        def post(self, shared, prep_res, exec_res):
            shared["answer"] = exec_res
            return "done"

    decide, search, answer = DecideAction(), SearchWeb(), AnswerQuestion()
    decide - "search" >> search
    decide - "answer" >> answer
    search - "decide" >> decide
    return pf.Flow(start=decide)


def ported_agent(trace):
    # The port: imports, and shared[...] -> backpack.unpack / backpack.pack. Nothing else.
    class DecideAction(bf.Node):
        def prep(self, backpack):
            context = backpack.unpack("context", "No previous search")
            return backpack.unpack("question"), context

        def exec(self, inputs):
            question, context = inputs
            trace.append("decide")
            return parse(call_llm(f"DECIDE {question}\n{context}"))

        def post(self, backpack, prep_res, exec_res):
            if exec_res["action"] == "search":
                backpack.pack("search_query", exec_res["search_query"])
            return exec_res["action"]

    class SearchWeb(bf.Node):
        def prep(self, backpack):
            return backpack.unpack("search_query")

        def exec(self, search_query):
            trace.append("search")
            return search_web(search_query)

        def post(self, backpack, prep_res, exec_res):
            previous = backpack.unpack("context", "")
            backpack.pack("context", previous + "\n\nSEARCH: " + prep_res + "\n" + exec_res)
            return "decide"

    class AnswerQuestion(bf.Node):
        def prep(self, backpack):
            return backpack.unpack("question"), backpack.unpack("context", "")

        def exec(self, inputs):
            question, context = inputs
            trace.append("answer")
            return call_llm(f"ANSWER {question}\n{context}")

        def post(self, backpack, prep_res, exec_res):
            backpack.pack("answer", exec_res)
            return "done"

    decide, search, answer = DecideAction(), SearchWeb(), AnswerQuestion()
    decide - "search" >> search
    decide - "answer" >> answer
    search - "decide" >> decide
    return bf.Flow(start=decide)


def test_ported_agent_loop():
    trace = []
    backpack = bf.Backpack({"question": "Which city hosts the summit?"})
    streamer = bf.EventStreamer()
    action = ported_agent(trace).run(backpack, events=streamer)
    assert action == "done"
    assert trace == ["decide", "search", "decide", "search", "decide", "answer"]
    assert backpack.unpack("answer") == "Lisbon (from 2 results)"
    assert backpack.unpack("search_query") == "summit city 2"
    # and, for free, the whole trace
    actions = [e.payload.action for e in streamer.get_events(type="node_end")]
    assert actions == ["search", "decide", "search", "decide", "answer", "done"]


@side_by_side
def test_agent_loop_side_by_side():
    import pocketflow

    pf_trace, bf_trace = [], []
    shared = {"question": "Which city hosts the summit?"}
    pf_action = pocketflow_agent(pocketflow, pf_trace).run(shared)
    backpack = bf.Backpack({"question": "Which city hosts the summit?"})
    bf_action = ported_agent(bf_trace).run(backpack)
    assert bf_action == pf_action
    assert bf_trace == pf_trace
    assert backpack.to_dict() == shared


# ============================================================================ 2. batch summarizer
# PocketFlow "pocketflow-batch-node" / "pocketflow-batch-flow": a BatchNode summarizing files
# with retries and a fallback, then a BatchFlow running a per-file sub-flow with params.

FILES = {
    "a.txt": "alpha beta gamma delta epsilon",
    "b.txt": "one two three four five six",
    "c.txt": "corrupt bytes here",
}


def pocketflow_summarizer(pf, attempts):
    class SummarizeFiles(pf.BatchNode):
        def prep(self, shared):
            return list(shared["data"].items())

        def exec(self, item):
            filename, content = item
            attempts.append(filename)
            return filename, call_llm(f"SUMMARIZE: {content}")

        def exec_fallback(self, item, exc):
            return item[0], f"(no summary: {exc})"

        def post(self, shared, prep_res, exec_res_list):
            shared["summaries"] = dict(exec_res_list)

    return pf.Flow(start=SummarizeFiles(max_retries=2))


def ported_summarizer(attempts):
    class SummarizeFiles(bf.BatchNode):
        def prep(self, backpack):
            return list(backpack.unpack("data").items())

        def exec(self, item):
            filename, content = item
            attempts.append(filename)
            return filename, call_llm(f"SUMMARIZE: {content}")

        def exec_fallback(self, item, exc):
            return item[0], f"(no summary: {exc})"

        def post(self, backpack, prep_res, exec_res_list):
            backpack.pack("summaries", dict(exec_res_list))

    return bf.Flow(start=SummarizeFiles(max_retries=2))


EXPECTED_SUMMARIES = {
    "a.txt": "alpha beta gamma ...",
    "b.txt": "one two three ...",
    "c.txt": "(no summary: the model choked)",
}


def test_ported_batch_summarizer():
    attempts = []
    backpack = bf.Backpack({"data": FILES})
    streamer = bf.EventStreamer()
    ported_summarizer(attempts).run(backpack, events=streamer)
    assert backpack.unpack("summaries") == EXPECTED_SUMMARIES
    assert attempts == ["a.txt", "b.txt", "c.txt", "c.txt"]
    assert streamer.get_events(type="exec_complete")[0].payload.attempts == 4
    assert len(streamer.get_events(type="retry")) == 1


@side_by_side
def test_batch_summarizer_side_by_side():
    import pocketflow

    pf_attempts, bf_attempts = [], []
    shared = {"data": dict(FILES)}
    pocketflow_summarizer(pocketflow, pf_attempts).run(shared)
    backpack = bf.Backpack({"data": FILES})
    ported_summarizer(bf_attempts).run(backpack)
    assert backpack.to_dict() == shared
    assert bf_attempts == pf_attempts


def pocketflow_batch_flow(pf):
    class LoadFile(pf.Node):
        def prep(self, shared):
            return shared["data"][self.params["filename"]]

        def exec(self, content):
            return content.upper()

        def post(self, shared, prep_res, exec_res):
            shared.setdefault("loaded", {})
            shared["loaded"][self.params["filename"]] = exec_res
            return "loaded"

    class Count(pf.Node):
        def prep(self, shared):
            return shared["loaded"][self.params["filename"]]

        def exec(self, text):
            return len(text.split())

        def post(self, shared, prep_res, exec_res):
            shared.setdefault("counts", {})
            shared["counts"][self.params["filename"]] = exec_res * self.params["weight"]

    class PerFile(pf.BatchFlow):
        def prep(self, shared):
            return [{"filename": name} for name in shared["data"]]

    load = LoadFile()
    load - "loaded" >> Count()
    flow = PerFile(start=load)
    flow.set_params({"weight": 10})
    return flow


def ported_batch_flow():
    # in-place updates of shared values become unpack + pack (a Backpack hands out copies)
    class LoadFile(bf.Node):
        def prep(self, backpack):
            return backpack.unpack("data")[self.params["filename"]]

        def exec(self, content):
            return content.upper()

        def post(self, backpack, prep_res, exec_res):
            loaded = backpack.unpack("loaded", {})
            loaded[self.params["filename"]] = exec_res
            backpack.pack("loaded", loaded)
            return "loaded"

    class Count(bf.Node):
        def prep(self, backpack):
            return backpack.unpack("loaded")[self.params["filename"]]

        def exec(self, text):
            return len(text.split())

        def post(self, backpack, prep_res, exec_res):
            counts = backpack.unpack("counts", {})
            counts[self.params["filename"]] = exec_res * self.params["weight"]
            backpack.pack("counts", counts)

    class PerFile(bf.BatchFlow):
        def prep(self, backpack):
            return [{"filename": name} for name in backpack.unpack("data")]

    load = LoadFile()
    load - "loaded" >> Count()
    flow = PerFile(start=load)
    flow.set_params({"weight": 10})
    return flow


def test_ported_batch_flow_with_params():
    backpack = bf.Backpack({"data": FILES})
    ported_batch_flow().run(backpack)
    assert backpack.unpack("counts") == {"a.txt": 50, "b.txt": 60, "c.txt": 30}
    assert backpack.unpack("loaded")["c.txt"] == "CORRUPT BYTES HERE"


@side_by_side
def test_batch_flow_side_by_side():
    import pocketflow

    shared = {"data": dict(FILES)}
    pf_result = pocketflow_batch_flow(pocketflow).run(shared)
    backpack = bf.Backpack({"data": FILES})
    bf_result = ported_batch_flow().run(backpack)
    assert bf_result == pf_result
    assert backpack.to_dict() == shared


# ============================================================================ 3. async flow
# PocketFlow "pocketflow-async-basic": async fetch, a parallel batch, and a sync node, with an
# approval loop ("retry" goes back).


def pocketflow_async(pf, trace):
    class FetchRecipes(pf.AsyncNode):
        async def prep_async(self, shared):
            return shared["ingredient"]

        async def exec_async(self, ingredient):
            await asyncio.sleep(0.01)
            return [f"{ingredient} soup", f"{ingredient} pie", f"{ingredient} salad"]

        async def post_async(self, shared, prep_res, recipes):
            shared["recipes"] = recipes
            return "suggest"

    class RateRecipes(pf.AsyncParallelBatchNode):
        async def prep_async(self, shared):
            return shared["recipes"]

        async def exec_async(self, recipe):
            trace.append(("start", recipe))
            await asyncio.sleep(0.03)
            trace.append(("end", recipe))
            return len(recipe)

        async def post_async(self, shared, recipes, ratings):
            shared["ratings"] = ratings
            return "pick"

    class Pick(pf.Node):
        def prep(self, shared):
            return shared["recipes"], shared["ratings"], shared.get("rejected", [])

        def exec(self, inputs):
            recipes, ratings, rejected = inputs
            ranked = sorted(zip(ratings, recipes, strict=True), reverse=True)
            return next(r for _, r in ranked if r not in rejected)

        def post(self, shared, prep_res, choice):
            if len(shared.get("rejected", [])) < 1:
                shared["rejected"] = [*shared.get("rejected", []), choice]
                return "retry"
            shared["choice"] = choice
            return "accept"

    fetch, rate, pick = FetchRecipes(), RateRecipes(), Pick()
    fetch - "suggest" >> rate
    rate - "pick" >> pick
    pick - "retry" >> pick
    return pf.AsyncFlow(start=fetch)


def ported_async(trace):
    class FetchRecipes(bf.AsyncNode):
        async def prep_async(self, backpack):
            return backpack.unpack("ingredient")

        async def exec_async(self, ingredient):
            await asyncio.sleep(0.01)
            return [f"{ingredient} soup", f"{ingredient} pie", f"{ingredient} salad"]

        async def post_async(self, backpack, prep_res, recipes):
            backpack.pack("recipes", recipes)
            return "suggest"

    class RateRecipes(bf.AsyncParallelBatchNode):
        async def prep_async(self, backpack):
            return backpack.unpack("recipes")

        async def exec_async(self, recipe):
            trace.append(("start", recipe))
            await asyncio.sleep(0.03)
            trace.append(("end", recipe))
            return len(recipe)

        async def post_async(self, backpack, recipes, ratings):
            backpack.pack("ratings", ratings)
            return "pick"

    class Pick(bf.Node):
        def prep(self, backpack):
            return (
                backpack.unpack("recipes"),
                backpack.unpack("ratings"),
                backpack.unpack("rejected", []),
            )

        def exec(self, inputs):
            recipes, ratings, rejected = inputs
            ranked = sorted(zip(ratings, recipes, strict=True), reverse=True)
            return next(r for _, r in ranked if r not in rejected)

        def post(self, backpack, prep_res, choice):
            if len(backpack.unpack("rejected", [])) < 1:
                backpack.pack("rejected", [*backpack.unpack("rejected", []), choice])
                return "retry"
            backpack.pack("choice", choice)
            return "accept"

    fetch, rate, pick = FetchRecipes(), RateRecipes(), Pick()
    fetch - "suggest" >> rate
    rate - "pick" >> pick
    pick - "retry" >> pick
    return bf.AsyncFlow(start=fetch)


def test_ported_async_flow():
    trace = []
    backpack = bf.Backpack({"ingredient": "tomato"})
    action = asyncio.run(ported_async(trace).run_async(backpack))
    assert action == "accept"
    assert backpack.unpack("ratings") == [11, 10, 12]
    assert backpack.unpack("rejected") == ["tomato salad"]
    assert backpack.unpack("choice") == "tomato soup"
    assert [p for p, _ in trace[:3]] == ["start"] * 3  # the batch ran concurrently
    # the same flow from synchronous code; PocketFlow's "Flow ends" warning is a log event
    again = bf.Backpack({"ingredient": "tomato"})
    streamer = bf.EventStreamer()
    assert ported_async([]).run(again, events=streamer) == "accept"
    assert again.to_dict() == backpack.to_dict()
    (warning,) = streamer.get_events(type="log")
    assert warning.payload.level == "warning"
    assert "'accept'" in warning.payload.message


@side_by_side
@pytest.mark.filterwarnings("ignore:Flow ends")
def test_async_flow_side_by_side():
    import pocketflow

    pf_trace, bf_trace = [], []
    shared = {"ingredient": "tomato"}
    pf_action = asyncio.run(pocketflow_async(pocketflow, pf_trace).run_async(shared))
    backpack = bf.Backpack({"ingredient": "tomato"})
    bf_action = asyncio.run(ported_async(bf_trace).run_async(backpack))
    assert bf_action == pf_action
    assert backpack.to_dict() == shared
    assert sorted(bf_trace) == sorted(pf_trace)


# ============================================================================ node.run alone


def test_ported_single_node_run_returns_the_action():
    class Greet(bf.Node):
        def prep(self, backpack):
            return backpack.unpack("name")

        def exec(self, name):
            return f"hello {name}"

        def post(self, backpack, prep_res, exec_res):
            backpack.pack("greeting", exec_res)
            return "greeted"

    backpack = bf.Backpack({"name": "ann"})
    assert Greet().run(backpack) == "greeted"
    assert backpack.unpack("greeting") == "hello ann"


@side_by_side
def test_single_node_run_side_by_side():
    import pocketflow

    class PFGreet(pocketflow.Node):
        def prep(self, shared):
            return shared["name"]

        def exec(self, name):
            return f"hello {name}"

        def post(self, shared, prep_res, exec_res):
            shared["greeting"] = exec_res
            return "greeted"

    class BFGreet(bf.Node):
        def prep(self, backpack):
            return backpack.unpack("name")

        def exec(self, name):
            return f"hello {name}"

        def post(self, backpack, prep_res, exec_res):
            backpack.pack("greeting", exec_res)
            return "greeted"

    shared = {"name": "ann"}
    backpack = bf.Backpack({"name": "ann"})
    assert BFGreet().run(backpack) == PFGreet().run(shared)
    assert backpack.to_dict() == shared


def test_pocketflow_base_node_subclasses_port_too():
    """PocketFlow users may subclass BaseNode (no retries, no fallback)."""

    class Upper(bf.BaseNode):
        def prep(self, backpack):
            return backpack.unpack("text")

        def exec(self, text):
            if not text:
                raise ValueError("nothing to upper-case")
            return text.upper()

        def post(self, backpack, prep_res, exec_res):
            backpack.pack("upper", exec_res)
            return "done"

    backpack = bf.Backpack({"text": "abc"})
    assert bf.Flow(Upper()).run(backpack) == "done"
    assert backpack.unpack("upper") == "ABC"
    assert Upper().run(bf.Backpack({"text": "x"})) == "done"
    with pytest.raises(ValueError, match="nothing"):
        bf.Flow(Upper()).run(bf.Backpack({"text": ""}))


def test_a_shared_dict_is_refused_with_the_port_hint():
    with pytest.raises(TypeError, match=r"Backpack\(shared\)"):
        bf.Flow(bf.Node()).run({"question": "x"})  # type: ignore[arg-type]


# ------------------------------------------------------------------------------- differences


class _Decide(bf.Node):
    def __init__(self, action: str, **kwargs) -> None:
        super().__init__(**kwargs)
        self.action = action

    def post(self, backpack, prep_res, exec_res):
        backpack.pack("decided", self.action)
        return self.action


def test_a_flow_ending_on_an_action_without_edge_warns_as_pocketflow_does():
    decide, other = _Decide("stop", id="decide"), _Decide("x", id="other")
    decide - "again" >> other
    events = bf.EventStreamer()
    with pytest.warns(bf.FlowEndsWarning, match="returned action 'stop', which has no edge"):
        bf.Flow(decide).run(bf.Backpack(), events=events)
    logs = [e for e in events.get_events() if e.type == bf.StreamEventType.LOG]
    assert [e.payload.level for e in logs] == ["warning"]  # and in the trace, as before
    assert logs[0].node_id == "decide"


def test_an_explicit_end_is_accepted_and_ends_the_flow_quietly():
    decide, other = _Decide("end", id="decide"), _Decide("x", id="other")
    assert (decide - "end" >> None) is None
    decide - "again" >> other
    decide >> None  # the default action may end explicitly too
    assert decide.successors["end"] == [] and decide.successors["default"] == []
    backpack = bf.Backpack()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        bf.Flow(decide).run(backpack)
    assert backpack.unpack("decided") == "end"
    with pytest.raises(bf.NodeDefinitionError, match="takes no condition"):
        decide.next(None, "end", when=lambda context: True)  # type: ignore[call-overload]


@pytest.mark.parametrize(
    "settings",
    [{"max_retries": 0}, {"max_retries": 1.5}, {"wait": -1}, {"max_retries": 2, "backoff": 0.5}],
)
def test_bad_retry_settings_raise_a_value_error_as_in_pocketflow(settings):
    with pytest.raises(ValueError, match="node 'n'") as caught:
        bf.Node(id="n", **settings)
    assert isinstance(caught.value, bf.InvalidNodeSetting)
    assert isinstance(caught.value, bf.NodeDefinitionError)  # what it was before: still caught
