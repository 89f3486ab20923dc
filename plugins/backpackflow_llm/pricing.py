"""Exact cost accounting: per-million-token prices of each model, Decimal arithmetic.

Prices come from three layers, consulted in this order; the first that knows the model wins:

1. **overrides** (optional): a JSON file or mapping of the user's own prices (negotiated
   rates, a model a source lacks), in the format below;
2. **genai-prices**: the maintained price database of the ``genai-prices`` package, read from
   the installed package and never refreshed over the network (:mod:`.maintained`);
3. **the shipped fallback** ``pricing.json`` (read with :mod:`importlib.resources`, so it works
   from a wheel): prices no maintained source can have, i.e. the embedded offline model.

``PricingTable.load(path)`` replaces layers 2 and 3 with one file of the user's: a table that
does not move when a package is upgraded (tests pin their numbers that way).

A pricing file lists, per provider, entries ``{"pattern", "input", "output", "cached_input"?,
"cache_write"?, "cache_write_1h"?, "reasoning"?}``: prices in currency units per million
tokens, written as decimal strings. ``cached_input`` and ``cache_write`` default to ``input``,
``cache_write_1h`` (a prompt-cache write kept for an hour, Anthropic's 1-hour TTL) to
``cache_write``, ``reasoning`` to ``output``.

Patterns are case-sensitive **globs** (:func:`fnmatch.fnmatchcase`: ``*``, ``?``, ``[abc]``),
chosen over regexes because model families are prefixes (``claude-sonnet-4*``) and a glob
cannot be written wrong in the ways a regex can. Within one provider of one file, an entry
whose pattern *is* the model name wins; otherwise the matching glob with the most literal
(non-wildcard) characters; ties go to the earlier entry. Any override that matches wins over
every other layer, even a more specific one: an override ``{"pattern": "gpt-4o*", ...}``
reprices the whole family, mini included.

Arithmetic never touches a float: token counts are ints, prices are Decimals, and every
operation runs in a context that raises instead of rounding, so a sum of step costs equals,
to the last digit, the cost of the summed usage (within one price tier: a tiered price depends
on the size of each request, see :mod:`.maintained`).
"""

from __future__ import annotations

import decimal
import fnmatch
import json
import os
from collections.abc import Iterator, Mapping, Sequence
from datetime import datetime
from decimal import Decimal
from importlib import resources
from pathlib import Path
from typing import Any, Protocol

import attrs

from backpackflow import BackpackFlowError, SerializationError
from backpackflow.jsondata import decimal_text
from backpackflow_llm.types import Usage

__all__ = ["Cost", "PriceEntry", "PriceLayer", "PricingError", "PricingTable", "TableLayer"]

MILLION = Decimal(1_000_000)
ZERO = Decimal(0)

# Exact arithmetic: a result that would need rounding raises decimal.Inexact instead.
_EXACT = decimal.Context(
    prec=400,
    Emin=-999_999,
    Emax=999_999,
    traps=[decimal.Inexact, decimal.Rounded, decimal.InvalidOperation, decimal.Overflow],
)
_PRICE_FIELDS = ("input", "output", "cached_input", "cache_write", "cache_write_1h", "reasoning")
_ENTRY_FIELDS = frozenset({"pattern", "note", *_PRICE_FIELDS})
_INHERITING = ("cached_input", "cache_write", "cache_write_1h", "reasoning")


class PricingError(BackpackFlowError, ValueError):
    """Pricing data is malformed; the message names the source and the JSON path."""


@attrs.frozen
class PriceEntry:
    """Prices of the models a pattern matches, per million tokens."""

    provider: str
    pattern: str
    input: Decimal
    output: Decimal
    cached_input: Decimal
    cache_write: Decimal
    reasoning: Decimal
    source: str
    #: The token kinds with no price of their own in the source, charged at the input price
    #: (``cached_input``, ``cache_write``), the 5-minute write price (``cache_write_1h``) or
    #: the output price (``reasoning``).
    inherited: frozenset[str] = frozenset()
    cache_write_1h: Decimal = attrs.field(
        default=attrs.Factory(lambda self: self.cache_write, takes_self=True)
    )

    @property
    def specificity(self) -> int:
        """Literal characters in the pattern: more means more specific."""
        return sum(1 for ch in self.pattern if ch not in "*?[]")

    def matches(self, model: str) -> bool:
        return fnmatch.fnmatchcase(model, self.pattern)

    def prices(self) -> dict[str, Decimal]:
        """Price per million tokens of each token kind."""
        return {name: getattr(self, name) for name in _PRICE_FIELDS}


