"""The service seen from ops tools: ``/metrics`` scraped during and after runs, equal to the
stored totals; who may read it; the otlp sink the operator attaches to every run, a run's
spans joining the trace of the request that started it."""

from __future__ import annotations

import sys
import time
from collections.abc import Callable, Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families
from server_kit import (
    GATES,
    TEST_SETTINGS,
    LiveServer,
    create_workflow,
    flow,
    gate,
    make_llm_registry,
    start_run,
    unique,
    wait_for_status,
)

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "otel"))

from otel_support import OtlpReceiver

import backpackflow_otel.sink
from backpackflow.plugins import Registry
from backpackflow_server import Settings

FINAL = ("succeeded", "failed", "canceled")


@pytest.fixture(scope="module")
def llm_registry() -> Registry:
    """The test nodes with the real llm and tool nodes, and the otlp sink."""
    return make_llm_registry(backpackflow_otel.sink)


@pytest.fixture
def live(llm_registry: Registry, tmp_path: Path) -> Iterator[Callable[..., LiveServer]]:
    servers: list[LiveServer] = []

    def start(**settings: Any) -> LiveServer:
        options = {
            **TEST_SETTINGS,
            "llm_cache": tmp_path / "llm-cache.sqlite",
            "files_dir": tmp_path,
            **settings,
        }
        server = LiveServer(Settings(**options), llm_registry).start()
        servers.append(server)
        return server

    yield start
    GATES.open_all()
    for server in servers:
        server.stop()
    from backpackflow_otel import pipeline

    pipeline.shutdown_all()


def scrape(client: httpx.Client) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """``/metrics`` as {(sample name, sorted labels): value}."""
    response = client.get("/metrics")
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/plain")
    samples = {}
    for family in text_string_to_metric_families(response.text):
        for sample in family.samples:
            samples[sample.name, tuple(sorted(sample.labels.items()))] = sample.value
    return samples


def flaky_llm() -> dict[str, Any]:
    """An llm node whose provider fails every call: one retry, then a fallback."""
    return {
        "type": "llm",
        "id": "ask",
        "params": {
            "provider": "flaky",
            "model": "offline-extractive-1",
            "prompt": "Summarize in 1 sentence:\n\nThe harbor reopened on Monday after the storm.",
            "fallbacks": [{"provider": "offline", "model": "offline-extractive-1"}],
            "max_attempts": 2,
            "retry_base_delay": 0.001,
            "retry_max_delay": 0.001,
        },
    }


def stored(client: httpx.Client) -> dict[str, Any]:
    """Totals over the stored runs that finished, computed from the run store through the API."""
    runs = client.get("/api/runs", params={"limit": 200}).json()
    runs = runs["items"] if isinstance(runs, dict) else runs
    totals: dict[str, Any] = {
        "runs": {status: 0 for status in FINAL},
        "tokens_in": 0,
        "tokens_out": 0,
        "cost": Decimal(0),
        "steps": {},
        "retries": 0,
        "fallbacks": 0,
        "cache_hits": 0,
        "saved": Decimal(0),
        "unfinished": 0,
    }
    for run in runs:
        if run["status"] not in FINAL:
            totals["unfinished"] += 1
            continue
        totals["runs"][run["status"]] += 1
        totals["tokens_in"] += run["total_tokens_input"]
        totals["tokens_out"] += run["total_tokens_output"]
        totals["cost"] += Decimal(run["total_cost"])
        for step in client.get(f"/api/runs/{run['id']}").json()["steps"]:
            key = (step["node_type"], step["status"])
            totals["steps"][key] = totals["steps"].get(key, 0) + 1
            totals["retries"] += step["retries"]
            totals["cache_hits"] += bool(step["cache_hit"])
        trace = client.get(f"/api/runs/{run['id']}/trace", params={"limit": 1000}).json()
        for event in trace["items"]:
            if event["type"] == "fallback":
                totals["fallbacks"] += 1
            elif event["type"] == "cache_hit":
                totals["saved"] += Decimal(event["payload"]["cost_saved"])
    return totals


def check(samples: dict[Any, float], totals: dict[str, Any]) -> None:
    """The scraped metrics equal the stored totals, exactly."""
    for status, count in totals["runs"].items():
        assert samples["backpackflow_runs_total", (("status", status),)] == count, status

    def total(name: str, **labels: str) -> float:
        return sum(
            value
            for (sample, pairs), value in samples.items()
            if sample == name and labels.items() <= dict(pairs).items()
        )

    assert total("backpackflow_llm_tokens_total", direction="input") == totals["tokens_in"]
    assert total("backpackflow_llm_tokens_total", direction="output") == totals["tokens_out"]
    assert total("backpackflow_llm_cost_usd_total") == float(totals["cost"])
    steps = {
        (dict(pairs)["node_type"], dict(pairs)["status"]): value
        for (sample, pairs), value in samples.items()
        if sample == "backpackflow_step_duration_seconds_count"
    }
    assert steps == totals["steps"]
    assert samples["backpackflow_retries_total", ()] == totals["retries"]
    assert samples["backpackflow_fallbacks_total", ()] == totals["fallbacks"]
    assert samples["backpackflow_llm_cache_hits_total", ()] == totals["cache_hits"]
    assert samples["backpackflow_llm_cache_saved_usd_total", ()] == float(totals["saved"])
    assert samples["backpackflow_event_writer_events_total", (("outcome", "dropped"),)] == 0


