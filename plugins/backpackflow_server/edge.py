"""The HTTP edge: what every request passes before a route sees it.

* **Host allowlist** (Starlette's ``TrustedHostMiddleware``): a request whose ``Host`` is not
  one the operator named gets 400. A DNS-rebinding page (``evil.example`` resolving to
  127.0.0.1) reaches the socket but not the API.
* **Origin check** of state-changing requests (POST, PUT, PATCH, DELETE): a browser sends
  ``Origin`` with them; only the service's own origin and the configured ones may change
  anything (403 otherwise). A form a foreign page posts, even one without a body, starts
  nothing. Clients that are not browsers send no ``Origin`` and are not affected.
* **CORS** (Starlette's ``CORSMiddleware``), only for the origins the operator lists.
* **Body limit**: a body larger than ``max_body_bytes`` gets 413, whether it announces its
  length or streams it (chunked); nothing of it is stored.
* **JSON bodies checked once** (:class:`EdgeRoute`): parsed (off the event loop when large),
  refused with 422 naming the JSON path when a string holds U+0000 or a lone surrogate (the
  databases cannot store them alike; see :mod:`backpackflow_store_sql.portable`) or objects
  and arrays nest deeper than ``max_json_depth`` -- before any route runs, so nothing is
  stored or executed. The parsed document is handed on, so FastAPI does not parse it again.
"""

from __future__ import annotations

import email.message
import json
from collections.abc import Callable, Coroutine, Iterator, Mapping
from typing import Any
from urllib.parse import urlsplit

from fastapi import FastAPI, Request, Response
from fastapi.routing import APIRoute
from starlette.datastructures import Headers
from starlette.middleware.cors import CORSMiddleware
from starlette.middleware.trustedhost import TrustedHostMiddleware
from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from backpackflow.config import FLOW_NODE_TYPE
from backpackflow_store_sql.portable import unportable_problems

from .auth import UNSAFE_METHODS
from .runs import FlowProblems
from .settings import Settings

#: Bodies up to this size are checked in the event loop; larger ones in a worker thread.
INLINE_BODY_BYTES = 64 * 1024


class BodyTooLarge(Exception):
    """The request body is larger than ``max_body_bytes``: 413."""

    def __init__(self, limit: int) -> None:
        super().__init__(
            f"the request body is larger than {limit} bytes, the most this service accepts "
            "(max_body_bytes)"
        )


def same_origin(origin: str, host: str | None) -> bool:
    """Whether ``origin`` (``http://127.0.0.1:8000``) names the host the request was sent to."""
    netloc = urlsplit(origin).netloc.lower()
    return bool(netloc) and host is not None and netloc == host.lower()


class EdgeMiddleware:
    """Origin check of state-changing requests and the request body limit (pure ASGI, so it
    adds one function call per request and never buffers a body itself)."""

    def __init__(self, app: ASGIApp, settings: Settings) -> None:
        self.app = app
        self.max_body = settings.max_body_bytes
        self.origins = frozenset([*settings.allowed_origins, *settings.cors_origins])

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = Headers(scope=scope)
        if scope["method"] in UNSAFE_METHODS:
            refused = self._origin_refused(headers)
            if refused is not None:
                await JSONResponse({"detail": refused}, status_code=403)(scope, receive, send)
                return
        length = headers.get("content-length")
        if length is not None and length.isdigit() and int(length) > self.max_body:
            response = JSONResponse({"detail": str(BodyTooLarge(self.max_body))}, 413)
            response.headers["Connection"] = "close"
            await response(scope, receive, send)
            return
        await self.app(scope, self._limited(receive), send)

    def _origin_refused(self, headers: Headers) -> str | None:
        origin = headers.get("origin")
        if origin is None:
            if headers.get("sec-fetch-site") == "cross-site":
                return "a cross-site request may not change anything here"
            return None
        normalized = origin.strip().rstrip("/").lower()
        if normalized in self.origins or same_origin(normalized, headers.get("host")):
            return None
        return (
            f"requests from the origin {origin!r} may not change anything here (the operator "
            "allows other origins with allowed_origins)"
        )

    def _limited(self, receive: Receive) -> Receive:
        limit = self.max_body
        received = 0

        async def limited_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    raise BodyTooLarge(limit)
            return message

        return limited_receive


