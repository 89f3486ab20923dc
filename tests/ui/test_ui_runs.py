"""The run view, time travel and the run diff in Chromium against a real ``backpackflow serve``
(PostgreSQL, tokens on), walking FlowTrace's demo: a run watched live, a step opened (its prompt
and response), an error forced so a retry and a provider fallback show, a re-run answered by the
cache with its totals, a run canceled, a paused run approved, time travel, two runs compared;
and the API docs page, which loads nothing from another host."""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import pytest
from playwright.sync_api import expect
from run_kit import store_run
from ui_kit import UiServer

SCREENSHOTS = "run-view"
PROMPT = "Summarize in 1 sentence:\n\nThe harbor reopened on Monday after the storm."
ANSWER = "The harbor reopened on Monday after the storm."
TIMEOUT = 30_000  # ms: a loaded 2-core machine


def demo_flow(prompt: str = PROMPT, latency_ms: float = 1500) -> dict[str, Any]:
    """An llm node whose first provider fails every call (one retry, then a fallback to a slow
    offline model that answers), then a router reading its output."""
    return {
        "version": "2.0.0",
        "dependencies": {
            "flaky": {"type": "offline", "config": {"fail_first": 99}},
            "slow": {"type": "offline", "config": {"latency_ms": latency_ms}},
        },
        "nodes": [
            {
                "type": "llm",
                "id": "ask",
                "params": {
                    "provider": "flaky",
                    "model": "offline-extractive-1",
                    "prompt": prompt,
                    "fallbacks": [{"provider": "slow", "model": "offline-extractive-1"}],
                    "max_attempts": 2,
                    "retry_base_delay": 0.001,
                    "retry_max_delay": 0.001,
                },
            },
            {"type": "router", "id": "route", "params": {"rule": "'done'"}},
        ],
        "edges": [{"from": "ask", "to": "route"}],
    }


def create_workflow(server: UiServer, graph: dict[str, Any], name: str) -> str:
    with server.client() as client:
        response = client.post("/api/workflows", json={"name": name, "graph_json": graph})
        assert response.status_code == 201, response.text
        return str(response.json()["id"])


def start_run(server: UiServer, workflow: str) -> str:
    with server.client() as client:
        response = client.post(f"/api/workflows/{workflow}/runs", json={"input_vars": {}})
        assert response.status_code == 202, response.text
        return str(response.json()["id"])


def wait_status(page: Any, status: str) -> None:
    page.get_by_test_id("run-status").filter(has_text=re.compile(f"^{status}$")).wait_for(
        timeout=TIMEOUT
    )


def shows(page: Any, test_id: str, text: str) -> None:
    """Wait until the element ``test_id`` reads exactly ``text`` (it updates as events arrive,
    and a reloaded page replays the stream)."""
    exact = re.compile(f"^{re.escape(text)}$")
    page.get_by_test_id(test_id).filter(has_text=exact).wait_for(timeout=TIMEOUT)


def sign_in_at(signed_in: Any, page: Any, path: str) -> None:
    signed_in(page, path=path)
    page.errors.clear()  # the 401 of the session check before signing in


def node_status(page: Any, node: str) -> Any:
    return page.get_by_test_id(f"node-status-{node}")


@pytest.fixture(scope="module")
def demo(ui_server: UiServer) -> Iterator[str]:
    """The demo workflow's id."""
    yield create_workflow(ui_server, demo_flow(latency_ms=4000), "demo")


