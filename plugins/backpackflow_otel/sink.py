"""The ``otlp`` sink: a run's events as OpenTelemetry spans, exported over OTLP.

``--sink otlp:http://collector:4318`` sends OTLP over HTTP/protobuf (``/v1/traces`` is added
to an endpoint that does not end with it); ``--sink otlp:grpc://collector:4317`` sends over
gRPC without TLS, ``grpcs://`` with TLS (or set ``protocol`` for an ``http(s)://`` gRPC
endpoint, as ``OTEL_EXPORTER_OTLP_PROTOCOL`` does). Headers (a backend's API key) come from
``headers`` or, to keep them off command lines, ``headers_env``: the name of an environment
variable in the ``OTEL_EXPORTER_OTLP_HEADERS`` format (``key=value,key2=value2``, values
URL-encoded). The SDK's own ``OTEL_EXPORTER_OTLP_*`` variables apply as well.

Built on the official SDK and exporters (extra ``otel``): the span mapping is
:mod:`backpackflow_otel.spans`, the bounded export pipeline :mod:`backpackflow_otel.pipeline`.
``handle()`` only starts and ends spans; the batch processor exports from its own thread, and a
full queue drops spans (counted) rather than waiting. ``close()`` flushes within
``close_timeout`` and returns the report.

Flows the operator does not trust cannot declare it (its factory takes no sandbox policy): the
exporters resolve and connect on their own, outside the egress policy. The operator attaches
it: ``backpackflow run --sink otlp:…`` or the service's ``sinks`` setting.
"""

from __future__ import annotations

import os
import sys
import time
from typing import TYPE_CHECKING, Any, Literal
from urllib.parse import unquote, urlsplit, urlunsplit

import attrs

from backpackflow import BackpackEvent, hookimpl
from backpackflow_otel import propagation
from backpackflow_otel.pipeline import Destination, pipeline_for
from backpackflow_otel.spans import SpanBuilder
from backpackflow_sinks import SinkConfigError

if TYPE_CHECKING:
    from backpackflow.plugins import EventSinkRegistrar

SINK = "otlp"


@attrs.frozen(kw_only=True)
class OtlpOptions:
    """Options of the ``otlp`` sink (shorthand ``otlp:ENDPOINT``)."""

    #: http(s)://host:4318[/path] (HTTP/protobuf) or grpc(s)://host:4317 (gRPC).
    endpoint: str
    #: "http/protobuf" or "grpc"; default: grpc for grpc(s):// endpoints, else http/protobuf.
    protocol: Literal["http/protobuf", "grpc"] | None = None
    #: Request headers (e.g. Authorization); secret-looking values are masked in events.
    headers: dict[str, str] = attrs.field(factory=dict)
    #: Name of an environment variable holding headers as "key=value,key2=value2".
    headers_env: str | None = None
    #: The resource's service.name.
    service_name: str = "backpackflow"
    #: More resource attributes (deployment.environment, openinference.project.name ...).
    resource_attributes: dict[str, str] = attrs.field(factory=dict)
    #: Record prompts, completions, tool arguments and results and run inputs (masked).
    capture_content: bool = False
    #: Longest recorded content attribute, in characters (0: no limit).
    max_content_chars: int = 16_384
    #: Add W3C traceparent to the run's outgoing HTTP calls (LLM providers, http_fetch).
    propagate: bool = True
    #: Spans queued for export; beyond it spans are dropped and counted.
    max_queue: int = 2048
    #: Spans per export request.
    batch_size: int = 512
    #: Longest wait, in seconds, before queued spans are exported.
    max_delay: float = 2.0
    #: Seconds one export may take (the exporter retries within it).
    timeout: float = 10.0
    #: "none" or "gzip".
    compression: Literal["none", "gzip"] = "none"
    #: Seconds close() may take to export what is queued (0: do not wait).
    close_timeout: float = 5.0


