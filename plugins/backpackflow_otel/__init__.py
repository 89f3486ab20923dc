"""backpackflow_otel: OpenTelemetry for backpackflow runs.

* :mod:`.sink` (extra ``otel``: the OpenTelemetry SDK and OTLP exporters): the ``otlp`` event
  sink, registered through the entry point ``sink_otlp``;
* :mod:`.spans`: how events become spans (GenAI semantic conventions);
* :mod:`.pipeline`: the bounded, counted export pipeline, shared per destination;
* :mod:`.propagation` (no extra): W3C ``traceparent`` for outgoing HTTP calls, which the LLM
  providers and the ``http_fetch`` tool ask for.

This package imports none of them, so :mod:`.propagation` works without the extra.
"""
