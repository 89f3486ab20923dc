"""Registers the LLM layer's dependency factories: providers, response caches and pricing.

A flow names them in its ``dependencies`` section, e.g.::

    "dependencies": {
        "openai": {"type": "openai", "config": {"api_key": "${OPENAI_API_KEY}"}},
        "flaky": {"type": "offline", "config": {"fail_models": ["offline-flaky"]}},
        "llm_cache": {"type": "sqlite_cache", "config": {"path": ".backpackflow/llm-cache.sqlite"}},
        "pricing": {"type": "pricing", "config": {"overrides": "my-prices.json"}}
    }

An llm node whose ``provider`` names no declared dependency gets the provider factory of that
name with its default options (so ``"provider": "offline"`` needs no configuration).
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Literal

import attrs
import msgspec

from backpackflow import ConfigError, hookimpl
from backpackflow.loader import FLOW_DIR
from backpackflow.plugins import DependencyFactoryRegistrar
from backpackflow.policy import SECRETS, SandboxViolation, policy_of
from backpackflow_llm.cache import MemoryCache, SQLiteCache
from backpackflow_llm.prices_command import prices_arguments, run_prices
from backpackflow_llm.pricing import PricingTable
from backpackflow_llm.providers import OfflineProvider
from backpackflow_llm.providers.offline import Failure

if TYPE_CHECKING:  # type-only: the SDK-backed providers are imported when a flow builds one
    from backpackflow_llm.providers.anthropic import AnthropicProvider
    from backpackflow_llm.providers.openai import OpenAIProvider

PositiveFloat = Annotated[float, msgspec.Meta(gt=0)]


@attrs.frozen(kw_only=True)
class OfflineOptions:
    """The embedded offline extractive model. ``fail_first`` / ``fail_models`` inject failures
    (to demonstrate retries and fallbacks without a network); ``refusal`` makes it refuse to
    answer with those words (to demonstrate the ``refused`` outcome)."""

    latency_ms: Annotated[float, msgspec.Meta(ge=0)] = 0.0
    fail_first: Annotated[int, msgspec.Meta(ge=0)] = 0
    fail_models: list[str] = attrs.field(factory=list)
    failure: Failure = "server"
    retry_after: Annotated[float, msgspec.Meta(ge=0)] | None = None
    refusal: Annotated[str, msgspec.Meta(min_length=1)] | None = None


@attrs.frozen(kw_only=True)
class OpenAIOptions:
    """The OpenAI Chat Completions API, or a compatible server at ``base_url`` (vLLM, Ollama,
    LM Studio: ``require_api_key: false``; Azure OpenAI: the deployment URL, ``api_version``
    and ``extra_headers: {"api-key": "${AZURE_OPENAI_API_KEY}"}``). Give the key as
    ``"${OPENAI_API_KEY}"`` or leave it out to read ``api_key_env``."""

    api_key: str | None = None
    base_url: str = "https://api.openai.com/v1"
    timeout: PositiveFloat = 60.0
    api_key_env: str = "OPENAI_API_KEY"
    require_api_key: bool = True
    extra_headers: dict[str, str] = attrs.field(factory=dict)
    max_tokens_field: Literal["max_completion_tokens", "max_tokens"] = "max_completion_tokens"
    api_version: str | None = None


@attrs.frozen(kw_only=True)
class AnthropicOptions:
    """The Anthropic Messages API (``base_url`` is its root; a trailing ``/v1`` is accepted)."""

    api_key: str | None = None
    base_url: str = "https://api.anthropic.com"
    timeout: PositiveFloat = 60.0
    api_key_env: str = "ANTHROPIC_API_KEY"
    default_max_tokens: Annotated[int, msgspec.Meta(ge=1)] = 1024
    extra_headers: dict[str, str] = attrs.field(factory=dict)


@attrs.frozen(kw_only=True)
class MemoryCacheOptions:
    """An in-process LRU response cache (lost when the process ends)."""

    max_entries: Annotated[int, msgspec.Meta(ge=1)] = 1024
    ttl: PositiveFloat | None = None


@attrs.frozen(kw_only=True)
class SQLiteCacheOptions:
    """A response cache in a SQLite file, shared by runs and processes."""

    path: str = ".backpackflow/llm-cache.sqlite"
    ttl: PositiveFloat | None = None


@attrs.frozen(kw_only=True)
class PricingOptions:
    """The pricing map: the shipped one (or ``path``), with ``overrides`` (a JSON file in the
    same format) consulted first."""

    # "the shipped one" is genai-prices' bundled data, then the shipped fallback file; ``path``
    # replaces both (docs/costs.md). The docstring is part of the published flow schema.

    path: str | None = None
    overrides: str | None = None


def _offline(options: OfflineOptions, container: Any) -> OfflineProvider:
    return OfflineProvider(
        latency_ms=options.latency_ms,
        fail_first=options.fail_first,
        fail_models=tuple(options.fail_models),
        failure=options.failure,
        retry_after=options.retry_after,
        refusal=options.refusal,
    )


def _sandboxed(container: Any) -> dict[str, Any]:
    """What an HTTP provider built for a flow takes from its sandbox policy: where it may
    connect (``base_url`` is the flow's to choose) and how it reads ``api_key_env`` (only the
    variables the operator allows, the value masked in events)."""
    policy = policy_of(container)
    secrets = container.get(SECRETS) if container is not None and container.has(SECRETS) else None

    def getenv(name: str) -> str | None:
        return policy.getenv(name, secrets)

    return {"egress": policy.egress, "getenv": getenv}


def _openai(options: OpenAIOptions, container: Any) -> OpenAIProvider:
    from backpackflow_llm.providers.openai import OpenAIProvider  # on first use: a slow SDK

    return OpenAIProvider(
        api_key=options.api_key,
        base_url=options.base_url,
        timeout=options.timeout,
        api_key_env=options.api_key_env,
        require_api_key=options.require_api_key,
        extra_headers=options.extra_headers,
        max_tokens_field=options.max_tokens_field,
        api_version=options.api_version,
        **_sandboxed(container),
    )


def _anthropic(options: AnthropicOptions, container: Any) -> AnthropicProvider:
    from backpackflow_llm.providers.anthropic import AnthropicProvider  # on first use: a slow SDK

    return AnthropicProvider(
        api_key=options.api_key,
        base_url=options.base_url,
        timeout=options.timeout,
        api_key_env=options.api_key_env,
        default_max_tokens=options.default_max_tokens,
        extra_headers=options.extra_headers,
        **_sandboxed(container),
    )


def _memory_cache(options: MemoryCacheOptions, container: Any) -> MemoryCache:
    return MemoryCache(max_entries=options.max_entries, default_ttl=options.ttl)


def _near_flow(path: str, container: Any, what: str) -> Path:
    """A relative path in a flow's dependencies means relative to the flow's file; under a
    sandbox policy with a files root it must stay inside it (a flow may not make the process
    write a cache or read a pricing file anywhere else)."""
    resolved = Path(path)
    if not resolved.is_absolute() and container is not None and container.has(FLOW_DIR):
        resolved = Path(container.get(FLOW_DIR)) / resolved
    policy = policy_of(container)
    if policy.files_root is None and not policy.files_deny:
        return resolved
    try:
        return policy.confine(resolved, what=what, shown=path)
    except SandboxViolation as exc:
        raise ConfigError(str(exc)) from None


def _sqlite_cache(options: SQLiteCacheOptions, container: Any) -> SQLiteCache:
    path = _near_flow(options.path, container, "sqlite_cache path")
    path.parent.mkdir(parents=True, exist_ok=True)
    return SQLiteCache(path, default_ttl=options.ttl)


def _pricing(options: PricingOptions, container: Any) -> PricingTable:
    return PricingTable.load(
        _near_flow(options.path, container, "pricing path") if options.path else None,
        _near_flow(options.overrides, container, "pricing overrides")
        if options.overrides
        else None,
    )


@hookimpl
def backpackflow_register_dependency_factories(register: DependencyFactoryRegistrar) -> None:
    register(
        "offline",
        _offline,
        options=OfflineOptions,
        description="offline extractive model (no network, deterministic)",
    )
    register("openai", _openai, options=OpenAIOptions, description="OpenAI Chat Completions")
    register(
        "anthropic", _anthropic, options=AnthropicOptions, description="Anthropic Messages API"
    )
    register(
        "memory_cache",
        _memory_cache,
        options=MemoryCacheOptions,
        description="in-process LRU LLM response cache",
    )
    register(
        "sqlite_cache",
        _sqlite_cache,
        options=SQLiteCacheOptions,
        description="SQLite LLM response cache shared across runs",
    )
    register(
        "pricing",
        _pricing,
        options=PricingOptions,
        description="model prices (genai-prices, overridable)",
    )


@hookimpl
def backpackflow_register_commands(cli: Any) -> None:
    cli.add(
        "prices",
        run_prices,
        help="show the price of a model per token kind, and where it comes from",
        arguments=prices_arguments,
    )


#: What the entry point names ("<module>:plugin [extra]"): this module itself.
plugin = sys.modules[__name__]
