"""``backpackflow inspect FILE.jsonl``: a run's timeline, one node's details, the state at a
commit, read back from what the ``file`` sink wrote.

* ``inspect FILE``: the timeline of a run (each node execution with status, duration, action,
  attempts, tokens and cost, errors with their phase, retries, cache hits, fallbacks,
  guardrails), then the run's status and totals. A file holding several runs shows the
  **latest** one (what you usually just ran) and says how many others there are; ``--run ID``
  picks one (its id or any part of it that is unique), ``--list`` lists them.
* ``--node ID`` (``--step N`` when it ran several times; without it the last execution is
  shown, after a list of all of them): the prompt (``prep_complete.prep_result``), the raw
  result (``exec_complete.exec_result``), reads, writes, the commits it made with their values,
  LLM calls, retries, the error with its stack, timing, and the steps nested in it (an agent's
  tool calls). ``--step N`` alone shows any step, a nested one too (a tool call's arguments,
  result, latency and status). The timeline lists nested steps under their node.
* ``--state-at COMMIT``: the Backpack right after that commit, rebuilt from the events (see
  :mod:`backpackflow_sinks.trace`); values known only by their recorded summary are marked.
* ``--json``: the same information as JSON on stdout, for scripts.

``FILE`` may also be a directory of per-run files; rotated files ``FILE.N`` ... ``FILE.1`` are
read first. Malformed lines are skipped with a warning naming each line (a process killed
mid-write leaves a partial last line, and the rest of the file is still the best record of what
happened); ``--strict`` fails on them instead. A missing file, a file without events, an unknown
run, node, step or commit exit with status 1 and say what is known.
"""

from __future__ import annotations

import argparse
import json
import sys
from datetime import datetime
from decimal import Decimal
from typing import Any

from rich import box
from rich.console import Console, Group, RenderableType
from rich.json import JSON
from rich.panel import Panel
from rich.table import Table
from rich.text import Text

from backpackflow import hookimpl
from backpackflow.jsondata import decimal_text
from backpackflow.plugins import CommandRegistrar, Registry
from backpackflow_sinks._common import decimal_or_none, format_cost, format_ms, tail, truncate
from backpackflow_sinks.trace import (
    RunTrace,
    StateAt,
    Step,
    Trace,
    find_steps,
    load_trace,
    state_at,
)

HELP = "show a run's timeline, a node's details or the state at a commit from a JSONL trace"
STATUS_STYLE = {
    "ok": "green",
    "succeeded": "green",
    "error": "bold red",
    "failed": "bold red",
    "canceled": "yellow",
    "running": "yellow",
    "incomplete": "yellow",
}
MAX_PROBLEMS_SHOWN = 10


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "file", metavar="FILE", help="JSONL trace written by the file sink, or a directory of them"
    )
    parser.add_argument(
        "--run", metavar="RUN_ID", help="run to show: its id or a unique part (default: latest)"
    )
    what = parser.add_mutually_exclusive_group()
    what.add_argument("--list", action="store_true", help="list the runs in the file")
    what.add_argument(
        "--node", metavar="ID", help="details of a node: prompt, raw result, reads, writes, commits"
    )
    what.add_argument(
        "--state-at", metavar="COMMIT", help="the Backpack state right after COMMIT (id or prefix)"
    )
    parser.add_argument(
        "--step",
        type=int,
        metavar="N",
        help="the node execution (or nested step: a tool call) numbered N in the timeline",
    )
    parser.add_argument("--json", action="store_true", help="print JSON instead of tables")
    parser.add_argument(
        "--strict", action="store_true", help="fail on a malformed line instead of skipping it"
    )
    parser.add_argument(
        "--max-chars",
        type=int,
        default=2000,
        metavar="N",
        help="longest prompt, result or value shown (0: no limit; default 2000)",
    )
    parser.add_argument("--width", type=int, metavar="COLUMNS", help="output width")