class OtlpSink:
    """Spans of every run it sees, exported over OTLP (see the module docstring)."""

    def __init__(self, options: OtlpOptions) -> None:
        self.options = options
        destination = _destination(options)
        self._pipeline = pipeline_for(destination)
        self._builder = SpanBuilder(
            self._pipeline.tracer,
            capture_content=options.capture_content,
            max_content=options.max_content_chars,
        )
        self._closed = False
        self._failures = 0
        self._after_close = 0
        self._report: dict[str, Any] | None = None
        self._redacted = _redacted(options.endpoint)
        if options.propagate:
            propagation.enable()

    def handle(self, event: BackpackEvent) -> None:
        """Start, end or annotate spans for ``event``; never blocks and never raises."""
        if self._closed:
            self._after_close += 1
            return
        try:
            self._builder.handle(event)
        except Exception as exc:  # noqa: BLE001 - a sink never breaks the run it observes
            self._failures += 1
            if self._failures == 1:
                _log_once(f"could not turn a {event.type} event into spans: {exc!r}")

    def stats(self) -> dict[str, int]:
        """The pipeline's counters (shared by the sinks exporting to the same place)."""
        return self._pipeline.stats.snapshot()

    def close(self, timeout: float | None = None) -> dict[str, Any]:
        """End what is still open, export what is queued within ``timeout`` seconds
        (default ``close_timeout``) and return the report. Idempotent."""
        if self._report is not None:
            return dict(self._report)
        self._closed = True
        try:
            self._builder.end_all(time.time())
        except Exception as exc:  # noqa: BLE001 - the report must still come back
            _log_once(f"could not end the open spans: {exc!r}")
        limit = self.options.close_timeout if timeout is None else max(0.0, timeout)
        # 0: never wait (a service's runs: the export thread sends within max_delay anyway)
        flushed = self._pipeline.flush(limit) if limit > 0 else False
        stats = self.stats()
        self._report = {
            "sink": SINK,
            "endpoint": self._redacted,
            "protocol": self._pipeline.destination.protocol,
            "runs": self._builder.runs,
            "spans": self._builder.spans,
            "exported": stats["exported"],
            "failed": stats["failed"],
            "dropped": {"queue_full": stats["dropped"], "after_close": self._after_close},
            "pending": stats["pending"],
            "flushed": flushed,
            "errors": self._failures,
        }
        return dict(self._report)


def _log_once(message: str) -> None:
    import logging

    logging.getLogger("backpackflow.otel").warning("sink %r: %s", SINK, message)


