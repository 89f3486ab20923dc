"""The export pipeline of the ``otlp`` sink: TracerProvider → bounded batch → OTLP exporter.

One pipeline per distinct destination and settings, shared by every ``otlp`` sink of the
process: the service builds a sink per run, and a TracerProvider, its batch thread and its
HTTP/2 or HTTP connection per run would cost far more than the spans. A pipeline lives until
the interpreter exits (the SDK's ``atexit`` hook flushes and shuts it down); a sink's
``close()`` flushes it.

Nothing here blocks a run: the SDK's :class:`BatchSpanProcessor` queues ended spans and exports
them from its own thread. The SDK drops spans silently when its queue is full, so the queue
bound is enforced one step earlier by :class:`_Bounded`, which counts what it drops; the
exporter is wrapped by :class:`_Counting`, which counts what was exported and what failed
(after the exporter's own retries). Those counts are the sink's report.
"""

from __future__ import annotations

import atexit
import threading
from collections.abc import Sequence
from typing import Any

import attrs
from opentelemetry.context import Context
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, Span, SpanProcessor, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter, SpanExportResult
from opentelemetry.trace import Tracer

from backpackflow import __version__

#: The GenAI semantic conventions followed (see docs/observability.md).
SCHEMA_URL = "https://opentelemetry.io/schemas/1.44.0"


@attrs.frozen
class Destination:
    """Where and how spans go; the key pipelines are shared by."""

    protocol: str  # "http/protobuf" | "grpc"
    endpoint: str  # the full traces URL (HTTP) or host:port (gRPC)
    insecure: bool  # gRPC without TLS
    headers: tuple[tuple[str, str], ...]
    timeout: float
    compression: str
    service_name: str
    resource: tuple[tuple[str, str], ...]
    max_queue: int
    batch_size: int
    max_delay: float


class Stats:
    """Counters of one pipeline (updated from the run's thread and the export thread)."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.ended = 0  # spans handed to the pipeline
        self.exported = 0  # accepted by the endpoint
        self.failed = 0  # the exporter gave up on them (endpoint down, rejected, timed out)
        self.dropped = 0  # the queue was full
        self.inflight = 0  # queued or being exported

    def snapshot(self) -> dict[str, int]:
        with self.lock:
            return {
                "spans": self.ended,
                "exported": self.exported,
                "failed": self.failed,
                "dropped": self.dropped,
                "pending": self.inflight,
            }


class _Counting(SpanExporter):
    """Counts the outcome of every export of the wrapped exporter."""

    def __init__(self, inner: SpanExporter, stats: Stats) -> None:
        self._inner = inner
        self._stats = stats

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        try:
            result = self._inner.export(spans)
        except Exception:  # noqa: BLE001 - counted as failed; the batch thread must go on
            result = SpanExportResult.FAILURE
        stats = self._stats
        with stats.lock:
            stats.inflight -= len(spans)
            if result is SpanExportResult.SUCCESS:
                stats.exported += len(spans)
            else:
                stats.failed += len(spans)
        return result

    def shutdown(self) -> None:
        self._inner.shutdown()

    def force_flush(self, timeout_millis: int = 30_000) -> bool:
        return self._inner.force_flush(timeout_millis)


class _Bounded(SpanProcessor):
    """Hands ended spans to the batch processor while fewer than ``limit`` are in flight;
    drops (and counts) the others, so the batch processor's own queue is never full."""

    def __init__(self, inner: BatchSpanProcessor, stats: Stats, limit: int) -> None:
        self._inner = inner
        self._stats = stats
        self._limit = limit

    def on_start(self, span: Span, parent_context: Context | None = None) -> None:
        return None

    def on_end(self, span: ReadableSpan) -> None:
        stats = self._stats
        with stats.lock:
            stats.ended += 1
            if stats.inflight >= self._limit:
                stats.dropped += 1
                return
            stats.inflight += 1
        self._inner.on_end(span)

    def shutdown(self) -> None:
        inner: Any = self._inner  # untyped in some SDK versions
        inner.shutdown()

    def force_flush(self, timeout_millis: int = 30_000) -> bool:
        return self._inner.force_flush(timeout_millis)