def command(args: argparse.Namespace, registry: Registry) -> int:
    """Run ``inspect``; errors about the input raise TraceError (exit status 1)."""
    if args.step is not None and (args.list or args.state_at):
        print("backpackflow inspect: --step goes with --node (or alone)", file=sys.stderr)
        return 2
    trace = load_trace(args.file, strict=args.strict)
    _warn_problems(trace)
    out = Console(width=args.width, highlight=False, markup=False, emoji=False)
    if args.list:
        return _emit(
            args, out, {"runs": [r.summary() for r in trace.by_start()]}, _runs_table(trace)
        )
    run = trace.find_run(args.run) if args.run else trace.latest()
    if args.state_at:
        state = state_at(run, args.state_at)
        return _emit(args, out, {"run_id": run.run_id, **state.to_json()}, _state_view(state, args))
    if args.node is not None or args.step is not None:
        steps = find_steps(run, args.node, args.step)
        chosen = steps[-1]
        data = {"run_id": run.run_id, "executions": [s.step for s in steps], **chosen.to_json()}
        return _emit(args, out, data, _node_view(run, steps, chosen, args))
    data = {**run.summary(), "steps": [_step_row_json(s) for _, s in run.tree()]}
    return _emit(args, out, data, _timeline(trace, run))


def _emit(args: argparse.Namespace, out: Console, data: Any, view: RenderableType) -> int:
    if args.json:
        print(json.dumps(data, indent=2, ensure_ascii=False, default=str))
    else:
        out.print(view)
    return 0


def _warn_problems(trace: Trace) -> None:
    if not trace.problems:
        return
    err = Console(stderr=True, highlight=False, markup=False, emoji=False, soft_wrap=True)
    count = len(trace.problems)
    err.print(Text(f"warning: skipped {count} malformed line{'s' if count > 1 else ''}:", "yellow"))
    for problem in trace.problems[:MAX_PROBLEMS_SHOWN]:
        err.print(Text(f"  {problem}"))
    if count > MAX_PROBLEMS_SHOWN:
        err.print(Text(f"  ... and {count - MAX_PROBLEMS_SHOWN} more"))


def _when(timestamp: float | None) -> str:
    if timestamp is None:
        return "-"
    return datetime.fromtimestamp(timestamp).isoformat(sep=" ", timespec="milliseconds")


def _short_when(timestamp: float | None) -> str:
    if timestamp is None:
        return "-"
    return datetime.fromtimestamp(timestamp).strftime("%m-%d %H:%M:%S")


def _styled(status: str) -> Text:
    return Text(status, STATUS_STYLE.get(status, ""))


# ------------------------------------------------------------------------------ runs


def _runs_table(trace: Trace) -> RenderableType:
    table = Table(box=box.SIMPLE_HEAD, pad_edge=False, collapse_padding=True)
    table.add_column("run", no_wrap=True)
    table.add_column("flow", overflow="fold", min_width=6)
    for header in ("started", "status", "nodes", "time"):
        table.add_column(header, no_wrap=True)
    for run in trace.by_start():
        table.add_row(
            run.run_id,
            run.flow_name or "-",
            _short_when(run.started),
            _styled(run.status),
            str(len(run.nodes)),
            format_ms(run.duration_ms),
        )
    return Group(Text(f"Runs in {', '.join(trace.paths)}", "bold"), table)


# ------------------------------------------------------------------------------ timeline


def _step_status(run: RunTrace, step: Step) -> str:
    return "unfinished" if step.status == "running" and run.status != "incomplete" else step.status


def _llm_cell(step: Step) -> str:
    parts = []
    if step.tokens_in or step.tokens_out:
        parts.append(f"{step.tokens_in + step.tokens_out:,} tok")
    if step.cost or step.cost_unknown:
        parts.append(format_cost(step.cost) + ("+?" if step.cost_unknown else ""))
    return " ".join(parts)


def _notes(step: Step) -> Text:
    notes = Text()

    def add(text: str, style: str = "") -> None:
        if notes:
            notes.append("; ")
        notes.append(text, style)

    if step.error is not None:
        e = step.error
        add(f"{e.get('phase')}: {e.get('error_type')}: {e.get('error')}", "red")
    if step.attempts and step.attempts > 1:
        add(f"{step.attempts} attempts", "yellow")
    elif step.retries:
        add(f"{len(step.retries)} retries", "yellow")
    if step.cache_hits:
        add(f"cache hit{'s' if step.cache_hits > 1 else ''}", "green")
    for fb in step.fallbacks:
        add(f"fallback {fb.get('from_model')} → {fb.get('to_model')}", "yellow")
    for guard in step.guardrails:
        add(f"guardrail {guard.get('limit')}", "yellow")
    warnings = [log for log in step.logs if str(log.get("level")).lower() in ("warning", "error")]
    if warnings:
        add(f"{len(warnings)} warning{'s' if len(warnings) > 1 else ''}", "yellow")
    return notes


