"""backpackflow_llm: the LLM provider layer of backpackflow.

One typed request/response model (:mod:`.types`), one ``Provider`` protocol with an offline
extractive model and the OpenAI and Anthropic wire formats (:mod:`.providers`), retries with
fallback chains (:mod:`.resilience`), exact Decimal cost accounting (:mod:`.pricing`) and an
exact-match response cache (:mod:`.cache`). The flow node builds on these; nothing here imports
the flow runner. A call, end to end::

    request = LLMRequest.from_prompt("openai", "gpt-4o-mini", "Summarize: ...")
    key = cache_key(request)
    if (hit := cache.get(key)) is None:
        response = await complete_with_fallback(
            [(OpenAIProvider(), "gpt-4o-mini"), (OfflineProvider(), "offline-extractive-1")],
            request,
            policy=RetryPolicy(),
            on_retry=..., on_fallback=...,
        )
        cost = pricing.price(response.provider, response.model, response.usage)
        cache.set(key, response, cost)
"""

from typing import TYPE_CHECKING, Any

from backpackflow_llm.cache import (
    CachedEntry,
    CacheStats,
    MemoryCache,
    ResponseCache,
    SQLiteCache,
    cache_key,
)
from backpackflow_llm.pricing import Cost, PriceEntry, PricingError, PricingTable
from backpackflow_llm.providers import (
    BUILTIN_PROVIDERS,
    OfflineProvider,
    OnChunk,
    Provider,
    create_provider,
)
from backpackflow_llm.resilience import (
    AllProvidersFailed,
    AttemptRecord,
    FallbackInfo,
    RetryInfo,
    RetryPolicy,
    complete_with_fallback,
)
from backpackflow_llm.types import (
    LLMRequest,
    LLMResponse,
    MalformedResponse,
    Message,
    MissingAPIKey,
    ProviderConnectionError,
    ProviderError,
    ProviderRequestError,
    ProviderTimeout,
    RateLimited,
    ServerError,
    ToolCall,
    ToolSpec,
    Usage,
)

if TYPE_CHECKING:  # type-only: the SDK-backed providers are imported on first use
    from backpackflow_llm.providers import AnthropicProvider, OpenAIProvider

__all__ = [
    "BUILTIN_PROVIDERS",
    "AllProvidersFailed",
    "AnthropicProvider",
    "AttemptRecord",
    "CacheStats",
    "CachedEntry",
    "Cost",
    "FallbackInfo",
    "LLMRequest",
    "LLMResponse",
    "MalformedResponse",
    "MemoryCache",
    "Message",
    "MissingAPIKey",
    "OfflineProvider",
    "OnChunk",
    "OpenAIProvider",
    "PriceEntry",
    "PricingError",
    "PricingTable",
    "Provider",
    "ProviderConnectionError",
    "ProviderError",
    "ProviderRequestError",
    "ProviderTimeout",
    "RateLimited",
    "ResponseCache",
    "RetryInfo",
    "RetryPolicy",
    "SQLiteCache",
    "ServerError",
    "ToolCall",
    "ToolSpec",
    "Usage",
    "cache_key",
    "complete_with_fallback",
    "create_provider",
]


def __getattr__(name: str) -> Any:
    """``AnthropicProvider`` and ``OpenAIProvider`` on first use: their SDKs take seconds to
    import, which loading the plugins (every command, every service start) must not pay."""
    if name in ("AnthropicProvider", "OpenAIProvider"):
        from backpackflow_llm import providers

        return getattr(providers, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
