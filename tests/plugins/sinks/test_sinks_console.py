"""The console sink on real runs: the pretty trace, quiet and jsonl modes, verbose details,
where it writes, colors, and rendering failures that never reach the run."""

from __future__ import annotations

import io
import json
import re
from typing import Any

from sinks_support import FakeLLM, Flaky, Loop, chain, event_ids, failing_flow, run_flow

from backpackflow import EventStreamer, Flow
from backpackflow.events import StreamEventType
from backpackflow.runner import Limits
from backpackflow_sinks.console import ConsoleOptions, ConsoleSink


def render(flow: Flow, *, limits: Limits | None = None, **options: Any) -> tuple[str, Any, Any]:
    out = io.StringIO()
    sink = ConsoleSink(ConsoleOptions(width=120, **options), file=out)
    result = run_flow(flow, [sink], limits=limits)
    report = sink.close()
    return out.getvalue(), result, report


def lines(text: str) -> list[str]:
    return [line.rstrip() for line in text.splitlines() if line.strip()]


def test_pretty_trace_of_a_failed_run_grouped_by_namespace() -> None:
    text, result, report = render(failing_flow())
    got = lines(text)
    assert got[0] == f"▶ run {result.run_id} · flow failing"
    assert got[1:5] == [
        "  sales",
        "    research",
        "      ● first #1 (Step) running",
        got[4],
    ]
    assert re.fullmatch(r"      ✔ first #1 ok [\d.]+ (µs|ms)", got[4])
    assert got[5] == "    ● llm #2 (FakeLLM) running"
    assert got[6] == "      ⇢ fallback openai/gpt-4o → anthropic/claude-haiku: HTTP 503"
    assert re.fullmatch(
        r"      ◇ llm anthropic/claude-haiku · 120 in / 45 out tokens · \$0\.00123 · 321\.0 ms",
        got[7],
    )
    assert got[8] == "      ◇ cache hit · saved $0.0005"
    assert re.fullmatch(
        r"    ✔ llm #2 ok \S+ \S+ → summarized · 120 in / 45 out tokens · \$0\.00123 · "
        r"1 cache hit",
        got[9],
    )
    assert got[10] == "    ● broken #3 (Fail) running"
    assert got[11] == "    ✖ broken #3 error in exec: ValueError: boom"
    assert re.fullmatch(
        r"✖ run failed in \S+ \S+ · 3 nodes · 165 tokens · \$0\.00123 · ValueError: boom",
        got[12],
    )
    assert len(got) == 13
    assert report == {
        "sink": "console",
        "mode": "pretty",
        "events": len(event_ids(result)),
        "runs": 1,
        "nodes": 3,
        "errors": 1,
        "guardrails": 0,
        "dropped": {"render_error": 0},
    }


def test_retries_and_attempts_are_shown() -> None:
    text, _, _ = render(Flow(Flaky(max_retries=3, id="flaky")))
    got = lines(text)
    assert got[2] == (
        "    ↻ retry after attempt 1: TimeoutError: first attempt times out (waiting 0.00 s)"
    )
    assert re.fullmatch(r"  ✔ flaky #1 ok \S+ \S+ → done · 2 attempts", got[3])


def test_quiet_shows_only_errors_guardrails_and_run_ends() -> None:
    text, result, report = render(failing_flow(), mode="quiet")
    assert lines(text) == [
        "✖ broken #3 [sales] error in exec: ValueError: boom",
        lines(text)[1],
    ]
    assert lines(text)[1].startswith(f"✖ run {result.run_id} failed in ")
    assert report["nodes"] == 3 and report["errors"] == 1

    text, result, _ = render(chain(3), mode="quiet")
    assert lines(text) == [lines(text)[0]]
    assert re.fullmatch(rf"✔ run {result.run_id} succeeded in \S+ \S+ · 3 nodes", lines(text)[0])


def test_guardrails_are_shown_in_every_mode() -> None:
    first = FakeLLM(id="llm")
    first - "summarized" >> chain(2).start_node  # type: ignore[arg-type]
    for mode in ("pretty", "quiet"):
        text, result, report = render(Flow(first), mode=mode, limits=Limits(max_tokens=100))
        assert result.status == "failed"
        guard = [line for line in lines(text) if "guardrail" in line]
        assert len(guard) == 1
        assert guard[0].strip().startswith("⚠ guardrail max_tokens: run ")
        assert "used 165 tokens, over max_tokens=100" in guard[0]
        assert report["guardrails"] == 1


