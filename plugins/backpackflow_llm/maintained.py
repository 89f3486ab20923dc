"""Prices from a maintained source: the ``genai-prices`` package, read offline.

`genai-prices <https://pypi.org/project/genai-prices/>`_ (MIT, by Pydantic) ships its whole
price database inside the package, so looking a price up reads memory, never the network. The
package can also refresh its data from the internet (``genai_prices.UpdatePrices``, a background
thread); backpackflow never starts it, so the prices a run uses are exactly those of the
installed version (``backpackflow prices MODEL`` names it), and a test can compare them with
``genai_prices.calc_price`` of that same version.

This module turns the package's price of one model at one moment into a
:class:`~backpackflow_llm.pricing.PriceEntry`: per million tokens, for the token kinds
backpackflow's :class:`~backpackflow_llm.types.Usage` carries (plain input, cache reads, cache
writes, output, reasoning). The arithmetic stays :mod:`backpackflow_llm.pricing`'s, exact to
the last digit; ``tests/plugins/llm/test_llm_maintained_prices.py`` checks the totals equal
genai-prices' own. The package is imported on the first lookup (it holds 1.6 MB of data), so
commands that price nothing do not pay for it.
"""

from __future__ import annotations

import functools
from collections.abc import Iterator
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from backpackflow_llm.pricing import PriceEntry, PricingError

__all__ = ["GenaiPrices", "genai_prices_version"]

#: genai-prices price keys (per million tokens) -> the token kinds of a PriceEntry. A kind
#: without its own price falls back as genai-prices charges it: cache reads and writes at the
#: input price, reasoning at the output price.
_KEYS = {
    "input": "input_mtok",
    "cached_input": "cache_read_mtok",
    "cache_write": "cache_write_mtok",
    "cache_write_1h": "cache_write_1h_mtok",
    "output": "output_mtok",
    "reasoning": "output_reasoning_mtok",
}
_USED_KEYS = frozenset(_KEYS.values())
_INHERITING = ("cached_input", "cache_write", "cache_write_1h", "reasoning")


@functools.cache
def _package() -> Any:
    try:
        import genai_prices
    except ImportError as exc:  # the llm extra installs it; a broken install says so
        raise PricingError(
            "the genai-prices package is not installed: pip install 'backpackflow[llm]' "
            "(or load prices from a file with PricingTable.load(path))"
        ) from exc
    return genai_prices


def genai_prices_version() -> str:
    """The installed genai-prices version, whose bundled data prices every lookup."""
    return str(_package().__version__)


def _tier_price(value: Any, input_tokens: int) -> Decimal:
    """A plain price, or the tier of a tiered price that ``input_tokens`` reaches.

    genai-prices' tiers are cliffs: once a request's input passes a tier's start, *all* its
    tokens pay that tier's price (as Anthropic and Google bill long contexts)."""
    tiers = getattr(value, "tiers", None)
    if tiers is None:
        return Decimal(value)
    price = Decimal(value.base)
    for tier in sorted(tiers, key=lambda t: t.start):
        if input_tokens > tier.start:
            price = Decimal(tier.price)
    return price


class GenaiPrices:
    """A pricing layer reading genai-prices' bundled data (never its auto-update)."""

    def __init__(self) -> None:
        self.name = f"genai-prices {genai_prices_version()}"

    def resolve(self, provider: str, model: str, at: datetime | None = None) -> tuple[Any, Any]:
        """genai-prices' (model info, model price) of ``model`` at ``at`` (default: now), or
        ``(None, None)`` when it knows neither the provider nor the model.

        The same lookup ``genai_prices.calc_price`` makes (its snapshot's
        ``find_provider_model``, which caches, then the model's prices at that time), without
        pricing an empty usage through its unit registry: a tenth of the time per call."""
        snapshot = _package().data_snapshot.get_snapshot()
        try:
            _, info = snapshot.find_provider_model(model, None, provider, None)
        except LookupError:
            return None, None
        return info, info.get_prices(at or datetime.now(UTC))

    def lookup(
        self, provider: str, model: str, *, at: datetime | None = None, input_tokens: int = 0
    ) -> PriceEntry | None:
        info, model_price = self.resolve(provider, model, at)
        if info is None:
            return None
        raw = {kind: getattr(model_price, key, None) for kind, key in _KEYS.items()}
        if raw["input"] is None and raw["output"] is None:
            return None  # priced by other units only (audio hours, pages, ...)
        prices = {
            kind: _tier_price(value, input_tokens) if value is not None else None
            for kind, value in raw.items()
        }
        plain_input = prices["input"] if prices["input"] is not None else Decimal(0)
        plain_output = prices["output"] if prices["output"] is not None else Decimal(0)
        cached = prices["cached_input"]
        write = prices["cache_write"]
        write_1h = prices["cache_write_1h"]
        reasoning = prices["reasoning"]
        return PriceEntry(
            provider=provider,
            pattern=str(info.id),
            input=plain_input,
            output=plain_output,
            cached_input=plain_input if cached is None else cached,
            cache_write=plain_input if write is None else write,
            cache_write_1h=(plain_input if write is None else write)
            if write_1h is None
            else write_1h,
            reasoning=plain_output if reasoning is None else reasoning,
            source=self.name,
            inherited=frozenset(kind for kind in _INHERITING if prices[kind] is None),
        )

    def unpriced_units(self, provider: str, model: str, at: datetime | None = None) -> list[str]:
        """genai-prices price keys of the model that backpackflow's usage does not carry
        (web searches, audio, per-request fees...): what a cost leaves out."""
        info, model_price = self.resolve(provider, model, at)
        if info is None:
            return []
        return sorted(
            key
            for key, value in vars(model_price).items()
            if not key.startswith("_") and value is not None and key not in _USED_KEYS
        )

    def tiered(self, provider: str, model: str, at: datetime | None = None) -> dict[str, Any]:
        """The token kinds whose price depends on the request's input size, with the tiers
        as ``[{"above_input_tokens": start, "price": price}]``."""
        _, model_price = self.resolve(provider, model, at)
        out: dict[str, Any] = {}
        if model_price is None:
            return out
        for kind, key in _KEYS.items():
            tiers: Any = getattr(getattr(model_price, key, None), "tiers", None)
            if tiers:
                out[kind] = [
                    {"above_input_tokens": t.start, "price": Decimal(t.price)}
                    for t in sorted(tiers, key=lambda t: t.start)
                ]
        return out

    def names(self) -> Iterator[tuple[str, str]]:
        """Every (provider id, model id) genai-prices knows: candidates for "did you mean"."""
        snapshot = _package().data_snapshot.get_snapshot()
        for provider in snapshot.providers:
            for model in provider.models:
                yield provider.id, model.id

    def find_provider(self, model: str) -> str | None:
        """The provider genai-prices infers from a model name alone, if any."""
        snapshot = _package().data_snapshot.get_snapshot()
        try:
            provider, _ = snapshot.find_provider_model(model, None, None, None)
        except LookupError:
            return None
        return str(provider.id)
