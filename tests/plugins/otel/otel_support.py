"""An OTLP receiver for the tests: what a collector does with the otlp sink's requests.

:class:`OtlpReceiver` is a real HTTP server on 127.0.0.1 (``POST /v1/traces``, protobuf,
optionally gzip) and :func:`grpc_receiver` a real gRPC server (the collector's
``TraceService/Export``); both decode the wire format with ``opentelemetry-proto`` and keep every
raw body, so a test can search the exact bytes sent as well as the decoded spans.
"""

from __future__ import annotations

import gzip
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler
from typing import Any

import attrs
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)
from opentelemetry.proto.common.v1.common_pb2 import AnyValue

from loopback import LoopbackServer


@attrs.frozen
class SpanRecord:
    """One received span, decoded."""

    name: str
    trace_id: str
    span_id: str
    parent_span_id: str
    kind: int
    start: int
    end: int
    attributes: dict[str, Any]
    events: list[tuple[str, dict[str, Any], int]]
    status_code: int  # 0 unset, 1 ok, 2 error
    status_message: str
    resource: dict[str, Any]
    scope: str

    def event_names(self) -> list[str]:
        return [name for name, _, _ in self.events]


def value(any_value: AnyValue) -> Any:
    kind = any_value.WhichOneof("value")
    if kind is None:
        return None
    if kind == "array_value":
        return [value(v) for v in any_value.array_value.values]
    if kind == "kvlist_value":
        return {kv.key: value(kv.value) for kv in any_value.kvlist_value.values}
    return getattr(any_value, kind)


def _attributes(pairs: Any) -> dict[str, Any]:
    return {kv.key: value(kv.value) for kv in pairs}


class Collected:
    """What a receiver got: raw bodies and decoded spans (thread-safe)."""

    def __init__(self) -> None:
        self.bodies: list[bytes] = []
        self.headers: list[dict[str, str]] = []
        self._spans: list[SpanRecord] = []
        self._lock = threading.Condition()

    def add(self, body: bytes, headers: dict[str, str]) -> None:
        request = ExportTraceServiceRequest()
        request.ParseFromString(body)
        spans = []
        for resource_spans in request.resource_spans:
            resource = _attributes(resource_spans.resource.attributes)
            for scope_spans in resource_spans.scope_spans:
                for span in scope_spans.spans:
                    spans.append(
                        SpanRecord(
                            name=span.name,
                            trace_id=span.trace_id.hex(),
                            span_id=span.span_id.hex(),
                            parent_span_id=span.parent_span_id.hex(),
                            kind=span.kind,
                            start=span.start_time_unix_nano,
                            end=span.end_time_unix_nano,
                            attributes=_attributes(span.attributes),
                            events=[
                                (e.name, _attributes(e.attributes), e.time_unix_nano)
                                for e in span.events
                            ],
                            status_code=span.status.code,
                            status_message=span.status.message,
                            resource=resource,
                            scope=scope_spans.scope.name,
                        )
                    )
        with self._lock:
            self.bodies.append(body)
            self.headers.append(headers)
            self._spans.extend(spans)
            self._lock.notify_all()

    @property
    def spans(self) -> list[SpanRecord]:
        with self._lock:
            return list(self._spans)

    def raw(self) -> bytes:
        with self._lock:
            return b"".join(self.bodies)


class _Handler(BaseHTTPRequestHandler):
    server: Any

    def do_POST(self) -> None:
        receiver: OtlpReceiver = self.server.receiver
        body = self.rfile.read(int(self.headers.get("content-length") or 0))
        if self.headers.get("content-encoding") == "gzip":
            body = gzip.decompress(body)
        if self.path != "/v1/traces" or self.headers.get("content-type") != (
            "application/x-protobuf"
        ):
            self.send_response(404)
            self.end_headers()
            return
        receiver.collected.add(body, {k.lower(): v for k, v in self.headers.items()})
        answer = ExportTraceServiceResponse().SerializeToString()
        self.send_response(200)
        self.send_header("content-type", "application/x-protobuf")
        self.send_header("content-length", str(len(answer)))
        self.end_headers()
        self.wfile.write(answer)

    def log_message(self, *args: Any) -> None:
        pass


class OtlpReceiver(LoopbackServer):
    """OTLP/HTTP on 127.0.0.1; ``url`` is its base (the sink adds ``/v1/traces``)."""

    def __init__(self) -> None:
        super().__init__(_Handler)
        self.collected = Collected()
        self._httpd.receiver = self

    @property
    def spans(self) -> list[SpanRecord]:
        return self.collected.spans


@contextmanager
def grpc_receiver() -> Iterator[tuple[str, Collected]]:
    """A gRPC OTLP trace receiver on 127.0.0.1: yields (``grpc://host:port``, what it got)."""
    from concurrent import futures

    import grpc
    from opentelemetry.proto.collector.trace.v1 import trace_service_pb2_grpc

    collected = Collected()

    class Service(trace_service_pb2_grpc.TraceServiceServicer):
        def Export(self, request: Any, context: Any) -> Any:
            metadata = {k: v for k, v in context.invocation_metadata()}
            collected.add(request.SerializeToString(), metadata)
            return ExportTraceServiceResponse()

    server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
    trace_service_pb2_grpc.add_TraceServiceServicer_to_server(Service(), server)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    try:
        yield f"grpc://127.0.0.1:{port}", collected
    finally:
        server.stop(grace=None)


def tree(spans: list[SpanRecord]) -> dict[str, list[SpanRecord]]:
    """Children of each span id ("" for the roots), in start order."""
    children: dict[str, list[SpanRecord]] = {}
    for span in sorted(spans, key=lambda s: s.start):
        children.setdefault(span.parent_span_id, []).append(span)
    return children
