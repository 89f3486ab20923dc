"""What the service tells API clients about failures: a message and an error id, never more.

Stack traces and absolute server paths stay in the server log. Every failure a client sees
gets an *error id*; the log entry holding the whole story (the stack, the unredacted message)
carries the same id, so an operator finds it with ``grep <id>``. This applies to

* unexpected exceptions of the app (500 with ``{"detail", "error_id"}``: :class:`ErrorIds`),
* ``error`` trace events (their ``stack`` goes to the log; clients get ``error_id``), and the
  error texts of ``retry``, ``tool_response``, ``fallback``, ``guardrail`` and ``run_end``
  events,
* a run's ``error_summary`` and the messages of flows a node type's code failed to build,
* the database being unavailable (its URL and driver message go to the log).
"""

from __future__ import annotations

import logging
import re
import secrets
from typing import Any

from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

log = logging.getLogger("backpackflow_server.errors")

#: An absolute POSIX path of two or more parts (``/etc/passwd``, ``/srv/app/.env``), or a
#: Windows one (``C:\\app\\x``), not preceded by what makes it part of a URL or a word
#: (``https://host/a/b``, ``a/b``, ``~/x``).
_SERVER_PATH = re.compile(
    r"(?<![\w/.:~\\-])(?:/[\w.@+~-]+){2,}/?|(?<![\w])[A-Za-z]:\\(?:[\w.@+~-]+\\?)+"
)
PATH_PLACEHOLDER = "<path>"
#: Payload fields of trace events that carry an exception's message (by event type).
_ERROR_FIELDS = {
    "error": ("error",),
    "retry": ("error",),
    "tool_response": ("error",),
    "fallback": ("reason",),
    "run_end": ("error",),
    "guardrail": ("message",),
}


def new_error_id() -> str:
    """A short random id for one failure (16 hex characters)."""
    return secrets.token_hex(8)


def redact(text: str) -> str:
    """``text`` with absolute server paths replaced by ``<path>``."""
    return _SERVER_PATH.sub(PATH_PLACEHOLDER, text)


def client_message(error: BaseException) -> str:
    """``"Type: message"`` of an exception, with server paths redacted."""
    message = str(error)
    text = f"{type(error).__name__}: {message}" if message else type(error).__name__
    return redact(text)


def log_failure(error_id: str, what: str, error: BaseException | None = None) -> None:
    """Log a failure under its error id (with the stack of ``error`` if given)."""
    if error is None:
        log.error("error %s: %s", error_id, what)
    else:
        log.error(
            "error %s: %s", error_id, what, exc_info=(type(error), error, error.__traceback__)
        )


def with_error_id(message: str, error_id: str) -> str:
    return f"{message} (error id {error_id})"


def client_event(document: dict[str, Any]) -> dict[str, Any]:
    """A trace event as clients may see it (``BackpackEvent.to_json()`` output; changed in
    place and returned): an ``error`` event's stack is logged under a new ``error_id`` that
    replaces it, and error texts lose their server paths."""
    kind = document.get("type")
    payload = document.get("payload")
    if not isinstance(payload, dict) or kind not in _ERROR_FIELDS:
        return document
    if kind == "error":
        error_id = new_error_id()
        stack = payload.pop("stack", None)
        log.error(
            "error %s: run %s, node %s, %s phase: %s",
            error_id,
            document.get("run_id"),
            document.get("node_id"),
            payload.get("phase"),
            stack or f"{payload.get('error_type')}: {payload.get('error')}",
        )
        payload["error_id"] = error_id
    for field in _ERROR_FIELDS[str(kind)]:
        value = payload.get(field)
        if isinstance(value, str):
            payload[field] = redact(value)
    return document


class ErrorIds:
    """The outermost middleware: an exception nothing else handled becomes a 500 answer with
    an error id, its traceback logged under the id.

    Starlette's own handler for ``Exception`` answers too, but then re-raises, and the server
    closes the connection (a client reusing it gets a reset). Here the request ends normally.
    An exception after the answer started (a stream) can only end the connection: re-raised.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = False

        async def watched_send(message: Message) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, receive, watched_send)
        except Exception as exc:
            if started:
                raise
            error_id = new_error_id()
            log_failure(error_id, f"{scope['method']} {scope['path']} failed", exc)
            detail = with_error_id("the service failed to answer this request", error_id)
            response = JSONResponse({"detail": detail, "error_id": error_id}, status_code=500)
            await response(scope, receive, send)
