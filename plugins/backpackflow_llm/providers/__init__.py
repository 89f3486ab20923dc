"""The providers: one module per backend, all implementing :class:`Provider`.

The OpenAI and Anthropic providers are imported on first use, not with this package: their SDKs
take ~2.5 s to import, which every ``backpackflow`` command and service start would otherwise pay
(loading the plugins imports this package) even when no flow calls them.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping
from types import MappingProxyType
from typing import TYPE_CHECKING, Any

from backpackflow_llm.providers.base import OnChunk, Provider
from backpackflow_llm.providers.offline import OfflineProvider

if TYPE_CHECKING:  # type-only: imported lazily at run time (see the module docstring)
    from backpackflow_llm.providers.anthropic import AnthropicProvider
    from backpackflow_llm.providers.openai import OpenAIProvider

_LAZY = {
    "OpenAIProvider": "backpackflow_llm.providers.openai",
    "AnthropicProvider": "backpackflow_llm.providers.anthropic",
}


def __getattr__(name: str) -> Any:
    """Import an SDK-backed provider class the first time it is asked for."""
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)


def _openai(**options: Any) -> Provider:
    from backpackflow_llm.providers.openai import OpenAIProvider

    return OpenAIProvider(**options)


def _anthropic(**options: Any) -> Provider:
    from backpackflow_llm.providers.anthropic import AnthropicProvider

    return AnthropicProvider(**options)


BUILTIN_PROVIDERS: Mapping[str, Callable[..., Provider]] = MappingProxyType(
    {
        "offline": OfflineProvider,
        "openai": _openai,
        "anthropic": _anthropic,
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