def test_watch_a_run_open_a_step_see_retry_fallback_then_a_cache_hit(
    ui_server: UiServer, demo: str, page: Any, signed_in: Any, screenshot: Any
) -> None:
    sign_in_at(signed_in, page, "/")
    first = start_run(ui_server, demo)
    page.goto(f"{ui_server.url}/runs/{first}")
    # live: the llm node runs (its fallback model takes 4 s), then both succeed
    expect(node_status(page, "ask")).to_contain_text("running", timeout=TIMEOUT)
    screenshot(page, "run-live")
    wait_status(page, "succeeded")
    expect(node_status(page, "route")).to_contain_text("succeeded", timeout=TIMEOUT)
    expect(node_status(page, "route")).to_be_visible()  # drawn without waiting to be measured
    assert page.locator(".edge-taken").count() == 1  # ask -> route

    page.get_by_role("button", name=re.compile(r"^step 1 ask")).click()
    page.get_by_role("tab", name="Prompt").click()
    panel = page.get_by_role("tabpanel")
    panel.get_by_text("The harbor reopened on Monday after the storm.").first.wait_for()
    assert "Summarize in 1 sentence" in panel.inner_text()
    assert "failed" in panel.inner_text() and "answered" in panel.inner_text()  # call 1, 2
    page.get_by_role("tab", name="Response").click()
    assert ANSWER in page.get_by_role("tabpanel").inner_text()
    assert page.get_by_test_id("step-retries").inner_text().startswith("1")
    fallbacks = page.get_by_test_id("step-fallbacks").inner_text()
    assert "→ offline/offline-extractive-1" in fallbacks and "ServerError" in fallbacks
    shows(page, "run-retries", "1")
    shows(page, "run-fallbacks", "1")
    cost = page.get_by_test_id("run-cost").inner_text()
    assert cost.startswith("$") and cost != "$0"
    assert page.get_by_test_id("step-cost").inner_text() == cost  # one priced step: exact
    page.get_by_role("tab", name="Raw JSON").click()
    assert '"type": "fallback"' in page.get_by_role("tabpanel").inner_text()
    screenshot(page, "step-detail")

    # "Run" again from the run view: a new run, answered by the response cache
    page.get_by_role("button", name="Run", exact=True).click()
    page.wait_for_url(re.compile(r"/runs/(?!" + first + ")[0-9a-f]+$"), timeout=TIMEOUT)
    wait_status(page, "succeeded")
    expect(node_status(page, "ask")).to_contain_text("cache hit", timeout=TIMEOUT)
    shows(page, "run-cost", "$0")
    shows(page, "run-cache", f"1 hit, saved {cost}")
    screenshot(page, "cache-hit")
    page.reload()  # reload-safe: the same view from the stream's replay
    shows(page, "run-cache", f"1 hit, saved {cost}")
    shows(page, "run-status", "succeeded")
    assert page.errors == [], page.errors


def test_cancel_a_run_and_approve_a_paused_one(
    ui_server: UiServer, page: Any, signed_in: Any, screenshot: Any
) -> None:
    slow = create_workflow(ui_server, demo_flow(prompt="Wait for it.", latency_ms=60_000), "slow")
    run = start_run(ui_server, slow)
    sign_in_at(signed_in, page, f"/runs/{run}")
    expect(node_status(page, "ask")).to_contain_text("running", timeout=TIMEOUT)
    page.get_by_role("button", name="Cancel run").click()
    wait_status(page, "canceled")
    expect(node_status(page, "ask")).to_contain_text("canceled", timeout=TIMEOUT)
    page.get_by_role("button", name=re.compile(r"^step 1 ask canceled")).wait_for()
    assert page.get_by_role("button", name="Cancel run").is_disabled()
    screenshot(page, "canceled")

    review = {
        "version": "2.0.0",
        "nodes": [
            {"type": "approval", "id": "review", "params": {"prompt": "Publish the post?"}},
            {"type": "router", "id": "publish", "params": {"rule": "'published'"}},
            {"type": "router", "id": "discard", "params": {"rule": "'discarded'"}},
        ],
        "edges": [
            {"from": "review", "to": "publish", "condition": "approved"},
            {"from": "review", "to": "discard", "condition": "rejected"},
        ],
    }
    paused = start_run(ui_server, create_workflow(ui_server, review, "review"))
    page.goto(f"{ui_server.url}/runs/{paused}")
    wait_status(page, "paused")
    question = page.get_by_role("region", name="Paused for an answer")
    assert "Publish the post?" in question.inner_text()
    expect(node_status(page, "review")).to_contain_text("paused", timeout=TIMEOUT)
    screenshot(page, "paused")
    question.get_by_role("button", name="Approve").click()
    wait_status(page, "succeeded")
    expect(node_status(page, "publish")).to_contain_text("succeeded", timeout=TIMEOUT)
    assert node_status(page, "discard").inner_text() == "not run"
    assert page.errors == [], page.errors


