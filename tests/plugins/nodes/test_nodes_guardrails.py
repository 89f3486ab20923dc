"""Guardrails from a flow's ``limits``: node executions, tokens, cost and duration. Exceeding one
ends the run with a ``guardrail`` event and a clear error."""

from __future__ import annotations

import time
from decimal import Decimal

import pytest
from nodes_support import SHORT_PROMPT, flow_doc, llm, load, router, run_flow

from backpackflow.errors import ConfigError, GuardrailExceeded

TWO_CALLS = (llm("a", SHORT_PROMPT), llm("b", SHORT_PROMPT + " The pier was repaired."))


def assert_guardrail(ran, limit):
    """The run failed on ``limit``: one guardrail event, the error and run_end say so."""
    assert ran.result.status == "failed"
    assert isinstance(ran.result.error, GuardrailExceeded)
    assert ran.result.error.limit == limit
    (guardrail,) = ran.of("guardrail")
    assert guardrail["limit"] == limit
    assert guardrail["message"] == str(ran.result.error)
    assert ran.run_end["error_type"] == "GuardrailExceeded"
    assert ran.run_end["error"] == guardrail["message"]
    return guardrail


def test_max_steps_bounds_node_executions_of_a_loop():
    doc = flow_doc(
        router("spin", "'again'"),
        edges=[{"from": "spin", "to": "spin", "when": "branch == 'again'"}],
        allow_cycles=True,
        limits={"max_steps": 5},
    )
    ran = run_flow(doc)
    guardrail = assert_guardrail(ran, "max_steps")
    assert (guardrail["value"], guardrail["maximum"]) == (6, 5)
    assert "more than max_steps=5" in guardrail["message"]
    assert ran.ran() == ["spin"] * 5
    assert ran.run_end["node_count"] == 5


def test_max_tokens_stops_the_run_before_the_next_node():
    ran = run_flow(flow_doc(*TWO_CALLS, limits={"max_tokens": 20}))
    guardrail = assert_guardrail(ran, "max_tokens")
    used = ran.one("llm_response", "a")["usage"]["total_tokens"]
    assert (guardrail["value"], guardrail["maximum"]) == (used, 20)
    assert f"used {used} tokens, over max_tokens=20" in guardrail["message"]
    assert ran.ran() == ["a"]


def test_max_cost_stops_the_run_before_the_next_node():
    ran = run_flow(flow_doc(*TWO_CALLS, limits={"max_cost": "0.000001"}))
    guardrail = assert_guardrail(ran, "max_cost")
    spent = ran.one("llm_response", "a")["cost"]
    assert Decimal(guardrail["value"]) == Decimal(spent)
    assert guardrail["maximum"] == "0.000001"
    assert "over max_cost=0.000001" in guardrail["message"]
    assert ran.of("llm_request", "b") == []


@pytest.mark.parametrize(
    ("limits", "limit"),
    [({"max_tokens": 20}, "max_tokens"), ({"max_cost": "0.000001"}, "max_cost")],
)
def test_the_call_that_goes_over_a_limit_ends_the_run_even_when_it_is_the_last(limits, limit):
    ran = run_flow(flow_doc(llm("only", SHORT_PROMPT), limits=limits))
    assert_guardrail(ran, limit)
    # the call happened and was paid for: its events and the run totals keep it
    assert ran.one("exec_complete", "only")["exec_result"]
    assert Decimal(ran.run_end["totals"]["cost"]) == Decimal(ran.one("llm_response")["cost"])


def test_a_run_within_its_limits_succeeds():
    limits = {"max_steps": 2, "max_tokens": 10_000, "max_cost": "1", "timeout": 30}
    ran = run_flow(flow_doc(*TWO_CALLS, limits=limits))
    assert ran.result.ok, ran.result.error
    assert ran.of("guardrail") == []
    assert ran.one("run_start")["limits"] == {
        "max_steps": 2,
        "timeout": 30.0,
        "max_tokens": 10_000,
        "max_cost": "1",
    }


def test_cache_hits_cost_nothing_against_the_limits():
    doc = flow_doc(
        llm("a", SHORT_PROMPT),
        llm("b", SHORT_PROMPT),
        dependencies={"llm_cache": {"type": "memory_cache"}},
        limits={"max_tokens": 50},
    )
    ran = run_flow(doc)
    assert ran.result.ok, ran.result.error
    assert ran.of("cache_hit", "b")


def test_timeout_interrupts_a_slow_call():
    doc = flow_doc(
        llm("slow", SHORT_PROMPT, provider="sluggish"),
        dependencies={"sluggish": {"type": "offline", "config": {"latency_ms": 5000}}},
        limits={"timeout": 0.2},
    )
    started = time.perf_counter()
    ran = run_flow(doc)
    elapsed = time.perf_counter() - started
    guardrail = assert_guardrail(ran, "timeout")
    assert guardrail["maximum"] == 0.2
    assert guardrail["value"] >= 0.2
    assert "hit its timeout of 0.2s" in guardrail["message"]
    assert elapsed < 2
    assert ran.of("llm_response") == []


def test_timeout_bounds_retry_backoff_too():
    doc = flow_doc(
        llm("ask", SHORT_PROMPT, provider="down", max_attempts=10, retry_base_delay=1),
        dependencies={"down": {"type": "offline", "config": {"fail_first": 100}}},
        limits={"timeout": 0.3},
    )
    started = time.perf_counter()
    ran = run_flow(doc)
    assert_guardrail(ran, "timeout")
    assert time.perf_counter() - started < 2
    assert ran.of("retry")


@pytest.mark.parametrize(
    "limits",
    [{"max_cost": "ten"}, {"max_cost": 0.5}, {"max_steps": 0}, {"timeout": 0}, {"max_tokens": -1}],
    ids=str,
)
def test_bad_limits_are_load_time_errors(limits):
    with pytest.raises(ConfigError, match=r"\$\.limits\."):
        load(flow_doc(llm("a", SHORT_PROMPT), limits=limits))
