"""The otlp sink beyond the research example: secrets, gRPC, W3C trace context in and out,
nested flows, a full queue, and bad options."""

from __future__ import annotations

import itertools
import json
import socket
from pathlib import Path
from typing import Any

import pytest
from llm_wire import Reply
from nodes_support import (
    Page,
    PageServer,
    flow_doc,
    llm,
    load,
    openai_completion,
    tool,
    write_flow,
)
from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.trace import NonRecordingSpan, SpanContext, TraceFlags
from otel_support import OtlpReceiver, grpc_receiver, tree

import backpackflow_otel.sink
from backpackflow import Backpack, EventStreamer, Flow, Node
from backpackflow.cli import main
from backpackflow.errors import PluginError
from backpackflow.events import make_sink
from backpackflow.plugins import build_registry
from backpackflow.policy import EgressPolicy, SandboxPolicy
from backpackflow_otel.sink import OtlpOptions, OtlpSink
from backpackflow_sinks import SinkConfigError

CANARY = "canary-5e0f1d2c9b"


def run_cli(capsys: Any, flow: Path, *argv: str) -> tuple[int, dict[str, Any], str]:
    code = main(["run", str(flow), "--json", "--no-cache", *argv])
    out, err = capsys.readouterr()
    return code, json.loads(out), err


