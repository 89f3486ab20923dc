"""Prometheus metrics of the service (``GET /metrics``), with the official ``prometheus-client``.

What runs did is counted **when each run ends**, from its events, at the moment the store
records its final status and totals: so at any scrape the counters equal the stored totals of
the runs finished since the service started (tokens, cost, steps, retries, cache hits), which
is what a dashboard reconciles against. Counted per run while it executes (one tally per run,
fed by its event stream), then added under one lock, so a scrape never sees half a run. Costs
are summed as exact decimals and converted once per scrape.

Live state is read at scrape time: runs executing and queued, the event writer's backlog
(events accepted but not stored yet: its lag), what it gave up on, open SSE streams, the
span counters of OpenTelemetry export pipelines when the ``otlp`` sink is in use, and each
budget's spend against its amount (see :mod:`.budgets`).

Labels are bounded: status, node type, provider and model only -- never a workflow's name,
inputs or ids. Node types and provider/model pairs beyond :data:`MAX_SERIES` distinct values
are counted under ``other``.

Access (see docs/observability.md and docs/security.md): the ``metrics`` setting: ``token``
(default: a viewer token, as every read), ``public`` (no token: for a scraper on a private
network) or ``off``.
"""

from __future__ import annotations

import bisect
import sys
import threading
from collections import Counter as Tally
from collections.abc import AsyncIterator, Callable, Iterable
from decimal import Decimal, InvalidOperation
from typing import TYPE_CHECKING, Any

from fastapi import FastAPI, Request, Response
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector

from backpackflow import BackpackEvent, StreamEventType

from .auth import require
from .models import ErrorResponse

if TYPE_CHECKING:
    from .runs import RunManager
    from .settings import Settings

#: Distinct values a label may take (node types; provider/model pairs) before "other".
MAX_SERIES = 200
#: Step latency buckets, seconds.
BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0)
OTHER = "other"

_T = StreamEventType


def _decimal(value: Any) -> Decimal:
    try:
        number = Decimal(str(value))
    except (InvalidOperation, ValueError):
        return Decimal(0)
    return number if number.is_finite() else Decimal(0)


def _count(value: Any) -> int:
    return value if type(value) is int and value > 0 else 0


def _field(payload: Any, name: str) -> Any:
    if isinstance(payload, dict):
        return payload.get(name)
    return getattr(payload, name, None)


class _RunTally:
    """What one run did so far (fed by its events on the service's event loop)."""

    __slots__ = ("cache_hits", "fallbacks", "llm", "retries", "saved", "started", "steps")

    def __init__(self) -> None:
        self.started: dict[int | None, tuple[str, float]] = {}  # step → (node type, start)
        self.steps: list[tuple[str, str, float]] = []  # (node type, status, seconds)
        self.llm: dict[tuple[str, str], list[Any]] = {}  # → [calls, in, out, cost]
        self.retries = 0
        self.fallbacks = 0
        self.cache_hits = 0
        self.saved = Decimal(0)

    def __call__(self, event: BackpackEvent) -> None:
        kind = event.type
        if kind is _T.NODE_START:
            node_type = _field(event.payload, "node_type")
            self.started[event.step] = (str(node_type or "node"), event.timestamp)
        elif kind is _T.NODE_END or kind is _T.ERROR:
            begun = self.started.pop(event.step, None)
            if begun is not None:
                status = "succeeded" if kind is _T.NODE_END else "failed"
                self.steps.append((begun[0], status, max(0.0, event.timestamp - begun[1])))
        elif kind is _T.LLM_RESPONSE:
            payload = event.payload
            key = (str(_field(payload, "provider") or ""), str(_field(payload, "model") or ""))
            usage = _field(payload, "usage")
            usage = usage if isinstance(usage, dict) else {}
            entry = self.llm.setdefault(key, [0, 0, 0, Decimal(0)])
            entry[0] += 1
            entry[1] += _count(usage.get("input_tokens"))
            entry[2] += _count(usage.get("output_tokens"))
            entry[3] += _decimal(_field(payload, "cost"))
        elif kind is _T.RETRY:
            self.retries += 1
        elif kind is _T.FALLBACK:
            self.fallbacks += 1
        elif kind is _T.CACHE_HIT:
            self.cache_hits += 1
            self.saved += _decimal(_field(event.payload, "cost_saved"))


class _Histogram:
    __slots__ = ("buckets", "count", "sum")

    def __init__(self) -> None:
        self.buckets = [0] * (len(BUCKETS) + 1)
        self.count = 0
        self.sum = 0.0

    def observe(self, seconds: float) -> None:
        self.buckets[bisect.bisect_left(BUCKETS, seconds)] += 1
        self.count += 1
        self.sum += seconds

    def family_buckets(self) -> list[tuple[str, float]]:
        result: list[tuple[str, float]] = []
        running = 0
        for bound, count in zip((*BUCKETS, float("inf")), self.buckets, strict=True):
            running += count
            result.append(("+Inf" if bound == float("inf") else repr(bound), running))
        return result


