"""What the run view reads beyond a run's row: one step's detail (prompt, response, output,
Backpack reads and writes, retries, fallbacks, cache hits, errors), two runs side by side, a
canceled step, and the API docs page served without a CDN."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
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
    wait_for,
    wait_for_status,
)

from backpackflow.plugins import Registry
from backpackflow_server import Settings

PROMPT = "Summarize in 1 sentence:\n\nThe harbor reopened on Monday after the storm."


@pytest.fixture(scope="module")
def llm_registry() -> Registry:
    return make_llm_registry()


@pytest.fixture
def server(llm_registry: Registry, database_url: str, tmp_path: Path) -> Iterator[LiveServer]:
    settings = {
        **TEST_SETTINGS,
        "database_url": database_url,
        "llm_cache": tmp_path / "llm-cache.sqlite",
        "files_dir": tmp_path,
    }
    live = LiveServer(Settings(**settings), llm_registry).start()
    yield live
    GATES.open_all()
    live.stop()


def flaky_flow(prompt: str = PROMPT) -> dict[str, Any]:
    """An llm node whose provider fails every call (one retry, then a fallback that answers),
    then a router reading its output."""
    return flow(
        {
            "type": "llm",
            "id": "ask",
            "params": {
                "provider": "flaky",
                "model": "offline-extractive-1",
                "prompt": prompt,
                "fallbacks": [{"provider": "offline", "model": "offline-extractive-1"}],
                "max_attempts": 2,
                "retry_base_delay": 0.001,
                "retry_max_delay": 0.001,
            },
        },
        {"type": "router", "id": "route", "params": {"rule": "'done'"}},
        dependencies={"flaky": {"type": "offline", "config": {"fail_first": 99}}},
    )


def test_a_steps_detail_shows_its_prompt_response_retry_fallback_and_cache(
    server: LiveServer,
) -> None:
    with server.client() as client:
        workflow = create_workflow(client, flaky_flow())
        first = wait_for_status(client, start_run(client, workflow)["id"], "succeeded")
        second = wait_for_status(client, start_run(client, workflow)["id"], "succeeded")

        ask = client.get(f"/api/runs/{first['id']}/steps/1")
        assert ask.status_code == 200, ask.text
        detail = ask.json()
        assert detail["step"]["node_id"] == "ask" and detail["step"]["status"] == "succeeded"
        assert detail["messages"] == [{"role": "user", "content": PROMPT}]
        answer = "The harbor reopened on Monday after the storm."
        assert detail["response"]["text"] == answer and detail["output"] == answer
        assert detail["has_output"] is True
        # the first call failed (no response), was retried, then fell back to 'offline'
        assert [call["response"] is None for call in detail["llm_calls"]] == [True, False]
        assert [(r["attempt"], r["error_type"]) for r in detail["retries"]] == [(1, "ServerError")]
        (fallback,) = detail["fallbacks"]
        assert fallback["to_provider"] == "offline" and "ServerError" in fallback["reason"]
        assert [w["key"] for w in detail["writes"]] == ["ask"]
        assert detail["writes"][0]["value_summary"] == json.dumps(answer)
        assert detail["writes"][0]["commit_id"]
        assert detail["cache_hits"] == [] and detail["cost_saved"] == "0"
        assert Decimal(detail["step"]["cost"]) == Decimal(detail["response"]["cost"]) > 0
        types = [event["type"] for event in detail["events"]]
        assert types[0] == "node_start" and types[-1] == "node_end"
        assert {event["step"] for event in detail["events"]} == {1}
        assert detail["events_truncated"] is False

        route = client.get(f"/api/runs/{first['id']}/steps/2").json()
        assert [read["key"] for read in route["reads"]] == ["ask"]
        assert route["reads"][0]["found"] is True
        assert route["messages"] is None and route["llm_calls"] == []

        # the same run again: the response cache answers, the saved cost is the first's cost
        cached = client.get(f"/api/runs/{second['id']}/steps/1").json()
        assert cached["step"]["cache_hit"] is True and len(cached["cache_hits"]) == 1
        assert Decimal(cached["cost_saved"]) == Decimal(detail["step"]["cost"])
        assert Decimal(cached["step"]["cost"]) == 0
        assert cached["output"] == answer and cached["llm_calls"] == []
        assert cached["messages"] == detail["messages"]  # as prepared: no call was made

        # steps' exact costs add up to the run's total
        run = client.get(f"/api/runs/{first['id']}").json()
        assert sum(Decimal(s["cost"]) for s in run["steps"]) == Decimal(run["total_cost"])

        missing = client.get(f"/api/runs/{first['id']}/steps/99")
        assert missing.status_code == 404 and "99" in missing.json()["detail"]
        assert client.get("/api/runs/nope/steps/1").status_code == 404
        assert client.get(f"/api/runs/{first['id']}/steps/-1").status_code == 422


def test_two_runs_side_by_side_step_by_step(server: LiveServer) -> None:
    with server.client() as client:
        workflow = create_workflow(client, flaky_flow())
        before = wait_for_status(client, start_run(client, workflow)["id"], "succeeded")
        graph = client.get(f"/api/workflows/{workflow}").json()["graph_json"]
        graph["nodes"][0]["params"]["prompt"] = "Summarize:\n\nThe bridge closed for repairs."
        assert client.put(f"/api/workflows/{workflow}", json={"graph_json": graph}).is_success
        after = wait_for_status(client, start_run(client, workflow)["id"], "succeeded")

        response = client.get(f"/api/runs/{before['id']}/compare/{after['id']}")
        assert response.status_code == 200, response.text
        diff = response.json()
        assert diff["same_workflow"] is True
        assert (diff["a"]["id"], diff["b"]["id"]) == (before["id"], after["id"])
        ask, route = diff["steps"]
        assert (ask["node_id"], ask["occurrence"], route["node_id"]) == ("ask", 1, "route")
        assert ask["a"]["prompt"][0]["content"] == PROMPT
        assert "bridge" in ask["b"]["prompt"][0]["content"]
        assert {"prompt", "output"} <= set(ask["changed"])
        assert ask["a"]["model"] == "offline/offline-extractive-1"
        assert route["changed"] == []
        totals = diff["totals"]
        expected = Decimal(totals["b"]["cost"]) - Decimal(totals["a"]["cost"])
        assert Decimal(totals["delta"]["cost"]) == expected
        assert totals["a"]["steps"] == totals["b"]["steps"] == 2

        # a run of another workflow, with a step the first has not: it faces nothing
        other = create_workflow(client, flow({"type": "echo", "id": "hello", "params": {}}))
        third = wait_for_status(client, start_run(client, other)["id"], "succeeded")
        mixed = client.get(f"/api/runs/{before['id']}/compare/{third['id']}").json()
        assert mixed["same_workflow"] is False
        assert [(p["node_id"], p["a"] is None, p["b"] is None) for p in mixed["steps"]] == [
            ("ask", False, True),
            ("route", False, True),
            ("hello", True, False),
        ]
        assert client.get(f"/api/runs/{before['id']}/compare/nope").status_code == 404


def test_a_canceled_step_is_canceled_not_failed(server: LiveServer) -> None:
    name = unique("cancel-step")
    with server.client() as client:
        workflow = create_workflow(client, flow(gate("wait", name)))
        run = start_run(client, workflow)
        GATES.wait_until_waiting(name)
        assert client.post(f"/api/runs/{run['id']}/cancel").status_code == 202
        wait_for_status(client, run["id"], "canceled")

        def stored_step() -> dict[str, Any] | None:
            steps = client.get(f"/api/runs/{run['id']}").json()["steps"]
            return steps[0] if steps and steps[0]["status"] != "running" else None

        step = wait_for(stored_step, 10, "the canceled step")
        assert step["status"] == "canceled"
        detail = client.get(f"/api/runs/{run['id']}/steps/{step['step']}").json()
        assert detail["step"]["status"] == "canceled" and detail["has_output"] is False


_URL = re.compile(r"""(?:src|href)\s*=\s*["']([^"']+)["']""")


def test_the_api_docs_page_needs_no_other_host(server: LiveServer) -> None:
    with server.client(token=None) as client:
        page = client.get("/docs")
        assert page.status_code == 200
        policy = page.headers["content-security-policy"]
        assert "script-src 'self';" in policy and "unsafe-inline" not in policy
        assert "http" not in policy  # no host but the service's own
        urls = _URL.findall(page.text)
        assert len(urls) == 4 and "<script>" not in page.text  # no inline script
        for url in urls:
            assert url.startswith("/") and not url.startswith("//"), url
            asset = client.get(url)
            assert asset.status_code == 200, url
        start = client.get("/docs/assets/init.js").text
        assert '"/openapi.json"' in start and "validatorUrl: null" in start
        assert client.get("/redoc").status_code == 404  # FastAPI's CDN page is gone
        assert client.get("/openapi.json").status_code == 200