def test_a_canary_secret_never_reaches_an_exported_span(
    capsys: Any, tmp_path: Path, receiver: OtlpReceiver, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("BPF_CANARY", CANARY)
    with PageServer({"/report": Page(body=f"The report. Its key is {CANARY}.".encode())}) as page:
        flow = write_flow(
            tmp_path / "flow.json",
            flow_doc(
                tool(
                    "fetch",
                    "http_fetch",
                    arguments={
                        "url": f"{page.url}/report?key=${{BPF_CANARY}}",
                        "allowed_hosts": ["127.0.0.1"],
                        "headers": {"Authorization": "Bearer ${BPF_CANARY}"},
                    },
                ),
                llm(
                    "ask",
                    "Summarize for key ${BPF_CANARY}:\n\n{{ node.fetch.output.content }}",
                    provider="offline",
                    model="offline-extractive-1",
                ),
                tool("missing", "read_file", arguments={"path": "${BPF_CANARY}.txt"}),
            ),
        )
        code, result, _ = run_cli(
            capsys,
            flow,
            "--sink",
            f"otlp:{receiver.url}",
            "--sink-option",
            "otlp.capture_content=true",
            "--sink-option",
            'otlp.headers={"x-otlp-token": "tok-77aa8e9c1d"}',
        )
        assert page.headers[0]["authorization"] == f"Bearer {CANARY}"  # the secret was used
    assert code == 1 and result["status"] == "failed"  # the last node's file is not there
    raw = receiver.collected.raw()
    assert raw and CANARY.encode() not in raw
    assert b"${BPF_CANARY}" in raw  # where it was: prompts, tool arguments, results, errors
    assert receiver.collected.headers[0]["x-otlp-token"] == "tok-77aa8e9c1d"
    assert b"tok-77aa8e9c1d" not in raw
    failed = next(s for s in receiver.spans if s.name == "node missing")
    assert failed.status_code == 2 and failed.event_names() == ["exception"]
    assert "${BPF_CANARY}" in failed.events[0][1]["exception.message"]


def test_spans_go_over_grpc_too(capsys: Any, tmp_path: Path) -> None:
    flow = write_flow(tmp_path / "flow.json", flow_doc(llm("ask", "Say hi.", provider="offline")))
    with grpc_receiver() as (url, collected):
        code, result, err = run_cli(
            capsys,
            flow,
            "--sink",
            f"otlp:{url}",
            "--sink-option",
            'otlp.headers={"x-api-key": "k-1"}',
            "--sink-option",
            'otlp.resource_attributes={"deployment.environment": "test"}',
        )
        assert code == 0, err
        names = sorted(s.name for s in collected.spans)
    assert names == ["chat offline-extractive-1", "invoke_workflow flow", "node ask"]
    assert collected.headers[0]["x-api-key"] == "k-1"
    assert collected.spans[0].resource["deployment.environment"] == "test"
    report = result["sinks"]["otlp"]
    assert (report["protocol"], report["spans"], report["exported"]) == ("grpc", 3, 3)


def test_outgoing_calls_carry_the_span_of_the_call(
    capsys: Any, tmp_path: Path, receiver: OtlpReceiver, wire_server: Any
) -> None:
    openai = wire_server(Reply(json=openai_completion("Hi.")))
    with PageServer({"/p": Page(body=b"a page")}) as page:
        flow = write_flow(
            tmp_path / "flow.json",
            flow_doc(
                tool(
                    "fetch",
                    "http_fetch",
                    arguments={"url": f"{page.url}/p", "allowed_hosts": ["127.0.0.1"]},
                ),
                llm(
                    "ask",
                    "Say hi: {{ node.fetch.output.content }}",
                    provider="main",
                    model="gpt-4o-mini",
                ),
                dependencies={
                    "main": {
                        "type": "openai",
                        "config": {"base_url": openai.url, "api_key": "sk-1"},
                    }
                },
            ),
        )
        code, _, err = run_cli(capsys, flow, "--sink", f"otlp:{receiver.url}")
        assert code == 0, err
        spans = {s.name: s for s in receiver.spans}
        fetch, chat = spans["execute_tool http_fetch"], spans["chat gpt-4o-mini"]
        assert traceparent(page.headers[0]) == (fetch.trace_id, fetch.span_id)
        assert traceparent(openai.requests[0].headers) == (chat.trace_id, chat.span_id)
        # without the sink (propagation is still on in this process): no span, no header
        code, _, err = run_cli(capsys, flow, "--sink", "none")
        assert code == 0, err
        assert "traceparent" not in page.headers[1]
        assert "traceparent" not in openai.requests[1].headers


def traceparent(headers: dict[str, str]) -> tuple[str, str]:
    """(trace id, parent span id) of a sampled W3C traceparent header."""
    version, trace_id, span_id, flags = headers["traceparent"].split("-")
    assert version == "00" and int(flags, 16) & 1  # sampled
    return trace_id, span_id


def test_a_run_joins_the_trace_current_where_it_starts(receiver: OtlpReceiver) -> None:
    flow = load(flow_doc(llm("ask", "Say hi.", provider="offline")))
    caller = SpanContext(
        trace_id=0x0AF7651916CD43DD8448EB211C80319C,
        span_id=0xB7AD6B7169203331,
        is_remote=True,
        trace_flags=TraceFlags(TraceFlags.SAMPLED),
    )
    sink = OtlpSink(OtlpOptions(endpoint=receiver.url))
    events = EventStreamer()
    events.subscribe("*", sink.handle)
    token = otel_context.attach(trace.set_span_in_context(NonRecordingSpan(caller)))
    try:
        result = flow.execute_sync(Backpack(), events=events)
        assert trace.get_current_span().get_span_context() == caller  # restored after the run
    finally:
        otel_context.detach(token)
    assert result.status == "succeeded"
    report = sink.close()
    assert report["exported"] == report["spans"] == 3
    (root,) = tree(receiver.spans)["b7ad6b7169203331"]
    assert root.trace_id == "0af7651916cd43dd8448eb211c80319c"
    assert {s.trace_id for s in receiver.spans} == {root.trace_id}


class Step(Node):
    def exec(self, prep_res: Any) -> Any:
        return self.id


def test_nested_flows_nest(receiver: OtlpReceiver) -> None:
    inner_a, inner_b = Step(id="inner_a"), Step(id="inner_b")
    inner_a >> inner_b
    outer, last = Step(id="outer"), Step(id="last")
    outer >> Flow(inner_a, id="sub") >> last
    sink = OtlpSink(OtlpOptions(endpoint=receiver.url))
    events = EventStreamer()
    events.subscribe("*", sink.handle)
    assert Flow(outer, id="main").execute_sync(Backpack(), events=events).status == "succeeded"
    sink.close()
    children = tree(receiver.spans)
    (root,) = children[""]
    assert [s.name for s in children[root.span_id]] == ["node outer", "node sub", "node last"]
    sub = children[root.span_id][1]
    assert [s.name for s in children[sub.span_id]] == ["node inner_a", "node inner_b"]


def test_a_full_queue_drops_spans_and_counts_them() -> None:
    with socket.socket() as probe:  # a port nothing listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    sink = OtlpSink(
        OtlpOptions(
            endpoint=f"http://127.0.0.1:{port}",
            max_queue=2,
            batch_size=1,
            timeout=0.2,
            close_timeout=0.5,
        )
    )
    events = EventStreamer()
    events.subscribe("*", sink.handle)
    steps = [Step(id=f"s{i}") for i in range(8)]
    for a, b in itertools.pairwise(steps):
        a >> b
    assert Flow(steps[0]).execute_sync(Backpack(), events=events).status == "succeeded"
    report = sink.close()
    assert report["spans"] == 9
    dropped = report["dropped"]["queue_full"]
    assert dropped >= 9 - 2 - 1  # at most the queue and one batch in flight were kept
    assert report["exported"] == 0
    assert report["failed"] + report["pending"] + dropped == 9
    sink.handle(next(iter(events.get_events())))  # after close: counted, not traced
    assert sink.close() == report  # idempotent