class ServiceMetrics(Collector):
    """The service's metrics: run totals added as runs end, live state read at scrape time."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=False)
        self._lock = threading.Lock()
        self._tallies: dict[str, _RunTally] = {}
        self._runs: Tally[str] = Tally()
        self._steps: dict[tuple[str, str], _Histogram] = {}
        self._llm: dict[tuple[str, str], list[Any]] = {}
        self._retries = 0
        self._fallbacks = 0
        self._cache_hits = 0
        self._saved = Decimal(0)
        self._sse_clients = 0
        self._manager: RunManager | None = None
        self.registry.register(self)

    def bind(self, manager: RunManager) -> None:
        """Read live state (runs, queue, writers) from ``manager`` at scrape time."""
        self._manager = manager

    # ------------------------------------------------------------------ runs

    def watch(self, run_id: str) -> Callable[[BackpackEvent], None]:
        """A subscriber for the run's event stream; what it counts is added by :meth:`ended`."""
        tally = self._tallies[run_id] = _RunTally()
        return tally

    def ended(self, run_id: str, status: str) -> None:
        """The run ``run_id`` ended with ``status`` (its final status is stored now)."""
        tally = self._tallies.pop(run_id, None)
        with self._lock:
            self._runs[status] += 1
            if tally is None:
                return
            for node_type, step_status, seconds in tally.steps:
                key = (self._bounded_type(node_type), step_status)
                histogram = self._steps.get(key)
                if histogram is None:
                    histogram = self._steps[key] = _Histogram()
                histogram.observe(seconds)
            for (provider, model), (calls, tokens_in, tokens_out, cost) in tally.llm.items():
                key = self._bounded_model(provider, model)
                entry = self._llm.setdefault(key, [0, 0, 0, Decimal(0)])
                entry[0] += calls
                entry[1] += tokens_in
                entry[2] += tokens_out
                entry[3] += cost
            self._retries += tally.retries
            self._fallbacks += tally.fallbacks
            self._cache_hits += tally.cache_hits
            self._saved += tally.saved

    def _bounded_type(self, node_type: str) -> str:
        known = {key[0] for key in self._steps}
        return node_type if node_type in known or len(known) < MAX_SERIES else OTHER

    def _bounded_model(self, provider: str, model: str) -> tuple[str, str]:
        key = (provider, model)
        return key if key in self._llm or len(self._llm) < MAX_SERIES else (OTHER, OTHER)

    # ------------------------------------------------------------------ SSE streams

    async def stream(self, events: AsyncIterator[Any]) -> AsyncIterator[Any]:
        """``events`` (an SSE stream), counted as an open client while it runs."""
        self._sse_clients += 1
        try:
            async for item in events:
                yield item
        finally:
            self._sse_clients -= 1

    # ------------------------------------------------------------------ the collector

    def collect(self) -> Iterable[Metric]:
        with self._lock:
            runs = dict(self._runs)
            steps = {key: (h.family_buckets(), h.sum) for key, h in self._steps.items()}
            llm = {key: list(value) for key, value in self._llm.items()}
            retries, fallbacks = self._retries, self._fallbacks
            cache_hits, saved = self._cache_hits, self._saved
        family = CounterMetricFamily(
            "backpackflow_runs", "Runs finished, by final status", labels=["status"]
        )
        for status in ("succeeded", "failed", "canceled"):
            family.add_metric([status], runs.get(status, 0))
        yield family
        histogram = HistogramMetricFamily(
            "backpackflow_step_duration_seconds",
            "Node executions of finished runs, by node type and status",
            labels=["node_type", "status"],
        )
        for (node_type, status), (buckets, total) in sorted(steps.items()):
            histogram.add_metric([node_type, status], buckets, total)
        yield histogram
        labels = ["provider", "model"]
        calls = CounterMetricFamily("backpackflow_llm_calls", "LLM calls answered", labels=labels)
        tokens = CounterMetricFamily(
            "backpackflow_llm_tokens", "LLM tokens", labels=[*labels, "direction"]
        )
        cost = CounterMetricFamily("backpackflow_llm_cost_usd", "LLM cost in USD", labels=labels)
        for (provider, model), (n, tokens_in, tokens_out, dollars) in sorted(llm.items()):
            calls.add_metric([provider, model], n)
            tokens.add_metric([provider, model, "input"], tokens_in)
            tokens.add_metric([provider, model, "output"], tokens_out)
            cost.add_metric([provider, model], float(dollars))
        yield calls
        yield tokens
        yield cost
        yield CounterMetricFamily(
            "backpackflow_llm_cache_hits", "LLM answers served from the cache", value=cache_hits
        )
        yield CounterMetricFamily(
            "backpackflow_llm_cache_saved_usd", "Cost the cache hits saved, USD", float(saved)
        )
        yield CounterMetricFamily("backpackflow_retries", "Retries of failed attempts", retries)
        yield CounterMetricFamily("backpackflow_fallbacks", "Fallbacks to another model", fallbacks)
        yield GaugeMetricFamily("backpackflow_sse_clients", "Open SSE streams", self._sse_clients)
        yield from self._live()
        yield from _otel_pipelines()

    def _live(self) -> Iterable[Metric]:
        manager = self._manager
        if manager is None:
            return
        yield GaugeMetricFamily("backpackflow_runs_active", "Runs executing", manager.active_count)
        yield GaugeMetricFamily(
            "backpackflow_runs_queued", "Runs waiting for a slot", manager.queued_count
        )
        stats = [writer.stats for writer in manager.writers]
        yield GaugeMetricFamily(
            "backpackflow_event_writer_pending",
            "Events accepted but not stored yet (the writer's lag)",
            sum(s.pending for s in stats),
        )
        events = CounterMetricFamily(
            "backpackflow_event_writer_events",
            "Events the writer stored or gave up on (dropped)",
            labels=["outcome"],
        )
        events.add_metric(["stored"], sum(s.written for s in stats))
        events.add_metric(["dropped"], sum(s.failed for s in stats))
        yield events
        yield CounterMetricFamily(
            "backpackflow_event_writer_retries",
            "Writes repeated after a transient database error",
            sum(s.retries for s in stats),
        )
        yield from _budgets(manager)


