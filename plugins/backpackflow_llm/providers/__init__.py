"""The providers: one module per backend, all implementing :class:`Provider`."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from types import MappingProxyType
from typing import Any

from backpackflow_llm.providers.anthropic import AnthropicProvider
from backpackflow_llm.providers.base import OnChunk, Provider
from backpackflow_llm.providers.offline import OfflineProvider
from backpackflow_llm.providers.openai import OpenAIProvider

BUILTIN_PROVIDERS: Mapping[str, Callable[..., Provider]] = MappingProxyType(
    {
        "offline": OfflineProvider,
        "openai": OpenAIProvider,
        "anthropic": AnthropicProvider,
    }
)
"""Provider name -> constructor, for building providers from flow configuration."""


def create_provider(name: str, **options: Any) -> Provider:
    """Build the built-in provider called ``name`` with constructor ``options``."""
    try:
        factory = BUILTIN_PROVIDERS[name]
    except KeyError:
        raise ValueError(
            f"unknown LLM provider {name!r}; built-in providers are {sorted(BUILTIN_PROVIDERS)}"
        ) from None
    return factory(**options)


__all__ = [
    "BUILTIN_PROVIDERS",
    "AnthropicProvider",
    "OfflineProvider",
    "OnChunk",
    "OpenAIProvider",
    "Provider",
    "create_provider",
]