@attrs.frozen(kw_only=True)
class Cost:
    """What a usage cost, split by token kind, in the table's currency.

    ``known=False`` means no pricing entry matched: every amount is 0 *and that 0 is not a
    price*; :meth:`__str__`, :meth:`to_json` and sums keep the flag so a report can say
    "unknown" rather than "free". ``matched_pattern`` is the entry that priced it (``None``
    when unknown, or for a sum of costs priced by different entries).
    """

    input: Decimal
    output: Decimal
    cached_input: Decimal
    reasoning: Decimal
    total: Decimal
    known: bool
    matched_pattern: str | None
    cache_write: Decimal = ZERO
    currency: str = "USD"
    cache_write_1h: Decimal = ZERO

    @classmethod
    def zero(cls, currency: str = "USD") -> Cost:
        """The neutral element for summing known costs."""
        return cls(
            input=ZERO,
            output=ZERO,
            cached_input=ZERO,
            reasoning=ZERO,
            total=ZERO,
            known=True,
            matched_pattern=None,
            currency=currency,
        )

    @classmethod
    def unknown(cls, currency: str = "USD") -> Cost:
        return attrs.evolve(cls.zero(currency), known=False)

    def __add__(self, other: Cost) -> Cost:
        if not isinstance(other, Cost):
            return NotImplemented
        if other.currency != self.currency:
            raise ValueError(f"cannot add a {other.currency} cost to a {self.currency} cost")
        add = _EXACT.add
        return Cost(
            input=add(self.input, other.input),
            output=add(self.output, other.output),
            cached_input=add(self.cached_input, other.cached_input),
            reasoning=add(self.reasoning, other.reasoning),
            cache_write=add(self.cache_write, other.cache_write),
            cache_write_1h=add(self.cache_write_1h, other.cache_write_1h),
            total=add(self.total, other.total),
            known=self.known and other.known,
            matched_pattern=(
                self.matched_pattern if self.matched_pattern == other.matched_pattern else None
            ),
            currency=self.currency,
        )

    def __str__(self) -> str:
        if not self.known:
            return f"unknown cost (no price for this model; {decimal_text(self.total)} counted)"
        return f"{decimal_text(self.total)} {self.currency}"

    def to_json(self) -> dict[str, Any]:
        """Amounts as decimal strings (JSON numbers would be read back as floats);
        ``cache_write_1h`` only when there were 1-hour cache writes."""
        data = {
            "input": decimal_text(self.input),
            "output": decimal_text(self.output),
            "cached_input": decimal_text(self.cached_input),
            "reasoning": decimal_text(self.reasoning),
            "cache_write": decimal_text(self.cache_write),
            "total": decimal_text(self.total),
            "known": self.known,
            "matched_pattern": self.matched_pattern,
            "currency": self.currency,
        }
        if self.cache_write_1h:
            data["cache_write_1h"] = decimal_text(self.cache_write_1h)
        return data

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Cost:
        try:
            amounts = {
                k: Decimal(data.get(k, "0") if k == "cache_write_1h" else data[k])
                for k in (*_PRICE_FIELDS, "total")
            }
            return cls(
                **amounts,
                known=bool(data["known"]),
                matched_pattern=data.get("matched_pattern"),
                currency=str(data.get("currency", "USD")),
            )
        except (KeyError, TypeError, decimal.InvalidOperation) as exc:
            raise SerializationError(f"Cost: missing or bad field {exc!r}") from exc


def _price(value: Any, where: str) -> Decimal:
    if isinstance(value, (bool, float)):
        raise PricingError(
            f"{where}: {value!r} is a {type(value).__name__}; write prices as decimal strings "
            'like "2.50" so they stay exact'
        )
    if not isinstance(value, (str, int, Decimal)):
        raise PricingError(f"{where}: expected a decimal string, got {type(value).__name__}")
    try:
        price = Decimal(value)
    except decimal.InvalidOperation:
        raise PricingError(f"{where}: {value!r} is not a decimal number") from None
    if not price.is_finite() or price < 0:
        raise PricingError(f"{where}: {value!r} must be a finite price >= 0")
    if price and not (-60 <= price.adjusted() <= 15 and len(price.as_tuple().digits) <= 60):
        raise PricingError(f"{where}: {value!r} is out of the range of plausible prices")
    return price


