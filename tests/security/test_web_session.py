"""The web page in a real browser (Debian's Chromium, driven by Playwright) against a live
server with tokens on: it logs in with a token, keeps only an HttpOnly session cookie, starts a
run (its POST carries the browser's own Origin and the CSRF token) and watches it live through
``EventSource``, which can send no ``Authorization`` header -- the cookie authenticates it."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from attack_kit import LiveServer, create_workflow, echo, flow

from browsers import chromium


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    with chromium() as launched:
        yield launched


def test_the_page_logs_in_starts_a_run_and_streams_it_with_the_cookie(
    server: LiveServer, browser: Any
) -> None:
    with server.client() as admin:
        workflow_id = create_workflow(
            admin, flow(echo("first", log_lines=2), echo("second")), name="web"
        )
    token = server.token("runner")
    page = browser.new_page()
    try:
        page.goto(server.url)
        page.get_by_label("API token").fill("bpf_wrong")
        page.get_by_role("button", name="Sign in").click()
        page.get_by_role("alert").filter(has_text="unknown, revoked or expired").wait_for()
        page.get_by_label("API token").fill(token)
        page.get_by_role("button", name="Sign in").click()
        page.get_by_test_id("who").filter(has_text="(runner)").wait_for()

        cookies = page.context.cookies()
        [session] = [c for c in cookies if c["name"] == "backpackflow_session"]
        assert session["httpOnly"] and session["sameSite"] == "Strict"
        assert token not in session["value"]
        assert page.evaluate("document.cookie") == ""  # scripts cannot read it
        assert token not in page.evaluate(
            "JSON.stringify(localStorage) + JSON.stringify(sessionStorage)"
        )

        # what the page's run button sends: the cookie, the browser's Origin and the CSRF
        # token; then the trace through EventSource, which only the cookie authenticates
        log = page.evaluate(RUN_AND_STREAM, workflow_id)
        assert "run_start" in log and "node_end second" in log and "run_end" in log
        assert log[-1] == "end succeeded"
        runs = server.client().get("/api/runs").json()
        assert runs[0]["triggered_by"] == "web" and runs[0]["status"] == "succeeded"
    finally:
        page.close()


#: In the page: start a run as the web UI does, then read its SSE stream to the end.
RUN_AND_STREAM = """async (workflowId) => {
  const session = await (await fetch("/api/session")).json();
  const started = await fetch(`/api/workflows/${workflowId}/runs`, {
    method: "POST",
    headers: {"Content-Type": "application/json", "X-CSRF-Token": session.csrf_token},
    body: JSON.stringify({input_vars: {}, triggered_by: "web"}),
  });
  if (!started.ok) return [`start ${started.status}`];
  const run = await started.json();
  return await new Promise((resolve) => {
    const log = [];
    const source = new EventSource(`/api/runs/${run.id}/stream`);
    source.addEventListener("trace", (message) => {
      const event = JSON.parse(message.data);
      log.push(event.node_id ? `${event.type} ${event.node_id}` : event.type);
    });
    source.addEventListener("end", (message) => {
      log.push(`end ${JSON.parse(message.data).status}`);
      source.close();
      resolve(log);
    });
    source.onerror = () => { if (source.readyState === 2) resolve([...log, "error"]); };
  });
}"""