def _step_row_json(step: Step) -> dict[str, Any]:
    row = {
        "step": step.step,
        "node_id": step.node_id,
        "node_type": step.node_type,
        "namespace": step.namespace,
        "status": step.status,
        "duration_ms": step.duration_ms,
        "action": step.action,
        "attempts": step.attempts,
        "retries": len(step.retries),
        "tokens_input": step.tokens_in,
        "tokens_output": step.tokens_out,
        "cost": decimal_text(step.cost),
        "cache_hits": step.cache_hits,
        "error": step.error,
    }
    if step.parent_step is not None:  # a nested step (a tool call): what it is, under what
        row.update(parent_step=step.parent_step, node_name=step.node_name)
    return row


def _timeline(trace: Trace, run: RunTrace) -> RenderableType:
    parts: list[RenderableType] = []
    others = len(trace.runs) - 1
    head = Text.assemble(("Run ", "bold"), (run.run_id, "bold"))
    if run.flow_name:
        head.append(f" · flow {run.flow_name}")
    head.append(f"\nstarted {_when(run.started)}", "dim")
    parts.append(head)
    if others:
        parts.append(
            Text(
                f"{others} other run{'s' if others > 1 else ''} in this file; showing the "
                "latest. Pick one with --run RUN_ID (see --list).",
                "dim",
            )
        )
    table = Table(box=box.SIMPLE_HEAD, pad_edge=False)
    table.add_column("#", justify="right")
    table.add_column("node", overflow="fold")
    table.add_column("status")
    table.add_column("time", justify="right", no_wrap=True)
    table.add_column("action", overflow="fold")
    table.add_column("llm", no_wrap=True)
    table.add_column("notes", overflow="fold", ratio=1)
    for depth, step in run.tree():
        node = Text()
        if depth:  # a nested step (a tool call), under the step it belongs to
            node.append("  " * (depth - 1) + "└ ", "dim")
        elif step.namespace:
            node.append(f"{step.namespace} › ", "cyan")
        node.append(step.label, "bold" if not depth else "")
        if step.node_type and step.node_type != step.node_id:
            node.append(f" ({step.node_type})", "dim")
        table.add_row(
            str(step.step),
            node,
            _styled(_step_status(run, step)),
            format_ms(step.duration_ms),
            step.action or "",
            _llm_cell(step),
            _notes(step),
        )
    parts.append(table)
    for guard in run.guardrails:  # those of a node are in its notes
        parts.append(Text(f"⚠ guardrail {guard.get('limit')}: {guard.get('message')}", "yellow"))
    parts.append(_run_summary(run))
    return Group(*parts)


def _run_summary(run: RunTrace) -> Text:
    status = run.status
    line = Text()
    line.append(f"Run {status}", STATUS_STYLE.get(status, "bold"))
    if status == "incomplete":
        unfinished = sum(1 for s in run.nodes if s.status == "running")
        line.append(
            f": no run_end recorded (the process stopped or the file was cut); last event "
            f"{_when(run.last_timestamp)} · {format_ms(run.duration_ms)} recorded · "
            f"{len(run.nodes)} nodes started, {unfinished} unfinished"
        )
    else:
        end = run.end or {}
        line.append(
            f" in {format_ms(run.duration_ms)} · {end.get('node_count', len(run.nodes))} nodes"
        )
        if end.get("action"):
            line.append(f" · action {end['action']}")
    errors = run.errors
    if errors:
        line.append(f" · {len(errors)} error{'s' if len(errors) > 1 else ''}", "red")
    end = run.end or {}
    if end.get("error"):
        line.append(f" · {end.get('error_type')}: {end.get('error')}", "red")
    totals = run.totals()
    if totals["total_tokens"]:
        line.append(
            f"\nTokens {totals['total_tokens']:,} ({totals['tokens_input']:,} in / "
            f"{totals['tokens_output']:,} out)"
        )
    cost = decimal_or_none(totals["cost"])
    if cost or totals["cost_unknown"]:
        line.append(
            f"{' · ' if totals['total_tokens'] else chr(10)}Cost {format_cost(cost or Decimal(0))}"
        )
        if totals["cost_unknown"]:
            line.append(" + calls of unknown cost")
    return line


# ------------------------------------------------------------------------------ one node


def _value(value: Any, limit: int) -> RenderableType:
    """A prompt, result or value: text as text, anything else as JSON, cut to ``limit``."""
    if isinstance(value, str):
        return Text(truncate(value, limit))
    text = json.dumps(value, indent=2, ensure_ascii=False, default=str)
    if 0 < limit < len(text):
        return Text(truncate(text, limit))
    return JSON(text, highlight=False)