@pytest.mark.parametrize(
    ("options", "option", "message"),
    [
        ({"endpoint": "ftp://collector"}, "endpoint", "expected http(s)://"),
        ({"endpoint": "http://"}, "endpoint", "expected http(s)://"),
        ({"endpoint": "grpc://collector:4317/v1/traces"}, "endpoint", "without a path"),
        (
            {"endpoint": "grpc://collector:4317", "protocol": "http/protobuf"},
            "protocol",
            "needs an http(s):// endpoint",
        ),
        ({"endpoint": "http://c", "max_queue": 0}, "max_queue", "must be > 0"),
        ({"endpoint": "http://c", "timeout": 0}, "timeout", "must be > 0"),
        ({"endpoint": "http://c", "headers_env": "BPF_NO_SUCH_VAR"}, "headers_env", "not set"),
    ],
)
def test_bad_options_name_the_option(options: dict[str, Any], option: str, message: str) -> None:
    registry = build_registry(plugins=[backpackflow_otel.sink], autoload=False)
    with pytest.raises(SinkConfigError) as caught:
        make_sink(registry, "otlp", options)
    assert caught.value.option == option
    assert message in str(caught.value) and "sink 'otlp'" in str(caught.value)


def test_headers_from_the_environment_never_show_in_errors(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("BPF_OTLP_HEADERS", "authorization=Basic%20c2VjcmV0,x-good=1")
    sink = OtlpSink(OtlpOptions(endpoint="http://127.0.0.1:9", headers_env="BPF_OTLP_HEADERS"))
    destination = sink._pipeline.destination
    assert dict(destination.headers) == {"authorization": "Basic c2VjcmV0", "x-good": "1"}
    assert destination.endpoint == "http://127.0.0.1:9/v1/traces"
    monkeypatch.setenv("BPF_OTLP_HEADERS", "Basic c2VjcmV0")
    with pytest.raises(SinkConfigError) as caught:
        OtlpSink(OtlpOptions(endpoint="http://127.0.0.1:9", headers_env="BPF_OTLP_HEADERS"))
    assert "c2VjcmV0" not in str(caught.value) and "key=value" in str(caught.value)


def test_a_flow_the_operator_does_not_trust_cannot_declare_it(tmp_path: Path) -> None:
    registry = build_registry(plugins=[backpackflow_otel.sink], autoload=False)
    policy = SandboxPolicy(files_root=tmp_path, egress=EgressPolicy(), env_allowlist=())
    with pytest.raises(PluginError, match="cannot run under a sandbox policy"):
        make_sink(registry, "otlp", {"endpoint": "http://collector:4318"}, policy=policy)


def test_close_timeout_zero_leaves_the_export_to_the_background(receiver: OtlpReceiver) -> None:
    sink = OtlpSink(OtlpOptions(endpoint=receiver.url, close_timeout=0, max_delay=30))
    events = EventStreamer()
    events.subscribe("*", sink.handle)
    assert Flow(Step(id="one")).execute_sync(Backpack(), events=events).status == "succeeded"
    report = sink.close()
    assert report["flushed"] is False and report["spans"] == 2
    assert report["exported"] + report["pending"] == 2  # queued, not waited for
    assert sink._pipeline.flush(5.0)
    assert sorted(s.name for s in receiver.spans) == ["invoke_workflow Flow", "node one"]


def test_an_agents_tool_calls_are_spans_under_its_node_span(
    capsys: Any, tmp_path: Path, receiver: OtlpReceiver
) -> None:
    """Two calls of one turn (nested steps, concurrent): sibling spans under the agent's."""
    flow = write_flow(
        tmp_path / "flow.json",
        flow_doc(
            {
                "type": "agent",
                "id": "analyst",
                "params": {"prompt": "Compare a.csv and b.csv.", "tools": ["csv_summary"]},
            }
        ),
    )
    code, _, err = run_cli(capsys, flow, "--sink", f"otlp:{receiver.url}")
    assert code == 0, err
    spans = receiver.spans
    (node,) = [s for s in spans if s.attributes.get("backpackflow.node.id") == "analyst"]
    calls = [s for s in spans if s.name == "execute_tool csv_summary"]
    assert len(calls) == 2
    assert {c.parent_span_id for c in calls} == {node.span_id}
    assert all(c.end >= c.start and c.status_message for c in calls)  # the files are missing
    assert tree(spans)[node.span_id][0].name.startswith("chat ")  # the model call, then tools