def test_time_travel_and_a_run_diff(
    ui_server: UiServer, page: Any, signed_in: Any, screenshot: Any
) -> None:
    ferry = "Summarize in 1 sentence:\n\nThe ferry resumed service on Tuesday."
    workflow = create_workflow(ui_server, demo_flow(prompt=ferry, latency_ms=0), "compare")
    before = start_run(ui_server, workflow)
    sign_in_at(signed_in, page, f"/runs/{before}")
    wait_status(page, "succeeded")

    page.get_by_role("tab", name="Time travel").click()
    slider = page.get_by_label("Commit", exact=True)
    slider.wait_for(timeout=TIMEOUT)
    assert "route" in page.get_by_test_id("state-at-commit").inner_text()  # the last commit
    slider.fill("0")  # the first commit: ask's answer, before the router
    page.get_by_test_id("commit-label").filter(has_text="ask").wait_for()
    state = page.get_by_test_id("state-at-commit")
    expect(state).not_to_contain_text("route", timeout=TIMEOUT)
    assert "The ferry resumed service on Tuesday." in state.inner_text()
    assert "+ ask" in page.get_by_test_id("commit-diff").inner_text()
    screenshot(page, "time-travel")

    # fork from the llm step: a new run that goes on after it (the router runs again)
    page.get_by_role("tab", name="Timeline").click()
    page.get_by_role("button", name=re.compile(r"^step 1 ask")).click()
    page.get_by_role("button", name="Fork from here").click()
    page.wait_for_url(re.compile(r"/runs/(?!" + before + ")[0-9a-f]+$"), timeout=TIMEOUT)
    page.get_by_role("link", name=before).wait_for(timeout=TIMEOUT)  # "forked from"
    wait_status(page, "succeeded")
    expect(node_status(page, "route")).to_contain_text("succeeded", timeout=TIMEOUT)
    assert node_status(page, "ask").inner_text() == "not run"  # its output came from the fork

    # change the prompt, run again, compare the two runs side by side
    with ui_server.client() as client:
        graph = client.get(f"/api/workflows/{workflow}").json()["graph_json"]
        graph["nodes"][0]["params"]["prompt"] = "Summarize:\n\nThe bridge closed for repairs."
        graph["nodes"].append({"type": "router", "id": "tail", "params": {"rule": "'end'"}})
        graph["edges"].append({"from": "route", "to": "tail", "when": "branch == 'done'"})
        assert client.put(f"/api/workflows/{workflow}", json={"graph_json": graph}).is_success
    after = start_run(ui_server, workflow)
    page.goto(f"{ui_server.url}/runs/diff")
    page.get_by_text("Choose two runs").wait_for(timeout=TIMEOUT)
    page.goto(f"{ui_server.url}/runs/{after}")
    expect(node_status(page, "tail")).to_contain_text("succeeded", timeout=TIMEOUT)
    page.locator("[aria-label='edge route to tail (taken)']").wait_for(timeout=TIMEOUT)
    page.goto(f"{ui_server.url}/runs/{before}")
    # the graph this run ran (version 1), not the workflow's current one
    expect(node_status(page, "route")).to_contain_text("succeeded", timeout=TIMEOUT)
    assert node_status(page, "tail").count() == 0
    page.get_by_role("link", name="Compare with another run").click()
    picker = page.get_by_label("Run b")
    picker.locator(f"option[value='{after}']").wait_for(state="attached", timeout=TIMEOUT)
    picker.select_option(after)  # run b: picked from the runs of the same workflow
    page.get_by_role("button", name="Compare").click()
    page.wait_for_url(re.compile(f"a={before}&b={after}$"), timeout=TIMEOUT)
    ask = page.get_by_role("row", name=re.compile(r"^ask: differs"))
    ask.wait_for(timeout=TIMEOUT)
    text = ask.inner_text()
    assert "ferry" in text and "bridge" in text
    assert page.get_by_role("row", name="route: same").count() == 1
    assert page.get_by_test_id("diff-delta").inner_text().startswith("tokens")
    screenshot(page, "run-diff")
    assert page.errors == [], page.errors


