"""The two example flows, loaded from their files with the installed plugins, run offline:
"Research -> Summarize -> Decide -> Deep" (tool, llm, router, llm) and
"CSV -> Analysis -> Write-up"."""

from __future__ import annotations

import csv
import json
import shutil
from decimal import Decimal

import pytest
from nodes_support import CSV_REPORT, RESEARCH, costs, execute, installed_registry, load, run_flow

from backpackflow.events import summarize
from backpackflow.loader import FlowLoader

NOTES = (RESEARCH.parent / "notes.md").read_text(encoding="utf-8")


@pytest.mark.parametrize("path", [RESEARCH, CSV_REPORT], ids=["research", "csv-report"])
def test_the_examples_validate_without_warnings(path):
    report = FlowLoader(installed_registry()).validate(path)
    assert report.errors == [] and report.warnings == []


# ------------------------------------------------------------------------------- research


def test_research_reads_summarizes_decides_and_goes_deep():
    ran = run_flow(RESEARCH)
    assert ran.result.ok, ran.result.error
    assert ran.ran() == ["research", "summarize", "decide", "deep"]

    # Research: the notes next to the flow file
    assert ran.one("tool_request", "research") == {
        "tool": "read_file",
        "arguments": {"path": "notes.md", "max_bytes": 1_000_000, "encoding": "utf-8"},
    }
    read = ran.one("tool_response", "research")["result"]
    assert read["content"] == NOTES

    # Summarize: the exact messages, the summary made of sentences of the notes
    summarize_request = ran.one("llm_request", "summarize")
    assert summarize_request["messages"] == [
        {"role": "system", "content": "You are a concise analyst. Keep to the facts in the notes."},
        {
            "role": "user",
            "content": "Summarize the notes in 3 sentences, focusing on costs and revenue:\n\n"
            + NOTES,
        },
    ]
    summary = ran.result.backpack.peek("summarize")
    assert summary == ran.one("llm_response", "summarize")["text"]
    assert summary and all(sentence.strip() in NOTES for sentence in summary.split(". "))

    # Decide: the notes are long, the branch is "deep", and the deep node ran
    assert len(NOTES) > 2000
    assert ran.one("exec_complete", "decide")["exec_result"] == {
        "branch": "deep",
        "rule": "size(text) > 2000 ? 'deep' : 'shallow'",
        "value": "deep",
    }
    assert ran.result.backpack.peek("decide") == "deep"

    # Deep: a JSON answer, parsed, taken from the notes
    deep = ran.result.backpack.peek("deep")
    assert isinstance(deep, dict)
    assert deep["answer"] in NOTES
    assert "risks" in deep["answer"]
    assert json.loads(ran.one("exec_complete", "deep")["exec_result"]) == deep

    # totals: exact, the sum of the two calls
    totals = ran.run_end["totals"]
    assert Decimal(totals["cost"]) == sum(costs(ran), Decimal(0)) > 0
    assert totals["tokens_input"] == sum(p["usage"]["input_tokens"] for p in ran.of("llm_response"))
    assert [s.status for s in summarize(ran.events).steps] == ["succeeded"] * 4


def test_research_takes_the_shallow_branch_for_short_notes(tmp_path):
    folder = tmp_path / "research"
    shutil.copytree(RESEARCH.parent, folder)
    (folder / "short.md").write_text(
        "Battery prices fell again. Two new plants opened.\n", encoding="utf-8"
    )
    ran = run_flow(folder / "flow.json", inputs={"doc": "short.md", "topic": "prices"})
    assert ran.result.ok, ran.result.error
    assert ran.ran() == ["research", "summarize", "decide"]
    assert ran.one("exec_complete", "decide")["exec_result"]["branch"] == "shallow"
    assert "focusing on prices" in ran.one("llm_request", "summarize")["messages"][1]["content"]
    assert ran.of("llm_request", "deep") == []


def test_research_run_inputs_are_checked():
    flow = load(RESEARCH)
    with pytest.raises(Exception, match="unknown input"):
        execute(flow, inputs={"nope": "x"})


def test_a_second_run_of_research_hits_the_cache_and_costs_nothing(tmp_path):
    from backpackflow.runner import DependencyContainer
    from backpackflow_llm import SQLiteCache

    cache_path = tmp_path / "cache.sqlite"
    runs = []
    for _ in range(2):  # two separate loads sharing one cache file, as two CLI runs do
        deps = DependencyContainer()
        deps.register("llm_cache", SQLiteCache(cache_path))
        runs.append(run_flow(RESEARCH, deps=deps))
    first, second = runs
    assert second.result.backpack.peek("deep") == first.result.backpack.peek("deep")
    hits = {e["node_id"]: e["payload"] for e in second.events if e["type"] == "cache_hit"}
    assert sorted(hits) == ["deep", "summarize"]
    for node_id, hit in hits.items():
        assert hit["cost_saved"] == first.one("llm_response", node_id)["cost"]
    assert second.run_end["totals"]["cost"] == "0"
    assert second.of("llm_request") == []


# ------------------------------------------------------------------------------- csv-report


def figures():
    """The shipped CSV's figures, computed here with the csv module."""
    with (CSV_REPORT.parent / "sales.csv").open(encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    numbers = {}
    for name in ("units", "revenue", "returns"):
        values = [Decimal(r[name]) for r in rows]
        numbers[name] = (min(values), max(values), sum(values), sum(values) / len(values))
    return rows, numbers


def test_csv_report_analyses_the_shipped_csv_and_writes_it_up():
    ran = run_flow(CSV_REPORT)
    assert ran.result.ok, ran.result.error
    assert ran.ran() == ["load_csv", "analysis", "write_up"]

    rows, numbers = figures()
    table = ran.result.backpack.peek("load_csv")
    assert table["rows"] == len(rows) == 24
    prompt = ran.one("llm_request", "analysis")["messages"][1]["content"]
    assert prompt.startswith(
        "Summarize the key facts in 3 sentences:\n\nThe file sales.csv has 24 rows."
    )
    for name, (low, high, total, mean) in numbers.items():
        # every figure of the shipped CSV is a whole number, so the summary keeps integers
        sentence = (
            f"The {name} column ranges from {int(float(low))} to {int(float(high))}, with a "
            f"total of {int(float(total))} and an average of {round(float(mean), 4)} per row."
        )
        assert sentence in prompt
    assert "The region column has 3 distinct values" in prompt
    assert "The product column has 2 distinct values" in prompt
    assert "total of 171847 " in prompt and "total of 2203 " in prompt

    facts = ran.result.backpack.peek("analysis")
    assert isinstance(facts, dict) and facts["summary"]
    assert facts["summary"] in prompt  # extractive: taken from the figures
    write_up = ran.one("llm_request", "write_up")["messages"][1]["content"]
    assert write_up == f"Write a report for the sales team in 2 sentences:\n\n{facts['summary']}"
    report = ran.result.backpack.peek("write_up")
    assert report
    assert all(sentence.strip(".") in facts["summary"] for sentence in report.split(". "))
    assert Decimal(ran.run_end["totals"]["cost"]) == sum(costs(ran), Decimal(0))


def test_csv_report_takes_the_audience_as_an_input():
    ran = run_flow(CSV_REPORT, inputs={"audience": "the board"})
    content = ran.one("llm_request", "write_up")["messages"][1]["content"]
    assert content.startswith("Write a report for the board in 2 sentences:")
