"""The backpackflow service: ``backpackflow serve`` (REST API, live SSE traces, a web page).

``create_app(settings, registry)`` builds the FastAPI app; ``Settings`` holds its options
(``BACKPACKFLOW_*`` environment variables). Both are imported on first use, so loading the
plugin for an unrelated CLI command does not import the web stack.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .app import create_app
    from .settings import Settings

__all__ = ["Settings", "create_app"]


def __getattr__(name: str) -> Any:
    if name == "create_app":
        from .app import create_app

        return create_app
    if name == "Settings":
        from .settings import Settings

        return Settings
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
