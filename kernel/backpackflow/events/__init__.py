"""backpackflow.events: telemetry: event types and payloads, the bus (EventStreamer, Emitter), sink
plumbing and run summaries.

Re-exports only (the modules hold the code).
"""

from backpackflow.events.bus import (
    Emitter,
    EventStreamer,
)
from backpackflow.events.sinks import (
    attach_sinks,
    make_sink,
    parse_sink_spec,
)
from backpackflow.events.summary import (
    COLUMNS,
    RunSummary,
    StepSummary,
    format_table,
    summarize,
)
from backpackflow.events.types import (
    BackpackEvent,
    BackpackPackPayload,
    BackpackUnpackPayload,
    CacheHitPayload,
    ErrorPayload,
    ExecCompletePayload,
    FallbackPayload,
    GuardrailPayload,
    Handler,
    LLMRequestPayload,
    LLMResponsePayload,
    LogPayload,
    NodeEndPayload,
    NodeStartPayload,
    PrepCompletePayload,
    RetryPayload,
    RunEndPayload,
    RunStartPayload,
    StreamChunkPayload,
    StreamEventType,
    Subscription,
    ToolCallPayload,
    ToolResponsePayload,
    exception_text,
    on_private_loop,
)

__all__ = [
    "COLUMNS",
    "BackpackEvent",
    "BackpackPackPayload",
    "BackpackUnpackPayload",
    "CacheHitPayload",
    "Emitter",
    "ErrorPayload",
    "EventStreamer",
    "ExecCompletePayload",
    "FallbackPayload",
    "GuardrailPayload",
    "Handler",
    "LLMRequestPayload",
    "LLMResponsePayload",
    "LogPayload",
    "NodeEndPayload",
    "NodeStartPayload",
    "PrepCompletePayload",
    "RetryPayload",
    "RunEndPayload",
    "RunStartPayload",
    "RunSummary",
    "StepSummary",
    "StreamChunkPayload",
    "StreamEventType",
    "Subscription",
    "ToolCallPayload",
    "ToolResponsePayload",
    "attach_sinks",
    "exception_text",
    "format_table",
    "make_sink",
    "on_private_loop",
    "parse_sink_spec",
    "summarize",
]
