"""The ``llm`` node through real flows with the offline provider: the exact prompt and messages,
the response event, JSON output and its failure, streaming, and exact cost accounting."""

from __future__ import annotations

import json
import re
from decimal import Decimal
from importlib import resources
from pathlib import Path

import pytest
from nodes_support import SHORT_PROMPT, costs, execute, flow_doc, llm, load, price, run_flow

from backpackflow import Backpack
from backpackflow.errors import ConfigError
from backpackflow.events import format_table, summarize

TOKEN = re.compile(r"\w+|[^\w\s]")  # the offline model's documented tokenizer


def tokens(text: str) -> int:
    return len(TOKEN.findall(text))


def shipped_offline_price() -> tuple[str, str]:
    data = json.loads(resources.files("backpackflow_llm").joinpath("pricing.json").read_text())
    (entry,) = data["providers"]["offline"]
    return entry["input"], entry["output"]


def pricing_file(path: Path, providers: dict) -> str:
    path.write_text(json.dumps({"currency": "USD", "providers": providers}), encoding="utf-8")
    return str(path)


# ------------------------------------------------------------------------------- the request


def test_prep_complete_holds_the_exact_prompt_and_llm_request_the_exact_messages():
    backpack = Backpack()
    notes = "The harbor reopened on Monday. Ferries resumed their schedule."
    backpack.pack("notes", notes, node_id="setup")
    doc = flow_doc(
        llm(
            "ask",
            "Summarize in {{ n }} sentence, about {{ inputs.topic }}:\n\n{{ state.notes }}",
            inputs={"n": 1},
            system="You are {{ inputs.role }}.",
            temperature=0.2,
            max_tokens=200,
        )
    )
    ran = run_flow(doc, inputs={"topic": "ferries", "role": "an editor"}, backpack=backpack)

    assert ran.result.ok, ran.result.error
    prompt = f"Summarize in 1 sentence, about ferries:\n\n{notes}"
    prep = ran.one("prep_complete", "ask")
    assert prep == {
        "prep_result": {
            "provider": "offline",
            "model": "offline-extractive-1",
            "messages": [{"role": "user", "content": prompt}],
            "system": "You are an editor.",
            "temperature": 0.2,
            "max_tokens": 200,
            "response_format": "text",
            "stream": False,
        },
        "reads": ["notes"],
    }
    assert ran.one("llm_request", "ask") == {
        "provider": "offline",
        "model": "offline-extractive-1",
        "messages": [
            {"role": "system", "content": "You are an editor."},
            {"role": "user", "content": prompt},
        ],
        "params": {
            "temperature": 0.2,
            "max_tokens": 200,
            "response_format": "text",
            "stream": False,
        },
    }


def test_without_a_system_prompt_only_the_user_message_is_sent():
    ran = run_flow(flow_doc(llm("ask", SHORT_PROMPT)))
    assert ran.one("llm_request")["messages"] == [{"role": "user", "content": SHORT_PROMPT}]
    assert ran.one("prep_complete")["prep_result"]["system"] is None


def test_llm_response_reports_text_usage_latency_cost_provider_model_and_finish_reason():
    system = "Be brief."
    ran = run_flow(flow_doc(llm("ask", SHORT_PROMPT, system=system)))

    response = ran.one("llm_response", "ask")
    text = response["text"]
    assert text == "Fishing boats stayed in port until the swell dropped."  # a source sentence
    input_tokens = tokens(system) + tokens(SHORT_PROMPT)
    output_tokens = tokens(text)
    in_price, out_price = shipped_offline_price()
    cost = price(input_tokens, in_price) + price(output_tokens, out_price)
    assert response == {
        "provider": "offline",
        "model": "offline-extractive-1",
        "text": text,
        "usage": {
            "input_tokens": input_tokens,
            "output_tokens": output_tokens,
            "cached_input_tokens": 0,
            "reasoning_tokens": 0,
            "cache_write_tokens": 0,
            "total_tokens": input_tokens + output_tokens,
        },
        "latency_ms": 0.0,
        "cost": response["cost"],
        "cost_known": True,
        "finish_reason": "stop",
    }
    assert Decimal(response["cost"]) == cost
    assert ran.types("ask") == [
        "node_start",
        "prep_complete",
        "llm_request",
        "llm_response",
        "exec_complete",
        "backpack_pack",
        "node_end",
    ]
    assert ran.one("exec_complete", "ask")["exec_result"] == text
    assert ran.result.backpack.peek("ask") == text
    assert ran.run_end["totals"] == {
        "tokens_input": input_tokens,
        "tokens_output": output_tokens,
        "total_tokens": input_tokens + output_tokens,
        "cost": response["cost"],
    }


def test_max_tokens_truncates_with_finish_reason_length():
    ran = run_flow(flow_doc(llm("ask", SHORT_PROMPT, max_tokens=3)))
    response = ran.one("llm_response")
    assert response["finish_reason"] == "length"
    assert response["usage"]["output_tokens"] == 3
    assert response["text"] == "Fishing boats stayed"


