"""The exact-match response cache through flows: hits short-circuit the call and cost 0 with the
cost saved reported, TTLs expire, nodes opt out, SQLite is shared between separate loads, and
the key covers what changes the answer."""

from __future__ import annotations

import re
import time
from decimal import Decimal

import pytest
from llm_wire import Reply
from nodes_support import (
    SHORT_PROMPT,
    cached_openai,
    execute,
    flow_doc,
    llm,
    load,
    openai_completion,
    run_flow,
)

from backpackflow.events import summarize
from backpackflow.runner import DependencyContainer
from backpackflow_llm import MemoryCache

MEMORY_CACHE = {"llm_cache": {"type": "memory_cache"}}


def sqlite_cache(path) -> dict:
    return {"llm_cache": {"type": "sqlite_cache", "config": {"path": str(path)}}}


def test_a_hit_short_circuits_the_call_costs_zero_and_reports_the_cost_saved(
    wire_server, monkeypatch
):
    monkeypatch.setenv("BPF_TEST_KEY", "sk-cache-test")
    openai = wire_server(Reply(json=openai_completion("Paris.", prompt_tokens=40)))
    deps = cached_openai(openai.url)
    flow = load(
        flow_doc(
            llm("ask", "Capital of France?", provider="primary", model="gpt-4o-mini"),
            dependencies=deps,
        )
    )

    first = execute(flow)
    second = execute(flow)

    assert len(openai.requests) == 1  # the second run never reached the provider
    assert first.of("cache_hit") == []
    paid = first.one("llm_response")
    assert Decimal(paid["cost"]) > 0
    hit = second.one("cache_hit", "ask")
    assert re.fullmatch(r"[0-9a-f]{64}", hit["cache_key"])
    assert hit["cost_saved"] == paid["cost"]
    assert hit["usage"] == paid["usage"]
    assert second.types("ask") == [
        "node_start",
        "prep_complete",
        "cache_hit",
        "exec_complete",
        "backpack_pack",
        "node_end",
    ]
    assert second.one("exec_complete")["exec_result"] == "Paris."
    assert second.result.backpack.peek("ask") == "Paris."
    assert second.run_end["totals"] == {
        "tokens_input": 0,
        "tokens_output": 0,
        "total_tokens": 0,
        "cost": "0",
    }
    (step,) = summarize(second.events).steps
    assert (step.cache_hit, step.cost, step.cost_saved) == (True, 0, Decimal(paid["cost"]))


def test_a_cached_json_answer_is_parsed_like_a_fresh_one():
    flow = load(
        flow_doc(llm("facts", SHORT_PROMPT, response_format="json"), dependencies=MEMORY_CACHE)
    )
    first, second = execute(flow), execute(flow)
    assert second.of("cache_hit")
    assert second.result.backpack.peek("facts") == first.result.backpack.peek("facts")
    assert isinstance(second.result.backpack.peek("facts"), dict)


def test_entries_expire_after_the_cache_ttl():
    deps = {"llm_cache": {"type": "memory_cache", "config": {"ttl": 0.3}}}
    flow = load(flow_doc(llm("ask", SHORT_PROMPT), dependencies=deps))
    assert execute(flow).of("cache_hit") == []
    assert len(execute(flow).of("cache_hit")) == 1
    time.sleep(0.4)
    expired = execute(flow)
    assert expired.of("cache_hit") == []
    assert len(expired.of("llm_response")) == 1
    assert Decimal(expired.run_end["totals"]["cost"]) > 0


def test_a_node_cache_ttl_overrides_the_cache_default():
    now = [1_000.0]
    deps = DependencyContainer()
    deps.register("llm_cache", MemoryCache(default_ttl=1_000_000, clock=lambda: now[0]))
    flow = load(flow_doc(llm("ask", SHORT_PROMPT, cache_ttl=10)), deps=deps)

    assert execute(flow).of("cache_hit") == []
    now[0] += 9.5
    assert len(execute(flow).of("cache_hit")) == 1
    now[0] += 1.0  # 10.5 s after the entry was written
    assert execute(flow).of("cache_hit") == []


