"""Reading what the ``file`` sink wrote: runs, node executions and states at commits.

Pure Python (no rich), so the service or a test can reuse it. :func:`load_trace` reads a JSONL
file (plus its rotated predecessors ``FILE.N`` ... ``FILE.1``) or a directory of per-run files,
skips malformed lines but reports each with its line number (a writer killed mid-write leaves a
partial last line; everything before it is still worth reading), drops duplicate events (two
sinks on one file) and groups events by run, ordered by ``seq``.

:func:`state_at` rebuilds the Backpack at a commit from the recorded events. States are only
recorded at checkpoints: ``node_start.state`` (the state when a node started: the whole state at
the run's first node, then what changed since the previous ``node_start``, see
:class:`backpackflow.backpack.StateDelta`; :func:`full_states` chains them) and ``error.state``
(the whole state). The state at a commit is the latest checkpoint before it plus the
``backpack_pack`` events after it, up to the commit. A pack's value is exact when the file sink
recorded it (``values="full"``, its default); otherwise only the kernel's truncated
``value_summary`` is known, and the value is marked as a summary unless the next checkpoint
proves it: a key nobody wrote between the commit and the next checkpoint holds, at the commit,
exactly the value that checkpoint recorded.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import attrs

from backpackflow import BackpackFlowError
from backpackflow.jsondata import loads as load_json
from backpackflow_sinks._common import decimal_or_none, usage_tokens


class TraceError(BackpackFlowError):
    """The trace cannot answer: missing file, nothing readable, unknown run, node or commit."""


@attrs.define
class Problem:
    """A line that could not be read as an event."""

    path: str
    line: int
    message: str

    def __str__(self) -> str:
        return f"{self.path} line {self.line}: {self.message}"


@attrs.define(eq=False)
class Step:
    """One node execution (``step`` is its number within the run), or a step nested in one
    (``parent_step`` set: a tool call of an agent, opened by ``tool_request`` and closed by
    ``tool_response``; its ``params`` are the call's arguments, its ``exec_result`` the
    tool's result, ``node_name`` the tool's name and ``node_type`` ``"tool"``)."""

    step: int
    node_id: str | None = None
    node_name: str | None = None
    node_type: str | None = None
    namespace: str | None = None
    parent_step: int | None = None
    seq: int | None = None  # of node_start
    started: float | None = None
    ended: float | None = None
    status: str = "running"  # running (no end recorded) | ok | error
    duration_ms: float | None = None
    exec_ms: float | None = None
    attempts: int | None = None
    action: str | None = None
    params: Any = None
    state: Any = None
    has_prep: bool = False
    prep_result: Any = None
    reads: list[str] | None = None
    #: Keys read through a key mapping: ``{Backpack key: the name the node read it as}``.
    read_as: dict[str, str] = attrs.Factory(dict)
    has_exec: bool = False
    exec_result: Any = None
    writes: list[str] | None = None
    error: dict[str, Any] | None = None
    packs: list[dict[str, Any]] = attrs.Factory(list)
    retries: list[dict[str, Any]] = attrs.Factory(list)
    llm_calls: list[dict[str, Any]] = attrs.Factory(list)
    tokens_in: int = 0
    tokens_out: int = 0
    cost: Decimal = Decimal(0)
    cost_unknown: bool = False
    cache_hits: int = 0
    fallbacks: list[dict[str, Any]] = attrs.Factory(list)
    guardrails: list[dict[str, Any]] = attrs.Factory(list)
    logs: list[dict[str, Any]] = attrs.Factory(list)
    tools: list[dict[str, Any]] = attrs.Factory(list)

    @property
    def label(self) -> str:
        if self.parent_step is not None and self.node_name:
            return self.node_name  # a nested step: what it is (the tool's name)
        return self.node_id or f"step {self.step}"

    def to_json(self) -> dict[str, Any]:
        data = attrs.asdict(self, recurse=False)
        data["cost"] = str(self.cost)
        for name in ("has_prep", "has_exec"):
            del data[name]
        if not self.has_prep:
            del data["prep_result"]
        if not self.has_exec:
            del data["exec_result"]
        return data


@attrs.define(eq=False)
class RunTrace:
    """The recorded events of one run, and what they say about it."""

    run_id: str
    events: list[dict[str, Any]] = attrs.Factory(list)
    steps: dict[int, Step] = attrs.Factory(dict)
    start: dict[str, Any] | None = None
    end: dict[str, Any] | None = None
    guardrails: list[dict[str, Any]] = attrs.Factory(list)  # outside any node execution
    run_logs: list[dict[str, Any]] = attrs.Factory(list)  # outside any node execution

    @property
    def flow_name(self) -> str | None:
        name = (self.start or {}).get("flow_name")
        return name if isinstance(name, str) else None

    @property
    def started(self) -> float | None:
        return _number(self.events[0].get("timestamp")) if self.events else None

    @property
    def last_timestamp(self) -> float | None:
        return _number(self.events[-1].get("timestamp")) if self.events else None

    @property
    def status(self) -> str:
        """``succeeded`` / ``failed`` / ``canceled`` from ``run_end``, else ``incomplete``."""
        status = (self.end or {}).get("status")
        return status if isinstance(status, str) else "incomplete"

    @property
    def duration_ms(self) -> float | None:
        recorded = _number((self.end or {}).get("duration_ms"))
        if recorded is not None:
            return recorded
        first, last = self.started, self.last_timestamp
        return None if first is None or last is None else (last - first) * 1000

    @property
    def errors(self) -> list[Step]:
        """Node executions that failed (a nested step's failure, such as a tool error told to
        the model, is its parent's business, not the run's)."""
        return [s for s in self.nodes if s.status == "error"]

    @property
    def nodes(self) -> list[Step]:
        """The node executions: the steps that are not nested in another."""
        return [s for s in self.steps.values() if s.parent_step is None]

    def children(self, step: Step) -> list[Step]:
        """The steps nested in ``step`` (siblings, in the order they started)."""
        return [s for s in self.steps.values() if s.parent_step == step.step]

    def tree(self) -> list[tuple[int, Step]]:
        """Every step as (depth, step): each node execution followed by its nested steps."""
        found: list[tuple[int, Step]] = []
        by_parent: dict[int | None, list[Step]] = {}
        for s in self.steps.values():
            known = s.parent_step in self.steps and s.parent_step != s.step
            by_parent.setdefault(s.parent_step if known else None, []).append(s)

        def walk(parent: int | None, depth: int) -> None:
            for s in by_parent.get(parent, []):
                found.append((depth, s))
                walk(s.step, depth + 1)

        walk(None, 0)
        if len(found) < len(self.steps):  # parents naming each other (a malformed trace)
            shown = {id(s) for _, s in found}
            found.extend((0, s) for s in self.steps.values() if id(s) not in shown)
        return found

    def totals(self) -> dict[str, Any]:
        """Tokens and cost: from ``run_end`` when recorded, else summed over the LLM calls."""
        recorded = (self.end or {}).get("totals")
        if isinstance(recorded, dict) and recorded:
            tin, tout = usage_tokens(
                {
                    "input_tokens": recorded.get("tokens_input"),
                    "output_tokens": recorded.get("tokens_output"),
                }
            )
            cost = decimal_or_none(recorded.get("cost")) or Decimal(0)
            unknown = False
        else:
            tin = sum(s.tokens_in for s in self.steps.values())
            tout = sum(s.tokens_out for s in self.steps.values())
            cost = sum((s.cost for s in self.steps.values()), Decimal(0))
            unknown = any(s.cost_unknown for s in self.steps.values())
        return {
            "tokens_input": tin,
            "tokens_output": tout,
            "total_tokens": tin + tout,
            "cost": str(cost),
            "cost_unknown": unknown,
        }

    def commits(self) -> list[dict[str, Any]]:
        """The ``backpack_pack`` events that made a commit, in order."""
        return [
            e
            for e in self.events
            if e.get("type") == "backpack_pack" and _payload(e).get("commit_id")
        ]

    def summary(self) -> dict[str, Any]:
        return {
            "run_id": self.run_id,
            "flow_name": self.flow_name,
            "started": self.started,
            "status": self.status,
            "duration_ms": self.duration_ms,
            "nodes": len(self.nodes),
            "errors": len(self.errors),
            "events": len(self.events),
            "error": (self.end or {}).get("error"),
            "error_type": (self.end or {}).get("error_type"),
            "action": (self.end or {}).get("action"),
            "totals": self.totals(),
        }


@attrs.define(eq=False)
class Trace:
    """Everything read from one trace file (or directory)."""

    paths: list[str]
    runs: dict[str, RunTrace]
    problems: list[Problem]
    duplicates: int = 0
    outside_runs: int = 0

    def by_start(self) -> list[RunTrace]:
        """The runs, earliest first (by their first event, then by id)."""
        return sorted(self.runs.values(), key=lambda r: (r.started or 0.0, r.run_id))

    def latest(self) -> RunTrace:
        return self.by_start()[-1]

    def find_run(self, query: str) -> RunTrace:
        """The run ``query`` names: its id, or a part of it found in exactly one run id."""
        if query in self.runs:
            return self.runs[query]
        found = [r for rid, r in self.runs.items() if query in rid]
        if len(found) == 1:
            return found[0]
        known = ", ".join(sorted(self.runs)) or "none"
        if found:
            raise TraceError(f"run {query!r} is ambiguous: it matches {len(found)} runs ({known})")
        raise TraceError(f"no run {query!r} in {', '.join(self.paths)} (runs: {known})")


# ------------------------------------------------------------------------------ reading


def load_trace(path: str | Path, *, rotated: bool = True, strict: bool = False) -> Trace:
    """Read a JSONL trace (see the module docstring). ``rotated``: also read ``PATH.N`` ...
    ``PATH.1`` first; ``strict``: fail on the first malformed line instead of skipping it."""
    root = Path(path)
    if not root.exists():
        raise TraceError(f"no such file: {str(root)!r}")
    if root.is_dir():
        files = sorted(root.glob("*.jsonl"))
        if not files:
            raise TraceError(f"directory {str(root)!r} holds no *.jsonl trace files")
    else:
        files = [*_rotated_siblings(root), root] if rotated else [root]
    problems: list[Problem] = []
    by_run: dict[str, list[dict[str, Any]]] = {}
    seen: set[tuple[Any, Any]] = set()
    duplicates = outside = 0
    for file in files:
        for event in _read_events(file, problems, strict):
            key = (event["run_id"], event["seq"])
            if key in seen:
                duplicates += 1
                continue
            seen.add(key)
            if event["run_id"] is None:
                outside += 1
                continue
            by_run.setdefault(event["run_id"], []).append(event)
    if not by_run:
        detail = f" ({len(problems)} malformed lines)" if problems else ""
        raise TraceError(f"no run events in {', '.join(map(str, files))}{detail}")
    runs = {rid: _build_run(rid, events) for rid, events in by_run.items()}
    return Trace([str(f) for f in files], runs, problems, duplicates, outside)


def _rotated_siblings(path: Path) -> list[Path]:
    """``path.N`` ... ``path.1``: what rotation moved away, oldest first."""
    pattern = re.compile(re.escape(path.name) + r"\.(\d+)$")
    found = []
    for sibling in path.parent.iterdir():
        match = pattern.match(sibling.name)
        if match and sibling.is_file():
            found.append((int(match.group(1)), sibling))
    return [p for _, p in sorted(found, reverse=True)]


def _read_events(file: Path, problems: list[Problem], strict: bool) -> Iterator[dict[str, Any]]:
    try:
        raw = file.read_bytes()
    except OSError as exc:
        raise TraceError(f"cannot read {str(file)!r}: {exc.strerror or exc}") from None
    lines = raw.split(b"\n")
    last = len(lines)
    if lines and lines[-1] == b"":
        lines.pop()
        last = -1  # the file ends with a newline: no partial last line
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        problem = None
        try:
            event = load_json(line)
        except (UnicodeDecodeError, ValueError) as exc:
            event = None
            problem = f"not JSON ({exc})"
            if number == last:
                problem = "cut off mid-line (the writer stopped while writing it)"
        if problem is None:
            problem = _check_event(event)
        if problem is not None:
            found = Problem(str(file), number, problem)
            if strict:
                raise TraceError(f"malformed trace: {found} (drop --strict to skip such lines)")
            problems.append(found)
            continue
        yield event


def _check_event(event: Any) -> str | None:
    if not isinstance(event, dict):
        return f"a JSON {type(event).__name__}, not an event object"
    if not isinstance(event.get("type"), str):
        return "no event 'type'"
    seq = event.get("seq")
    if not isinstance(seq, int) or isinstance(seq, bool):
        return "no integer 'seq'"
    run_id = event.get("run_id")
    if run_id is not None and not isinstance(run_id, str):
        return "'run_id' is not a string"
    step = event.get("step")
    if step is not None and (not isinstance(step, int) or isinstance(step, bool)):
        return "'step' is not an integer"
    if (
        "payload" in event
        and event["payload"] is not None
        and not isinstance(event["payload"], dict)
    ):
        event["payload"] = {"value": event["payload"]}
    return None


def _payload(event: dict[str, Any]) -> dict[str, Any]:
    payload = event.get("payload")
    return payload if isinstance(payload, dict) else {}


def _number(value: Any) -> float | None:
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    return None


def _build_run(run_id: str, events: list[dict[str, Any]]) -> RunTrace:
    events.sort(key=lambda e: e["seq"])
    run = RunTrace(run_id, events)
    states = full_states(events)
    for event in events:
        kind, p, step_no = event["type"], _payload(event), event.get("step")
        if kind == "run_start":
            run.start = p
            continue
        if kind == "run_end":
            run.end = p
            continue
        if step_no is None:
            if kind == "guardrail":
                run.guardrails.append(p)
            elif kind == "log":
                run.run_logs.append(p)
            continue
        step = run.steps.get(step_no)
        if step is None:
            parent = event.get("parent_step")
            step = run.steps[step_no] = Step(
                step_no,
                event.get("node_id"),
                event.get("node_name"),
                None,
                event.get("namespace"),
                parent if isinstance(parent, int) and not isinstance(parent, bool) else None,
            )
        _apply(step, kind, p, event)
        if kind == "node_start":
            step.state = states.get(event["seq"], p.get("state"))
    return run


def full_states(events: Iterable[dict[str, Any]]) -> dict[int, dict[str, Any]]:
    """Event seq → the whole state recorded by each ``node_start`` and ``error`` event of one
    run (events in seq order): a ``node_start`` delta is applied to the state of the
    ``node_start`` it names as its base. States that cannot be rebuilt (evicted, or a base
    that was not recorded) are left out."""
    by_backpack_seq: dict[int, dict[str, Any]] = {}
    found: dict[int, dict[str, Any]] = {}
    for event in events:
        if event.get("type") not in ("node_start", "error"):
            continue
        state = _payload(event).get("state")
        if not isinstance(state, dict) or state.get("$evicted") is True:
            continue
        if state.get("$state") == "delta":
            changed, removed = state.get("changed"), state.get("removed")
            base_seq = state.get("base_seq")
            base = {} if base_seq is None else by_backpack_seq.get(base_seq)
            if base is None or not isinstance(changed, dict) or not isinstance(removed, list):
                continue
            gone = set(map(str, removed))
            state = {k: v for k, v in base.items() if k not in gone}
            state.update(changed)
            if isinstance(seq := _payload(event)["state"].get("seq"), int):
                by_backpack_seq[seq] = state
        found[event["seq"]] = state
    return found


def _apply(step: Step, kind: str, p: dict[str, Any], event: dict[str, Any]) -> None:
    timestamp = _number(event.get("timestamp"))
    if kind == "node_start":
        step.seq = event["seq"]
        step.started = timestamp
        step.node_type = p.get("node_type")
        step.params = p.get("params")
        step.node_name = event.get("node_name") or p.get("node_name")
    elif kind == "prep_complete":
        step.has_prep = True
        step.prep_result = p.get("prep_result")
        step.reads = _strings(p.get("reads"))
    elif kind == "exec_complete":
        step.has_exec = True
        step.exec_result = p.get("exec_result")
        attempts = p.get("attempts")
        step.attempts = attempts if isinstance(attempts, int) else None
        step.exec_ms = _number(p.get("duration_ms"))
    elif kind == "node_end":
        step.status = "ok"
        step.ended = timestamp
        action = p.get("action")
        step.action = action if isinstance(action, str) else None
        step.writes = _strings(p.get("writes"))
        step.duration_ms = _number(p.get("duration_ms"))
    elif kind == "error":
        step.status = "error"
        step.ended = timestamp
        step.error = {k: p.get(k) for k in ("phase", "error", "error_type", "stack")}
        if step.started is not None and timestamp is not None:
            step.duration_ms = (timestamp - step.started) * 1000
    elif kind == "backpack_pack":
        step.packs.append(event)
    elif kind == "backpack_unpack":
        read_as = p.get("read_as")
        if isinstance(read_as, str):
            step.read_as[str(p.get("key"))] = read_as
    elif kind == "retry":
        step.retries.append(p)
    elif kind == "llm_response":
        step.llm_calls.append(p)
        tin, tout = usage_tokens(p.get("usage"))
        step.tokens_in += tin
        step.tokens_out += tout
        cost = decimal_or_none(p.get("cost"))
        if cost is None or p.get("cost_known") is False:
            step.cost_unknown = True
        else:
            step.cost += cost
    elif kind == "cache_hit":
        step.cache_hits += 1
    elif kind == "fallback":
        step.fallbacks.append(p)
    elif kind == "guardrail":
        step.guardrails.append(p)
    elif kind == "log":
        step.logs.append(p)
    elif kind in ("tool_call", "tool_request", "tool_response"):
        step.tools.append({"type": kind, **p})
        if step.parent_step is not None:
            _apply_tool_step(step, kind, p, event, timestamp)


def _apply_tool_step(
    step: Step, kind: str, p: dict[str, Any], event: dict[str, Any], timestamp: float | None
) -> None:
    """A tool call as a nested step: ``tool_request`` opens it, ``tool_response`` closes it."""
    if kind == "tool_request":
        step.seq = event["seq"]
        step.started = timestamp
        step.node_type = "tool"
        step.node_name = step.node_name or p.get("tool")
        step.params = p.get("arguments")
    elif kind == "tool_response":
        step.ended = timestamp
        step.duration_ms = _number(p.get("duration_ms"))
        step.has_exec = True
        step.exec_result = p.get("result")
        error = p.get("error")
        if error:
            step.status = "error"
            step.error = {"phase": "tool", "error": error, "error_type": None, "stack": None}
        else:
            step.status = "ok"


def _strings(value: Any) -> list[str] | None:
    return [str(v) for v in value] if isinstance(value, list) else None


# ------------------------------------------------------------------------------ node lookup


def find_steps(run: RunTrace, node: str | None, step: int | None) -> list[Step]:
    """The executions of node ``node`` (all, or the one numbered ``step``); ``step`` alone
    may also name a nested step (a tool call)."""
    steps = list(run.steps.values())
    if node is not None:
        steps = [s for s in steps if s.node_id == node and s.parent_step is None]
        if not steps:
            known = ", ".join(sorted({s.node_id for s in run.steps.values() if s.node_id}))
            raise TraceError(
                f"node {node!r} did not run in run {run.run_id} (nodes: {known or 'none'})"
            )
    if step is not None:
        chosen = [s for s in steps if s.step == step]
        if not chosen:
            numbers = ", ".join(str(s.step) for s in steps) or "none"
            where = f"node {node!r}" if node is not None else f"run {run.run_id}"
            raise TraceError(f"{where} has no step {step} (steps: {numbers})")
        return chosen
    return steps


# ------------------------------------------------------------------------------ state at a commit


@attrs.define
class StateValue:
    """One key of a rebuilt state: its value, whether it is exact, and where it comes from."""

    value: Any
    exact: bool
    source: str

    def to_json(self) -> dict[str, Any]:
        return {"value": self.value, "exact": self.exact, "source": self.source}


@attrs.define
class StateAt:
    commit: dict[str, Any]  # the backpack_pack event of the commit
    values: dict[str, StateValue]
    base: str
    base_known: bool

    @property
    def exact(self) -> bool:
        return self.base_known and all(v.exact for v in self.values.values())

    def to_json(self) -> dict[str, Any]:
        return {
            "commit": self.commit,
            "base": self.base,
            "exact": self.exact,
            "state": {k: v.to_json() for k, v in self.values.items()},
        }


def find_commit(run: RunTrace, query: str) -> dict[str, Any]:
    """The ``backpack_pack`` event of commit ``query`` (its id or a unique prefix)."""
    commits = run.commits()
    found = [e for e in commits if _payload(e)["commit_id"] == query]
    if not found:
        found = [e for e in commits if str(_payload(e)["commit_id"]).startswith(query)]
    if len(found) == 1:
        return found[0]
    if found:
        raise TraceError(f"commit {query!r} is ambiguous: {len(found)} commits start with it")
    if not commits:
        raise TraceError(f"run {run.run_id} recorded no commits")
    first, last = _payload(commits[0])["commit_id"], _payload(commits[-1])["commit_id"]
    raise TraceError(
        f"commit {query!r} is not in run {run.run_id}: it recorded {len(commits)} commits, "
        f"{first} ... {last} (inspect --node ID lists the commits of a node)"
    )


def state_at(run: RunTrace, query: str) -> StateAt:
    """The Backpack state right after commit ``query`` (see the module docstring)."""
    target = find_commit(run, query)
    target_seq = target["seq"]
    checkpoints = list(_checkpoints(run.events))
    before = [c for c in checkpoints if c[0] < target_seq]
    after = [c for c in checkpoints if c[0] > target_seq]
    values: dict[str, StateValue] = {}
    if before:
        base_seq, base_state, base_label = before[-1]
        values = {k: StateValue(v, True, f"state at {base_label}") for k, v in base_state.items()}
        base = f"state at {base_label}"
    else:
        base_seq, base = -1, "unknown (no full state was recorded before this commit)"
    for event in run.commits():
        if base_seq < event["seq"] <= target_seq:
            _apply_commit(values, event, base_known=bool(before))
    if after:
        next_seq, next_state, next_label = after[0]
        touched = {
            _payload(e).get("key") for e in run.commits() if target_seq < e["seq"] < next_seq
        }
        for key, value in next_state.items():
            current = values.get(key)
            if key in touched or (current is not None and current.exact):
                continue
            if current is None and before:
                continue  # absent at the commit and written later, by a commit we did see
            values[key] = StateValue(value, True, f"state at {next_label} (not written in between)")
    return StateAt(target, values, base, bool(before))


def _checkpoints(events: Iterable[dict[str, Any]]) -> Iterator[tuple[int, dict[str, Any], str]]:
    """(seq, full state, label) of every event that recorded a state (deltas chained)."""
    events = list(events)
    states = full_states(events)
    for event in events:
        state = states.get(event["seq"])
        if state is None:
            continue
        where = f"{event['type']} of step {event.get('step')} ({event.get('node_id')})"
        yield event["seq"], state, where


def _apply_commit(
    values: dict[str, StateValue], event: dict[str, Any], *, base_known: bool
) -> None:
    p = _payload(event)
    if p.get("access_granted") is False:
        return
    key, op, commit = str(p.get("key")), p.get("op"), p.get("commit_id")
    if op == "delete":
        values.pop(key, None)
        return
    summary = p.get("value_summary")
    if op == "pack":
        if "value" in p:
            values[key] = StateValue(p["value"], True, f"value recorded with commit {commit}")
        else:
            values[key] = StateValue(summary, False, f"summary recorded with commit {commit}")
        return
    previous = values.get(key)
    items = p.get("value")
    if "value" in p and isinstance(items, list):
        if previous is not None and previous.exact and isinstance(previous.value, list):
            values[key] = StateValue(
                [*previous.value, *items], True, f"{previous.source} + items appended by {commit}"
            )
            return
        if previous is None and base_known:
            values[key] = StateValue(list(items), True, f"items appended by commit {commit}")
            return
    if previous is None:
        earlier = "..."
    elif previous.exact:
        earlier = json.dumps(previous.value, ensure_ascii=False, separators=(",", ":"))
    else:
        earlier = str(previous.value)
    text = f"{earlier} + {summary}"
    values[key] = StateValue(text, False, f"summary: commit {commit} appended {summary}")