def _budgets(manager: RunManager) -> Iterable[Metric]:
    """Each budget's spend so far in its current period and its amount (labelled by the
    budget's name: budgets are the operator's, few), and what budgets did since start."""
    guard = manager.budgets
    labels = ["budget", "period", "kind"]
    spend = GaugeMetricFamily(
        "backpackflow_budget_spend_usd",
        "Spend so far in each budget's current period (stored totals plus executing runs; "
        "per-run budgets: the most an executing run has spent)",
        labels=labels,
    )
    amount = GaugeMetricFamily(
        "backpackflow_budget_amount_usd", "Each budget's limit", labels=labels
    )
    for item in guard.snapshot():
        budget = item["budget"]
        values = [budget.name, budget.period, budget.kind]
        spend.add_metric(values, float(item["spend"]))
        amount.add_metric(values, float(budget.amount))
    yield spend
    yield amount
    outcomes = CounterMetricFamily(
        "backpackflow_budget_actions",
        "Soft-budget alerts sent, runs refused and runs stopped by hard budgets",
        labels=["action"],
    )
    for action in ("alerts", "refused", "stopped"):
        outcomes.add_metric([action], guard.counts[action])
    yield outcomes


def _otel_pipelines() -> Iterable[Metric]:
    """Span counters of the otlp sink's export pipelines, if that sink is in use (read from
    its module when already imported: this never imports the OpenTelemetry SDK)."""
    module = sys.modules.get("backpackflow_otel.pipeline")
    if module is None:
        return
    pipelines = module.pipelines()
    if not pipelines:
        return
    family = CounterMetricFamily(
        "backpackflow_otel_spans",
        "Spans of the otlp sink, by outcome (exported, failed, dropped: queue full)",
        labels=["outcome"],
    )
    totals: Tally[str] = Tally()
    pending = 0
    for pipeline in pipelines:
        snapshot = pipeline.stats.snapshot()
        for outcome in ("exported", "failed", "dropped"):
            totals[outcome] += snapshot[outcome]
        pending += snapshot["pending"]
    for outcome in ("exported", "failed", "dropped"):
        family.add_metric([outcome], totals[outcome])
    yield family
    yield GaugeMetricFamily("backpackflow_otel_spans_pending", "Spans queued for export", pending)


def add_metrics_route(app: FastAPI, settings: Settings) -> None:
    """``GET /metrics`` (Prometheus text format), as the ``metrics`` setting says."""
    if settings.metrics == "off":
        return
    public = settings.metrics == "public"
    responses: dict[int | str, dict[str, Any]] = {200: {"content": {CONTENT_TYPE_LATEST: {}}}}
    if not public:
        responses[401] = {"model": ErrorResponse, "description": "no valid token or session"}
        responses[403] = {"model": ErrorResponse, "description": "the token is not a viewer's"}

    @app.get(
        "/metrics",
        tags=["service"],
        summary="Prometheus metrics (viewer, unless the metrics setting is 'public')",
        response_class=Response,
        responses=responses,
        dependencies=[] if public else [require("viewer")],
    )
    async def metrics(request: Request) -> Response:
        collector: ServiceMetrics = request.app.state.service.manager.metrics
        return Response(generate_latest(collector.registry), media_type=CONTENT_TYPE_LATEST)