def _node_view(
    run: RunTrace, steps: list[Step], step: Step, args: argparse.Namespace
) -> RenderableType:
    limit = args.max_chars
    parts: list[RenderableType] = []
    if len(steps) > 1:
        listing = Table(
            title=Text(f"Node {step.node_id} ran {len(steps)} times"), box=box.SIMPLE_HEAD
        )
        for header in ("step", "status", "time", "action"):
            listing.add_column(header)
        for s in steps:
            listing.add_row(
                str(s.step), _styled(_step_status(run, s)), format_ms(s.duration_ms), s.action or ""
            )
        parts.append(listing)
        parts.append(Text(f"Showing step {step.step}; pick another with --step N.", "dim"))
    nested = step.parent_step is not None
    title = Text.assemble(("Tool " if nested else "Node ", "bold"), (step.label, "bold"))
    if step.node_type and not nested:
        title.append(f" ({step.node_type})")
    title.append(f" · step {step.step} of run {run.run_id}")
    if nested:
        title.append(f", nested in step {step.parent_step} (node {step.node_id})")
    parts.append(title)
    facts = Table.grid(padding=(0, 2))
    facts.add_column(style="dim")
    facts.add_column(overflow="fold")
    if step.namespace:
        facts.add_row("namespace", step.namespace)
    facts.add_row("status", _styled(_step_status(run, step)))
    timing = f"{format_ms(step.duration_ms)} total"
    if step.exec_ms is not None:
        timing += f", exec {format_ms(step.exec_ms)}"
    if step.attempts is not None:
        timing += f", {step.attempts} attempt{'s' if step.attempts != 1 else ''}"
    facts.add_row("time", timing)
    facts.add_row("started", _when(step.started))
    facts.add_row("ended", _when(step.ended))
    if step.action is not None:
        facts.add_row("action", step.action)
    facts.add_row("reads", _reads(step))
    facts.add_row("writes", ", ".join(step.writes) if step.writes else "-")
    if step.params:
        facts.add_row(
            "arguments" if nested else "params",
            json.dumps(step.params, ensure_ascii=False, default=str),
        )
    if step.tokens_in or step.tokens_out or step.cost_unknown or step.cost:
        facts.add_row(
            "llm",
            f"{step.tokens_in:,} in / {step.tokens_out:,} out tokens · "
            f"{format_cost(step.cost)}{' + unknown' if step.cost_unknown else ''}",
        )
    if step.cache_hits:
        facts.add_row("cache hits", str(step.cache_hits))
    parts.append(facts)
    if step.has_prep:
        parts.append(
            Panel(
                _value(step.prep_result, limit),
                title=Text("prompt (prep_complete.prep_result)"),
                title_align="left",
                box=box.ROUNDED,
            )
        )
    if step.has_exec:
        parts.append(
            Panel(
                _value(step.exec_result, limit),
                title=Text(
                    "result (tool_response.result)"
                    if nested
                    else "raw result (exec_complete.exec_result)"
                ),
                title_align="left",
                box=box.ROUNDED,
            )
        )
    children = run.children(step)
    if children:
        parts.append(_children_table(run, children))
    if step.packs:
        parts.append(_commits_table(step, limit))
    for call in step.llm_calls:
        cost = decimal_or_none(call.get("cost"))
        parts.append(
            Text(
                f"llm {call.get('provider')}/{call.get('model')}"
                f" · {format_ms(call.get('latency_ms'))}"
                f" · {format_cost(cost) if cost is not None else 'cost unknown'}"
                f" · finish {call.get('finish_reason')}"
            )
        )
    for retry in step.retries:
        parts.append(
            Text(
                f"retry after attempt {retry.get('attempt')}: {retry.get('error_type')}: "
                f"{retry.get('error')} (waited {retry.get('delay_s')} s)",
                "yellow",
            )
        )
    for fb in step.fallbacks:
        parts.append(
            Text(
                f"fallback {fb.get('from_provider')}/{fb.get('from_model')} → "
                f"{fb.get('to_provider')}/{fb.get('to_model')}: {fb.get('reason')}",
                "yellow",
            )
        )
    for guard in step.guardrails:
        parts.append(Text(f"guardrail {guard.get('limit')}: {guard.get('message')}", "yellow"))
    for log in step.logs:
        parts.append(Text(f"log {log.get('level')}: {log.get('message')}", "dim"))
    if step.error is not None:
        e = step.error
        body = Text(f"{e.get('error_type')}: {e.get('error')}", "bold red")
        if isinstance(e.get("stack"), str):
            body.append("\n\n" + tail(e["stack"].rstrip(), limit * 4), "dim")
        parts.append(
            Panel(
                body,
                title=Text(f"error in {e.get('phase')}"),
                title_align="left",
                border_style="red",
                box=box.ROUNDED,
            )
        )
    return Group(*parts)


