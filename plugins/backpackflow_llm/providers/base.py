"""The one interface every provider implements."""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol, runtime_checkable

from backpackflow_llm.types import LLMRequest, LLMResponse

OnChunk = Callable[[str], None]
"""Receives each text delta of a streamed answer, in order; their concatenation is the text."""

__all__ = ["OnChunk", "Provider"]


@runtime_checkable
class Provider(Protocol):
    """An LLM backend.

    ``complete`` sends ``request`` to ``request.model`` (``request.provider`` is informational:
    the fallback chain sets it to ``name``). With ``request.stream`` true it calls
    ``on_chunk(delta)`` for every text delta as it arrives and still returns the full
    :class:`LLMResponse`, usage included. Failures raise
    :class:`~backpackflow_llm.types.ProviderError` subclasses and nothing else, except errors
    raised by ``on_chunk`` itself, which propagate unchanged.
    """

    name: str

    # Optional: ``messages_sent(request) -> list[dict]``, the conversation exactly as the
    # provider puts it on the wire (flow nodes show it in their llm_request events).

    async def complete(
        self, request: LLMRequest, *, on_chunk: OnChunk | None = None
    ) -> LLMResponse: ...
