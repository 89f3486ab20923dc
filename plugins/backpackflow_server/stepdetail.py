"""What one step did, and two runs side by side, read from the stored trace.

A step's row (``run_steps``) has its totals: status, tokens, exact cost, latency, attempts,
retries, whether the cache answered. What a person debugging the step wants to read next is in
its trace events: the prompt (the messages of each LLM request), the raw responses, the parsed
output, the Backpack keys it read and wrote, each retry, each fallback (from which provider to
which, and why), each cache hit (and the cost it saved), its errors. :func:`step_detail` folds a
step's events into that, so a client reads one answer instead of paging through a 50,000-event
trace for the events of one step.

:func:`compare_runs` lines up the steps of two runs (of one workflow, typically before and
after a prompt change): the k-th execution of a node in one run faces the k-th execution of the
same node in the other, a nested step (an agent's tool call) faces the same tool call of the
facing parent step. Each pair carries what a side-by-side view shows (prompt, output, tokens,
cost, latency, status) and the names of the fields that differ. Done on the server because it
needs the prompts and outputs of every step of both runs: a few event types, read in pages
from the store, instead of both whole traces sent to a browser.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from decimal import Decimal, InvalidOperation
from typing import Any

#: The event types :func:`compare_runs` reads (what :func:`step_side` needs).
COMPARE_EVENT_TYPES = ("prep_complete", "llm_request", "llm_response", "exec_complete")
#: The step fields a run diff compares (latency always differs, so it is shown, not flagged).
COMPARED_FIELDS = (
    "status",
    "prompt",
    "output",
    "model",
    "tokens_input",
    "tokens_output",
    "cost",
    "cache_hit",
    "action",
    "error",
)


def _payload(event: Mapping[str, Any]) -> dict[str, Any]:
    payload = event.get("payload")
    return payload if isinstance(payload, dict) else {}


def _decimal(value: Any) -> Decimal:
    """A cost as events carry it (decimal text); anything unusable counts as nothing."""
    try:
        amount = Decimal(str(value)) if value is not None else Decimal(0)
    except InvalidOperation:
        return Decimal(0)
    return amount if amount.is_finite() else Decimal(0)


def _money(value: Decimal) -> str:
    return format(value, "f")


def llm_calls(events: Iterable[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """The step's LLM calls in order: each request (provider, model, messages, params) with
    the response that answered it, or ``None`` when it failed (a retry or fallback follows).
    A response without a request before it (a provider that reports only responses) is a call
    of its own with ``messages`` ``None``."""
    calls: list[dict[str, Any]] = []
    for event in events:
        kind, payload = event.get("type"), _payload(event)
        if kind == "llm_request":
            calls.append(
                {
                    "seq": event.get("seq"),
                    "provider": payload.get("provider"),
                    "model": payload.get("model"),
                    "messages": payload.get("messages"),
                    "params": payload.get("params"),
                    "response": None,
                }
            )
        elif kind == "llm_response":
            if calls and calls[-1]["response"] is None:
                calls[-1]["response"] = payload
            else:
                calls.append(
                    {
                        "seq": event.get("seq"),
                        "provider": payload.get("provider"),
                        "model": payload.get("model"),
                        "messages": None,
                        "params": None,
                        "response": payload,
                    }
                )
    return calls


def _answered(calls: list[dict[str, Any]]) -> dict[str, Any] | None:
    """The last call that got a response (the one the step's output came from)."""
    answered = [call for call in calls if call["response"] is not None]
    return answered[-1] if answered else (calls[-1] if calls else None)


def _prepared_messages(events: Iterable[Mapping[str, Any]]) -> Any:
    """The messages an llm node prepared (its ``prep_complete``), for a step that made no
    call: the response cache answered it, or it failed before calling."""
    for event in events:
        if event.get("type") == "prep_complete":
            prepared = _payload(event).get("prep_result")
            if isinstance(prepared, dict) and isinstance(prepared.get("messages"), list):
                return prepared["messages"]
    return None


def step_detail(step: Mapping[str, Any], events: list[dict[str, Any]]) -> dict[str, Any]:
    """The step's row and what its events say (see the module docstring)."""
    calls = llm_calls(events)
    answered = _answered(calls)
    detail: dict[str, Any] = {
        "step": dict(step),
        "input": None,
        "output": None,
        "has_output": False,
        "messages": answered["messages"] if answered else _prepared_messages(events),
        "response": answered["response"] if answered else None,
        "llm_calls": calls,
        "reads": [],
        "writes": [],
        "retries": [],
        "fallbacks": [],
        "cache_hits": [],
        "cost_saved": "0",
        "errors": [],
        "tool_calls": [],
        "interrupt": None,
        "events": events,
    }
    saved = Decimal(0)
    for event in events:
        kind, payload = event.get("type"), _payload(event)
        if kind == "prep_complete":
            detail["input"] = payload.get("prep_result")
        elif kind == "exec_complete":
            detail["output"] = payload.get("exec_result")
            detail["has_output"] = True
        elif kind == "backpack_unpack":
            detail["reads"].append(
                {
                    "seq": event.get("seq"),
                    "key": payload.get("key"),
                    "found": payload.get("found"),
                    "access_granted": payload.get("access_granted"),
                    "reason": payload.get("reason"),
                    "read_as": payload.get("read_as"),
                }
            )
        elif kind == "backpack_pack":
            detail["writes"].append(
                {
                    "seq": event.get("seq"),
                    "key": payload.get("key"),
                    "op": payload.get("op"),
                    "value_summary": payload.get("value_summary"),
                    "commit_id": payload.get("commit_id"),
                    "version": payload.get("version"),
                    "access_granted": payload.get("access_granted"),
                    "reason": payload.get("reason"),
                }
            )
        elif kind == "retry":
            detail["retries"].append({"seq": event.get("seq"), **payload})
        elif kind == "fallback":
            detail["fallbacks"].append({"seq": event.get("seq"), **payload})
        elif kind == "cache_hit":
            detail["cache_hits"].append({"seq": event.get("seq"), **payload})
            saved += _decimal(payload.get("cost_saved"))
        elif kind == "error":
            detail["errors"].append({"seq": event.get("seq"), **payload})
        elif kind in ("tool_call", "tool_request", "tool_response"):
            detail["tool_calls"].append({"seq": event.get("seq"), "type": kind, **payload})
        elif kind == "custom" and payload.get("name") == "interrupt":
            detail["interrupt"] = payload.get("data", payload)
    detail["cost_saved"] = _money(saved)
    return detail


# ---------------------------------------------------------------------------- run diff


def _step_keys(steps: list[Mapping[str, Any]]) -> dict[int, tuple[Any, ...]]:
    """Each step's place in its run: ``(node_id, k)`` for the k-th execution of a node, and
    ``(parent's key, node_name, k)`` for the k-th step of that name nested in a parent."""
    keys: dict[int, tuple[Any, ...]] = {}
    seen: dict[tuple[Any, ...], int] = {}
    for step in steps:
        parent = step.get("parent_step")
        if parent is None or parent not in keys:
            base: tuple[Any, ...] = (step["node_id"],)
        else:
            base = (keys[parent], step.get("node_name") or step["node_id"])
        seen[base] = seen.get(base, 0) + 1
        keys[step["step"]] = (*base, seen[base])
    return keys


def step_side(step: Mapping[str, Any], events: list[dict[str, Any]]) -> dict[str, Any]:
    """One step as a run diff shows it: its row's figures, its prompt and its output."""
    answered = _answered(llm_calls(events))
    output = None
    for event in events:
        if event.get("type") == "exec_complete":
            output = _payload(event).get("exec_result")
    model = None
    if answered is not None:
        response = answered["response"] or {}
        model = response.get("model") or answered["model"]
        provider = response.get("provider") or answered["provider"]
        model = f"{provider}/{model}" if provider else model
    prompt = answered["messages"] if answered else _prepared_messages(events)
    return {
        "step": step["step"],
        "node_id": step["node_id"],
        "node_name": step.get("node_name"),
        "node_type": step.get("node_type"),
        "parent_step": step.get("parent_step"),
        "status": step["status"],
        "prompt": prompt,
        "output": output,
        "model": model,
        "tokens_input": step["tokens_input"],
        "tokens_output": step["tokens_output"],
        "cost": step["cost"],
        "latency_ms": step.get("latency_ms"),
        "cache_hit": step["cache_hit"],
        "action": step.get("action"),
        "error": step.get("error"),
    }


def _merged_order(keys_a: list[tuple[Any, ...]], keys_b: list[tuple[Any, ...]]) -> list[Any]:
    """Both runs' step keys in one order that keeps each run's own order: before each step
    both runs have, ``a``'s steps not yet placed, then ``b``'s steps that ``a`` lacks."""
    in_a = set(keys_a)
    order: list[Any] = []
    placed: set[Any] = set()
    pending: list[Any] = []  # b's steps a lacks, placed before b's next shared step
    position = 0
    for key in keys_b:
        if key not in in_a:
            pending.append(key)
            continue
        while position < len(keys_a) and keys_a[position] != key:
            if keys_a[position] not in placed:
                order.append(keys_a[position])
                placed.add(keys_a[position])
            position += 1
        order.extend(pending)
        pending.clear()
        if key not in placed:
            order.append(key)
            placed.add(key)
    order.extend(k for k in keys_a if k not in placed)
    order.extend(pending)
    return order


def _totals(run: Mapping[str, Any]) -> dict[str, Any]:
    return {
        "status": run["status"],
        "steps": len(run.get("steps", [])),
        "tokens_input": run["total_tokens_input"],
        "tokens_output": run["total_tokens_output"],
        "cost": run["total_cost"],
        "latency_ms": run.get("total_latency_ms"),
    }


def compare_runs(
    run_a: Mapping[str, Any],
    run_b: Mapping[str, Any],
    events_of: Callable[[Mapping[str, Any]], list[dict[str, Any]]],
) -> dict[str, Any]:
    """Two runs (as ``get_run`` returns them, steps included) side by side, step by step.

    ``events_of(run)`` gives the run's events of :data:`COMPARE_EVENT_TYPES`.
    """
    sides: list[dict[tuple[Any, ...], dict[str, Any]]] = []
    orders: list[list[tuple[Any, ...]]] = []
    for run in (run_a, run_b):
        by_step: dict[int, list[dict[str, Any]]] = {}
        for event in events_of(run):
            if event.get("step") is not None:
                by_step.setdefault(event["step"], []).append(event)
        keys = _step_keys(run["steps"])
        sides.append(
            {keys[s["step"]]: step_side(s, by_step.get(s["step"], [])) for s in run["steps"]}
        )
        orders.append([keys[s["step"]] for s in run["steps"]])
    pairs = []
    for key in _merged_order(orders[0], orders[1]):
        a, b = sides[0].get(key), sides[1].get(key)
        changed = (
            [name for name in COMPARED_FIELDS if a[name] != b[name]]
            if a is not None and b is not None
            else []
        )
        pairs.append(
            {
                "node_id": key[0] if len(key) == 2 else (a or b or {}).get("node_id"),
                "occurrence": key[-1],
                "a": a,
                "b": b,
                "changed": changed,
            }
        )
    totals_a, totals_b = _totals(run_a), _totals(run_b)
    delta = {
        "tokens_input": totals_b["tokens_input"] - totals_a["tokens_input"],
        "tokens_output": totals_b["tokens_output"] - totals_a["tokens_output"],
        "cost": _money(_decimal(totals_b["cost"]) - _decimal(totals_a["cost"])),
        "latency_ms": (
            None
            if totals_a["latency_ms"] is None or totals_b["latency_ms"] is None
            else totals_b["latency_ms"] - totals_a["latency_ms"]
        ),
    }
    summary = {name: value for name, value in run_a.items() if name != "steps"}
    other = {name: value for name, value in run_b.items() if name != "steps"}
    return {
        "a": summary,
        "b": other,
        "same_workflow": run_a.get("workflow_id") == run_b.get("workflow_id")
        and run_a.get("workflow_id") is not None,
        "totals": {"a": totals_a, "b": totals_b, "delta": delta},
        "steps": pairs,
    }
