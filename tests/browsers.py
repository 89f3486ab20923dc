"""Debian's Chromium driven by Playwright, for the browser tests (tests/security, tests/ui).

Playwright's own browser download cannot work on the CI machines, so the tests launch the
system's Chromium (``apt-get install chromium``; ``.ci/run`` installs it) with the flags the
machine's notes advise: no sandbox as root, no background traffic to the internet.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from services import service_unavailable

CHROMIUM = os.environ.get("BACKPACKFLOW_TEST_CHROMIUM") or shutil.which("chromium")
CHROMIUM_FLAGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


@contextmanager
def chromium() -> Iterator[Any]:
    """A launched Chromium (one Playwright at a time per process: use it per module)."""
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        service_unavailable("browser tests need the playwright package (the test extra)")
    if CHROMIUM is None:
        service_unavailable("browser tests need Chromium (apt-get install chromium)")
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_FLAGS)
        try:
            yield browser
        finally:
            browser.close()
