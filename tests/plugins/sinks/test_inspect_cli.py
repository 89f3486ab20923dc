"""``backpackflow inspect`` through ``backpackflow.cli.main`` on files the file sink wrote:
timelines, failed and cut-off runs, several runs, ``--node``, ``--state-at``, malformed input,
and once through the installed entry points."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from sinks_support import FakeLLM, Loop, Writer, chain, failing_flow, run_flow

import backpackflow.cli.app as cli
from backpackflow import Backpack, Flow
from backpackflow.plugins import Registry, reset_registry
from backpackflow.runner import Limits
from backpackflow_sinks.jsonl import FileSinkOptions, JsonlFileSink

Inspect = Callable[..., tuple[int, str, str]]


@pytest.fixture
def inspect(registry: Registry, monkeypatch: pytest.MonkeyPatch, capsys) -> Inspect:
    """``inspect(*args)`` runs ``backpackflow inspect`` with this package's plugins and
    returns (exit status, stdout, stderr)."""
    monkeypatch.setattr(cli, "get_registry", lambda: registry)

    def call(*args: Any) -> tuple[int, str, str]:
        code = cli.main(["inspect", *map(str, args), "--width", "200"])
        out, err = capsys.readouterr()
        return code, "\n".join(line.rstrip() for line in out.splitlines()), err

    return call


def record(path: Path, *flows: Flow, limits: Limits | None = None, **options: Any) -> list[Any]:
    """Run each flow with a file sink writing ``path``; returns the run results."""
    sink = JsonlFileSink(FileSinkOptions(path=str(path), **options))
    results = [run_flow(flow, [sink], limits=limits) for flow in flows]
    sink.close()
    return results


def rows(out: str) -> list[list[str]]:
    """The timeline table's rows, split on runs of 2+ spaces."""
    return [
        re.split(r"\s{2,}", line.strip()) for line in out.splitlines() if line[:4].strip().isdigit()
    ]


def test_timeline_of_a_failed_run(inspect: Inspect, tmp_path: Path) -> None:
    path = tmp_path / "run.jsonl"
    (result,) = record(path, failing_flow())
    code, out, err = inspect(path)
    assert (code, err) == (0, "")
    assert out.splitlines()[0] == f"Run {result.run_id} · flow failing"
    assert out.splitlines()[1].startswith("started 20")
    first, llm, broken = rows(out)
    assert first[:3] == ["1", "sales.research › first (Step)", "ok"]
    assert llm[:3] == ["2", "sales › llm (FakeLLM)", "ok"]
    assert llm[4:] == [
        "summarized",
        "165 tok $0.00123",
        "cache hit; fallback gpt-4o → claude-haiku",
    ]
    assert broken[:3] == ["3", "sales › broken (Fail)", "error"]
    assert broken[-1] == "exec: ValueError: boom"
    assert re.search(
        r"Run failed in \S+ \S+ · 3 nodes · 1 error · ValueError: boom\n"
        r"Tokens 165 \(120 in / 45 out\) · Cost \$0\.00123",
        out,
    )


def test_timeline_as_json(inspect: Inspect, tmp_path: Path) -> None:
    path = tmp_path / "run.jsonl"
    (result,) = record(path, failing_flow())
    code, out, _ = inspect(path, "--json")
    data = json.loads(out)
    assert code == 0
    assert data["run_id"] == result.run_id and data["status"] == "failed"
    assert [s["node_id"] for s in data["steps"]] == ["first", "llm", "broken"]
    assert data["steps"][1]["tokens_input"] == 120 and data["steps"][1]["cost"] == "0.00123"
    assert data["steps"][2]["error"]["phase"] == "exec"
    assert data["totals"]["total_tokens"] == 165


def test_a_run_cut_off_mid_write(inspect: Inspect, tmp_path: Path) -> None:
    """What a killed process leaves: no run_end, a node that never ended, a partial line."""
    path = tmp_path / "crash.jsonl"
    record(path, failing_flow())
    lines = path.read_bytes().splitlines(keepends=True)
    cut = next(i for i, line in enumerate(lines) if b'"node_id":"broken"' in line)
    path.write_bytes(b"".join(lines[: cut + 1]) + lines[cut + 1][:25])
    code, out, err = inspect(path)
    assert code == 0
    assert f"line {cut + 2}: cut off mid-line (the writer stopped while writing it)" in err
    assert [r[2] for r in rows(out)] == ["ok", "ok", "running"]
    assert "Run incomplete: no run_end recorded (the process stopped or the file was cut)" in out
    assert "3 nodes started, 1 unfinished" in out
    code, _, err = inspect(path, "--strict")
    assert code == 1
    assert f"line {cut + 2}: cut off mid-line" in err and "--strict" in err