def test_metrics_equal_the_stored_totals_during_and_after_runs(
    live: Callable[..., LiveServer], database_url: str
) -> None:
    server = live(database_url=database_url)
    viewer = server.client(token=server.token("viewer"))
    with server.client() as client, viewer:
        asking = create_workflow(
            client,
            flow(
                flaky_llm(),
                dependencies={"flaky": {"type": "offline", "config": {"fail_first": 99}}},
            ),
        )
        failing = create_workflow(client, flow({"type": "fail", "id": "boom", "params": {}}))
        first = start_run(client, asking)
        wait_for_status(client, first["id"], *FINAL)
        second = start_run(client, asking)  # answered from the response cache
        failed = start_run(client, failing)
        for run in (second, failed):
            wait_for_status(client, run["id"], *FINAL)
        name = unique("metrics")
        blocked = start_run(client, create_workflow(client, flow(gate("wait", name))))
        GATES.wait_until_waiting(name)

        with client.stream("GET", f"/api/runs/{blocked['id']}/stream") as stream:
            deadline = time.monotonic() + 10
            while (samples := scrape(viewer))["backpackflow_sse_clients", ()] != 1:
                assert time.monotonic() < deadline, "the stream was never counted"
            assert stream.status_code == 200
        totals = stored(client)
        assert totals["unfinished"] == 1  # the gated run
        assert totals["runs"] == {"succeeded": 2, "failed": 1, "canceled": 0}
        assert totals["retries"] == 1 and totals["fallbacks"] == 1 and totals["cache_hits"] == 1
        assert totals["tokens_in"] > 0 and totals["saved"] > 0
        check(samples, totals)  # during a run
        assert samples["backpackflow_runs_active", ()] == 1
        assert samples["backpackflow_runs_queued", ()] == 0

        GATES.open(name)
        wait_for_status(client, blocked["id"], *FINAL)
        samples = scrape(viewer)
        check(samples, stored(client))  # after every run
        assert samples["backpackflow_runs_active", ()] == 0
        assert samples["backpackflow_sse_clients", ()] == 0
        assert samples["backpackflow_event_writer_pending", ()] == 0
        text = viewer.get("/metrics").text
        assert asking not in text and "harbor" not in text  # no ids or inputs in labels


@pytest.mark.parametrize(
    ("setting", "anonymous", "viewer"),
    [("token", 401, 200), ("public", 200, 200), ("off", 404, 404)],
)
def test_who_may_read_the_metrics(
    live: Callable[..., LiveServer], setting: str, anonymous: int, viewer: int
) -> None:
    server = live(metrics=setting)
    with server.client(token=None) as nobody, server.client(token=server.token("viewer")) as one:
        assert nobody.get("/metrics").status_code == anonymous
        assert one.get("/metrics").status_code == viewer


def test_a_run_joins_the_trace_of_the_request_that_started_it(
    live: Callable[..., LiveServer],
) -> None:
    with OtlpReceiver() as receiver:
        server = live(sinks=[f"otlp:{receiver.url}"], sink_options={"otlp": {"max_delay": 0.05}})
        caller_trace, caller_span = "4bf92f3577b34da6a3ce929d0e0e4736", "00f067aa0ba902b7"
        with server.client() as client:
            workflow = create_workflow(
                client,
                flow(
                    flaky_llm(),
                    dependencies={"flaky": {"type": "offline", "config": {"fail_first": 99}}},
                ),
            )
            response = client.post(
                f"/api/workflows/{workflow}/runs",
                json={},
                headers={"traceparent": f"00-{caller_trace}-{caller_span}-01"},
            )
            assert response.status_code == 202, response.text
            joined = response.json()["id"]
            wait_for_status(client, joined, *FINAL)
            alone = start_run(client, workflow)["id"]
            wait_for_status(client, alone, *FINAL)
            metrics = scrape(client)
        spans = receiver.spans  # the sinks flushed before the runs were marked finished
        roots = {
            s.attributes["backpackflow.run.id"]: s
            for s in spans
            if s.name.startswith("invoke_workflow")
        }
        assert (roots[joined].trace_id, roots[joined].parent_span_id) == (caller_trace, caller_span)
        assert {s.trace_id for s in spans if s.trace_id == caller_trace} and all(
            s.trace_id == caller_trace
            for s in spans
            if s.attributes.get("backpackflow.run.id") == joined
        )
        assert roots[alone].parent_span_id == "" and roots[alone].trace_id != caller_trace
        names = sorted(s.name for s in spans if s.trace_id == caller_trace)
        assert names == [
            "chat offline-extractive-1",  # the call that failed over
            "chat offline-extractive-1",
            f"invoke_workflow {roots[joined].attributes['gen_ai.workflow.name']}",
            "node ask",
        ]
        assert metrics["backpackflow_otel_spans_total", (("outcome", "exported"),)] >= len(spans)
        assert metrics["backpackflow_otel_spans_total", (("outcome", "dropped"),)] == 0


@pytest.mark.parametrize(
    ("variables", "message"),
    [
        ({"BACKPACKFLOW_SINKS": "nosuchsink:x"}, "nosuchsink"),
        (
            {"BACKPACKFLOW_SINK_OPTIONS": '{"webhook": {"url": "http://127.0.0.1:9"}}'},
            "sink_options for sink(s) not in sinks: webhook",
        ),
    ],
)
def test_serve_refuses_a_wrong_sinks_setting_before_it_starts(
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    variables: dict[str, str],
    message: str,
) -> None:
    from server_kit import cli_main

    for name, value in variables.items():
        monkeypatch.setenv(name, value)
    assert cli_main(["serve", "--port", "0", "--local-dev"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("backpackflow serve: the sinks setting:") and message in err
    assert "Traceback" not in err
