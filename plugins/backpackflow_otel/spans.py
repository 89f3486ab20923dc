"""Events → OpenTelemetry spans, following the GenAI semantic conventions.

One span per run (``invoke_workflow {flow}``), per node execution (``node {id}``, nested under
the node that contains it: a nested flow's nodes under the flow node, a sub-flow run started
inside a node under that node), per LLM call (``chat {model}``, kind CLIENT) and per tool call
(``execute_tool {tool}``). Retries, fallbacks, cache hits, guardrails, logs and errors are span
events. Every start, end and event time is the event's own timestamp, so the trace shows when
things happened in the run, not when the sink got to them.

Nesting uses the OpenTelemetry context: each span is made current in the context the event was
emitted in (the run's task, or a branch's task for parallel nodes), so a node's children find
their parent there, and code inside the node (the HTTP call of an LLM provider, the user's own
instrumented code) runs inside the span -- which is also how ``traceparent`` reaches outgoing
calls (:mod:`backpackflow_otel.propagation`). A run starts in whatever context is current:
inside a caller's span (the service attaches the one an API request named), the run joins the
caller's trace. Calls and node executions are also kept by step, so events handed over from a
node's worker thread (whose context changes are not kept) still land on the right span.

Prompts, completions, tool arguments and results and run inputs are recorded only with
``capture_content``. Every text comes from the events, which the kernel masks at emission:
a secret the run knows never reaches a span.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from decimal import Decimal, InvalidOperation
from typing import Any

from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.trace import Span, SpanKind, Status, StatusCode

from backpackflow import BackpackEvent, StreamEventType

# attribute names (GenAI semantic conventions, and this project's under "backpackflow.")
OPERATION = "gen_ai.operation.name"
PROVIDER = "gen_ai.provider.name"
REQUEST_MODEL = "gen_ai.request.model"
RESPONSE_MODEL = "gen_ai.response.model"
INPUT_TOKENS = "gen_ai.usage.input_tokens"
OUTPUT_TOKENS = "gen_ai.usage.output_tokens"
CACHE_READ_TOKENS = "gen_ai.usage.cache_read.input_tokens"
CACHE_WRITE_TOKENS = "gen_ai.usage.cache_creation.input_tokens"
FINISH_REASONS = "gen_ai.response.finish_reasons"
TEMPERATURE = "gen_ai.request.temperature"
MAX_TOKENS = "gen_ai.request.max_tokens"
OUTPUT_TYPE = "gen_ai.output.type"
INPUT_MESSAGES = "gen_ai.input.messages"
OUTPUT_MESSAGES = "gen_ai.output.messages"
TOOL_NAME = "gen_ai.tool.name"
TOOL_TYPE = "gen_ai.tool.type"
TOOL_ARGUMENTS = "gen_ai.tool.call.arguments"
TOOL_RESULT = "gen_ai.tool.call.result"
WORKFLOW_NAME = "gen_ai.workflow.name"
ERROR_TYPE = "error.type"
COST = "backpackflow.cost_usd"
#: Phoenix (OpenInference) groups spans by this kind; other backends ignore it.
OPENINFERENCE_KIND = "openinference.span.kind"
#: Content as OpenInference names it (Phoenix and Langfuse show it), with capture_content.
INPUT_VALUE = "input.value"
OUTPUT_VALUE = "output.value"
#: Not a GenAI convention: the attribute Langfuse reads an LLM call's cost from.
LANGFUSE_COST = "gen_ai.usage.cost"

_RUN_START = StreamEventType.RUN_START
_RUN_END = StreamEventType.RUN_END


def _ns(timestamp: float) -> int:
    return int(timestamp * 1e9)


_MISSING = object()


def _get(payload: Any, name: str, default: Any = None) -> Any:
    """A payload field by name: payloads are named tuples (read first: the hot path), a
    plugin's may be a mapping."""
    value = getattr(payload, name, _MISSING)
    if value is not _MISSING:
        return value
    if isinstance(payload, Mapping):
        return payload.get(name, default)
    return default


