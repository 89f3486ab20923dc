"""The metrics collector alone, fed events as a run's stream would: costs summed exactly,
labels bounded, nothing counted before the run ends."""

from __future__ import annotations

import time
from typing import Any

from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families

from backpackflow import BackpackEvent, StreamEventType
from backpackflow_server import metrics
from backpackflow_server.metrics import ServiceMetrics

T = StreamEventType


def event(kind: StreamEventType, payload: Any, step: int | None = None) -> BackpackEvent:
    return BackpackEvent(1, time.time(), "run", step, "n", "n", None, kind, payload)


def samples(collector: ServiceMetrics) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    text = generate_latest(collector.registry).decode()
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def llm_response(model: str, cost: str) -> dict[str, Any]:
    return {
        "provider": "p",
        "model": model,
        "usage": {"input_tokens": 1, "output_tokens": 2},
        "cost": cost,
    }


def test_costs_are_summed_as_decimals_and_counted_when_the_run_ends() -> None:
    collector = ServiceMetrics()
    tally = collector.watch("r1")
    for cost in ("0.1", "0.2"):
        tally(event(T.LLM_RESPONSE, llm_response("m", cost)))
    tally(event(T.CACHE_HIT, {"cost_saved": "0.1", "usage": {}}))
    tally(event(T.CACHE_HIT, {"cost_saved": "0.2", "usage": {}}))
    before = samples(collector)
    assert (
        before.get(("backpackflow_llm_cost_usd_total", (("model", "m"), ("provider", "p")))) is None
    )
    assert before["backpackflow_runs_total", (("status", "succeeded"),)] == 0
    collector.ended("r1", "succeeded")
    after = samples(collector)
    key = (("model", "m"), ("provider", "p"))
    assert after["backpackflow_llm_cost_usd_total", key] == 0.3  # not 0.30000000000000004
    assert after["backpackflow_llm_cache_saved_usd_total", ()] == 0.3
    assert after["backpackflow_llm_calls_total", key] == 2
    assert after["backpackflow_llm_tokens_total", (("direction", "output"), *key)] == 4
    assert after["backpackflow_runs_total", (("status", "succeeded"),)] == 1


def test_labels_are_bounded(monkeypatch: Any) -> None:
    monkeypatch.setattr(metrics, "MAX_SERIES", 3)
    collector = ServiceMetrics()
    tally = collector.watch("r1")
    for i in range(5):
        tally(event(T.LLM_RESPONSE, llm_response(f"model-{i}", "1")))
        tally(event(T.NODE_START, {"node_type": f"type-{i}"}, step=i))
        tally(event(T.NODE_END, {}, step=i))
    collector.ended("r1", "failed")
    found = samples(collector)
    models = {dict(k)["model"] for name, k in found if name == "backpackflow_llm_calls_total"}
    assert models == {"model-0", "model-1", "model-2", "other"}
    assert found["backpackflow_llm_calls_total", (("model", "other"), ("provider", "other"))] == 2
    types = {
        dict(k)["node_type"]
        for name, k in found
        if name == "backpackflow_step_duration_seconds_count"
    }
    assert types == {"type-0", "type-1", "type-2", "other"}