def test_output_feeds_the_next_node_and_output_key_names_the_backpack_key():
    doc = flow_doc(
        llm("first", SHORT_PROMPT, output_key="headline"),
        llm("second", "Summarize in 1 sentence:\n\n{{ node.first.output }} Then it rained."),
    )
    ran = run_flow(doc)
    first = ran.one("llm_response", "first")["text"]
    assert ran.result.backpack.peek("headline") == first
    assert not ran.result.backpack.has("first")
    content = ran.one("llm_request", "second")["messages"][0]["content"]
    assert content == f"Summarize in 1 sentence:\n\n{first} Then it rained."


# ------------------------------------------------------------------------------- JSON answers


def test_json_response_is_parsed_into_an_object_the_next_node_can_use():
    doc = flow_doc(
        llm("facts", SHORT_PROMPT, response_format="json"),
        llm("write", "Summarize in 1 sentence:\n\n{{ node.facts.output.summary }}"),
    )
    ran = run_flow(doc)
    assert ran.result.ok, ran.result.error
    raw = ran.one("llm_response", "facts")["text"]
    parsed = json.loads(raw)
    assert ran.one("exec_complete", "facts")["exec_result"] == raw  # the raw text
    assert ran.result.backpack.peek("facts") == parsed  # the parsed object
    assert parsed["summary"] == "Fishing boats stayed in port until the swell dropped."
    assert ran.one("llm_request", "write")["messages"][0]["content"].endswith(parsed["summary"])
    assert ran.one("llm_request", "facts")["params"]["response_format"] == "json"


def test_a_json_answer_that_does_not_parse_fails_in_post_and_keeps_the_raw_answer():
    # the offline model cuts its JSON at max_tokens, as a real model would
    ran = run_flow(flow_doc(llm("facts", SHORT_PROMPT, response_format="json", max_tokens=4)))

    assert ran.result.status == "failed"
    raw = ran.one("llm_response", "facts")["text"]
    with pytest.raises(ValueError):
        json.loads(raw)
    assert ran.one("exec_complete", "facts")["exec_result"] == raw
    error = ran.one("error", "facts")
    assert error["phase"] == "post"
    assert error["error_type"] == "LLMOutputError"
    assert "node 'facts'" in error["error"]
    assert "not valid JSON" in error["error"]
    assert "exec_complete" in error["error"]  # it says where the raw answer is
    assert not ran.result.backpack.has("facts")
    assert ran.run_end["status"] == "failed"
    assert ran.run_end["error_type"] == "LLMOutputError"


# ------------------------------------------------------------------------------- streaming


def test_streaming_emits_chunks_that_reassemble_to_the_text():
    ran = run_flow(flow_doc(llm("ask", SHORT_PROMPT, stream=True)))
    chunks = ran.of("stream_chunk", "ask")
    text = ran.one("llm_response", "ask")["text"]
    assert len(chunks) > 3
    assert [c["chunk_index"] for c in chunks] == list(range(len(chunks)))
    assert "".join(c["text"] for c in chunks) == text
    assert ran.result.backpack.peek("ask") == text
    types = ran.types("ask")
    first, last = types.index("stream_chunk"), len(types) - 1 - types[::-1].index("stream_chunk")
    assert types.index("llm_request") < first and last < types.index("llm_response")
    assert ran.one("llm_request")["params"]["stream"] is True


def test_without_stream_there_are_no_chunks():
    assert run_flow(flow_doc(llm("ask", SHORT_PROMPT))).of("stream_chunk") == []


# ------------------------------------------------------------------------------- cost


def test_run_totals_equal_the_sum_of_step_costs_to_the_last_digit(tmp_path):
    # prices with many significant digits: any float on the way would show
    prices = pricing_file(
        tmp_path / "prices.json",
        {"offline": [{"pattern": "offline-*", "input": "0.123456789", "output": "1.987654321"}]},
    )
    doc = flow_doc(
        llm("a", SHORT_PROMPT),
        llm("b", SHORT_PROMPT + " The ferry was late.", system="Be brief."),
        llm("c", "Summarize in 2 sentences:\n\n{{ node.a.output }} {{ node.b.output }}"),
        dependencies={"pricing": {"type": "pricing", "config": {"path": prices}}},
    )
    ran = run_flow(doc)
    assert ran.result.ok, ran.result.error

    step_costs = costs(ran)
    assert len(step_costs) == 3
    for response, cost in zip(ran.of("llm_response"), step_costs, strict=True):
        usage = response["usage"]
        expected = price(usage["input_tokens"], "0.123456789") + price(
            usage["output_tokens"], "1.987654321"
        )
        assert cost == expected
    totals = ran.run_end["totals"]
    assert Decimal(totals["cost"]) == sum(step_costs, Decimal(0))
    assert totals["tokens_input"] == sum(r["usage"]["input_tokens"] for r in ran.of("llm_response"))
    assert totals["tokens_output"] == sum(
        r["usage"]["output_tokens"] for r in ran.of("llm_response")
    )
    summary = summarize(ran.events)
    assert summary.cost == Decimal(totals["cost"])
    assert [s.cost for s in summary.steps] == step_costs
    assert f"${Decimal(totals['cost'])}" in format_table(summary).splitlines()[-1]