def test_verbose_shows_prompts_results_writes_and_stacks_truncated() -> None:
    text, _, _ = render(failing_flow(), verbose=True, max_chars=12)
    got = lines(text)
    assert "        prompt: question" in got
    assert "        result: question>fir… (2 more characters)" in got
    assert '        pack k1 = "question>fi… (4 more characters)' in got
    assert any(re.fullmatch(r"      ✔ first #1 ok \S+ \S+ · wrote k1", line) for line in got)
    assert "      prompt: Summarize: q… (7 more characters)" in got
    assert "        reply: a summary" in got
    assert '      prompt: {"question":… (12 more characters)' in got
    error = got.index("    ✖ broken #3 error in exec: ValueError: boom")
    assert re.fullmatch(r"      … \(\d+ earlier characters\)", got[error + 1])
    assert got[-2] == "      ValueError: boom"  # the end of the stack is what matters
    assert got[-1].startswith("✖ run failed")


def test_loops_show_every_execution_and_appends() -> None:
    loop = Loop(3, id="loop")
    loop - "again" >> loop
    text, _, report = render(Flow(loop), verbose=True)
    got = lines(text)
    assert [line.strip()[:10] for line in got if "running" in line] == [
        "● loop #1 ",
        "● loop #2 ",
        "● loop #3 ",
    ]
    assert "    append items += [2]" in got
    assert report["nodes"] == 3


def test_jsonl_mode_prints_each_event_to_stdout(capsys) -> None:
    sink = ConsoleSink(ConsoleOptions(mode="jsonl"))
    result = run_flow(chain(2), [sink])
    sink.close()
    out, err = capsys.readouterr()
    assert err == ""
    events = [json.loads(line) for line in out.splitlines()]
    assert [e["id"] for e in events] == event_ids(result)
    assert events[-1]["payload"]["status"] == "succeeded"


def test_pretty_goes_to_stderr_by_default_and_stdout_on_request(capsys) -> None:
    sink = ConsoleSink(ConsoleOptions())
    run_flow(chain(1), [sink])
    out, err = capsys.readouterr()
    assert out == "" and "✔ n1 #1 ok" in err
    sink = ConsoleSink(ConsoleOptions(stream="stdout", mode="quiet"))
    run_flow(chain(1), [sink])
    out, err = capsys.readouterr()
    assert err == "" and "succeeded" in out


def test_colors_only_when_asked_or_on_a_terminal() -> None:
    plain, _, _ = render(chain(1))
    assert "\x1b[" not in plain
    colored, _, _ = render(chain(1), color="always")
    assert "\x1b[" in colored
    never, _, _ = render(chain(1), color="never")
    assert "\x1b[" not in never


def test_user_text_is_never_read_as_markup() -> None:
    text, _, _ = render(chain(1), verbose=True)
    assert "[bold]" not in text
    out = io.StringIO()
    sink = ConsoleSink(ConsoleOptions(verbose=True, width=120), file=out)
    run_flow(chain(1), [sink], k0="[bold red]not markup[/]")
    assert "prompt: [bold red]not markup[/]" in out.getvalue()


def test_concurrent_runs_are_told_apart() -> None:
    out = io.StringIO()
    sink = ConsoleSink(ConsoleOptions(width=120), file=out)
    events = EventStreamer()
    events.subscribe(sink.handle)
    events.emit_event(StreamEventType.RUN_START, None, run_id="run-aaaaaa")
    events.emit_event(StreamEventType.RUN_START, None, run_id="run-bbbbbb")
    events.emit_event(StreamEventType.LOG, None, run_id="run-aaaaaa")
    got = lines(out.getvalue())
    assert got[1].startswith("[bbbbbb] ▶ run run-bbbbbb")


def test_rendering_failures_are_counted_never_raised() -> None:
    class Exploding:
        def __getattr__(self, name: str) -> Any:
            raise RuntimeError(f"no {name} today")

    out = io.StringIO()
    sink = ConsoleSink(ConsoleOptions(), file=out)
    events = EventStreamer()
    events.subscribe(sink.handle)
    events.emit_event(StreamEventType.RUN_END, Exploding(), run_id="r")
    events.emit_event(StreamEventType.RUN_END, None, run_id="r")
    report = sink.close()
    assert report["dropped"] == {"render_error": 1}
    assert events.get_stats()["handler_errors"] == 0
    assert "✖ run ? in -" in out.getvalue()
