"""``backpackflow run`` on the examples through ``backpackflow.cli.main``: the summary table,
``--json``, inputs, exit statuses, the cache (a second identical run costs $0) and
``--no-cache``."""

from __future__ import annotations

import json
from decimal import Decimal

import pytest
from e2e_support import dollars, run_cli, table
from nodes_support import CSV_REPORT, RESEARCH, flow_doc, llm, tool, write_flow

from backpackflow.plugins import get_registry


@pytest.fixture
def cache(tmp_path):
    return str(tmp_path / "cache" / "llm.sqlite")


def test_run_prints_a_summary_table_with_per_step_figures_and_totals(capsys, cache):
    code, out, err = run_cli(capsys, str(RESEARCH), "--sink", "none", "--cache-path", cache)
    assert code == 0, err
    assert out.splitlines()[1].startswith("run ") and out.splitlines()[1].endswith(
        " of research: succeeded"
    )
    steps, total = table(out)
    assert [(s["#"], s["node"], s["type"], s["status"]) for s in steps] == [
        ("1", "research", "tool", "succeeded"),
        ("2", "summarize", "llm", "succeeded"),
        ("3", "decide", "router", "succeeded"),
        ("4", "deep", "llm", "succeeded"),
    ]
    for step in steps:
        assert step["cache"] == "-"
        assert step["latency"].endswith(("ms", "s"))
    for tool_or_router in (steps[0], steps[2]):
        assert (tool_or_router["tokens in"], tool_or_router["cost"]) == ("0", "$0")
    assert int(steps[1]["tokens in"]) > 0 and dollars(steps[1]["cost"]) > 0
    assert total["node"] == "total" and total["status"] == "succeeded"
    assert int(total["tokens in"]) == sum(int(s["tokens in"]) for s in steps)
    assert int(total["tokens out"]) == sum(int(s["tokens out"]) for s in steps)
    assert dollars(total["cost"]) == sum((dollars(s["cost"]) for s in steps), Decimal(0))


def test_a_second_identical_run_shows_cache_hits_and_costs_nothing(capsys, cache):
    code, first_out, _ = run_cli(capsys, str(RESEARCH), "--sink", "none", "--cache-path", cache)
    assert code == 0
    code, second_out, _ = run_cli(capsys, str(RESEARCH), "--sink", "none", "--cache-path", cache)
    assert code == 0

    first_steps, first_total = table(first_out)
    steps, total = table(second_out)
    assert [s["cache"] for s in steps] == [
        "-",
        f"hit (saved {first_steps[1]['cost']})",
        "-",
        f"hit (saved {first_steps[3]['cost']})",
    ]
    assert all(s["cost"] == "$0" and s["tokens in"] == "0" for s in steps)
    assert total["cost"] == "$0"
    assert total["cache"] == "2/4 hits"
    assert total["notes"] == f"saved {first_total['cost']}"


def test_json_summary(capsys, cache):
    code, out, _ = run_cli(
        capsys, str(CSV_REPORT), "--sink", "none", "--cache-path", cache, "--json"
    )
    assert code == 0
    data = json.loads(out)
    assert data["status"] == "succeeded" and data["error"] is None
    assert [s["node_id"] for s in data["steps"]] == ["load_csv", "analysis", "write_up"]
    step = data["steps"][1]
    assert step["node_type"] == "llm" and step["cache_hit"] is False
    assert step["tokens_input"] > 0 and step["latency_ms"] >= 0
    assert Decimal(data["totals"]["cost"]) == sum(
        (Decimal(s["cost"]) for s in data["steps"]), Decimal(0)
    )
    assert data["totals"]["tokens_input"] == sum(s["tokens_input"] for s in data["steps"])

    code, out, _ = run_cli(
        capsys, str(CSV_REPORT), "--sink", "none", "--cache-path", cache, "--json"
    )
    again = json.loads(out)
    assert [s["cache_hit"] for s in again["steps"]] == [False, True, True]
    assert again["totals"]["cost"] == "0"
    saved = sum((Decimal(s["cost_saved"]) for s in again["steps"]), Decimal(0))
    assert saved == Decimal(data["totals"]["cost"])


def test_inputs_reach_the_templates(capsys, tmp_path):
    if "file" not in get_registry().event_sinks:
        pytest.skip("the file sink plugin is not available in this environment")
    events = tmp_path / "events.jsonl"
    argv = ["--sink", f"file:{events}", "--no-cache", "--input", "topic=grid safety"]
    code, _, err = run_cli(capsys, str(RESEARCH), *argv, "--input-json", 'doc="notes.md"')
    assert code == 0, err
    requests = [
        e["payload"]
        for e in map(json.loads, events.read_text(encoding="utf-8").splitlines())
        if e["type"] == "llm_request" and e["node_id"] == "summarize"
    ]
    assert requests[0]["messages"][1]["content"].startswith(
        "Summarize the notes in 3 sentences, focusing on grid safety:\n\n# Field notes"
    )


