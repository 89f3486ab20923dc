"""Fixtures of the web UI's browser tests: a real ``backpackflow serve`` process on a free port
with a real PostgreSQL database and API tokens on, and Debian's Chromium driven by Playwright.

* ``start_ui_server(*args, env=...)``: start another server of the module (extra CLI args);
* ``ui_server``: one server per module (``--no-seed``: an empty database), with an admin token;
* ``browser``: Chromium, launched once per module with the machine's flags (one Playwright
  at a time: tests/security has its own);
* ``page``: a new browser page (its own context: no cookie shared between tests);
* ``signed_in``: ``signed_in(page, role="admin")`` opens the app and signs in through the form;
* ``screenshot``: ``screenshot(page, "name")`` saves ``<folder>/name.png``, where the folder is
  ``$BACKPACKFLOW_UI_SCREENSHOTS/<SCREENSHOTS of the test module>`` (docs/ui.md's pictures are
  made this way), else a temporary folder.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from ui_kit import SCREENSHOTS_ENV, UiServer, start_server

from browsers import chromium


@pytest.fixture(scope="module")
def start_ui_server(
    postgres_databases: Callable[[], str], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Callable[..., UiServer]]:
    """``start(*cli_args, env={})`` → a new server on a new PostgreSQL database."""
    started: list[UiServer] = []

    def start(*args: str, env: dict[str, str] | None = None) -> UiServer:
        folder = tmp_path_factory.mktemp("ui-server")
        server = start_server(postgres_databases(), folder, args, env or {})
        started.append(server)
        return server

    yield start
    for server in started:
        server.stop()


@pytest.fixture(scope="module")
def ui_server(start_ui_server: Callable[..., UiServer]) -> UiServer:
    """The module's server: an empty database (no demo seeds), tokens on."""
    return start_ui_server("--no-seed")


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    with chromium() as launched:
        yield launched


@pytest.fixture
def page(browser: Any) -> Iterator[Any]:
    """A page in a fresh context (no cookies from other tests), 1280x800, errors collected in
    ``page.errors`` so a test can assert the app logged none."""
    context = browser.new_context(viewport={"width": 1280, "height": 800})
    new_page = context.new_page()
    errors: list[str] = []
    new_page.on("pageerror", lambda error: errors.append(str(error)))
    new_page.on(
        "console", lambda message: errors.append(message.text) if message.type == "error" else None
    )
    new_page.errors = errors
    yield new_page
    context.close()


@pytest.fixture
def signed_in(ui_server: UiServer) -> Callable[..., Any]:
    """``signed_in(page, role="admin", path="/")``: open ``path`` and sign in with the form."""

    def sign_in(page: Any, role: str = "admin", path: str = "/") -> Any:
        page.goto(ui_server.url + path)
        page.get_by_label("API token").fill(ui_server.token(role))
        page.get_by_role("button", name="Sign in").click()
        page.get_by_test_id("who").wait_for()
        return page

    return sign_in


@pytest.fixture
def screenshot(request: pytest.FixtureRequest, tmp_path: Path) -> Callable[[Any, str], Path]:
    """``screenshot(page, name)`` → the PNG it saved (see the module docstring for where)."""
    base = os.environ.get(SCREENSHOTS_ENV)
    subfolder = getattr(request.module, "SCREENSHOTS", request.module.__name__.rsplit(".", 1)[-1])
    folder = Path(base) / subfolder if base else tmp_path / "screenshots"
    folder.mkdir(parents=True, exist_ok=True)

    def shot(page: Any, name: str) -> Path:
        path = folder / f"{name}.png"
        page.screenshot(path=str(path))
        return path

    return shot
