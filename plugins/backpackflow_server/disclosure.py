"""What the service tells API clients about failures: a message and an error id, never more.

Stack traces and absolute server paths stay in the server log. Every failure a client sees
gets an *error id*; the log entry holding the whole story (the stack, the unredacted message)
carries the same id, so an operator finds it with ``grep <id>``. This applies to

* unexpected exceptions of the app (500 with ``{"detail", "error_id"}``, see ``app.py``),
* ``error`` trace events (their ``stack`` goes to the log; clients get ``error_id``), and the
  error texts of ``retry``, ``tool_response`` and ``fallback`` events,
* a run's ``error_summary`` and the messages of flows a node type's code failed to build,
* the database being unavailable (its URL and driver message go to the log).
"""

from __future__ import annotations

import logging
import re
import secrets
from typing import Any

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