def _parse_layer(data: Any, source: str) -> tuple[dict[str, list[PriceEntry]], dict[str, Any]]:
    """Validate one pricing document; return its entries per provider and its metadata."""
    if not isinstance(data, dict):
        raise PricingError(f"{source}: $ must be an object with a 'providers' object")
    providers = data.get("providers")
    if not isinstance(providers, dict):
        raise PricingError(f"{source}: $.providers must be an object of provider -> entries")
    meta = {k: v for k, v in data.items() if k != "providers"}
    if "currency" in meta and not isinstance(meta["currency"], str):
        raise PricingError(f'{source}: $.currency must be a string like "USD"')
    layer: dict[str, list[PriceEntry]] = {}
    for provider, entries in providers.items():
        base = f"$.providers.{provider}"
        if not isinstance(entries, list):
            raise PricingError(f"{source}: {base} must be a list of entries")
        parsed = []
        for i, entry in enumerate(entries):
            where = f"{base}[{i}]"
            if not isinstance(entry, dict):
                raise PricingError(f"{source}: {where} must be an object")
            unknown = set(entry) - _ENTRY_FIELDS
            if unknown:
                raise PricingError(
                    f"{source}: {where} has unknown fields {sorted(unknown)}; "
                    f"allowed: {sorted(_ENTRY_FIELDS)}"
                )
            pattern = entry.get("pattern")
            if not isinstance(pattern, str) or not pattern:
                raise PricingError(f"{source}: {where}.pattern must be a non-empty string")
            for required in ("input", "output"):
                if required not in entry:
                    raise PricingError(f"{source}: {where}.{required} is missing")
            prices = {
                name: _price(entry[name], f"{source}: {where}.{name}")
                for name in _PRICE_FIELDS
                if name in entry
            }
            parsed.append(
                PriceEntry(
                    provider=provider,
                    pattern=pattern,
                    input=prices["input"],
                    output=prices["output"],
                    cached_input=prices.get("cached_input", prices["input"]),
                    cache_write=prices.get("cache_write", prices["input"]),
                    cache_write_1h=prices.get(
                        "cache_write_1h", prices.get("cache_write", prices["input"])
                    ),
                    reasoning=prices.get("reasoning", prices["output"]),
                    source=source,
                    inherited=frozenset(_INHERITING) - prices.keys(),
                )
            )
        layer[provider] = parsed
    return layer, meta


def _read(path: str | Path) -> Any:
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except OSError as exc:
        raise PricingError(f"cannot read pricing file {p}: {exc.strerror or exc}") from exc
    try:
        return json.loads(text, parse_float=Decimal)
    except ValueError as exc:
        raise PricingError(f"{p}: not valid JSON: {exc}") from exc


class PriceLayer(Protocol):
    """One source of prices: the user's overrides, genai-prices, or a pricing file."""

    name: str

    def lookup(
        self, provider: str, model: str, *, at: datetime | None = None, input_tokens: int = 0
    ) -> PriceEntry | None: ...

    def names(self) -> Iterator[tuple[str, str]]: ...


class TableLayer:
    """The entries of one pricing file (or overrides mapping), matched by glob."""

    def __init__(self, entries: dict[str, list[PriceEntry]], name: str) -> None:
        self.entries = entries
        self.name = name

    def lookup(
        self, provider: str, model: str, *, at: datetime | None = None, input_tokens: int = 0
    ) -> PriceEntry | None:
        best: PriceEntry | None = None
        for entry in self.entries.get(provider, ()):
            if entry.pattern == model:
                return entry
            if entry.matches(model) and (best is None or entry.specificity > best.specificity):
                best = entry
        return best

    def names(self) -> Iterator[tuple[str, str]]:
        for provider, entries in self.entries.items():
            for entry in entries:
                yield provider, entry.pattern


SHIPPED = "backpackflow_llm/pricing.json"


def _shipped() -> Any:
    text = resources.files("backpackflow_llm").joinpath("pricing.json").read_text("utf-8")
    return json.loads(text, parse_float=Decimal)