def test_malformed_lines_are_skipped_with_their_line_numbers(
    inspect: Inspect, tmp_path: Path
) -> None:
    path = tmp_path / "bad.jsonl"
    record(path, chain(2))
    lines = path.read_text().splitlines(keepends=True)
    lines[3:3] = ["this is not json\n", "[1, 2]\n", '{"type": "log"}\n', "\n"]
    path.write_text("".join(lines))
    code, out, err = inspect(path)
    assert code == 0
    assert "warning: skipped 3 malformed lines:" in err
    assert f"{path} line 4: not JSON" in err
    assert f"{path} line 5: a JSON list, not an event object" in err
    assert f"{path} line 6: no integer 'seq'" in err
    assert [r[2] for r in rows(out)] == ["ok", "ok"]


def test_a_line_nested_50000_deep_is_a_malformed_line_not_a_traceback(
    inspect: Inspect, tmp_path: Path
) -> None:
    path = tmp_path / "deep.jsonl"
    record(path, chain(1))
    with path.open("a", encoding="utf-8") as file:
        file.write("[" * 50_000 + "]" * 50_000 + "\n")
    code, out, err = inspect(path)
    assert code == 0
    assert "not JSON ($: nested more than 256 levels deep" in err
    assert "Traceback" not in err
    assert [r[2] for r in rows(out)] == ["ok"]


def test_guardrails_and_run_totals(inspect: Inspect, tmp_path: Path) -> None:
    path = tmp_path / "guard.jsonl"
    llm = FakeLLM(id="llm")
    llm - "summarized" >> chain(1).start_node  # type: ignore[arg-type]
    record(path, Flow(llm), limits=Limits(max_tokens=100))
    code, out, _ = inspect(path)
    assert code == 0
    assert "⚠ guardrail max_tokens: run " in out
    assert re.search(r"Run failed .* · GuardrailExceeded: run \S+ used 165 tokens", out)


def test_several_runs_show_the_latest_and_pick_by_id(inspect: Inspect, tmp_path: Path) -> None:
    path = tmp_path / "many.jsonl"
    first, failed, last = record(path, chain(1), failing_flow(), chain(2))
    code, out, _ = inspect(path)
    assert code == 0
    assert out.startswith(f"Run {last.run_id} · flow chain")
    assert "2 other runs in this file; showing the latest. Pick one with --run RUN_ID" in out
    assert len(rows(out)) == 2

    code, out, _ = inspect(path, "--run", failed.run_id[-8:])
    assert code == 0 and out.startswith(f"Run {failed.run_id} · flow failing")

    code, out, _ = inspect(path, "--list")
    assert code == 0
    listed = [line.split() for line in out.splitlines() if line.strip()[:6] in (first.run_id[:6],)]
    assert [line[0] for line in listed] == [first.run_id, failed.run_id, last.run_id]
    assert [line[4] for line in listed] == ["succeeded", "failed", "succeeded"]

    code, _, err = inspect(path, "--run", "no-such-run")
    assert code == 1
    assert f"no run 'no-such-run' in {path} (runs: " in err and first.run_id in err
    code, _, err = inspect(path, "--run", first.run_id[:4])
    assert code == 1 and "is ambiguous: it matches 3 runs" in err


def test_node_details(inspect: Inspect, tmp_path: Path) -> None:
    path = tmp_path / "run.jsonl"
    (result,) = record(path, failing_flow())
    code, out, _ = inspect(path, "--node", "llm")
    assert code == 0
    assert f"Node llm (FakeLLM) · step 2 of run {result.run_id}" in out
    assert re.search(r"namespace\s+sales\n", out)
    assert re.search(r"time\s+\S+ \S+ total, exec \S+ \S+, 1 attempt\n", out)
    assert re.search(r"action\s+summarized\n", out) and re.search(r"reads\s+q\n", out)
    assert re.search(r"writes\s+summary\n", out)
    assert re.search(r"llm\s+120 in / 45 out tokens · \$0\.00123\n", out)
    assert "prompt (prep_complete.prep_result)" in out and "│ Summarize: question" in out
    assert "raw result (exec_complete.exec_result)" in out and "│ a summary" in out
    commit = result.backpack.get_item("summary").commit_id
    assert re.search(rf"{commit}\s+summary\s+pack\s+1\s+\"a summary\"", out)
    assert "llm anthropic/claude-haiku · 321.0 ms · $0.00123 · finish stop" in out
    assert "fallback openai/gpt-4o → anthropic/claude-haiku: HTTP 503" in out

    code, out, _ = inspect(path, "--node", "broken")
    assert code == 0
    assert "error in exec" in out and "ValueError: boom" in out
    assert "raise ValueError(self.message)" in out  # the stack
    assert '"question": "question"' in out  # the prompt, as JSON
    assert "raw result" not in out  # exec never completed


