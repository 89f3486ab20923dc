"""The service's logs: one line per request, as text or as JSON lines.

:class:`RequestLog` (ASGI middleware, outermost) logs every HTTP request when its response has
been sent -- for an SSE stream, when the stream ends -- on the logger
``backpackflow_server.requests``: method, path (never the query string, which may carry a
cursor or a token), status, duration, the request id (the client's ``X-Request-ID`` when it is
a short token of safe characters, else a new one; echoed in the response), the run id (a
``/api/runs/{id}`` path, or the run a ``POST .../runs`` created) and the trace id of the
caller's ``traceparent``. It replaces uvicorn's access log.

:func:`log_config` is the ``logging.config`` dictionary ``serve`` hands uvicorn:
``--log-format text`` (readable lines) or ``json`` (:class:`JsonFormatter`: one JSON object per
line, for log shippers), for the service's own loggers and uvicorn's alike.
"""

from __future__ import annotations

import json
import logging
import re
import time
import traceback
import uuid
from datetime import UTC, datetime
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from .tracing import trace_id_of

log = logging.getLogger("backpackflow_server.requests")

#: Extra fields of a request's log record, in the order a JSON line shows them.
REQUEST_FIELDS = ("method", "path", "status", "duration_ms", "request_id", "run_id", "trace_id")
_REQUEST_ID = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")
_RUN_PATH = re.compile(r"^/api/runs/([0-9A-Za-z]{8,64})(?:/|$)")
_RESERVED = set(vars(logging.makeLogRecord({}))) | {"message", "asctime", "color_message"}


class JsonFormatter(logging.Formatter):
    """A log record as one JSON object: time (UTC, ISO 8601), level, logger, message, the
    record's extra fields (a request's among them), and the error with its stack if any."""

    def format(self, record: logging.LogRecord) -> str:
        data: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        for key, value in vars(record).items():
            if key not in _RESERVED and not key.startswith("_"):
                data[key] = value
        if record.exc_info and record.exc_info[1] is not None:
            error = record.exc_info[1]
            data["error"] = {
                "type": type(error).__name__,
                "message": str(error),
                "stack": "".join(traceback.format_exception(error)),
            }
        return json.dumps(data, ensure_ascii=False, default=str)


class RequestLog:
    """Logs each request once it is answered (see the module docstring)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
        given = headers.get("x-request-id", "")
        request_id = given if _REQUEST_ID.match(given) else uuid.uuid4().hex
        path = scope.get("path", "")
        match = _RUN_PATH.match(path)
        fields: dict[str, Any] = {
            "method": scope.get("method", ""),
            "path": path,
            "status": 500,  # unless a response starts
            "request_id": request_id,
            "run_id": match.group(1) if match else None,
            "trace_id": trace_id_of(headers),
        }

        async def send_and_note(message: Message) -> None:
            if message["type"] == "http.response.start":
                fields["status"] = message["status"]
                response_headers = list(message.get("headers", []))
                for name, value in response_headers:
                    if name.lower() == b"location" and fields["run_id"] is None:
                        created = _RUN_PATH.match(value.decode("latin-1"))
                        fields["run_id"] = created.group(1) if created else None
                response_headers.append((b"x-request-id", request_id.encode()))
                message = {**message, "headers": response_headers}
            await send(message)

        try:
            await self.app(scope, receive, send_and_note)
        finally:
            fields["duration_ms"] = round((time.perf_counter() - started) * 1000, 3)
            status = fields["status"]
            log.log(
                logging.WARNING if status >= 500 else logging.INFO,
                "%s %s %s %.1f ms request_id=%s%s%s",
                fields["method"],
                path,
                status,
                fields["duration_ms"],
                request_id,
                f" run_id={fields['run_id']}" if fields["run_id"] else "",
                f" trace_id={fields['trace_id']}" if fields["trace_id"] else "",
                extra={key: fields.get(key) for key in REQUEST_FIELDS},
            )


def log_config(log_format: str, level: str) -> dict[str, Any]:
    """The ``logging.config.dictConfig`` of ``serve``: every logger to stderr, as text or
    JSON lines, at ``level``; uvicorn's access log off (:class:`RequestLog` replaces it)."""
    level = level.upper()
    formatter: dict[str, Any] = (
        {"()": f"{__name__}.JsonFormatter"}
        if log_format == "json"
        else {"format": "%(asctime)s %(levelname)-7s %(name)s: %(message)s"}
    )
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {"service": formatter},
        "handlers": {
            "stderr": {
                "class": "logging.StreamHandler",
                "formatter": "service",
                "stream": "ext://sys.stderr",
            }
        },
        "root": {"handlers": ["stderr"], "level": level},
        "loggers": {
            "uvicorn": {"handlers": [], "level": level, "propagate": True},
            "uvicorn.error": {"handlers": [], "level": level, "propagate": True},
            "uvicorn.access": {"handlers": [], "level": "WARNING", "propagate": False},
        },
    }