def install_edge(app: FastAPI, settings: Settings) -> None:
    """Add the edge's middleware (outermost first: Host, CORS, Origin and body limit) and
    make every route an :class:`EdgeRoute`. Call before adding routes."""
    app.router.route_class = EdgeRoute
    app.add_middleware(EdgeMiddleware, settings=settings)
    if settings.cors_origins:
        app.add_middleware(
            CORSMiddleware,
            allow_origins=settings.cors_origins,
            allow_methods=["GET", "POST", "PUT", "DELETE"],
            allow_headers=["Authorization", "Content-Type", "If-Match", "Last-Event-ID"],
            expose_headers=["ETag", "Location", "Link"],
            allow_credentials=False,  # the session cookie is SameSite=Strict anyway
        )
    if "*" not in settings.allowed_hosts:
        app.add_middleware(
            TrustedHostMiddleware, allowed_hosts=settings.allowed_hosts, www_redirect=False
        )


# ---------------------------------------------------------------------- JSON bodies


def _is_json(content_type: str | None) -> bool:
    """As FastAPI decides whether to parse a body as JSON (no content type counts as JSON)."""
    if not content_type:
        return True
    message = email.message.Message()
    message["content-type"] = content_type
    subtype = message.get_content_subtype()
    return message.get_content_maintype() == "application" and (
        subtype == "json" or subtype.endswith("+json")
    )


def parse_body(body: bytes, max_depth: int) -> Any:
    """The JSON document of a request body, or :class:`FlowProblems` (``"body"``) when a
    string cannot be stored or the nesting is too deep. Malformed JSON is left to FastAPI
    (it reports where) by returning ``None``."""
    try:
        document = json.loads(body)
    except RecursionError:
        raise FlowProblems(
            "body",
            [
                f"$: nested too deeply; at most {max_depth} levels of objects and arrays are "
                "accepted"
            ],
        ) from None
    except UnicodeDecodeError as exc:
        raise FlowProblems("body", [f"$: the body is not UTF-8 text ({exc.reason})"]) from None
    except ValueError:  # not JSON: FastAPI says where
        return None
    problems = unportable_problems(document, max_depth=max_depth)
    if problems:
        raise FlowProblems("body", problems)
    return document


class EdgeRoute(APIRoute):
    """A route whose JSON body is parsed and checked (see the module docstring) first."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()
        if self.body_field is None:
            return handler

        async def checked(request: Request) -> Response:
            body = await request.body()  # BodyTooLarge past the limit
            if body and _is_json(request.headers.get("content-type")):
                service = request.app.state.service
                depth = service.settings.max_json_depth
                if len(body) > INLINE_BODY_BYTES:
                    document = await service.manager.off_loop(parse_body, body, depth)
                else:
                    document = parse_body(body, depth)
                if document is not None:
                    request._json = document  # what Request.json() returns: parsed once
            return await handler(request)

        return checked


# ---------------------------------------------------------------------- flow size


def _node_lists(document: Mapping[str, Any]) -> Iterator[list[Any]]:
    """The node list of a flow and of every nested flow in it, without recursion."""
    stack: list[Any] = [document.get("nodes")]
    while stack:
        nodes = stack.pop()
        if not isinstance(nodes, list):
            continue
        yield nodes
        for node in nodes:
            if isinstance(node, dict) and node.get("type") == FLOW_NODE_TYPE:
                params = node.get("params")
                if isinstance(params, dict):
                    stack.append(params.get("nodes"))


def flow_size_problems(document: Mapping[str, Any], max_nodes: int) -> list[str]:
    """A problem if the flow (nested flows included) has more than ``max_nodes`` nodes."""
    total = 0
    for nodes in _node_lists(document):
        total += len(nodes)
        if total > max_nodes:
            break
    if total <= max_nodes:
        return []
    return [
        f"$.nodes: the flow has more than {max_nodes} nodes (nested flows included), the most "
        "this service accepts (max_flow_nodes)"
    ]
