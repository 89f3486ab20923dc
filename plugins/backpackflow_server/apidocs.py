"""The API docs page (``/docs``): Swagger UI served by the service itself, no CDN.

FastAPI's own ``/docs`` and ``/redoc`` pages load Swagger UI and ReDoc from a CDN, so an
air-gapped service showed a blank page. Here the page, its start script and Swagger UI's assets
all come from the service: the assets from the ``fastapi-offline`` package (a maintained wheel
that ships Swagger UI 5's built files, which render the OpenAPI 3.1 spec FastAPI makes; we use
its files, not its app factory), the page and ``init.js`` from this plugin's
``apidocs_static`` (apart from ``static``, which the web UI's build replaces whole).

The page runs under a strict Content-Security-Policy: scripts, styles and requests from the
service's own origin only, no inline script (the start script is a file), nothing framed.
"""

from __future__ import annotations

from importlib import resources

from fastapi import FastAPI
from fastapi.responses import HTMLResponse
from fastapi.staticfiles import StaticFiles

#: The policy of the docs page. ``img-src data:``: Swagger UI's icons are data URIs in its CSS.
DOCS_CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; font-src 'self'; base-uri 'none'; form-action 'self'; "
    "frame-ancestors 'none'"
)
DOCS_URL = "/docs"
#: Where the page's scripts and styles are served: Swagger UI's files and ours.
ASSETS_URL = "/docs/assets"


def install_api_docs(app: FastAPI) -> None:
    """Serve ``/docs`` and its assets (make the app with ``docs_url=None, redoc_url=None``)."""
    page = resources.files("backpackflow_server").joinpath("apidocs_static/index.html")
    headers = {
        "Content-Security-Policy": DOCS_CSP,
        "X-Content-Type-Options": "nosniff",
        "Referrer-Policy": "no-referrer",
    }

    @app.get(DOCS_URL, response_class=HTMLResponse, include_in_schema=False)
    async def api_docs() -> HTMLResponse:
        return HTMLResponse(page.read_text(encoding="utf-8"), headers=headers)

    # ours first: init.js is found in apidocs_static, the rest in fastapi-offline's folder
    assets = StaticFiles(
        packages=[("backpackflow_server", "apidocs_static"), ("fastapi_offline", "static")]
    )
    app.mount(ASSETS_URL, assets, name="api-docs-assets")