def _content(event: BackpackEvent, name: str) -> Any:
    """A payload field as JSON data, as a sink serializing the event writes it (only for
    recorded content: serializing costs more than reading a field)."""
    payload = event.to_json()["payload"]
    return payload.get(name) if isinstance(payload, Mapping) else None


def _int(value: Any) -> int:
    return value if type(value) is int and value > 0 else 0


def _cost(value: Any) -> float | None:
    if value is None or isinstance(value, bool):
        return None
    try:
        number = Decimal(str(value))
    except (InvalidOperation, ValueError):
        return None
    return float(number) if number.is_finite() else None


def _json(value: Any, limit: int) -> str:
    text = json.dumps(value, ensure_ascii=False, default=str, separators=(",", ":"))
    if limit and len(text) > limit:
        return f"{text[:limit]}… ({len(text) - limit} more characters)"
    return text


def _text(value: Any, limit: int) -> str:
    text = value if isinstance(value, str) else str(value)
    if limit and len(text) > limit:
        return f"{text[:limit]}… ({len(text) - limit} more characters)"
    return text


class _Step:
    """An open node execution: its span, the contexts to restore and its open call."""

    __slots__ = ("call", "calls_cost", "ctx", "parent_ctx", "span", "tokens_in", "tokens_out")

    def __init__(self, span: Span, ctx: Any, parent_ctx: Any) -> None:
        self.span = span
        self.ctx = ctx
        self.parent_ctx = parent_ctx
        self.call: Span | None = None  # the LLM or tool call in progress
        self.tokens_in = 0
        self.tokens_out = 0
        self.calls_cost: Decimal | None = None


class _Run:
    __slots__ = ("ctx", "open", "prior", "span", "steps")

    def __init__(self, span: Span, ctx: Any, prior: Any) -> None:
        self.span = span
        self.ctx = ctx
        self.prior = prior
        self.steps: dict[int | None, _Step] = {}
        self.open: dict[int, _Step] = {}  # span id → open node execution


