"""The ``console`` sink: a readable live trace of runs, printed line by line with rich.

Modes (shorthand ``console:MODE``):

* ``pretty`` (default): nodes grouped under their namespace, each with a start line and an end
  line (status, duration, action, attempts, tokens and cost of its LLM calls, cache hits),
  retries, fallbacks, guardrails, warnings and errors (phase, type, message) as they happen;
* ``quiet``: only errors, guardrails and the end of each run;
* ``jsonl``: one ``event.to_json()`` per line, for piping into ``jq`` and friends.

``verbose=true`` adds each node's prompt (``prep_complete.prep_result``), raw result
(``exec_complete.exec_result``), Backpack writes and error stacks, each cut to ``max_chars``.

Where it writes (``stream``): ``auto`` sends ``pretty`` and ``quiet`` to **stderr** (a trace is
diagnostics; stdout stays free for what the command prints) and ``jsonl`` to **stdout** (data
meant for a pipe). Tests and embedders pass any text file object as ``ConsoleSink(options,
file=...)``. Lines are printed as events arrive with ``Console.print``: no ``Live`` display, so
nothing flickers and the output is the same in a terminal, a pipe or a CI log.
"""

from __future__ import annotations

import json
import sys
import threading
from collections.abc import Callable
from decimal import Decimal
from typing import IO, Any, Literal

import attrs
from rich.console import Console
from rich.padding import Padding
from rich.text import Text

from backpackflow import hookimpl
from backpackflow.events import BackpackEvent, StreamEventType
from backpackflow.jsondata import to_jsonable
from backpackflow.plugins import EventSinkRegistrar
from backpackflow.policy import SandboxPolicy
from backpackflow_sinks._common import (
    OnceLog,
    SinkConfigError,
    check_choice,
    check_positive,
    check_type,
    decimal_or_none,
    format_cost,
    format_ms,
    tail,
    truncate,
    usage_tokens,
)

SINK = "console"
T = StreamEventType


@attrs.frozen(kw_only=True)
class ConsoleOptions:
    """Options of the ``console`` sink (shorthand ``console:MODE``)."""

    #: "pretty": the live trace; "quiet": errors, guardrails, run ends; "jsonl": raw events.
    mode: Literal["pretty", "quiet", "jsonl"] = "pretty"
    #: Also show prompts, raw results, Backpack writes and error stacks.
    verbose: bool = False
    #: Longest prompt / result / value shown, in characters (0: everything).
    max_chars: int = 500
    #: "auto": stderr for pretty and quiet, stdout for jsonl.
    stream: Literal["auto", "stdout", "stderr"] = "auto"
    #: "auto": colors on terminals only (and never with NO_COLOR set).
    color: Literal["auto", "always", "never"] = "auto"
    #: Line width (None: the terminal's, 80 elsewhere).
    width: int | None = None


class _Step:
    """What the end line of one node execution sums up."""

    __slots__ = (
        "attempts",
        "cache_hits",
        "cost",
        "cost_unknown",
        "indent",
        "tokens_in",
        "tokens_out",
    )

    def __init__(self, indent: int) -> None:
        self.indent = indent
        self.attempts = 1
        self.tokens_in = 0
        self.tokens_out = 0
        self.cost = Decimal(0)
        self.cost_unknown = False
        self.cache_hits = 0


class _Run:
    __slots__ = ("namespace", "steps")

    def __init__(self) -> None:
        self.namespace: list[str] = []  # the namespace path whose headers were printed last
        self.steps: dict[int, _Step] = {}


STYLE_OK = "green"
STYLE_ERROR = "bold red"
STYLE_WARN = "yellow"
STYLE_DIM = "dim"
STYLE_NS = "cyan"