class PricingTable:
    """Model prices, looked up by provider and model name through layers (first match wins).

    Build it with :meth:`load`. ``currency`` is the one currency of every layer; ``sources``
    names the layers in lookup order; ``version`` and ``updated`` are the base file's.
    """

    def __init__(
        self,
        layers: Sequence[PriceLayer],
        *,
        version: Any = None,
        updated: str | None = None,
        currency: str = "USD",
        overrides: str | None = None,
    ) -> None:
        self.layers = tuple(layers)
        #: The name of the overrides layer (the first), if there is one.
        self.overrides = overrides
        self.version = version
        self.updated = updated
        self.currency = currency

    @property
    def sources(self) -> tuple[str, ...]:
        return tuple(layer.name for layer in self.layers)

    @classmethod
    def load(
        cls,
        path: str | Path | None = None,
        overrides: Mapping[str, Any] | str | Path | None = None,
    ) -> PricingTable:
        """The overrides (a mapping in the pricing file format, or a path to one), then
        genai-prices' bundled prices, then the shipped fallback file; with ``path``, that file
        alone replaces genai-prices and the shipped file."""
        layers: list[PriceLayer] = []
        if path is None:
            from backpackflow_llm.maintained import GenaiPrices

            base_data = _shipped()
            base, meta = _parse_layer(base_data, SHIPPED)
            layers = [GenaiPrices(), TableLayer(base, SHIPPED)]
        else:
            base, meta = _parse_layer(_read(path), str(path))
            layers = [TableLayer(base, str(path))]
        currency = meta.get("currency", "USD")
        if overrides is not None:
            if isinstance(overrides, (str, os.PathLike)):
                over_source = str(overrides)
                over_data: Any = _read(overrides)
            else:  # a mapping, or whatever a config file held: validated like a file
                over_source = "pricing overrides"
                over_data = dict(overrides) if isinstance(overrides, Mapping) else overrides
            layer, over_meta = _parse_layer(over_data, over_source)
            if over_meta.get("currency", currency) != currency:
                raise PricingError(
                    f"{over_source}: $.currency is {over_meta['currency']!r} but the base "
                    f"prices are in {currency!r}; one table has one currency"
                )
            layers.insert(0, TableLayer(layer, over_source))
        updated = meta.get("updated")
        return cls(
            layers,
            version=meta.get("version"),
            updated=updated if isinstance(updated, str) else None,
            currency=currency,
            overrides=layers[0].name if overrides is not None else None,
        )

    def lookup(
        self, provider: str, model: str, *, at: datetime | None = None, input_tokens: int = 0
    ) -> PriceEntry | None:
        """The entry that prices ``model`` of ``provider`` (for a request of ``input_tokens``
        sent at ``at``, default now: maintained prices change over time and by tier), or
        ``None``."""
        for layer in self.layers:
            entry = layer.lookup(provider, model, at=at, input_tokens=input_tokens)
            if entry is not None:
                return entry
        return None

    def names(self) -> list[tuple[str, str]]:
        """Every (provider, pattern or model id) some layer prices, without repeats."""
        return list(dict.fromkeys(name for layer in self.layers for name in layer.names()))

    def price(self, provider: str, model: str, usage: Usage, *, at: datetime | None = None) -> Cost:
        """The exact cost of ``usage`` on ``model`` (sent at ``at``, default now);
        ``known=False`` (and 0) when unpriced.

        Cached prompt tokens are charged at ``cached_input``, cache writes at ``cache_write``
        (those kept for an hour at ``cache_write_1h``) and the rest of the prompt at ``input``;
        reasoning tokens at ``reasoning`` and the rest of the output at ``output``.
        """
        entry = self.lookup(provider, model, at=at, input_tokens=usage.input_tokens)
        if entry is None:
            return Cost.unknown(self.currency)
        plain_input = usage.input_tokens - usage.cached_input_tokens - usage.cache_write_tokens
        plain_output = usage.output_tokens - usage.reasoning_tokens
        parts = {
            "input": _cost(plain_input, entry.input),
            "cached_input": _cost(usage.cached_input_tokens, entry.cached_input),
            "cache_write": _cost(
                usage.cache_write_tokens - usage.cache_write_1h_tokens, entry.cache_write
            ),
            "cache_write_1h": _cost(usage.cache_write_1h_tokens, entry.cache_write_1h),
            "output": _cost(plain_output, entry.output),
            "reasoning": _cost(usage.reasoning_tokens, entry.reasoning),
        }
        total = ZERO
        for amount in parts.values():
            total = _EXACT.add(total, amount)
        return Cost(
            **parts,
            total=total,
            known=True,
            matched_pattern=entry.pattern,
            currency=self.currency,
        )


def _cost(tokens: int, per_million: Decimal) -> Decimal:
    return _EXACT.divide(_EXACT.multiply(Decimal(tokens), per_million), MILLION)