class SpanBuilder:
    """Turns one event stream (any number of runs) into spans on ``tracer``."""

    def __init__(self, tracer: trace.Tracer, *, capture_content: bool, max_content: int) -> None:
        self._tracer = tracer
        self._capture = capture_content
        self._limit = max_content
        self._runs: dict[str, _Run] = {}
        self.spans = 0  # started by this builder
        self.runs = 0
        T = StreamEventType
        self._dispatch: dict[StreamEventType, Callable[[_Run, BackpackEvent], None]] = {
            T.NODE_START: self._node_start,
            T.NODE_END: self._node_end,
            T.EXEC_COMPLETE: self._exec_complete,
            T.ERROR: self._error,
            T.LLM_REQUEST: self._llm_request,
            T.LLM_RESPONSE: self._llm_response,
            T.RETRY: self._retry,
            T.FALLBACK: self._fallback,
            T.CACHE_HIT: self._cache_hit,
            T.TOOL_REQUEST: self._tool_request,
            T.TOOL_RESPONSE: self._tool_response,
            T.GUARDRAIL: self._guardrail,
            T.LOG: self._log,
        }

    @property
    def open_runs(self) -> int:
        return len(self._runs)

    def handle(self, event: BackpackEvent) -> None:
        run_id = event.run_id
        if run_id is None:
            return
        kind = event.type
        if kind is _RUN_START:
            self._run_start(run_id, event)
            return
        run = self._runs.get(run_id)
        if run is None:  # a run that started before the sink was attached
            return
        if kind is _RUN_END:
            self._run_end(run_id, run, event)
            return
        method = self._dispatch.get(kind)
        if method is not None:
            method(run, event)

    def end_all(self, timestamp: float) -> None:
        """End what is still open (the sink closes before its runs ended)."""
        for run_id, run in list(self._runs.items()):
            for step in run.steps.values():
                self._end_step(step, timestamp, "the sink closed before the node ended")
            run.span.set_status(Status(StatusCode.ERROR, "the sink closed before the run ended"))
            run.span.end(_ns(timestamp))
            del self._runs[run_id]

    # ------------------------------------------------------------------ helpers

    def _start(
        self,
        name: str,
        parent_ctx: Any,
        event: BackpackEvent,
        kind: SpanKind,
        attributes: dict[str, Any],
    ) -> tuple[Span, Any]:
        span = self._tracer.start_span(
            name,
            context=parent_ctx,
            kind=kind,
            attributes=attributes,
            start_time=_ns(event.timestamp),
        )
        self.spans += 1
        return span, trace.set_span_in_context(span, parent_ctx)

    def _target(self, run: _Run, event: BackpackEvent, call: bool = True) -> Span:
        step = run.steps.get(event.step)
        if step is None:
            return run.span
        if call and step.call is not None:
            return step.call
        return step.span

    def _end_step(self, step: _Step, timestamp: float, unfinished: str | None = None) -> None:
        if step.call is not None:
            if unfinished:
                step.call.set_status(Status(StatusCode.ERROR, unfinished))
            step.call.end(_ns(timestamp))
            step.call = None
        span = step.span
        if step.tokens_in or step.tokens_out:
            span.set_attribute(INPUT_TOKENS, step.tokens_in)
            span.set_attribute(OUTPUT_TOKENS, step.tokens_out)
        if step.calls_cost is not None:
            span.set_attribute(COST, float(step.calls_cost))
        if unfinished:
            span.set_status(Status(StatusCode.ERROR, unfinished))
        span.end(_ns(timestamp))

    # ------------------------------------------------------------------ runs

    def _run_start(self, run_id: str, event: BackpackEvent) -> None:
        payload = event.payload
        flow_name = _get(payload, "flow_name") or "flow"
        prior = otel_context.get_current()
        attributes: dict[str, Any] = {
            OPERATION: "invoke_workflow",
            WORKFLOW_NAME: flow_name,
            "backpackflow.run.id": run_id,
            OPENINFERENCE_KIND: "CHAIN",
        }
        if self._capture:
            attributes["backpackflow.run.inputs"] = _json(_content(event, "inputs"), self._limit)
        span, ctx = self._start(
            f"invoke_workflow {flow_name}", prior, event, SpanKind.INTERNAL, attributes
        )
        self._runs[run_id] = _Run(span, ctx, prior)
        self.runs += 1
        otel_context.attach(ctx)

    def _run_end(self, run_id: str, run: _Run, event: BackpackEvent) -> None:
        del self._runs[run_id]
        for step in run.steps.values():  # canceled or failed around them
            self._end_step(step, event.timestamp, "the run ended before the node")
        payload = event.payload
        span = run.span
        status = _get(payload, "status")
        span.set_attribute("backpackflow.run.status", str(status))
        span.set_attribute("backpackflow.run.node_count", _int(_get(payload, "node_count")))
        totals = _get(payload, "totals")
        if isinstance(totals, Mapping):
            span.set_attribute(INPUT_TOKENS, _int(totals.get("tokens_input")))
            span.set_attribute(OUTPUT_TOKENS, _int(totals.get("tokens_output")))
            cost = _cost(totals.get("cost"))
            if cost is not None:
                span.set_attribute(COST, cost)
        if status == "failed":
            error_type = _get(payload, "error_type") or "error"
            span.set_attribute(ERROR_TYPE, error_type)
            span.set_status(Status(StatusCode.ERROR, _text(_get(payload, "error") or "", 1000)))
        span.end(_ns(event.timestamp))
        otel_context.attach(run.prior)

    # ------------------------------------------------------------------ node executions

    def _node_start(self, run: _Run, event: BackpackEvent) -> None:
        payload = event.payload
        parent_ctx = run.ctx
        current = trace.get_current_span().get_span_context()
        owner = run.open.get(current.span_id)
        if owner is not None:  # inside a node of this run: a nested flow
            parent_ctx = owner.ctx
        node_type = _get(payload, "node_type") or "node"
        attributes: dict[str, Any] = {
            "backpackflow.node.id": event.node_id or "",
            "backpackflow.node.type": node_type,
            "backpackflow.step": event.step or 0,
            OPENINFERENCE_KIND: "CHAIN",
        }
        if event.node_name:
            attributes["backpackflow.node.name"] = event.node_name
        if event.namespace:
            attributes["backpackflow.namespace"] = event.namespace
        span, ctx = self._start(
            f"node {event.node_id}", parent_ctx, event, SpanKind.INTERNAL, attributes
        )
        step = _Step(span, ctx, parent_ctx)
        run.steps[event.step] = step
        run.open[span.get_span_context().span_id] = step
        otel_context.attach(ctx)

    def _exec_complete(self, run: _Run, event: BackpackEvent) -> None:
        step = run.steps.get(event.step)
        if step is not None:
            step.span.set_attribute("backpackflow.attempts", _int(_get(event.payload, "attempts")))

    def _node_end(self, run: _Run, event: BackpackEvent) -> None:
        step = run.steps.pop(event.step, None)
        if step is None:
            return
        run.open.pop(step.span.get_span_context().span_id, None)
        action = _get(event.payload, "action")
        if isinstance(action, str):
            step.span.set_attribute("backpackflow.action", action)
        self._end_step(step, event.timestamp)
        otel_context.attach(step.parent_ctx)

    def _error(self, run: _Run, event: BackpackEvent) -> None:
        payload = event.payload
        error_type = str(_get(payload, "error_type") or "error")
        message = _text(_get(payload, "error") or "", 4000)
        attributes = {
            "exception.type": error_type,
            "exception.message": message,
            "backpackflow.phase": str(_get(payload, "phase") or ""),
        }
        step = run.steps.pop(event.step, None)
        if step is None:
            run.span.add_event("exception", attributes, _ns(event.timestamp))
            return
        run.open.pop(step.span.get_span_context().span_id, None)
        if step.call is not None:
            step.call.set_attribute(ERROR_TYPE, error_type)
            step.call.set_status(Status(StatusCode.ERROR, message[:1000]))
        span = step.span
        span.add_event("exception", attributes, _ns(event.timestamp))
        span.set_attribute(ERROR_TYPE, error_type)
        span.set_status(Status(StatusCode.ERROR, message[:1000]))
        self._end_step(step, event.timestamp)
        otel_context.attach(step.parent_ctx)

    # ------------------------------------------------------------------ LLM calls

    def _llm_request(self, run: _Run, event: BackpackEvent) -> None:
        step = run.steps.get(event.step)
        payload = event.payload
        provider = str(_get(payload, "provider") or "")
        model = str(_get(payload, "model") or "")
        attributes: dict[str, Any] = {
            OPERATION: "chat",
            PROVIDER: provider,
            REQUEST_MODEL: model,
            OPENINFERENCE_KIND: "LLM",
        }
        params = _get(payload, "params")
        if isinstance(params, Mapping):
            if isinstance(params.get("temperature"), (int, float)):
                attributes[TEMPERATURE] = params["temperature"]
            if isinstance(params.get("max_tokens"), int):
                attributes[MAX_TOKENS] = params["max_tokens"]
            if params.get("response_format") in ("text", "json"):
                attributes[OUTPUT_TYPE] = params["response_format"]
        if self._capture:
            messages = _json(_input_messages(_content(event, "messages")), self._limit)
            attributes[INPUT_MESSAGES] = messages
            attributes[INPUT_VALUE] = messages  # what Phoenix and Langfuse show as the input
            attributes["input.mime_type"] = "application/json"
        if step is None:
            parent = run.ctx
        else:
            if step.call is not None:  # a call that never answered
                step.call.end(_ns(event.timestamp))
            parent = step.ctx
        span, ctx = self._start(f"chat {model}", parent, event, SpanKind.CLIENT, attributes)
        if step is not None:
            step.call = span
        otel_context.attach(ctx)

    def _llm_response(self, run: _Run, event: BackpackEvent) -> None:
        step = run.steps.get(event.step)
        payload = event.payload
        span = step.call if step is not None else None
        if span is None:  # a response without its request: one span for the call
            started = event.timestamp - (_get(payload, "latency_ms") or 0.0) / 1e3
            span, _ = self._start(
                f"chat {_get(payload, 'model')}",
                step.ctx if step is not None else run.ctx,
                event._replace(timestamp=started),
                SpanKind.CLIENT,
                {OPERATION: "chat", OPENINFERENCE_KIND: "LLM"},
            )
        usage = _get(payload, "usage")
        usage = usage if isinstance(usage, Mapping) else {}
        tokens_in, tokens_out = _int(usage.get("input_tokens")), _int(usage.get("output_tokens"))
        span.set_attribute(PROVIDER, str(_get(payload, "provider") or ""))
        span.set_attribute(RESPONSE_MODEL, str(_get(payload, "model") or ""))
        span.set_attribute(INPUT_TOKENS, tokens_in)
        span.set_attribute(OUTPUT_TOKENS, tokens_out)
        if _int(usage.get("cached_input_tokens")):
            span.set_attribute(CACHE_READ_TOKENS, usage["cached_input_tokens"])
        if _int(usage.get("cache_write_tokens")):
            span.set_attribute(CACHE_WRITE_TOKENS, usage["cache_write_tokens"])
        if _int(usage.get("reasoning_tokens")):
            span.set_attribute("gen_ai.usage.reasoning_tokens", usage["reasoning_tokens"])
        finish = _get(payload, "finish_reason")
        if finish:
            span.set_attribute(FINISH_REASONS, [str(finish)])
        cost = _get(payload, "cost")
        cost_float = _cost(cost)
        if cost_float is not None:
            span.set_attribute(COST, cost_float)
            span.set_attribute(LANGFUSE_COST, cost_float)
        span.set_attribute("backpackflow.cost_known", bool(_get(payload, "cost_known")))
        if self._capture:
            message: dict[str, Any] = {
                "role": "assistant",
                "parts": [{"type": "text", "content": _get(payload, "text") or ""}],
            }
            if finish:
                message["finish_reason"] = str(finish)
            span.set_attribute(OUTPUT_MESSAGES, _json([message], self._limit))
            span.set_attribute(OUTPUT_VALUE, _text(_get(payload, "text") or "", self._limit))
        span.end(_ns(event.timestamp))
        if step is not None:
            step.call = None
            step.tokens_in += tokens_in
            step.tokens_out += tokens_out
            if cost_float is not None:
                step.calls_cost = (step.calls_cost or Decimal(0)) + Decimal(str(cost))
            otel_context.attach(step.ctx)

    def _retry(self, run: _Run, event: BackpackEvent) -> None:
        payload = event.payload
        attributes: dict[str, Any] = {
            ERROR_TYPE: str(_get(payload, "error_type") or ""),
            "backpackflow.retry.attempt": _int(_get(payload, "attempt")),
            "backpackflow.retry.delay_s": float(_get(payload, "delay_s") or 0.0),
            "backpackflow.error.message": _text(_get(payload, "error") or "", 2000),
        }
        if _get(payload, "provider"):
            attributes[PROVIDER] = str(_get(payload, "provider"))
        self._target(run, event).add_event("retry", attributes, _ns(event.timestamp))

    def _fallback(self, run: _Run, event: BackpackEvent) -> None:
        payload = event.payload
        reason = _text(_get(payload, "reason") or "", 2000)
        attributes = {
            "backpackflow.fallback.from_provider": str(_get(payload, "from_provider") or ""),
            "backpackflow.fallback.from_model": str(_get(payload, "from_model") or ""),
            "backpackflow.fallback.to_provider": str(_get(payload, "to_provider") or ""),
            "backpackflow.fallback.to_model": str(_get(payload, "to_model") or ""),
            "backpackflow.fallback.reason": reason,
        }
        step = run.steps.get(event.step)
        when = _ns(event.timestamp)
        if step is None or step.call is None:
            self._target(run, event).add_event("fallback", attributes, when)
            return
        call = step.call
        call.add_event("fallback", attributes, when)
        call.set_attribute(ERROR_TYPE, "fallback")
        call.set_status(Status(StatusCode.ERROR, reason[:1000]))
        call.end(when)
        step.call = None
        step.span.add_event("fallback", attributes, when)
        otel_context.attach(step.ctx)

    def _cache_hit(self, run: _Run, event: BackpackEvent) -> None:
        payload = event.payload
        usage = _get(payload, "usage")
        usage = usage if isinstance(usage, Mapping) else {}
        attributes: dict[str, Any] = {
            INPUT_TOKENS: _int(usage.get("input_tokens")),
            OUTPUT_TOKENS: _int(usage.get("output_tokens")),
        }
        saved = _cost(_get(payload, "cost_saved"))
        if saved is not None:
            attributes["backpackflow.cost_saved_usd"] = saved
        span = self._target(run, event, call=False)
        span.add_event("cache_hit", attributes, _ns(event.timestamp))
        span.set_attribute("backpackflow.cache_hit", True)

    # ------------------------------------------------------------------ tool calls

    def _tool_request(self, run: _Run, event: BackpackEvent) -> None:
        nested = event.parent_step is not None  # a tool call that is a step of its own
        step = run.steps.get(event.parent_step if nested else event.step)
        payload = event.payload
        tool = str(_get(payload, "tool") or "")
        attributes: dict[str, Any] = {
            OPERATION: "execute_tool",
            TOOL_NAME: tool,
            TOOL_TYPE: "function",
            OPENINFERENCE_KIND: "TOOL",
        }
        if self._capture:
            attributes[TOOL_ARGUMENTS] = _json(_content(event, "arguments"), self._limit)
        parent = step.ctx if step is not None else run.ctx
        if nested:
            # under the node's span, beside its sibling calls (they may overlap in time): a
            # step of its own, ended by its tool_response (or the run's end)
            span, ctx = self._start(
                f"execute_tool {tool}", parent, event, SpanKind.INTERNAL, attributes
            )
            run.steps[event.step] = _Step(span, ctx, parent)
            return
        if step is not None and step.call is not None:
            step.call.end(_ns(event.timestamp))
        span, ctx = self._start(
            f"execute_tool {tool}", parent, event, SpanKind.INTERNAL, attributes
        )
        if step is not None:
            step.call = span
        otel_context.attach(ctx)

    def _tool_response(self, run: _Run, event: BackpackEvent) -> None:
        if event.parent_step is not None:  # a nested tool step: its own span ends
            nested = run.steps.pop(event.step, None)
            if nested is not None:
                self._tool_ended(nested.span, event)
            return
        step = run.steps.get(event.step)
        if step is None or step.call is None:
            return
        self._tool_ended(step.call, event)
        step.call = None
        otel_context.attach(step.ctx)

    def _tool_ended(self, span: Span, event: BackpackEvent) -> None:
        error = _get(event.payload, "error")
        if error:
            span.set_attribute(ERROR_TYPE, "ToolError")
            span.set_status(Status(StatusCode.ERROR, _text(error, 1000)))
        elif self._capture:
            span.set_attribute(TOOL_RESULT, _json(_content(event, "result"), self._limit))
        span.end(_ns(event.timestamp))

    # ------------------------------------------------------------------ others

    def _guardrail(self, run: _Run, event: BackpackEvent) -> None:
        payload = event.payload
        attributes = {
            "backpackflow.guardrail.limit": str(_get(payload, "limit") or ""),
            "backpackflow.guardrail.value": str(_get(payload, "value")),
            "backpackflow.guardrail.maximum": str(_get(payload, "maximum")),
            "backpackflow.guardrail.message": _text(_get(payload, "message") or "", 2000),
        }
        self._target(run, event, call=False).add_event(
            "guardrail", attributes, _ns(event.timestamp)
        )

    def _log(self, run: _Run, event: BackpackEvent) -> None:
        payload = event.payload
        attributes = {
            "log.level": str(_get(payload, "level") or "info"),
            "log.message": _text(_get(payload, "message") or "", 2000),
        }
        self._target(run, event).add_event("log", attributes, _ns(event.timestamp))


def _input_messages(messages: Any) -> list[dict[str, Any]]:
    """Chat messages as the GenAI conventions write them: role and parts."""
    result = []
    for message in messages if isinstance(messages, (list, tuple)) else ():
        if not isinstance(message, Mapping):
            continue
        content = message.get("content")
        parts = [{"type": "text", "content": content}] if isinstance(content, str) else content
        result.append({"role": message.get("role"), "parts": parts})
    return result