class ConsoleSink:
    """Prints events as they arrive (see the module docstring). Thread-safe."""

    def __init__(
        self,
        options: ConsoleOptions,
        *,
        file: IO[str] | None = None,
        policy: SandboxPolicy | None = None,
    ) -> None:
        # ``policy``: nothing to restrict, the sink only prints to this process's terminal
        _validate(options)
        self.options = options
        self._mode = options.mode
        self._verbose = options.verbose
        stream = options.stream
        if stream == "auto":
            stream = "stdout" if options.mode == "jsonl" else "stderr"
        self.console = Console(
            file=file,
            stderr=stream == "stderr",
            width=options.width,
            force_terminal=True if options.color == "always" else None,
            no_color=True if options.color == "never" else None,
            color_system=None if options.color == "never" else "auto",
            markup=False,
            emoji=False,
            highlight=False,
        )
        self._lock = threading.Lock()
        self._runs: dict[str | None, _Run] = {}
        self._counts = {"events": 0, "runs": 0, "nodes": 0, "errors": 0, "guardrails": 0}
        self._render_errors = 0
        self._log = OnceLog(SINK)
        self._handlers: dict[str, Callable[[BackpackEvent], None]] = self._dispatch()

    def _dispatch(self) -> dict[str, Callable[[BackpackEvent], None]]:
        if self._mode == "jsonl":
            return {}
        quiet: dict[str, Callable[[BackpackEvent], None]] = {
            T.NODE_START: self._count_node,
            T.ERROR: self._on_error,
            T.GUARDRAIL: self._on_guardrail,
            T.RUN_END: self._on_run_end,
        }
        if self._mode == "quiet":
            return quiet
        handlers: dict[str, Callable[[BackpackEvent], None]] = {
            **quiet,
            T.RUN_START: self._on_run_start,
            T.NODE_START: self._on_node_start,
            T.EXEC_COMPLETE: self._on_exec_complete,
            T.NODE_END: self._on_node_end,
            T.RETRY: self._on_retry,
            T.LLM_RESPONSE: self._on_llm_response,
            T.CACHE_HIT: self._on_cache_hit,
            T.FALLBACK: self._on_fallback,
            T.TOOL_RESPONSE: self._on_tool_response,
            T.LOG: self._on_log,
        }
        if self._verbose:
            handlers.update(
                {
                    T.PREP_COMPLETE: self._on_prep_complete,
                    T.BACKPACK_PACK: self._on_pack,
                    T.TOOL_CALL: self._on_tool_call,
                    T.TOOL_REQUEST: self._on_tool_call,
                    T.LLM_REQUEST: self._on_llm_request,
                    T.CUSTOM: self._on_custom,
                }
            )
        return handlers

    # -------------------------------------------------------------- EventSink

    def handle(self, event: BackpackEvent) -> None:
        """Render ``event``; never raises (a rendering failure is counted and logged once)."""
        with self._lock:
            self._counts["events"] += 1
            try:
                if self._mode == "jsonl":
                    out = self.console.file  # resolved per call: sys.stdout may be replaced
                    out.write(event.to_json_str() + "\n")
                    out.flush()
                    return
                handler = self._handlers.get(event.type)
                if handler is not None:
                    handler(event)
            except Exception as exc:  # noqa: BLE001 - a sink never breaks the run it observes
                self._render_errors += 1
                self._log.error(f"could not render a {event.type} event", exc)

    def close(self) -> dict[str, Any]:
        """Nothing is buffered; returns what was shown."""
        with self._lock:
            try:
                self.console.file.flush()
            except (OSError, ValueError):
                pass
            return {
                "sink": SINK,
                "mode": self._mode,
                **self._counts,
                "dropped": {"render_error": self._render_errors},
            }

    # -------------------------------------------------------------- printing

    def _print(self, event: BackpackEvent, indent: int, *parts: str | tuple[str, str]) -> None:
        text = Text.assemble(*parts)
        if len(self._runs) > 1 and event.run_id:  # interleaved runs: say whose line it is
            text = Text.assemble((f"[{event.run_id[-6:]}] ", STYLE_DIM), text)
        self.console.print(Padding(text, (0, 0, 0, indent), expand=False) if indent else text)

    def _run(self, event: BackpackEvent) -> _Run:
        run = self._runs.get(event.run_id)
        if run is None:
            run = self._runs[event.run_id] = _Run()
        return run

    def _step(self, event: BackpackEvent) -> _Step:
        run = self._run(event)
        step = run.steps.get(event.step or 0)
        if step is None:  # an event of a node whose start we did not see
            step = run.steps[event.step or 0] = _Step(2 + 2 * len(run.namespace))
        return step

    def _indent(self, event: BackpackEvent) -> int:
        """Indentation of a detail line: under its node (a nested step's, such as a tool call,
        under the node it is nested in), or under the run."""
        run = self._runs.get(event.run_id)
        if run is not None:
            step = event.step if event.parent_step is None else event.parent_step
            if step is not None and step in run.steps:
                return run.steps[step].indent + 2
        return 2

    def _preview(self, value: Any) -> str:
        if not isinstance(value, str):
            value = json.dumps(to_jsonable(value), ensure_ascii=False, default=repr)
        return truncate(value, self.options.max_chars)

    @staticmethod
    def _who(event: BackpackEvent) -> str:
        node = event.node_id or "?"
        return f"{node} #{event.step}" if event.step is not None else node

    # -------------------------------------------------------------- runs

    def _on_run_start(self, event: BackpackEvent) -> None:
        self._run(event)
        flow = getattr(event.payload, "flow_name", "?")
        self._print(event, 0, ("▶ run ", "bold"), (str(event.run_id), "bold"), f" · flow {flow}")

    def _on_run_end(self, event: BackpackEvent) -> None:
        p = event.payload
        status = str(getattr(p, "status", "?"))
        icon, style = {"succeeded": ("✔", STYLE_OK), "canceled": ("⊘", STYLE_WARN)}.get(
            status, ("✖", STYLE_ERROR)
        )
        who = f" {event.run_id}" if self._mode != "pretty" else ""  # no start line to say it
        parts: list[str | tuple[str, str]] = [(f"{icon} run{who} {status}", style)]
        parts.append(f" in {format_ms(getattr(p, 'duration_ms', None))}")
        parts.append(f" · {getattr(p, 'node_count', '?')} nodes")
        if getattr(p, "action", None):
            parts.append(f" · action {p.action}")
        totals = to_jsonable(getattr(p, "totals", None))
        if isinstance(totals, dict):
            tokens = totals.get("total_tokens")
            if isinstance(tokens, int) and tokens:
                parts.append(f" · {tokens:,} tokens")
            cost = decimal_or_none(totals.get("cost"))
            if cost:
                parts.append(f" · {format_cost(cost)}")
        if getattr(p, "error", None):
            parts.append((f" · {p.error_type}: {p.error}", style))
        self._print(event, 0, *parts)
        if self._mode != "quiet":
            self.console.print()
        self._runs.pop(event.run_id, None)
        self._counts["runs"] += 1

    def _on_guardrail(self, event: BackpackEvent) -> None:
        self._counts["guardrails"] += 1
        p = event.payload
        limit = getattr(p, "limit", "?")
        message = getattr(p, "message", "")
        self._print(event, self._indent(event), (f"⚠ guardrail {limit}: ", STYLE_WARN), message)

    # -------------------------------------------------------------- nodes

    def _count_node(self, event: BackpackEvent) -> None:
        self._counts["nodes"] += 1

    def _on_node_start(self, event: BackpackEvent) -> None:
        self._counts["nodes"] += 1
        run = self._run(event)
        segments = event.namespace.split(".") if event.namespace else []
        common = 0
        while (
            common < min(len(segments), len(run.namespace))
            and segments[common] == run.namespace[common]
        ):
            common += 1
        for depth in range(common, len(segments)):  # headers of the namespaces we enter
            self._print(event, 2 + 2 * depth, (segments[depth], STYLE_NS))
        run.namespace = segments
        indent = 2 + 2 * len(segments)
        run.steps[event.step or 0] = _Step(indent)
        p = event.payload
        kind = getattr(p, "node_type", None) or getattr(p, "node_name", None)
        label = f" ({kind})" if kind and kind != event.node_id else ""
        self._print(
            event,
            indent,
            ("● ", STYLE_DIM),
            (self._who(event), "bold"),
            label,
            (" running", STYLE_DIM),
        )

    def _on_prep_complete(self, event: BackpackEvent) -> None:
        value = getattr(event.payload, "prep_result", None)
        self._print(event, self._indent(event), ("prompt: ", STYLE_DIM), self._preview(value))

    def _on_exec_complete(self, event: BackpackEvent) -> None:
        attempts = getattr(event.payload, "attempts", 1)
        self._step(event).attempts = attempts if isinstance(attempts, int) else 1
        if self._verbose:
            value = getattr(event.payload, "exec_result", None)
            self._print(event, self._indent(event), ("result: ", STYLE_DIM), self._preview(value))

    def _on_node_end(self, event: BackpackEvent) -> None:
        p = event.payload
        run = self._run(event)
        step = run.steps.pop(event.step or 0, None) or _Step(2 + 2 * len(run.namespace))
        parts: list[str | tuple[str, str]] = [
            ("✔ ", STYLE_OK),
            (self._who(event), "bold"),
            (" ok", STYLE_OK),
            f" {format_ms(getattr(p, 'duration_ms', None))}",
        ]
        action = getattr(p, "action", None)
        if action is not None:
            parts.append(f" → {action}")
        if step.attempts > 1:
            parts.append((f" · {step.attempts} attempts", STYLE_WARN))
        if step.tokens_in or step.tokens_out:
            parts.append(f" · {step.tokens_in:,} in / {step.tokens_out:,} out tokens")
        if step.cost or step.cost_unknown:
            parts.append(f" · {format_cost(step.cost)}{'+?' if step.cost_unknown else ''}")
        if step.cache_hits:
            parts.append(f" · {step.cache_hits} cache hit{'s' if step.cache_hits > 1 else ''}")
        writes = getattr(p, "writes", None)
        if self._verbose and writes:
            parts.append((f" · wrote {', '.join(map(str, writes))}", STYLE_DIM))
        self._print(event, step.indent, *parts)

    def _on_error(self, event: BackpackEvent) -> None:
        self._counts["errors"] += 1
        p = event.payload
        run = self._runs.get(event.run_id)
        step = run.steps.pop(event.step or 0, None) if run is not None else None
        indent = step.indent if step is not None else 2
        if self._mode == "quiet":
            indent = 0
        parts: list[str | tuple[str, str]] = [
            ("✖ ", STYLE_ERROR),
            (self._who(event), "bold"),
            (f" error in {getattr(p, 'phase', '?')}: ", STYLE_ERROR),
            f"{getattr(p, 'error_type', 'Error')}: {getattr(p, 'error', '')}",
        ]
        if self._mode == "quiet" and event.namespace:
            parts.insert(2, (f" [{event.namespace}]", STYLE_NS))
        self._print(event, indent, *parts)
        stack = getattr(p, "stack", None)
        if self._verbose and isinstance(stack, str):
            text = tail(stack.rstrip(), self.options.max_chars * 4)
            self._print(event, indent + 2, (text, STYLE_DIM))

    def _on_retry(self, event: BackpackEvent) -> None:
        p = event.payload
        where = f" {p.provider}/{p.model}" if getattr(p, "provider", None) else ""
        self._print(
            event,
            self._indent(event),
            (f"↻ retry after attempt {getattr(p, 'attempt', '?')}{where}: ", STYLE_WARN),
            f"{getattr(p, 'error_type', 'Error')}: {getattr(p, 'error', '')}",
            (f" (waiting {getattr(p, 'delay_s', 0):.2f} s)", STYLE_DIM),
        )

    # -------------------------------------------------------------- LLM work

    def _on_llm_request(self, event: BackpackEvent) -> None:
        p = event.payload
        self._print(
            event,
            self._indent(event),
            ("◇ llm request ", STYLE_DIM),
            f"{getattr(p, 'provider', '?')}/{getattr(p, 'model', '?')}",
            (" messages: ", STYLE_DIM),
            self._preview(getattr(p, "messages", None)),
        )

    def _on_llm_response(self, event: BackpackEvent) -> None:
        p = event.payload
        tin, tout = usage_tokens(to_jsonable(getattr(p, "usage", None)))
        cost = decimal_or_none(getattr(p, "cost", None))
        known = bool(getattr(p, "cost_known", True)) and cost is not None
        if event.step is not None:
            step = self._step(event)
            step.tokens_in += tin
            step.tokens_out += tout
            if known and cost is not None:
                step.cost += cost
            else:
                step.cost_unknown = True
        parts: list[str | tuple[str, str]] = [
            ("◇ llm ", STYLE_DIM),
            f"{getattr(p, 'provider', '?')}/{getattr(p, 'model', '?')}",
            f" · {tin:,} in / {tout:,} out tokens",
            f" · {format_cost(cost) if known and cost is not None else 'cost unknown'}",
            f" · {format_ms(getattr(p, 'latency_ms', None))}",
        ]
        if getattr(p, "finish_reason", None) not in (None, "stop", "end_turn"):
            parts.append((f" · finish {p.finish_reason}", STYLE_WARN))
        self._print(event, self._indent(event), *parts)
        if self._verbose:
            text = self._preview(getattr(p, "text", ""))
            self._print(event, self._indent(event) + 2, ("reply: ", STYLE_DIM), text)

    def _on_cache_hit(self, event: BackpackEvent) -> None:
        p = event.payload
        if event.step is not None:
            self._step(event).cache_hits += 1
        saved = decimal_or_none(getattr(p, "cost_saved", None))
        note = f" · saved {format_cost(saved)}" if saved else ""
        self._print(event, self._indent(event), ("◇ cache hit", STYLE_OK), note)

    def _on_fallback(self, event: BackpackEvent) -> None:
        p = event.payload
        self._print(
            event,
            self._indent(event),
            ("⇢ fallback ", STYLE_WARN),
            f"{getattr(p, 'from_provider', '?')}/{getattr(p, 'from_model', '?')} → "
            f"{getattr(p, 'to_provider', '?')}/{getattr(p, 'to_model', '?')}",
            (f": {getattr(p, 'reason', '')}", STYLE_DIM),
        )

    def _on_tool_call(self, event: BackpackEvent) -> None:
        p = event.payload
        self._print(
            event,
            self._indent(event),
            ("⚙ tool ", STYLE_DIM),
            str(getattr(p, "tool", "?")),
            (self._nested(event), STYLE_DIM),
            (" arguments: ", STYLE_DIM),
            self._preview(getattr(p, "arguments", None)),
        )

    @staticmethod
    def _nested(event: BackpackEvent) -> str:
        """`` #N`` for a tool call that is a nested step of its own (an agent's)."""
        return f" #{event.step}" if event.parent_step is not None else ""

    def _on_tool_response(self, event: BackpackEvent) -> None:
        p = event.payload
        error = getattr(p, "error", None)
        parts: list[str | tuple[str, str]] = [
            ("⚙ tool ", STYLE_DIM),
            str(getattr(p, "tool", "?")),
            (self._nested(event), STYLE_DIM),
            f" {format_ms(getattr(p, 'duration_ms', None))}",
        ]
        if error:
            parts.append((f" failed: {error}", STYLE_ERROR))
        elif self._verbose:
            parts.extend([(" result: ", STYLE_DIM), self._preview(getattr(p, "result", None))])
        self._print(event, self._indent(event), *parts)

    # -------------------------------------------------------------- the rest

    def _on_log(self, event: BackpackEvent) -> None:
        p = event.payload
        level = str(getattr(p, "level", "info")).lower()
        loud = level in ("warning", "warn", "error", "critical")
        if not (loud or self._verbose):
            return
        style = STYLE_ERROR if level in ("error", "critical") else STYLE_WARN if loud else STYLE_DIM
        self._print(
            event, self._indent(event), (f"! {level}: ", style), str(getattr(p, "message", ""))
        )

    def _on_pack(self, event: BackpackEvent) -> None:
        p = event.payload
        op = getattr(p, "op", "pack")
        key = str(getattr(p, "key", "?"))
        if not getattr(p, "access_granted", True):
            self._print(event, self._indent(event), (f"{op} {key} denied: {p.reason}", STYLE_WARN))
            return
        if op == "delete":
            self._print(event, self._indent(event), ("delete ", STYLE_DIM), key)
            return
        sign = "+=" if op == "append" else "="
        summary = truncate(str(getattr(p, "value_summary", "")), self.options.max_chars)
        self._print(event, self._indent(event), (f"{op} ", STYLE_DIM), key, f" {sign} ", summary)

    def _on_custom(self, event: BackpackEvent) -> None:
        self._print(
            event, self._indent(event), ("custom ", STYLE_DIM), self._preview(event.payload)
        )


def _validate(options: ConsoleOptions) -> None:
    check_choice(SINK, "mode", options.mode, ("pretty", "quiet", "jsonl"))
    check_type(SINK, "verbose", options.verbose, bool)
    check_type(SINK, "max_chars", options.max_chars, int)
    check_positive(SINK, "max_chars", options.max_chars, allow_zero=True)
    check_choice(SINK, "stream", options.stream, ("auto", "stdout", "stderr"))
    check_choice(SINK, "color", options.color, ("auto", "always", "never"))
    if options.width is not None:
        check_type(SINK, "width", options.width, int)
        if options.width < 20:
            raise SinkConfigError(
                SINK, "width", f"must be at least 20 columns, got {options.width}"
            )


@hookimpl
def backpackflow_register_event_sinks(register: EventSinkRegistrar) -> None:
    register(
        SINK,
        ConsoleSink,
        options=ConsoleOptions,
        shorthand="mode",
        description="live trace on the terminal: pretty, quiet or jsonl; verbose shows prompts",
    )


#: What the entry point names ("<module>:plugin [extra]"): this module itself.
plugin = sys.modules[__name__]
