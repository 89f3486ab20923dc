"""The web UI's shell in Chromium against a real ``backpackflow serve``: the bundle is served
from the package with no outside asset, the sign-in form exchanges a token for the session
cookie, and every page address survives a reload (the server's history fallback)."""

from __future__ import annotations

from typing import Any

from ui_kit import UiServer

SCREENSHOTS = "shell"


def test_the_app_signs_in_and_every_route_reloads(
    ui_server: UiServer, page: Any, signed_in: Any, screenshot: Any
) -> None:
    requested: list[str] = []
    page.on("request", lambda request: requested.append(request.url))
    page.goto(ui_server.url + "/workflows/nope")
    page.get_by_label("API token").fill("bpf_wrong")
    page.get_by_role("button", name="Sign in").click()
    page.get_by_role("alert").filter(has_text="unknown, revoked or expired").wait_for()
    screenshot(page, "sign-in")
    signed_in(page)
    cookies = page.context.cookies()
    assert [c["httpOnly"] for c in cookies if c["name"] == "backpackflow_session"] == [True]
    for path in ("/", "/runs/diff", "/runs/nope", "/workflows/nope"):
        page.goto(ui_server.url + path)
        page.get_by_test_id("who").wait_for()  # the session survives the reload
    page.get_by_role("alert").filter(has_text="not found").wait_for()
    assert all(url.startswith(ui_server.url) for url in requested)  # nothing from elsewhere

    # the session ends under the page (cookie gone): the next request shows the sign-in form
    page.context.clear_cookies()
    page.get_by_role("link", name="Workflows").click()
    page.get_by_role("button", name="Sign in").wait_for()