def _children_table(run: RunTrace, children: list[Step]) -> Table:
    """The steps nested in a node's execution (its tool calls): see one with --step N."""
    table = Table(
        title=Text(f"{len(children)} nested step{'s' if len(children) > 1 else ''} (--step N)"),
        title_justify="left",
        box=box.SIMPLE_HEAD,
    )
    for header in ("step", "tool", "status", "time", "arguments"):
        table.add_column(header, overflow="fold")
    for s in children:
        table.add_row(
            str(s.step),
            s.label,
            _styled(_step_status(run, s)),
            format_ms(s.duration_ms),
            truncate(json.dumps(s.params, ensure_ascii=False, default=str), 80),
        )
    return table


def _commits_table(step: Step, limit: int) -> Table:
    table = Table(title=Text("Backpack commits"), title_justify="left", box=box.SIMPLE_HEAD)
    table.add_column("commit", no_wrap=True)
    for header in ("key", "op", "version"):
        table.add_column(header, overflow="fold")
    table.add_column("value", overflow="fold", ratio=1)
    for event in step.packs:
        p = event.get("payload") or {}
        if p.get("access_granted") is False:
            value = Text(f"denied: {p.get('reason')}", "yellow")
        elif p.get("op") == "delete":
            value = Text("-")
        elif "value" in p:
            text = json.dumps(p["value"], ensure_ascii=False, default=str)
            value = Text(truncate(text, limit))
        else:
            value = Text.assemble(str(p.get("value_summary")), (" (summary)", "yellow"))
        table.add_row(
            str(p.get("commit_id") or "-"),
            str(p.get("key")),
            str(p.get("op")),
            str(p.get("version")),
            value,
        )
    return table


# ------------------------------------------------------------------------------ state at


def _state_view(state: StateAt, args: argparse.Namespace) -> RenderableType:
    p = state.commit.get("payload") or {}
    head = Text.assemble(("State at commit ", "bold"), (str(p.get("commit_id")), "bold"))
    head.append(
        f"\n{p.get('op')} {p.get('key')!s} (version {p.get('version')}) by node "
        f"{state.commit.get('node_id')} at step {state.commit.get('step')}, "
        f"{_when(state.commit.get('timestamp'))}"
    )
    head.append(f"\nbase: {state.base}", "dim")
    table = Table(box=box.SIMPLE_HEAD)
    table.add_column("key", no_wrap=True)
    table.add_column("value", overflow="fold", ratio=1)
    table.add_column("known as", overflow="fold")
    for key, value in state.values.items():
        if value.exact:
            shown: Text = Text(
                truncate(json.dumps(value.value, ensure_ascii=False, default=str), args.max_chars)
            )
            known = Text("exact", "green")
        else:
            shown = Text(truncate(str(value.value), args.max_chars))
            known = Text("summary only", "yellow")
        table.add_row(key, shown, Text.assemble(known, (f"\n{value.source}", "dim")))
    parts: list[RenderableType] = [head, table]
    inexact = [k for k, v in state.values.items() if not v.exact]
    if not state.base_known:
        parts.append(
            Text(
                "The state before this commit was not recorded (no node_start or error event "
                "before it): keys packed earlier may be missing.",
                "yellow",
            )
        )
    if inexact:
        parts.append(
            Text(
                f"{len(inexact)} value{'s are' if len(inexact) > 1 else ' is'} only a summary "
                f"({', '.join(inexact)}): the file recorded truncated summaries. Write traces with "
                "the file sink option values=full to rebuild states exactly.",
                "yellow",
            )
        )
    return Group(*parts)


@hookimpl
def backpackflow_register_commands(cli: CommandRegistrar) -> None:
    cli.add("inspect", command, help=HELP, arguments=configure)


#: What the entry point names ("<module>:plugin [extra]"): this module itself.
plugin = sys.modules[__name__]


def _reads(step: Step) -> str:
    """The keys a node read, each read through a mapping with the name it read it as:
    ``search_results (as data_to_analyze), q``."""
    if not step.reads:
        return "-"
    return ", ".join(
        f"{key} (as {step.read_as[key]})" if key in step.read_as else key for key in step.reads
    )