def test_run_with_the_form_of_the_flows_inputs(
    ui_server: UiServer, page: Any, signed_in: Any, screenshot: Any
) -> None:
    graph = demo_flow(prompt="Summarize in 1 sentence:\n\n{{ inputs.topic }}", latency_ms=0)
    graph["inputs"] = {
        "topic": {"schema": {"type": "string", "minLength": 3}, "required": True},
        "depth": {"description": "how deep", "default": 2},
    }
    workflow = create_workflow(ui_server, graph, "with inputs")
    with ui_server.client() as client:
        response = client.post(
            f"/api/workflows/{workflow}/runs", json={"input_vars": {"topic": "The pier opened."}}
        )
        assert response.status_code == 202, response.text
        first = response.json()["id"]
    sign_in_at(signed_in, page, f"/runs/{first}")
    wait_status(page, "succeeded")
    topic = page.get_by_label("topic")
    assert topic.input_value() == "The pier opened."  # the form starts from this run's inputs
    assert page.get_by_label("depth").input_value() == "2"
    topic.fill("no")  # too short: the form says so (validated in the page, no eval under CSP)
    page.get_by_role("button", name="Run", exact=True).click()
    page.get_by_text("String is too short (2 < 3).").first.wait_for(timeout=TIMEOUT)
    assert page.url.endswith(f"/runs/{first}")  # no run started
    topic.fill("The lighthouse was repainted.")
    screenshot(page, "run-form")
    page.get_by_role("button", name="Run", exact=True).click()
    page.wait_for_url(re.compile(r"/runs/(?!" + first + ")[0-9a-f]+$"), timeout=TIMEOUT)
    wait_status(page, "succeeded")
    run_id = page.url.rsplit("/", 1)[-1]
    with ui_server.client() as client:
        run = client.get(f"/api/runs/{run_id}").json()
    assert run["input_vars"] == {"topic": "The lighthouse was repainted.", "depth": 2}
    assert page.errors == [], page.errors


def test_the_timeline_follows_until_the_user_scrolls_up(
    ui_server: UiServer, page: Any, signed_in: Any
) -> None:
    run_id = store_run(ui_server.database_url, steps=300, events_per_step=5)
    sign_in_at(signed_in, page, f"/runs/{run_id}")
    shows(page, "run-steps", "300")
    timeline = page.get_by_test_id("timeline")
    # it followed the steps as they were replayed: the last one is in view, not the first
    last = page.get_by_role("button", name=re.compile(r"^step 300 "))
    last.wait_for(timeout=TIMEOUT)
    assert page.get_by_role("button", name=re.compile(r"^step 1 ")).count() == 0  # virtualised
    assert timeline.get_attribute("data-following") == "true"
    timeline.hover()
    page.mouse.wheel(0, -2000)  # the user scrolls up to read: it stays there
    expect(timeline).to_have_attribute("data-following", "false", timeout=TIMEOUT)
    assert last.count() == 0
    page.get_by_role("button", name="Follow new rows").click()
    last.wait_for(timeout=TIMEOUT)
    assert timeline.get_attribute("data-following") == "true"
    assert page.errors == [], page.errors


def test_the_api_docs_load_nothing_from_another_host(
    ui_server: UiServer, page: Any, screenshot: Any
) -> None:
    requested: list[str] = []
    page.on("request", lambda request: requested.append(request.url))
    page.goto(ui_server.url + "/docs")
    page.get_by_text("/api/runs/{run_id}/steps/{step}").first.wait_for(timeout=TIMEOUT)
    screenshot(page, "api-docs")
    assert all(url.startswith(ui_server.url) for url in requested), requested
    assert page.errors == []  # no script or style refused by the page's CSP