def test_an_unknown_input_is_an_error_naming_it(capsys):
    code, _, err = run_cli(capsys, str(RESEARCH), "--sink", "none", "--input", "nope=1")
    assert code == 1
    assert "inputs.nope: unknown input; the flow declares" in err
    assert "'doc'" in err and "'topic'" in err


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--input", "topic"], "expected NAME=VALUE"),
        (["--input-json", "topic={bad"], "not JSON"),
        (["--sink-option", "console.verbose"], "expected SINK.FIELD=VALUE"),
    ],
)
def test_bad_arguments_exit_1_with_a_message(capsys, argv, message):
    code, _, err = run_cli(capsys, str(RESEARCH), "--sink", "none", *argv)
    assert code == 1
    assert message in err


def test_a_failed_run_exits_1_and_shows_the_failed_step(capsys, tmp_path):
    flow = write_flow(
        tmp_path / "broken.json",
        flow_doc(
            tool("read", "read_file", arguments={"path": "missing.md"}),
            llm("after", "Summarize: {{ node.read.output.content }}"),
        ),
    )
    code, out, err = run_cli(capsys, str(flow), "--sink", "none", "--no-cache")
    assert code == 1
    steps, total = table(out)
    assert [(s["node"], s["status"]) for s in steps] == [("read", "failed")]
    assert "no file 'missing.md'" in steps[0]["notes"]
    assert total["status"] == "failed"
    assert "error: ToolError: read_file: no file 'missing.md'" in err


def test_a_flow_that_does_not_load_exits_1(capsys, tmp_path):
    flow = write_flow(tmp_path / "bad.json", flow_doc(llm("a", "Hi {{ nobody }}")))
    code, out, err = run_cli(capsys, str(flow), "--sink", "none")
    assert code == 1
    assert "node 'a' params.prompt" in err and "'nobody'" in err
    assert out == ""


def test_no_cache_makes_every_run_pay(capsys, tmp_path):
    for _ in range(2):
        code, out, _ = run_cli(capsys, str(RESEARCH), "--sink", "none", "--no-cache")
        assert code == 0
        steps, total = table(out)
        assert all(s["cache"] == "-" for s in steps)
        assert dollars(total["cost"]) > 0
    # no response cache was made (the run checkpoints are .backpackflow/checkpoints)
    assert not (tmp_path / ".backpackflow" / "llm-cache.sqlite").exists()


def test_no_cache_also_turns_off_a_cache_the_flow_declares(capsys, tmp_path):
    doc = flow_doc(
        llm("a", "Summarize in 1 sentence:\n\nThe tide rose. The boats floated."),
        dependencies={
            "llm_cache": {"type": "sqlite_cache", "config": {"path": str(tmp_path / "own.db")}}
        },
    )
    flow = write_flow(tmp_path / "flow.json", doc)
    for _ in range(2):
        code, out, _ = run_cli(capsys, str(flow), "--sink", "none", "--no-cache", "--json")
        assert code == 0
        assert [s["cache_hit"] for s in json.loads(out)["steps"]] == [False]


def test_the_default_cache_lives_in_the_working_directory(capsys, tmp_path):
    code, _, _ = run_cli(capsys, str(RESEARCH), "--sink", "none")
    assert code == 0
    assert (tmp_path / ".backpackflow" / "llm-cache.sqlite").is_file()
    code, out, _ = run_cli(capsys, str(RESEARCH), "--sink", "none")
    assert table(out)[1]["cache"] == "2/4 hits"


def test_by_default_the_live_console_trace_goes_to_stderr(capsys, cache):
    if "console" not in get_registry().event_sinks:
        pytest.skip("the console sink plugin is not available in this environment")
    code, out, err = run_cli(capsys, str(RESEARCH), "--cache-path", cache)
    assert code == 0
    for node_id in ("research", "summarize", "decide", "deep"):
        assert node_id in err
    assert table(out)[1]["status"] == "succeeded"


def test_json_figures_are_plain_decimals(capsys, tmp_path):
    flow = write_flow(tmp_path / "tiny.json", flow_doc(llm("tiny", "Hi.", max_tokens=1)))
    code, out, _ = run_cli(capsys, str(flow), "--sink", "none", "--no-cache", "--json")
    assert code == 0
    data = json.loads(out)
    assert data["totals"]["cost"] == data["steps"][0]["cost"] == "0.0000006"
    steps, total = table(run_cli(capsys, str(flow), "--sink", "none", "--no-cache")[1])
    assert steps[0]["cost"] == total["cost"] == "$0.0000006"


def test_a_required_input_that_is_missing_is_an_error(capsys, tmp_path):
    doc = flow_doc(
        llm("a", "Summarize in 1 sentence:\n\n{{ inputs.text }}"),
        inputs={"text": {"description": "the text to summarize", "required": True}},
    )
    flow = str(write_flow(tmp_path / "needs.json", doc))
    code, _, err = run_cli(capsys, flow, "--sink", "none", "--no-cache")
    assert code == 1
    assert "inputs.text: required input missing (the text to summarize)" in err
    code, out, _ = run_cli(
        capsys, flow, "--sink", "none", "--no-cache", "--input", "text=Rain fell. Rivers rose."
    )
    assert code == 0 and table(out)[1]["status"] == "succeeded"