def test_a_node_that_ran_several_times(inspect: Inspect, tmp_path: Path) -> None:
    path = tmp_path / "loop.jsonl"
    loop = Loop(3, id="loop")
    loop - "again" >> loop
    record(path, Flow(loop))
    code, out, _ = inspect(path, "--node", "loop")
    assert code == 0
    assert "Node loop ran 3 times" in out and "Showing step 3; pick another with --step N." in out
    assert "│ [" in out and "│   0," in out and "│   1" in out  # step 3's prompt: [0, 1]

    code, out, _ = inspect(path, "--node", "loop", "--step", "2", "--json")
    data = json.loads(out)
    assert code == 0
    assert (data["step"], data["prep_result"], data["exec_result"]) == (2, [0], 1)
    assert data["executions"] == [2]
    assert [p["payload"]["value"] for p in data["packs"]] == [[1]]

    code, out, _ = inspect(path, "--step", "1")
    assert code == 0 and "Node loop (Loop) · step 1" in out

    code, _, err = inspect(path, "--node", "loop", "--step", "9")
    assert code == 1 and "node 'loop' has no step 9 (steps: 1, 2, 3)" in err
    code, _, err = inspect(path, "--node", "nope")
    assert code == 1 and "node 'nope' did not run in run " in err and "(nodes: loop)" in err


def test_state_at_a_commit_rebuilt_exactly(inspect: Inspect, tmp_path: Path) -> None:
    path = tmp_path / "loop.jsonl"
    loop = Loop(3, id="loop")
    loop - "again" >> loop
    (result,) = record(path, Flow(loop))
    commits = [c for c in result.backpack.get_history() if c.key == "items"]
    code, out, _ = inspect(path, "--state-at", commits[1].commit_id)
    assert code == 0
    assert f"State at commit {commits[1].commit_id}" in out
    assert "append items (version 2) by node loop at step 2" in out
    assert re.search(r"items\s+\[0, 1\]\s+exact", out)
    assert re.search(r"k0\s+\"start\"\s+exact", out)
    assert "summary only" not in out

    code, out, _ = inspect(path, "--state-at", commits[2].commit_id, "--json")
    data = json.loads(out)
    assert data["exact"] is True
    assert {k: v["value"] for k, v in data["state"].items()} == {**result.backpack.to_dict()}


def test_state_at_from_summaries_says_what_is_only_a_summary(
    inspect: Inspect, tmp_path: Path
) -> None:
    path = tmp_path / "summary.jsonl"
    big_a, big_b, later = "a" * 300, "b" * 300, "A" * 300

    class Twice(Writer):
        def post(self, backpack: Any, prep_res: Any, exec_res: Any) -> Any:
            backpack.pack("a", big_a)
            backpack.pack("b", big_b)
            backpack.pack("a", later)
            return None

    first = Twice({}, id="twice")
    first >> chain(1).start_node
    (result,) = record(path, Flow(first), values="summary")
    commit_b = result.backpack.get_key_history("b")[0].commit_id
    code, out, _ = inspect(path, "--state-at", commit_b, "--json")
    state = json.loads(out)["state"]
    assert code == 0
    assert state["a"]["exact"] is False and state["a"]["value"].startswith('"aaaa')
    assert state["a"]["value"].endswith("…")
    assert state["b"] == {  # nobody wrote b before the next node started: its state is exact
        "value": big_b,
        "exact": True,
        "source": "state at node_start of step 2 (n1) (not written in between)",
    }
    code, out, _ = inspect(path, "--state-at", commit_b)
    assert "summary only" in out
    assert "1 value is only a summary (a): the file recorded truncated summaries." in out

    full = tmp_path / "full.jsonl"
    (result,) = record(full, Flow(Twice({}, id="twice")))
    commit_b = result.backpack.get_key_history("b")[0].commit_id
    code, out, _ = inspect(full, "--state-at", commit_b, "--json")
    state = json.loads(out)["state"]
    assert state["a"]["value"] == big_a and state["a"]["exact"] is True


