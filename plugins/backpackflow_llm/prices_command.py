"""``backpackflow prices MODEL``: the price backpackflow charges for a model, and its source.

Shows, per token kind (input, cached input, cache write, output, reasoning), the price per
million tokens that :class:`~backpackflow_llm.pricing.PricingTable` would use now (or
``--at``), which layer it came from (the overrides file, genai-prices and its version, or the
shipped fallback file), tiers that depend on the request's size, and what genai-prices prices
but backpackflow's usage does not carry (so is not counted). An unknown model is an error
naming it, with close matches.
"""

from __future__ import annotations

import argparse
import difflib
import json
import sys
from datetime import UTC, datetime
from typing import Any

from backpackflow_llm.pricing import PriceEntry, PricingError, PricingTable

KINDS = ("input", "cached_input", "cache_write", "output", "reasoning")
_INHERITS_FROM = {"cached_input": "input", "cache_write": "input", "reasoning": "output"}


def prices_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("model", metavar="MODEL", help="model name, e.g. gpt-4o")
    parser.add_argument(
        "--provider",
        help="provider name as flows use it (openai, anthropic, offline...); default: the "
        "one a pricing layer knows the model by",
    )
    parser.add_argument(
        "--overrides", metavar="FILE", help="a pricing overrides file, as the flow's uses"
    )
    parser.add_argument(
        "--path",
        metavar="FILE",
        help="a pricing file replacing genai-prices and the shipped fallback",
    )
    parser.add_argument(
        "--at",
        metavar="ISO-8601",
        help="price at this time (maintained prices change over time); default: now",
    )
    parser.add_argument("--json", action="store_true", help="print JSON instead of text")


def _provider_for(table: PricingTable, model: str) -> str | None:
    """The first provider under which some layer prices ``model``."""
    for layer in table.layers:
        find = getattr(layer, "find_provider", None)
        if find is not None:
            provider = find(model)
            if provider is not None and layer.lookup(provider, model) is not None:
                return str(provider)
            continue
        for provider, _ in layer.names():
            if layer.lookup(provider, model) is not None:
                return provider
    return None


def _close_matches(table: PricingTable, model: str, provider: str | None) -> list[str]:
    names = table.names()
    if provider is not None:
        names = [n for n in names if n[0] == provider] or names
    shown = {name: f"{p}/{name}" if provider is None else name for p, name in names}
    return [shown[m] for m in difflib.get_close_matches(model, list(shown), n=5, cutoff=0.6)]


def describe(
    table: PricingTable, model: str, provider: str | None = None, at: datetime | None = None
) -> dict[str, Any]:
    """The price report of ``model`` (see the module docstring); raises :class:`LookupError`
    naming the model and close matches when no layer prices it."""
    when = at or datetime.now(UTC)
    chosen = provider or _provider_for(table, model)
    entry = table.lookup(chosen, model, at=when) if chosen is not None else None
    if entry is None:
        where = f" of provider {chosen!r}" if chosen else ""
        close = _close_matches(table, model, provider)
        hint = f"; close matches: {', '.join(close)}" if close else ""
        raise LookupError(
            f"no price for model {model!r}{where} in {' or '.join(table.sources)}{hint}"
        )
    assert chosen is not None
    report: dict[str, Any] = {
        "model": model,
        "provider": chosen,
        "matched": entry.pattern,
        "source": {"kind": _layer_kind(table, entry), "name": entry.source},
        "currency": table.currency,
        "unit": "per million tokens",
        "at": when.isoformat(),
        "prices": {kind: format(getattr(entry, kind), "f") for kind in KINDS},
        "inherited": {kind: _INHERITS_FROM[kind] for kind in KINDS if kind in entry.inherited},
        "tiers": {},
        "not_counted": [],
    }
    for layer in table.layers:
        if layer.name == entry.source:
            tiered = getattr(layer, "tiered", None)
            if tiered is not None:
                report["tiers"] = {
                    kind: [{**t, "price": format(t["price"], "f")} for t in tiers]
                    for kind, tiers in tiered(chosen, model, when).items()
                }
                report["not_counted"] = layer.unpriced_units(chosen, model, when)  # type: ignore[attr-defined]
    return report


def _layer_kind(table: PricingTable, entry: PriceEntry) -> str:
    """``overrides`` (the user's file, consulted first), ``genai-prices``, or ``file`` (the
    shipped fallback, or the file given as ``path``)."""
    if entry.source.startswith("genai-prices "):
        return "genai-prices"
    return "overrides" if entry.source == table.overrides else "file"


def _text(report: dict[str, Any]) -> str:
    source = report["source"]
    lines = [
        f"{report['model']} (provider {report['provider']}): priced by {source['name']} "
        f"({source['kind']}), entry {report['matched']!r}",
        f"{report['currency']} {report['unit']}:",
    ]
    for kind in KINDS:
        note = ""
        if kind in report["inherited"]:
            note = f"  (no price of its own: the {report['inherited'][kind]} price)"
        lines.append(f"  {kind:<13} {report['prices'][kind]}{note}")
    for kind, tiers in report["tiers"].items():
        for tier in tiers:
            lines.append(
                f"  {kind} above {tier['above_input_tokens']} input tokens per request: "
                f"{tier['price']}"
            )
    if report["not_counted"]:
        lines.append(
            "not counted (backpackflow's usage does not carry them): "
            + ", ".join(report["not_counted"])
        )
    return "\n".join(lines)


def run_prices(args: argparse.Namespace, registry: Any) -> int:
    at = None
    if args.at:
        try:
            at = datetime.fromisoformat(args.at)
        except ValueError:
            print(f"backpackflow prices: --at {args.at!r} is not an ISO-8601 time", file=sys.stderr)
            return 2
        if at.tzinfo is None:
            at = at.replace(tzinfo=UTC)
    try:
        table = PricingTable.load(args.path, args.overrides)
        report = describe(table, args.model, args.provider, at)
    except PricingError as exc:
        print(f"backpackflow prices: {exc}", file=sys.stderr)
        return 2
    except LookupError as exc:
        print(f"backpackflow prices: {exc.args[0]}", file=sys.stderr)
        return 1
    print(json.dumps(report, indent=2) if args.json else _text(report))
    return 0
