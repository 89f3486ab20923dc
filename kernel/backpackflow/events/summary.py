"""Per-step and per-run figures derived from a run's events: what the ``run`` command prints at
the end (status, tokens, cost, latency and cache hits per step; run totals). Nested steps (an
agent's tool calls: events with ``parent_step``) are listed under the step they belong to.

Costs are exact: step costs are summed from the ``llm_response`` events' decimal strings, and
the run total is the sum of the steps, to the last digit.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from decimal import Decimal
from typing import Any

import attrs

from backpackflow.events.types import BackpackEvent
from backpackflow.jsondata import decimal_text


@attrs.define
class StepSummary:
    step: int
    node_id: str
    node_name: str
    node_type: str
    status: str = "running"  # running | succeeded | failed | canceled | paused
    latency_ms: float | None = None
    tokens_input: int = 0
    tokens_output: int = 0
    cost: Decimal = Decimal(0)
    cost_known: bool = True
    cache_hit: bool = False
    cost_saved: Decimal = Decimal(0)
    retries: int = 0
    fallbacks: int = 0
    action: str | None = None
    error: str | None = None
    #: The step this one is nested in (a tool call of an agent), else ``None``.
    parent_step: int | None = None
    #: What the model said when it refused (``llm_response.refusal``; the node's action is
    #: then ``refused``), else ``None``.
    refusal: str | None = None


@attrs.define
class RunSummary:
    run_id: str | None = None
    flow_name: str | None = None
    status: str = "running"
    duration_ms: float | None = None
    error: str | None = None
    steps: list[StepSummary] = attrs.field(factory=list)

    @property
    def tokens_input(self) -> int:
        return sum(s.tokens_input for s in self.steps)

    @property
    def tokens_output(self) -> int:
        return sum(s.tokens_output for s in self.steps)

    @property
    def cost(self) -> Decimal:
        return sum((s.cost for s in self.steps), Decimal(0))

    @property
    def cost_saved(self) -> Decimal:
        return sum((s.cost_saved for s in self.steps), Decimal(0))

    @property
    def cache_hits(self) -> int:
        return sum(1 for s in self.steps if s.cache_hit)

    @property
    def node_steps(self) -> list[StepSummary]:
        """The node executions (the steps not nested in another)."""
        return [s for s in self.steps if s.parent_step is None]


def _as_json(event: BackpackEvent | Mapping[str, Any]) -> Mapping[str, Any]:
    return event.to_json() if isinstance(event, BackpackEvent) else event


def summarize(events: Iterable[BackpackEvent | Mapping[str, Any]]) -> RunSummary:
    """The summary of one run from its events (event objects or their JSON)."""
    summary = RunSummary()
    steps: dict[int, StepSummary] = {}
    for raw in events:
        event = _as_json(raw)
        kind = event.get("type")
        payload = event.get("payload") or {}
        step_no = event.get("step")
        if kind == "run_start":
            summary.run_id = event.get("run_id")
            summary.flow_name = payload.get("flow_name")
            continue
        if kind == "run_end":
            summary.status = payload.get("status", summary.status)
            summary.duration_ms = payload.get("duration_ms")
            summary.error = payload.get("error")
            continue
        if step_no is None:
            continue
        if kind == "node_start":
            steps[step_no] = StepSummary(
                step_no,
                event.get("node_id") or "?",
                event.get("node_name") or "?",
                payload.get("node_type") or "?",
            )
            continue
        parent = event.get("parent_step")
        if kind == "tool_request" and parent is not None:  # opens a nested step: a tool call
            steps[step_no] = StepSummary(
                step_no,
                event.get("node_id") or "?",
                str(payload.get("tool") or event.get("node_name") or "?"),
                "tool",
                parent_step=parent,
            )
            continue
        step = steps.get(step_no)
        if step is None:
            continue
        if kind == "tool_response" and parent is not None:
            error = payload.get("error")
            step.status, step.error = ("failed", str(error)) if error else ("succeeded", None)
            step.latency_ms = payload.get("duration_ms")
        elif kind == "node_end":
            step.status, step.action = "succeeded", payload.get("action")
            step.latency_ms = payload.get("duration_ms")
        elif kind == "error":
            # a step stopped by a cancel (the run's, or its task's) did not fail
            canceled = payload.get("error_type") in ("CancelledError", "RunCanceled")
            step.status, step.error = "canceled" if canceled else "failed", payload.get("error")
        elif kind == "custom" and payload.get("name") == "interrupt":
            step.status = "paused"  # it asked for an answer; on resume it runs again
        elif kind == "llm_response":
            usage = payload.get("usage") or {}
            step.tokens_input += int(usage.get("input_tokens") or 0)
            step.tokens_output += int(usage.get("output_tokens") or 0)
            step.cost += Decimal(str(payload.get("cost") or "0"))
            step.cost_known = step.cost_known and bool(payload.get("cost_known", True))
            if payload.get("refusal") is not None:
                step.refusal = str(payload["refusal"])
        elif kind == "cache_hit":
            step.cache_hit = True
            step.cost_saved += Decimal(str(payload.get("cost_saved") or "0"))
        elif kind == "retry":
            step.retries += 1
        elif kind == "fallback":
            step.fallbacks += 1
    summary.steps = _tree_order([steps[k] for k in sorted(steps)])
    return summary


def _tree_order(steps: list[StepSummary]) -> list[StepSummary]:
    """Steps in order, each followed by the steps nested in it."""
    known = {s.step for s in steps}
    children: dict[int, list[StepSummary]] = {}
    top = []
    for s in steps:
        if s.parent_step in known and s.parent_step != s.step:
            children.setdefault(s.parent_step, []).append(s)
        else:
            top.append(s)
    ordered: list[StepSummary] = []

    def add(s: StepSummary) -> None:
        ordered.append(s)
        for child in children.pop(s.step, ()):
            add(child)

    for s in top:
        add(s)
    for rest in children.values():  # parents naming each other (malformed events)
        ordered.extend(rest)
    return ordered


#: The columns of :func:`format_table`, in order (the header row).
COLUMNS = (
    "#",
    "node",
    "type",
    "status",
    "tokens in",
    "tokens out",
    "cost",
    "latency",
    "cache",
    "notes",
)


def format_table(summary: RunSummary) -> str:
    """The summary as a plain-text table (no terminal features needed)."""
    rows = []
    for s in summary.steps:
        notes = []
        if s.retries:
            notes.append(f"{s.retries} retr{'y' if s.retries == 1 else 'ies'}")
        if s.fallbacks:
            notes.append(f"{s.fallbacks} fallback{'s' if s.fallbacks > 1 else ''}")
        if not s.cost_known:
            notes.append("unpriced model")
        if s.refusal is not None:
            notes.append(f"refused: {s.refusal[:60]}")
        if s.error:
            notes.append(s.error[:60])
        rows.append(
            [
                str(s.step),
                s.node_id if s.parent_step is None else f"└ {s.node_name}",
                s.node_type,
                s.status,
                str(s.tokens_input),
                str(s.tokens_output),
                f"${decimal_text(s.cost)}",
                _ms(s.latency_ms),
                f"hit (saved ${decimal_text(s.cost_saved)})" if s.cache_hit else "-",
                "; ".join(notes),
            ]
        )
    hits = summary.cache_hits
    rows.append(
        [
            "",
            "total",
            "",
            summary.status,
            str(summary.tokens_input),
            str(summary.tokens_output),
            f"${decimal_text(summary.cost)}",
            _ms(summary.duration_ms),
            f"{hits}/{len(summary.node_steps)} hits" if hits else "-",
            f"saved ${decimal_text(summary.cost_saved)}" if hits else "",
        ]
    )
    widths = [max(len(r[i]) for r in [COLUMNS, *rows]) for i in range(len(COLUMNS))]
    rule = "  ".join("-" * w for w in widths)

    def line(cells: Sequence[str]) -> str:
        return "  ".join(c.ljust(w) for c, w in zip(cells, widths, strict=True)).rstrip()

    *steps, total = rows
    return "\n".join([line(COLUMNS), rule, *map(line, steps), rule, line(total)])


def _ms(value: float | None) -> str:
    if value is None:
        return "-"
    return f"{value / 1000:.2f}s" if value >= 1000 else f"{value:.1f}ms"
