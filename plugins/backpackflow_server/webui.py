"""The web UI: the React app built into ``static/`` (its source is ``ui/``), served as a
single-page app.

The bundle ships inside the package, so ``pip install`` users never need Node, and nothing
loads from a CDN: the page works air-gapped. Every page address of the app (``/``,
``/workflows/<id>``, ``/runs/<id>``, ``/runs/diff``) answers with the same ``index.html`` (a
history fallback), so a reload or a shared link opens the right view; the app's router picks the
view. Only those prefixes fall back: an unknown ``/api/...`` address stays a JSON 404.

The page gets a strict Content-Security-Policy: scripts and styles from this origin only, no
inline script, no ``eval``, fetches to this origin only, and no framing (clickjacking).
Assets have content-hashed names, so they are cached for good; ``index.html`` is revalidated.
"""

from __future__ import annotations

import re
from functools import cache
from importlib import resources
from importlib.resources.abc import Traversable

from fastapi import FastAPI, HTTPException, Response
from fastapi.responses import HTMLResponse

#: The app's own pages (React Router's routes in ``ui/src/App.tsx``), below ``/``: each
#: answers with ``index.html``. Explicit prefixes, not a catch-all, so an unknown API address
#: keeps its 404 (and an unknown method its 404, not 405).
SPA_PREFIXES = ("workflows", "runs")

#: Inline ``style`` attributes are allowed (React Flow positions nodes with them); inline and
#: evaluated script is not.
CONTENT_SECURITY_POLICY = (
    "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; "
    "img-src 'self' data:; font-src 'self'; connect-src 'self'; object-src 'none'; "
    "base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
)

PAGE_HEADERS = {
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-cache",
}

#: Vite's asset names: ``index-<hash>.js``; no slash, no leading dot (no traversal).
ASSET_NAME = re.compile(r"^[A-Za-z0-9_-][A-Za-z0-9._-]{0,200}$")
MEDIA_TYPES = {
    ".js": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".svg": "image/svg+xml",
    ".png": "image/png",
    ".woff2": "font/woff2",
    ".json": "application/json",
}


def static_files() -> Traversable:
    """The built bundle's folder inside the installed package."""
    return resources.files("backpackflow_server").joinpath("static")


@cache
def _index_html() -> str:
    return static_files().joinpath("index.html").read_text(encoding="utf-8")


@cache
def _asset(name: str) -> bytes | None:
    file = static_files().joinpath("assets").joinpath(name)
    return file.read_bytes() if file.is_file() else None


def _page() -> HTMLResponse:
    return HTMLResponse(_index_html(), headers=PAGE_HEADERS)


def install_web_ui(app: FastAPI) -> None:
    """Serve the app's pages (history fallback) and its hashed assets."""

    @app.get("/", response_class=HTMLResponse, include_in_schema=False)
    async def home() -> HTMLResponse:
        return _page()

    for prefix in SPA_PREFIXES:
        app.add_api_route(
            f"/{prefix}/{{rest:path}}",
            home,
            methods=["GET"],
            response_class=HTMLResponse,
            include_in_schema=False,
            name=f"web_ui_{prefix}",
        )

    @app.get("/assets/{name}", include_in_schema=False)
    async def asset(name: str) -> Response:
        return _serve_asset(name)


def _serve_asset(name: str) -> Response:
    suffix = name[name.rfind(".") :] if "." in name else ""
    if not ASSET_NAME.match(name) or suffix not in MEDIA_TYPES:
        raise HTTPException(status_code=404, detail="Not Found")
    body = _asset(name)
    if body is None:
        raise HTTPException(status_code=404, detail="Not Found")
    return Response(
        body,
        media_type=MEDIA_TYPES[suffix],
        headers={
            "Cache-Control": "public, max-age=31536000, immutable",
            "X-Content-Type-Options": "nosniff",
        },
    )
