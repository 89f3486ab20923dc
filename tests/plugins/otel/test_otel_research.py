"""The research example, traced to an OTLP/HTTP receiver that decodes the real wire format:
the span tree (run → nodes → LLM and tool calls), the GenAI attributes, a retry and a fallback
as span events of the failed call, cache hits on a second run, and span times taken from the
events themselves."""

from __future__ import annotations

import json
import shutil
from decimal import Decimal
from pathlib import Path
from typing import Any

from nodes_support import RESEARCH
from otel_support import OtlpReceiver, SpanRecord, tree

from backpackflow.cli import main

CLIENT, INTERNAL = 3, 1  # span kinds on the wire
ERROR = 2  # status code


def research_with_a_flaky_provider(folder: Path) -> Path:
    """The research example, its summarize step on a provider failing every call (one retry,
    then a fallback to the working offline model)."""
    shutil.copy(RESEARCH.parent / "notes.md", folder / "notes.md")
    doc = json.loads(RESEARCH.read_text(encoding="utf-8"))
    summarize = next(node for node in doc["nodes"] if node["id"] == "summarize")
    summarize["params"].update(
        provider="flaky",
        fallbacks=[{"provider": "offline", "model": "offline-extractive-1"}],
        max_attempts=2,
        retry_base_delay=0.001,
        retry_max_delay=0.001,
    )
    doc["dependencies"] = {"flaky": {"type": "offline", "config": {"fail_first": 99}}}
    path = folder / "flow.json"
    path.write_text(json.dumps(doc), encoding="utf-8")
    return path


def run(capsys: Any, flow: Path, *argv: str) -> dict[str, Any]:
    code = main(["run", str(flow), "--json", *argv])
    out, err = capsys.readouterr()
    assert code == 0, err
    result: dict[str, Any] = json.loads(out)
    return result


def ns(timestamp: float) -> int:
    return int(timestamp * 1e9)