class Pipeline:
    """A TracerProvider exporting to one destination, with its counters."""

    def __init__(self, destination: Destination) -> None:
        self.destination = destination
        self.stats = Stats()
        exporter = _Counting(_exporter(destination), self.stats)
        batch = BatchSpanProcessor(
            exporter,
            max_queue_size=destination.max_queue,
            max_export_batch_size=min(destination.batch_size, destination.max_queue),
            schedule_delay_millis=destination.max_delay * 1000,
            export_timeout_millis=destination.timeout * 1000,
        )
        resource = Resource.create(
            {
                **dict(destination.resource),
                "service.name": destination.service_name,
                "service.version": __version__,
            }
        )
        # shut down by this module's own exit hook, bounded in time (the SDK's would wait for
        # an unreachable endpoint as long as the exporter retries)
        self.provider = TracerProvider(resource=resource, shutdown_on_exit=False)
        self.provider.add_span_processor(_Bounded(batch, self.stats, destination.max_queue))
        self.tracer: Tracer = self.provider.get_tracer(
            "backpackflow", __version__, schema_url=SCHEMA_URL
        )

    def flush(self, timeout: float) -> bool:
        """Export what is queued within ``timeout`` seconds; False if time ran out (the
        export goes on in the background: an endpoint that is down holds the SDK's flush
        as long as the exporter retries)."""
        return _bounded(
            lambda: bool(self.provider.force_flush(max(1, int(timeout * 1000)))), timeout
        )

    def shutdown(self, timeout: float) -> None:
        """Flush and stop the export thread, taking at most about ``2 * timeout`` seconds."""
        self.flush(timeout)
        _bounded(self.provider.shutdown, timeout)


def _bounded(call: Any, timeout: float) -> bool:
    """``call()`` in a daemon thread, waited for ``timeout`` seconds: its result, or False."""
    result: list[Any] = []
    thread = threading.Thread(
        target=lambda: result.append(call()), name="backpackflow-otel-flush", daemon=True
    )
    thread.start()
    thread.join(max(0.0, timeout))
    return bool(result and result[0] is not False)


def _exporter(destination: Destination) -> SpanExporter:
    headers = dict(destination.headers)
    if destination.protocol == "grpc":
        from grpc import Compression as GrpcCompression
        from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import (
            OTLPSpanExporter as GrpcExporter,
        )

        grpc_compression = (
            GrpcCompression.Gzip
            if destination.compression == "gzip"
            else GrpcCompression.NoCompression
        )
        return GrpcExporter(
            endpoint=destination.endpoint,
            insecure=destination.insecure,
            headers=headers,
            timeout=destination.timeout,
            compression=grpc_compression,
        )
    from opentelemetry.exporter.otlp.proto.http import Compression
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

    compression = (
        Compression.Gzip if destination.compression == "gzip" else Compression.NoCompression
    )
    return OTLPSpanExporter(
        endpoint=destination.endpoint,
        headers=headers,
        timeout=destination.timeout,
        compression=compression,
    )


_pipelines: dict[Destination, Pipeline] = {}
_lock = threading.Lock()


def pipeline_for(destination: Destination) -> Pipeline:
    """The process's pipeline for ``destination`` (built on first use)."""
    with _lock:
        pipeline = _pipelines.get(destination)
        if pipeline is None:
            pipeline = _pipelines[destination] = Pipeline(destination)
        return pipeline


def pipelines() -> list[Pipeline]:
    """Every pipeline built in this process (for monitoring: their counters)."""
    with _lock:
        return list(_pipelines.values())


def shutdown_all(timeout: float = 5.0) -> None:
    """Flush and shut down every pipeline of the process and forget them (a service
    stopping; tests). Sinks built later make new ones."""
    with _lock:
        built = list(_pipelines.values())
        _pipelines.clear()
    for pipeline in built:
        pipeline.shutdown(timeout)


# at exit: what the sinks' close() did not get out within close_timeout gets one more second
atexit.register(shutdown_all, 1.0)


__all__ = [
    "SCHEMA_URL",
    "Destination",
    "Pipeline",
    "Stats",
    "pipeline_for",
    "pipelines",
    "shutdown_all",
]
