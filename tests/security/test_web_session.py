"""The web page in a real browser (Debian's Chromium, driven by Playwright) against a live
server with tokens on: it logs in with a token, keeps only an HttpOnly session cookie, starts a
run (its POST carries the browser's own Origin and the CSRF token) and watches it live through
``EventSource``, which can send no ``Authorization`` header -- the cookie authenticates it."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from typing import Any

import pytest
from attack_kit import LiveServer, create_workflow, echo, flow

from services import service_unavailable

CHROMIUM = os.environ.get("BACKPACKFLOW_TEST_CHROMIUM") or shutil.which("chromium")
#: As the machine's notes advise: no sandbox as root, no background traffic to the internet.
FLAGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        service_unavailable("browser tests need the playwright package (the test extra)")
    if CHROMIUM is None:
        service_unavailable("browser tests need Chromium (apt-get install chromium)")
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=CHROMIUM, args=FLAGS)
        yield chromium
        chromium.close()


def test_the_page_logs_in_starts_a_run_and_streams_it_with_the_cookie(
    server: LiveServer, browser: Any
) -> None:
    with server.client() as admin:
        create_workflow(admin, flow(echo("first", log_lines=2), echo("second")), name="web")
    token = server.token("runner")
    page = browser.new_page()
    try:
        page.goto(server.url)
        page.wait_for_selector("#login:not([hidden])")
        page.fill("#token", "bpf_wrong")
        page.click("#login button")
        page.wait_for_selector("#login-error:has-text('unknown, revoked or expired')")
        page.fill("#token", token)
        page.click("#login button")
        page.wait_for_selector("#who:has-text('(runner)')")

        cookies = page.context.cookies()
        [session] = [c for c in cookies if c["name"] == "backpackflow_session"]
        assert session["httpOnly"] and session["sameSite"] == "Strict"
        assert token not in session["value"]
        assert page.evaluate("document.cookie") == ""  # scripts cannot read it
        assert token not in page.evaluate(
            "JSON.stringify(localStorage) + JSON.stringify(sessionStorage)"
        )

        page.click("#workflows li:has-text('web')")
        page.click("#run")
        page.wait_for_selector("#summary:has-text('status: succeeded')", timeout=20_000)
        log = page.inner_text("#log")
        assert "run_start" in log and "node_end second" in log and "run_end" in log
        runs = server.client().get("/api/runs").json()
        assert runs[0]["triggered_by"] == "web" and runs[0]["status"] == "succeeded"
    finally:
        page.close()