def test_the_research_run_as_spans(capsys: Any, tmp_path: Path, receiver: OtlpReceiver) -> None:
    flow = research_with_a_flaky_provider(tmp_path)
    common = ["--cache-path", str(tmp_path / "cache.sqlite"), "--sink", f"otlp:{receiver.url}"]
    first = run(capsys, flow, *common, "--sink", f"file:{tmp_path / 'events.jsonl'}")
    second = run(capsys, flow, *common)

    spans = receiver.spans
    children = tree(spans)
    roots = children[""]
    assert [root.name for root in roots] == ["invoke_workflow research"] * 2
    assert [root.attributes["backpackflow.run.id"] for root in roots] == [
        first["run_id"],
        second["run_id"],
    ]
    for root in roots:  # one trace per run, every span of it in that trace
        assert {s.trace_id for s in spans if _in(s, root, children)} == {root.trace_id}
        assert root.kind == INTERNAL
        assert root.resource["service.name"] == "backpackflow"
        assert root.scope == "backpackflow"
        assert root.attributes["gen_ai.operation.name"] == "invoke_workflow"
        assert root.attributes["gen_ai.workflow.name"] == "research"
        assert root.attributes["backpackflow.run.status"] == "succeeded"
        assert [c.name for c in children[root.span_id]] == [
            "node research",
            "node summarize",
            "node decide",
            "node deep",
        ]

    # ---- the first run: a tool call, a retry and a fallback, two LLM calls that answered
    root = roots[0]
    nodes = {c.attributes["backpackflow.node.id"]: c for c in children[root.span_id]}
    assert nodes["summarize"].attributes["backpackflow.node.type"] == "llm"
    assert nodes["summarize"].attributes["backpackflow.step"] == 2
    (tool_call,) = children[nodes["research"].span_id]
    assert tool_call.name == "execute_tool read_file"
    assert tool_call.attributes["gen_ai.operation.name"] == "execute_tool"
    assert tool_call.attributes["gen_ai.tool.name"] == "read_file"
    assert "gen_ai.tool.call.arguments" not in tool_call.attributes  # content is opt-in
    assert children.get(nodes["decide"].span_id) is None

    failed, answered = children[nodes["summarize"].span_id]
    for call in (failed, answered):
        assert call.name == "chat offline-extractive-1"
        assert call.kind == CLIENT
        assert call.attributes["gen_ai.operation.name"] == "chat"
        assert call.attributes["gen_ai.request.model"] == "offline-extractive-1"
        assert call.attributes["gen_ai.provider.name"] == "offline"
        assert "gen_ai.input.messages" not in call.attributes
    assert failed.event_names() == ["retry", "fallback"]
    retry = failed.events[0][1]
    assert retry["backpackflow.retry.attempt"] == 1
    assert retry["error.type"]
    assert failed.status_code == ERROR and failed.attributes["error.type"] == "fallback"
    assert "gen_ai.usage.input_tokens" not in failed.attributes
    fallback = failed.events[1][1]
    assert fallback["backpackflow.fallback.to_model"] == "offline-extractive-1"
    assert "fallback" in nodes["summarize"].event_names()

    steps = {step["node_id"]: step for step in first["steps"]}
    for node_id, call in (("summarize", answered), ("deep", children[nodes["deep"].span_id][0])):
        step = steps[node_id]
        assert call.status_code != ERROR
        assert call.attributes["gen_ai.response.model"] == "offline-extractive-1"
        assert call.attributes["gen_ai.usage.input_tokens"] == step["tokens_input"]
        assert call.attributes["gen_ai.usage.output_tokens"] == step["tokens_output"]
        assert call.attributes["gen_ai.response.finish_reasons"] == ["stop"]
        assert Decimal(str(call.attributes["backpackflow.cost_usd"])) == Decimal(step["cost"])
        assert call.attributes["gen_ai.usage.cost"] == call.attributes["backpackflow.cost_usd"]
        assert (
            nodes[node_id].attributes["backpackflow.cost_usd"]
            == call.attributes["backpackflow.cost_usd"]
        )
    assert root.attributes["gen_ai.usage.input_tokens"] == first["totals"]["tokens_input"]
    assert root.attributes["gen_ai.usage.output_tokens"] == first["totals"]["tokens_output"]
    assert Decimal(str(root.attributes["backpackflow.cost_usd"])) == Decimal(
        first["totals"]["cost"]
    )

    # span times are the events' own timestamps
    events = [json.loads(line) for line in (tmp_path / "events.jsonl").read_text().splitlines()]
    stamp = {(e["type"], e["node_id"]): e["timestamp"] for e in events}
    assert root.start == ns(stamp["run_start", None]) and root.end == ns(stamp["run_end", None])
    for node_id, span in nodes.items():
        assert span.start == ns(stamp["node_start", node_id])
        assert span.end == ns(stamp["node_end", node_id])
    requests = [e["timestamp"] for e in events if e["type"] == "llm_request"]
    assert failed.start == ns(requests[0]) and answered.start == ns(requests[1])
    fallback_at = next(e["timestamp"] for e in events if e["type"] == "fallback")
    assert failed.end == ns(fallback_at) == failed.events[1][2]

    # ---- the second run: both LLM steps answered from the response cache, no calls made
    nodes = {c.attributes["backpackflow.node.id"]: c for c in children[roots[1].span_id]}
    for node_id in ("summarize", "deep"):
        span = nodes[node_id]
        assert span.attributes["backpackflow.cache_hit"] is True
        assert span.event_names() == ["cache_hit"]
        hit = span.events[0][1]
        assert hit["backpackflow.cost_saved_usd"] > 0
        assert hit["gen_ai.usage.input_tokens"] > 0
        assert children.get(span.span_id) is None
    hits = {s["node_id"]: s for s in second["steps"]}
    assert hits["summarize"]["cache_hit"] and hits["deep"]["cache_hit"]
    assert nodes["summarize"].events[0][1]["backpackflow.cost_saved_usd"] == float(
        hits["summarize"]["cost_saved"]
    )


def test_prompts_and_completions_only_when_asked(
    capsys: Any, tmp_path: Path, receiver: OtlpReceiver
) -> None:
    flow = research_with_a_flaky_provider(tmp_path)
    run(
        capsys,
        flow,
        "--no-cache",
        "--sink",
        f"otlp:{receiver.url}",
        "--sink-option",
        "otlp.capture_content=true",
    )
    calls = [s for s in receiver.spans if s.name.startswith("chat ")]
    answered = calls[-1]
    messages = json.loads(answered.attributes["gen_ai.input.messages"])
    assert [m["role"] for m in messages] == ["system", "user"]
    assert messages[1]["parts"][0]["type"] == "text"
    assert "grid-scale batteries" in messages[1]["parts"][0]["content"]
    assert answered.attributes["input.value"] == answered.attributes["gen_ai.input.messages"]
    (output,) = json.loads(answered.attributes["gen_ai.output.messages"])
    assert answered.attributes["output.value"] == output["parts"][0]["content"]
    assert output["role"] == "assistant" and output["finish_reason"] == "stop"
    assert output["parts"][0]["content"]
    (tool_call,) = [s for s in receiver.spans if s.name == "execute_tool read_file"]
    assert json.loads(tool_call.attributes["gen_ai.tool.call.arguments"])["path"] == "notes.md"
    assert "Field notes" in json.loads(tool_call.attributes["gen_ai.tool.call.result"])["content"]


def _in(span: SpanRecord, root: SpanRecord, children: dict[str, list[SpanRecord]]) -> bool:
    """Whether ``span`` is ``root`` or below it."""
    stack = [root]
    while stack:
        current = stack.pop()
        if current.span_id == span.span_id:
            return True
        stack.extend(children.get(current.span_id, ()))
    return False