def _destination(options: OtlpOptions) -> Destination:
    for name in ("max_queue", "batch_size", "max_content_chars"):
        value = getattr(options, name)
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise SinkConfigError(SINK, name, f"must be an integer >= 0, got {value!r}")
        if value == 0 and name != "max_content_chars":
            raise SinkConfigError(SINK, name, "must be > 0")
    for name in ("max_delay", "timeout", "close_timeout"):
        value = getattr(options, name)
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not value >= 0:
            raise SinkConfigError(SINK, name, f"must be a number >= 0, got {value!r}")
    if options.timeout <= 0:
        raise SinkConfigError(SINK, "timeout", "must be > 0")
    if options.compression not in ("none", "gzip"):
        raise SinkConfigError(
            SINK, "compression", f"must be 'none' or 'gzip', got {options.compression!r}"
        )
    if options.protocol not in (None, "http/protobuf", "grpc"):
        raise SinkConfigError(
            SINK, "protocol", f"must be 'http/protobuf' or 'grpc', got {options.protocol!r}"
        )
    if not isinstance(options.service_name, str) or not options.service_name:
        raise SinkConfigError(SINK, "service_name", "must be a non-empty string")
    resource = options.resource_attributes
    if not isinstance(resource, dict) or not all(
        isinstance(k, str) and k and isinstance(v, str) for k, v in resource.items()
    ):
        raise SinkConfigError(SINK, "resource_attributes", "expected an object of strings")
    endpoint = options.endpoint
    if not isinstance(endpoint, str):
        raise SinkConfigError(SINK, "endpoint", f"expected a URL, got {type(endpoint).__name__}")
    try:
        parts = urlsplit(endpoint)
        port = parts.port
    except ValueError as exc:
        raise SinkConfigError(SINK, "endpoint", f"{endpoint!r} is not a valid URL: {exc}") from None
    scheme = parts.scheme.lower()
    if scheme not in ("http", "https", "grpc", "grpcs") or not parts.hostname:
        raise SinkConfigError(
            SINK,
            "endpoint",
            f"expected http(s)://host[:port][/path] or grpc(s)://host[:port], got {endpoint!r}",
        )
    protocol = options.protocol or ("grpc" if scheme.startswith("grpc") else "http/protobuf")
    if protocol == "grpc":
        if parts.path not in ("", "/") or parts.query:
            raise SinkConfigError(
                SINK, "endpoint", f"a gRPC endpoint is host:port, without a path: {endpoint!r}"
            )
        if parts.username or parts.password:
            raise SinkConfigError(SINK, "endpoint", "put credentials in headers, not the URL")
        host = parts.hostname if ":" not in parts.hostname else f"[{parts.hostname}]"
        target = f"{host}:{port or 4317}"
        insecure = scheme in ("grpc", "http")
    else:
        if scheme.startswith("grpc"):
            raise SinkConfigError(
                SINK, "protocol", f"http/protobuf needs an http(s):// endpoint, got {endpoint!r}"
            )
        path = parts.path.rstrip("/")
        if not path.endswith("/v1/traces"):
            path += "/v1/traces"
        target = urlunsplit((scheme, parts.netloc, path, parts.query, ""))
        insecure = scheme == "http"
    headers = _headers(options)
    return Destination(
        protocol=protocol,
        endpoint=target,
        insecure=insecure,
        headers=tuple(sorted(headers.items())),
        timeout=float(options.timeout),
        compression=options.compression,
        service_name=options.service_name,
        resource=tuple(sorted(resource.items())),
        max_queue=options.max_queue,
        batch_size=options.batch_size,
        max_delay=float(options.max_delay),
    )


def _headers(options: OtlpOptions) -> dict[str, str]:
    if not isinstance(options.headers, dict):
        raise SinkConfigError(SINK, "headers", "expected an object of names to values")
    headers: dict[str, str] = {}
    for key, value in options.headers.items():
        if not isinstance(key, str) or not isinstance(value, str) or not key:
            raise SinkConfigError(SINK, "headers", f"names and values must be strings: {key!r}")
        headers[key.lower()] = value
    if options.headers_env is not None:
        name = options.headers_env
        raw = os.environ.get(name) if isinstance(name, str) else None
        if not raw:
            raise SinkConfigError(SINK, "headers_env", f"environment variable {name!r} is not set")
        for i, item in enumerate(raw.split(",")):
            key, sep, value = item.partition("=")
            if not sep or not key.strip():
                # never quote the value: it holds a credential
                raise SinkConfigError(
                    SINK,
                    "headers_env",
                    f"${name}: item {i + 1} is not key=value (expected the "
                    "OTEL_EXPORTER_OTLP_HEADERS format key=value,key2=value2)",
                )
            headers[unquote(key.strip()).lower()] = unquote(value.strip())
    return headers


def _redacted(endpoint: str) -> str:
    """The endpoint without credentials or query, for reports and logs."""
    try:
        parts = urlsplit(endpoint)
        netloc = parts.hostname or ""
        if parts.port:
            netloc += f":{parts.port}"
        return urlunsplit((parts.scheme, netloc, parts.path, "", ""))
    except ValueError:
        return "<invalid URL>"


@hookimpl
def backpackflow_register_event_sinks(register: EventSinkRegistrar) -> None:
    register(
        SINK,
        OtlpSink,
        options=OtlpOptions,
        shorthand="endpoint",
        description="OpenTelemetry spans (GenAI conventions) over OTLP HTTP/protobuf or gRPC",
    )


#: What the entry point names ("<module>:plugin [extra]"): this module itself.
plugin = sys.modules[__name__]
