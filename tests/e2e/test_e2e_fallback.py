"""A forced provider error shows retries, then a fallback succeeding, through ``backpackflow
run``: OpenAI answering 500s (a real HTTP server on 127.0.0.1) and Anthropic answering 200,
both configured only in the flow's ``dependencies``; the API keys never appear in any output.
The same story without any network uses the offline provider's failure injection."""

from __future__ import annotations

import json
import uuid
from decimal import Decimal

import pytest
from e2e_support import dollars, run_cli, table
from llm_wire import Reply
from nodes_support import OPENAI_500, anthropic_message, flow_doc, llm, write_flow

from backpackflow.plugins import get_registry

QUESTION = "Which city hosts the summit?"


@pytest.fixture
def secrets(monkeypatch):
    openai_key, anthropic_key = f"sk-{uuid.uuid4().hex}", f"ak-{uuid.uuid4().hex}"
    monkeypatch.setenv("E2E_OPENAI_KEY", openai_key)
    monkeypatch.setenv("E2E_ANTHROPIC_KEY", anthropic_key)
    return openai_key, anthropic_key


def fallback_flow(tmp_path, openai_url: str, anthropic_url: str):
    doc = flow_doc(
        llm(
            "ask",
            QUESTION,
            provider="openai_main",
            model="gpt-4o-mini",
            fallbacks=[{"provider": "anthropic_backup", "model": "claude-3-5-haiku-latest"}],
            max_attempts=3,
            retry_base_delay=0.01,
            retry_max_delay=0.05,
        ),
        name="fallback-demo",
        dependencies={
            "openai_main": {
                "type": "openai",
                "config": {"base_url": openai_url, "api_key": "${E2E_OPENAI_KEY}"},
            },
            "anthropic_backup": {
                "type": "anthropic",
                "config": {"base_url": anthropic_url, "api_key": "${E2E_ANTHROPIC_KEY}"},
            },
        },
    )
    return write_flow(tmp_path / "fallback.json", doc)


def test_retries_then_fallback_succeed_and_no_key_leaks(capsys, tmp_path, wire_server, secrets):
    openai = wire_server(Reply(status=500, json=OPENAI_500))
    anthropic = wire_server(Reply(json=anthropic_message("Lisbon hosts it.")))
    flow = fallback_flow(tmp_path, openai.url, anthropic.url)
    events_file = tmp_path / "events.jsonl"
    sinks = ["--sink", "none"]
    if "file" in get_registry().event_sinks:
        sinks = ["--sink", f"file:{events_file}"]

    code, out, err = run_cli(capsys, str(flow), *sinks, "--no-cache")

    assert code == 0, err
    (step,), total = table(out)
    assert (step["node"], step["status"]) == ("ask", "succeeded")
    assert step["notes"] == "2 retries; 1 fallback"
    assert dollars(step["cost"]) > 0
    assert total["status"] == "succeeded"
    assert len(openai.requests) == 3 and len(anthropic.requests) == 1
    outputs = [out, err]
    if events_file.exists():
        events = [json.loads(line) for line in events_file.read_text().splitlines()]
        kinds = [e["type"] for e in events if e["node_id"] == "ask"]
        assert [k for k in kinds if k in ("llm_request", "retry", "fallback", "llm_response")] == [
            "llm_request",
            "retry",
            "retry",
            "fallback",
            "llm_request",
            "llm_response",
        ]
        outputs.append(events_file.read_text())
    for secret in secrets:
        assert all(secret not in text for text in outputs)


def test_the_console_trace_shows_the_retries_and_the_fallback(
    capsys, tmp_path, wire_server, secrets
):
    if "console" not in get_registry().event_sinks:
        pytest.skip("the console sink plugin is not available in this environment")
    openai = wire_server(Reply(status=500, json=OPENAI_500))
    anthropic = wire_server(Reply(json=anthropic_message("Lisbon hosts it.")))
    flow = fallback_flow(tmp_path, openai.url, anthropic.url)

    code, out, err = run_cli(capsys, str(flow), "--no-cache")
    assert code == 0, err
    assert "retry" in err.lower() and "fallback" in err.lower()
    assert "anthropic" in err
    for secret in secrets:
        assert secret not in out and secret not in err


def test_the_same_story_offline_without_any_network(capsys, tmp_path):
    doc = flow_doc(
        llm(
            "ask",
            "Summarize in 1 sentence:\n\nThe summit moved to Lisbon. Delegates arrived by train.",
            provider="flaky",
            model="offline-extractive-1",
            fallbacks=[{"provider": "offline", "model": "offline-extractive-1"}],
            max_attempts=2,
            retry_base_delay=0.001,
        ),
        dependencies={"flaky": {"type": "offline", "config": {"fail_first": 99}}},
    )
    code, out, _ = run_cli(
        capsys, str(write_flow(tmp_path / "f.json", doc)), "--sink", "none", "--no-cache", "--json"
    )
    assert code == 0
    (step,) = json.loads(out)["steps"]
    assert (step["retries"], step["fallbacks"], step["status"]) == (1, 1, "succeeded")
    assert Decimal(step["cost"]) > 0