def test_a_node_can_opt_out_of_the_cache():
    doc = flow_doc(
        llm("cached", SHORT_PROMPT),
        llm("fresh", SHORT_PROMPT, cache=False),
        dependencies=MEMORY_CACHE,
    )
    flow = load(doc)
    execute(flow)
    second = execute(flow)
    assert second.types("cached").count("cache_hit") == 1
    assert second.of("cache_hit", "fresh") == []
    assert len(second.of("llm_request", "fresh")) == 1
    fresh_cost = Decimal(second.one("llm_response", "fresh")["cost"])
    assert Decimal(second.run_end["totals"]["cost"]) == fresh_cost > 0


def test_within_one_run_an_identical_call_is_a_hit():
    doc = flow_doc(llm("a", SHORT_PROMPT), llm("b", SHORT_PROMPT), dependencies=MEMORY_CACHE)
    ran = run_flow(doc)
    assert len(ran.of("llm_response")) == 1
    assert ran.one("cache_hit", "b")["cost_saved"] == ran.one("llm_response", "a")["cost"]


def test_an_sqlite_cache_is_shared_by_separate_loads(tmp_path):
    path = tmp_path / "cache" / "llm.sqlite"
    doc = flow_doc(
        llm("a", SHORT_PROMPT),
        llm("b", "Summarize in 1 sentence:\n\nRain fell all week. The river rose."),
        dependencies=sqlite_cache(path),
    )
    first = run_flow(doc)
    assert path.exists()
    second = run_flow(doc)  # another loader, container and SQLiteCache object

    assert first.of("cache_hit") == [] and len(first.of("llm_response")) == 2
    assert [e["node_id"] for e in second.events if e["type"] == "cache_hit"] == ["a", "b"]
    assert second.of("llm_response") == []
    saved = sum(Decimal(p["cost_saved"]) for p in second.of("cache_hit"))
    assert saved == Decimal(first.run_end["totals"]["cost"])
    assert second.run_end["totals"]["cost"] == "0"


@pytest.mark.parametrize(
    ("change", "hit"),
    [
        ({}, True),
        ({"stream": True}, True),  # how the answer travels does not change it
        ({"temperature": 0.7}, False),
        ({"max_tokens": 5}, False),
        ({"system": "Be terse."}, False),
        ({"response_format": "json"}, False),
        ({"model": "offline-other-2"}, False),
        ({"prompt": SHORT_PROMPT + " More."}, False),
    ],
)
def test_the_key_covers_what_changes_the_answer(tmp_path, change, hit):
    deps = sqlite_cache(tmp_path / "llm.sqlite")
    run_flow(flow_doc(llm("ask", SHORT_PROMPT), dependencies=deps))
    params = {"prompt": SHORT_PROMPT, **change}
    ran = run_flow(flow_doc(llm("ask", **params), dependencies=deps))
    assert bool(ran.of("cache_hit")) is hit
    assert bool(ran.of("llm_request")) is not hit


def test_without_an_llm_cache_dependency_nothing_is_cached():
    flow = load(flow_doc(llm("ask", SHORT_PROMPT)))
    execute(flow)
    assert execute(flow).of("cache_hit") == []


def test_an_answer_that_is_not_the_json_asked_for_is_not_cached(wire_server, monkeypatch):
    monkeypatch.setenv("BPF_TEST_KEY", "sk-cache-test")
    openai = wire_server(
        Reply(json=openai_completion("Sure! Here is the JSON: {")),
        Reply(json=openai_completion('{"city": "Paris"}')),
    )
    deps = cached_openai(openai.url)
    node = llm("ask", "Capital?", provider="primary", model="gpt-4o-mini", response_format="json")
    flow = load(flow_doc(node, dependencies=deps))

    first = execute(flow)
    assert first.result.status == "failed"  # the answer was not JSON
    second = execute(flow)  # asks again instead of replaying the rejected answer
    assert second.of("cache_hit") == []
    assert second.result.ok, second.result.error
    assert second.result.backpack.peek("ask") == {"city": "Paris"}
    assert len(openai.requests) == 2
    assert len(execute(flow).of("cache_hit")) == 1  # the good answer is cached
