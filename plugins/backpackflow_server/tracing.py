"""W3C trace context accepted from API requests: a run joins its caller's trace.

A client that traces its own work sends ``traceparent`` (and ``tracestate``) with
``POST /api/workflows/{id}/runs``; while the run is created, that context is made the current
OpenTelemetry context, and the run's task (created then) keeps it, so the ``otlp`` sink starts
the run's span as a child of the caller's (see :mod:`backpackflow_otel.spans`). Without the
OpenTelemetry API installed, or without a valid header, nothing changes.

The same header names the request's trace id in the service's request logs
(:func:`trace_id_of`).
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from contextlib import contextmanager

#: version 00: trace id (32 hex, not all zeros), parent id (16 hex, not all zeros), flags
_TRACEPARENT = re.compile(r"^[0-9a-f]{2}-([0-9a-f]{32})-([0-9a-f]{16})-[0-9a-f]{2}$")


def trace_id_of(headers: Mapping[str, str]) -> str | None:
    """The trace id a valid ``traceparent`` header names, else None."""
    match = _TRACEPARENT.match((headers.get("traceparent") or "").strip().lower())
    if match is None or set(match.group(1)) == {"0"} or set(match.group(2)) == {"0"}:
        return None
    return match.group(1)


@contextmanager
def caller_trace(headers: Mapping[str, str]) -> Iterator[None]:
    """The caller's trace context, current within the block (if it sent a valid one)."""
    if trace_id_of(headers) is None:
        yield
        return
    try:
        from opentelemetry import context
        from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator
    except ImportError:  # the otel extra is not installed: no sink could use it
        yield
        return
    carrier = {k: headers[k] for k in ("traceparent", "tracestate") if k in headers}
    token = context.attach(TraceContextTextMapPropagator().extract(carrier))
    try:
        yield
    finally:
        context.detach(token)
