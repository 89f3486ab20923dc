"""Structured logs of the service: one JSON line per request with its method, path, status,
duration, request id, run id and trace id; and ``serve``'s logging configuration."""

from __future__ import annotations

import io
import json
import logging
import logging.config
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from server_kit import LiveServer, create_workflow, echo, flow, wait_for_status

from backpackflow_server.logging_json import JsonFormatter, log_config


@pytest.fixture
def request_lines() -> Iterator[Callable[[], list[dict[str, Any]]]]:
    """The request log as parsed JSON lines."""
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter())
    logger = logging.getLogger("backpackflow_server.requests")
    level = logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    try:
        yield lambda: [json.loads(line) for line in stream.getvalue().splitlines()]
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)


def test_every_request_is_one_json_line(
    serve: Callable[..., LiveServer], request_lines: Callable[[], list[dict[str, Any]]]
) -> None:
    server = serve()
    trace_id = "4bf92f3577b34da6a3ce929d0e0e4736"
    with server.client() as client:
        workflow = create_workflow(client, flow(echo("a")))
        started = client.post(
            f"/api/workflows/{workflow}/runs",
            json={},
            headers={"traceparent": f"00-{trace_id}-00f067aa0ba902b7-01", "X-Request-ID": "req-1"},
        )
        run_id = started.json()["id"]
        assert started.headers["x-request-id"] == "req-1"
        wait_for_status(client, run_id, "succeeded")
        missing = client.get("/api/runs/0123456789abcdef0123456789abcdef?after=sekrit")
        assert missing.status_code == 404
        generated = missing.headers["x-request-id"]
        bad_id = client.get("/health", headers={"X-Request-ID": "not {a} safe id"})
        assert bad_id.headers["x-request-id"] != "not {a} safe id"
    lines = request_lines()
    assert all(line["logger"] == "backpackflow_server.requests" for line in lines)
    assert all(
        isinstance(line["duration_ms"], float) and line["duration_ms"] >= 0 for line in lines
    )
    (create,) = [line for line in lines if line["request_id"] == "req-1"]
    assert (create["method"], create["path"], create["status"]) == (
        "POST",
        f"/api/workflows/{workflow}/runs",
        202,
    )
    assert create["run_id"] == run_id and create["trace_id"] == trace_id
    assert create["level"] == "info" and create["time"].endswith("+00:00")
    polls = [line for line in lines if line["path"] == f"/api/runs/{run_id}"]
    assert polls and all(line["run_id"] == run_id and line["trace_id"] is None for line in polls)
    (lost,) = [line for line in lines if line["request_id"] == generated]
    assert lost["status"] == 404 and lost["path"] == "/api/runs/0123456789abcdef0123456789abcdef"
    assert "sekrit" not in json.dumps(lines)  # no query strings


def test_serve_logs_json_lines_for_its_own_and_uvicorns_loggers(
    capsys: pytest.CaptureFixture[str],
) -> None:
    names = ("", "uvicorn", "uvicorn.error", "uvicorn.access")
    saved = {
        name: (list(logging.getLogger(name).handlers), logging.getLogger(name).level)
        for name in names
    }
    try:
        logging.config.dictConfig(log_config("json", "info"))
        logging.getLogger("uvicorn.error").info("Started server process [%d]", 42)
        logging.getLogger("uvicorn.access").info("replaced by the request log")
        logging.getLogger("backpackflow_server.runs").debug("below the level")
        try:
            raise ValueError("broken")
        except ValueError:
            logging.getLogger("backpackflow_server.app").exception("it failed")
        lines = [json.loads(line) for line in capsys.readouterr().err.splitlines()]
    finally:
        for name, (handlers, level) in saved.items():
            logger = logging.getLogger(name)
            logger.handlers[:] = handlers
            logger.setLevel(level)
    assert [(line["logger"], line["message"]) for line in lines] == [
        ("uvicorn.error", "Started server process [42]"),
        ("backpackflow_server.app", "it failed"),
    ]
    assert lines[1]["level"] == "error" and lines[1]["error"]["type"] == "ValueError"
    assert "raise ValueError" in lines[1]["error"]["stack"]
    text = log_config("text", "warning")
    assert text["root"]["level"] == "WARNING" and "format" in text["formatters"]["service"]