def test_state_at_errors(inspect: Inspect, tmp_path: Path) -> None:
    path = tmp_path / "run.jsonl"
    (result,) = record(path, chain(3))
    code, _, err = inspect(path, "--state-at", "0000")
    assert code == 1
    assert f"commit '0000' is not in run {result.run_id}: it recorded 3 commits" in err
    prefix = result.backpack.get_history()[1].commit_id[:8]
    code, _, err = inspect(path, "--state-at", prefix)
    assert code == 1 and "is ambiguous" in err
    code, _, err = inspect(path, "--state-at", "x", "--step", "1")
    assert code == 2 and "--step goes with --node" in err


def test_missing_empty_and_eventless_files(inspect: Inspect, tmp_path: Path) -> None:
    code, _, err = inspect(tmp_path / "nope.jsonl")
    assert code == 1 and "backpackflow inspect: no such file: " in err
    empty = tmp_path / "empty.jsonl"
    empty.write_text("")
    code, _, err = inspect(empty)
    assert code == 1 and "no run events in" in err
    junk = tmp_path / "junk.jsonl"
    junk.write_text("junk\n")
    code, _, err = inspect(junk)
    assert code == 1 and "(1 malformed lines)" in err


def test_a_directory_of_per_run_files(inspect: Inspect, tmp_path: Path) -> None:
    directory = tmp_path / "traces"
    first, second = record(Path(f"{directory}/"), chain(1), failing_flow())
    code, out, _ = inspect(directory, "--list")
    assert code == 0 and first.run_id in out and second.run_id in out
    code, out, _ = inspect(directory)
    assert out.startswith(f"Run {second.run_id}")


def test_rotated_files_are_read_in_order(inspect: Inspect, tmp_path: Path) -> None:
    path = tmp_path / "rot.jsonl"
    (result,) = record(path, chain(5), flush="event", max_bytes=3000, backups=20)
    assert (tmp_path / "rot.jsonl.2").exists()
    code, out, _ = inspect(path, "--json")
    data = json.loads(out)
    assert code == 0
    assert data["run_id"] == result.run_id and data["status"] == "succeeded"
    assert data["events"] == 32 and len(data["steps"]) == 5


def test_through_the_installed_entry_points(tmp_path: Path, monkeypatch, capsys) -> None:
    path = tmp_path / "run.jsonl"
    (result,) = record(path, chain(2))
    monkeypatch.delenv("BACKPACKFLOW_DISABLE_PLUGIN_AUTOLOAD", raising=False)
    monkeypatch.delenv("BACKPACKFLOW_DISABLE_PLUGINS", raising=False)
    reset_registry()
    try:
        assert cli.main(["inspect", str(path), "--list"]) == 0
    finally:
        reset_registry()
    assert result.run_id in capsys.readouterr().out

    env = {k: v for k, v in os.environ.items() if not k.startswith("BACKPACKFLOW_")}
    done = subprocess.run(
        [sys.executable, "-m", "backpackflow", "inspect", str(path), "--node", "n2"],
        env={**env, "COLUMNS": "120"},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    assert "Node n2 (Step) · step 2" in done.stdout and "start>n1>n2" in done.stdout


def test_the_first_node_start_records_the_callers_inputs(tmp_path: Path) -> None:
    """The state at the first node holds what the caller packed before the run."""
    path = tmp_path / "run.jsonl"
    sink = JsonlFileSink(FileSinkOptions(path=str(path)))
    backpack = Backpack()
    backpack.pack("k0", {"nested": ["x"]})
    run_flow(chain(1), [sink], backpack=backpack)
    sink.close()
    start = next(json.loads(line) for line in path.open() if '"node_start"' in line)
    assert start["payload"]["state"]["changed"] == {"k0": {"nested": ["x"]}}
    assert start["payload"]["state"]["base_seq"] is None  # the first node: the whole state


def test_each_steps_state_is_rebuilt_from_the_node_start_deltas(tmp_path: Path) -> None:
    """node_start records what changed since the previous one; the trace chains them back
    into the whole state each node started with."""
    from backpackflow_sinks.trace import load_trace

    path = tmp_path / "run.jsonl"
    sink = JsonlFileSink(FileSinkOptions(path=str(path)))
    result = run_flow(chain(4), [sink])
    sink.close()
    starts = [json.loads(line) for line in path.open() if '"node_start"' in line]
    assert [sorted(s["payload"]["state"]["changed"]) for s in starts] == [
        ["k0", "q"],
        ["k1"],
        ["k2"],
        ["k3"],
    ]
    [run] = load_trace(path).runs.values()
    assert run.steps[4].state == {
        "k0": "start",
        "q": "question",
        "k1": "start>n1",
        "k2": "start>n1>n2",
        "k3": "start>n1>n2>n3",
    }
    assert run.steps[1].state == {"k0": "start", "q": "question"}
    assert result.ok
