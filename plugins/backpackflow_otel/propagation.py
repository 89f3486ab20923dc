"""W3C trace context for outgoing HTTP calls, when (and only when) an OpenTelemetry sink is on.

The ``otlp`` sink makes the span of the LLM call or tool call in progress the current
OpenTelemetry span (see :mod:`backpackflow_otel.spans`); the HTTP code of the LLM providers and of
the ``http_fetch`` tool calls :func:`trace_headers` to add its ``traceparent`` (and
``tracestate``) header, so the provider's or the API's own traces join the run's trace.

Until a sink is built in the process (:func:`enable`), :func:`trace_headers` returns at once and
imports nothing: installations without the ``otel`` extra, and runs without the sink, send
exactly the headers they sent before. Only W3C trace context is sent (never baggage, which may
carry what a user put there).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

__all__ = ["enable", "enabled", "trace_headers"]

_propagator: Any = None  # a TraceContextTextMapPropagator once a sink is on


def enable() -> None:
    """Turn propagation on for this process (the ``otlp`` sink calls it when built)."""
    global _propagator
    if _propagator is None:
        from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

        _propagator = TraceContextTextMapPropagator()


def enabled() -> bool:
    return _propagator is not None


def trace_headers(headers: Mapping[str, str] | None = None) -> dict[str, str]:
    """``headers`` plus ``traceparent``/``tracestate`` of the current span, if a sink is on
    and a span is current; otherwise a plain copy of ``headers``."""
    result = dict(headers or {})
    propagator = _propagator
    if propagator is not None:
        propagator.inject(result)  # a no-op when no valid span is current
    return result