def test_costs_are_written_as_plain_decimals_never_in_exponent_notation():
    # 2 input and 1 output tokens: 0.0000006 at the shipped offline price
    ran = run_flow(flow_doc(llm("tiny", "Hi.", max_tokens=1)))
    cost = ran.one("llm_response")["cost"]
    assert Decimal(cost) == price(2, "0.10") + price(1, "0.40")
    assert "E" not in cost.upper(), cost
    table = format_table(summarize(ran.events))
    assert "E-" not in table, table


def test_a_user_pricing_override_reprices_the_model(tmp_path):
    overrides = pricing_file(
        tmp_path / "mine.json",
        {"offline": [{"pattern": "offline-extractive-1", "input": "3", "output": "7"}]},
    )
    doc = flow_doc(
        llm("ask", SHORT_PROMPT),
        dependencies={"pricing": {"type": "pricing", "config": {"overrides": overrides}}},
    )
    ran = run_flow(doc)
    usage = ran.one("llm_response")["usage"]
    expected = price(usage["input_tokens"], "3") + price(usage["output_tokens"], "7")
    assert costs(ran) == [expected]


def test_an_unknown_model_is_flagged_not_silently_priced_at_zero(tmp_path):
    prices = pricing_file(
        tmp_path / "only-openai.json",
        {"openai": [{"pattern": "gpt-4o", "input": "2.50", "output": "10.00"}]},
    )
    doc = flow_doc(
        llm("ask", SHORT_PROMPT),
        dependencies={"pricing": {"type": "pricing", "config": {"path": prices}}},
    )
    ran = run_flow(doc)

    response = ran.one("llm_response", "ask")
    assert response["cost_known"] is False
    assert response["cost"] == "0"
    warnings = [p for p in ran.of("log", "ask") if p["level"] == "warning"]
    assert len(warnings) == 1
    assert "offline-extractive-1" in warnings[0]["message"]
    assert "pricing map" in warnings[0]["message"]
    summary = summarize(ran.events)
    assert summary.steps[0].cost_known is False
    assert "unpriced model" in format_table(summary)


# ------------------------------------------------------------------------------- config errors


def test_an_unknown_provider_is_a_load_time_error_naming_node_and_provider():
    with pytest.raises(ConfigError) as caught:
        load(flow_doc(llm("ask", SHORT_PROMPT, provider="nope")))
    message = str(caught.value)
    assert "node 'ask'" in message and "'nope'" in message


def test_an_unknown_fallback_provider_is_a_load_time_error():
    doc = flow_doc(
        llm("ask", SHORT_PROMPT, fallbacks=[{"provider": "missing", "model": "m"}]),
    )
    with pytest.raises(ConfigError, match="'missing'"):
        load(doc)


def test_a_dependency_that_is_no_provider_fails_with_a_clear_error():
    doc = flow_doc(
        llm("ask", SHORT_PROMPT, provider="prices"),
        dependencies={"prices": {"type": "pricing"}},
    )
    ran = run_flow(doc)
    assert ran.result.status == "failed"
    assert "node 'ask'" in ran.error and "not an LLM provider" in ran.error


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"temperature": 3}, "temperature"),
        ({"response_format": "xml"}, "response_format"),
        ({"max_tokens": 0}, "max_tokens"),
        ({"bogus": 1}, "bogus"),
    ],
)
def test_bad_params_are_load_time_errors(params, field):
    with pytest.raises(ConfigError, match=field):
        load(flow_doc(llm("ask", SHORT_PROMPT, **params)))


def test_run_totals_are_plain_decimals_too():
    ran = run_flow(flow_doc(llm("tiny", "Hi.", max_tokens=1)))
    assert ran.run_end["totals"]["cost"] == "0.0000006"


def test_parallel_branches_run_concurrently_and_their_costs_still_add_up():
    doc = flow_doc(
        llm("a", SHORT_PROMPT),
        llm("b", SHORT_PROMPT + " The pier was repaired.", provider="slow"),
        llm("c", SHORT_PROMPT + " The gulls returned.", provider="slow"),
        edges=[{"from": "a", "to": "b"}, {"from": "a", "to": "c"}],
        parallel=True,
        dependencies={"slow": {"type": "offline", "config": {"latency_ms": 300}}},
    )
    flow = load(doc)
    ran = execute(flow)
    assert ran.result.ok, ran.result.error
    assert sorted(ran.ran()) == ["a", "b", "c"]
    # b and c waited at the same time: both had started before either ended
    order = [
        (e["type"], e["node_id"]) for e in ran.events if e["type"] in ("node_start", "node_end")
    ]
    first_end = min(order.index(("node_end", n)) for n in ("b", "c"))
    assert max(order.index(("node_start", n)) for n in ("b", "c")) < first_end
    assert Decimal(ran.run_end["totals"]["cost"]) == sum(costs(ran), Decimal(0))
    assert ran.run_end["totals"]["total_tokens"] == sum(
        p["usage"]["total_tokens"] for p in ran.of("llm_response")
    )
