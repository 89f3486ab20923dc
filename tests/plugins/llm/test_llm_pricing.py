"""Exact cost accounting: Decimal prices, token kinds, patterns, overrides, unknown models.

These tests price with ``pinned-prices.json`` (the hand-kept table backpackflow shipped until it
took its prices from genai-prices), loaded as a replacement base table: its numbers never move
when a package is upgraded, and it exercises the glob matching of pricing files. The layering
over genai-prices is tested in test_llm_maintained_prices.py.
"""

from __future__ import annotations

import json
from decimal import Decimal
from functools import reduce
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from backpackflow_llm import Cost, PricingError, PricingTable, Usage

D = Decimal
PINNED = Path(__file__).with_name("pinned-prices.json")
TABLE = PricingTable.load(PINNED)


def test_a_table_has_metadata_and_prices_per_million_tokens():
    assert TABLE.version == 1
    assert TABLE.updated and TABLE.currency == "USD"
    cost = TABLE.price("openai", "gpt-4o", Usage(1_000_000, 1_000_000))
    assert (cost.input, cost.output, cost.total) == (D("2.50"), D("10.00"), D("12.50"))
    assert cost.known and cost.matched_pattern == "gpt-4o"


def test_cached_and_reasoning_tokens_are_priced_within_input_and_output():
    usage = Usage(1000, 500, cached_input_tokens=200, reasoning_tokens=100)
    cost = TABLE.price("openai", "gpt-4o-mini-2024-07-18", usage)
    assert cost.input == D("0.00012")  # 800 * 0.15 / 1e6
    assert cost.cached_input == D("0.000015")  # 200 * 0.075 / 1e6
    assert cost.output == D("0.00024")  # 400 * 0.60 / 1e6
    assert cost.reasoning == D("0.00006")  # 100 * 0.60 / 1e6 (reasoning defaults to output)
    assert cost.cache_write == 0
    assert cost.total == D("0.000435")
    assert cost.matched_pattern == "gpt-4o-mini-20*"
    for name in ("input", "output", "cached_input", "reasoning", "cache_write", "total"):
        assert type(getattr(cost, name)) is Decimal


def test_anthropic_cache_reads_and_writes_have_their_own_prices():
    usage = Usage(130, 7, cached_input_tokens=100, cache_write_tokens=20)
    cost = TABLE.price("anthropic", "claude-sonnet-4-20250514", usage)
    assert cost.input == D("0.00003")  # 10 uncached * 3.00
    assert cost.cached_input == D("0.00003")  # 100 * 0.30
    assert cost.cache_write == D("0.000075")  # 20 * 3.75
    assert cost.output == D("0.000105")  # 7 * 15.00
    assert cost.total == D("0.00024")


@pytest.mark.parametrize(
    ("provider", "model", "pattern", "input_price"),
    [
        ("openai", "gpt-4o-2024-08-06", "gpt-4o-20*", "2.50"),
        ("openai", "gpt-4o-2024-05-13", "gpt-4o-2024-05-13", "5.00"),  # exact beats glob
        ("openai", "gpt-4o-mini", "gpt-4o-mini", "0.15"),
        ("openai", "gpt-4.1-nano-2025-04-14", "gpt-4.1-nano-20*", "0.10"),
        ("openai", "o3-mini", "o3-mini", "1.10"),
        ("openai", "o3", "o3", "2.00"),
        ("openai", "o4-mini-2025-04-16", "o4-mini-20*", "1.10"),
        ("anthropic", "claude-opus-4-5-20251101", "claude-opus-4-5*", "5.00"),  # most specific
        ("anthropic", "claude-opus-4-1-20250805", "claude-opus-4*", "15.00"),
        ("anthropic", "claude-3-5-sonnet-20241022", "claude-3-5-sonnet*", "3.00"),
        ("anthropic", "claude-3-5-haiku-latest", "claude-3-5-haiku*", "0.80"),
        ("anthropic", "claude-haiku-4-5", "claude-haiku-4-5*", "1.00"),
        ("offline", "offline-extractive-1", "offline-*", "0.10"),
    ],
)
def test_patterns(provider, model, pattern, input_price):
    entry = TABLE.lookup(provider, model)
    assert entry is not None
    assert (entry.pattern, entry.input) == (pattern, D(input_price))


def test_offline_model_has_a_small_nonzero_price():
    cost = TABLE.price("offline", "offline-extractive-1", Usage(100, 50))
    assert cost.known and cost.total == D("0.00003")


@pytest.mark.parametrize(
    ("provider", "model"),
    [
        ("openai", "gpt-4o-audio-preview"),  # another product with other prices
        ("openai", "GPT-4O"),  # patterns are case-sensitive
        ("anthropic", "gpt-4o"),  # prices are per provider
        ("mistral", "mistral-large"),
    ],
)
def test_unknown_models_are_flagged_never_silently_free(provider, model):
    cost = TABLE.price(provider, model, Usage(1000, 1000))
    assert cost.known is False
    assert cost.total == 0 and cost.matched_pattern is None
    assert "unknown cost" in str(cost)
    assert cost.to_json()["known"] is False
    summed = TABLE.price("openai", "gpt-4o", Usage(1, 1)) + cost
    assert summed.known is False  # one unknown step makes the total uncertain


def test_overrides_win_even_over_more_specific_base_entries():
    table = PricingTable.load(
        PINNED,
        overrides={
            "providers": {
                "openai": [{"pattern": "gpt-4o*", "input": "1", "output": "2"}],
                "mistral": [{"pattern": "mistral-*", "input": "0.5", "output": "1.5"}],
            }
        },
    )
    assert table.lookup("openai", "gpt-4o-mini").input == D(1)  # type: ignore[union-attr]
    assert table.lookup("openai", "o3").input == D("2.00")  # type: ignore[union-attr]
    assert table.price("mistral", "mistral-large", Usage(10**6, 0)).total == D("0.5")
    assert table.sources == ("pricing overrides", str(PINNED))
    assert table.overrides == "pricing overrides"


def test_overrides_from_a_file_and_json_numbers_stay_exact(tmp_path):
    path = tmp_path / "prices.json"
    path.write_text('{"providers": {"openai": [{"pattern": "gpt-4o", "input": 0.1, "output": 3}]}}')
    table = PricingTable.load(PINNED, overrides=path)
    entry = table.lookup("openai", "gpt-4o")
    assert entry is not None and entry.input == D("0.1") and entry.output == D(3)
    assert (entry.cached_input, entry.reasoning, entry.cache_write) == (D("0.1"), D(3), D("0.1"))
    assert table.price("openai", "gpt-4o", Usage(3, 0)).total == D("0.0000003")


def test_a_replacement_base_table(tmp_path):
    path = tmp_path / "base.json"
    path.write_text(
        json.dumps(
            {"version": "x", "providers": {"p": [{"pattern": "*", "input": "1", "output": "1"}]}}
        )
    )
    table = PricingTable.load(path)
    assert table.version == "x" and table.lookup("openai", "gpt-4o") is None
    assert table.lookup("p", "anything") is not None


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ([], r"\$ must be an object"),
        ({"providers": []}, r"\$.providers must be an object"),
        ({"providers": {"openai": {}}}, r"\$.providers.openai must be a list"),
        ({"providers": {"openai": [1]}}, r"\$.providers.openai\[0\] must be an object"),
        ({"providers": {"openai": [{"input": "1", "output": "1"}]}}, r"\[0\].pattern must be"),
        ({"providers": {"openai": [{"pattern": "x", "input": "1"}]}}, r"\[0\].output is missing"),
        (
            {"providers": {"openai": [{"pattern": "x", "input": 0.1, "output": "1"}]}},
            r"\$.providers.openai\[0\].input: 0.1 is a float; write prices as decimal strings",
        ),
        (
            {"providers": {"openai": [{"pattern": "x", "input": "abc", "output": "1"}]}},
            r"\[0\].input: 'abc' is not a decimal number",
        ),
        (
            {"providers": {"openai": [{"pattern": "x", "input": "-1", "output": "1"}]}},
            r"\[0\].input: '-1' must be a finite price >= 0",
        ),
        (
            {"providers": {"openai": [{"pattern": "x", "input": "NaN", "output": "1"}]}},
            "finite",
        ),
        (
            {"providers": {"a": [{"pattern": "x", "input": "1", "output": "1", "ouput": "2"}]}},
            r"\$.providers.a\[0\] has unknown fields \['ouput'\]",
        ),
        ({"currency": "EUR", "providers": {}}, "one table has one currency"),
    ],
)
def test_bad_pricing_data_names_the_json_path(overrides, message):
    with pytest.raises(PricingError, match=message) as info:
        PricingTable.load(PINNED, overrides=overrides)
    assert isinstance(info.value, ValueError)


def test_bad_files(tmp_path):
    with pytest.raises(PricingError, match="cannot read pricing file"):
        PricingTable.load(tmp_path / "missing.json")
    bad = tmp_path / "bad.json"
    bad.write_text("{oops")
    with pytest.raises(PricingError, match=r"bad\.json: not valid JSON"):
        PricingTable.load(overrides=bad)


def test_cost_json_round_trip_is_exact():
    cost = TABLE.price("anthropic", "claude-3-5-haiku-20241022", Usage(123457, 9876, 1111, 0, 222))
    data = json.loads(json.dumps(cost.to_json()))
    assert Cost.from_json(data) == cost
    assert all(isinstance(data[k], str) for k in ("input", "total"))


# ---- sums ---------------------------------------------------------------------------------


@st.composite
def usages(draw: st.DrawFn) -> Usage:
    input_tokens = draw(st.integers(0, 2_000_000))
    cached = draw(st.integers(0, input_tokens))
    written = draw(st.integers(0, input_tokens - cached))
    output = draw(st.integers(0, 200_000))
    reasoning = draw(st.integers(0, output))
    return Usage(input_tokens, output, cached, reasoning, written)


MODELS = [
    ("openai", "gpt-4o-mini"),
    ("openai", "o4-mini"),
    ("anthropic", "claude-sonnet-4-5"),
    ("anthropic", "claude-3-haiku-20240307"),
    ("offline", "offline-extractive-1"),
]


@given(steps=st.lists(usages(), min_size=1, max_size=25), pick=st.sampled_from(MODELS))
def test_summing_step_costs_equals_pricing_the_summed_usage(steps, pick):
    provider, model = pick
    costs = [TABLE.price(provider, model, u) for u in steps]
    total = reduce(lambda a, b: a + b, costs)
    whole = TABLE.price(provider, model, reduce(lambda a, b: a + b, steps))
    assert total.total == whole.total  # exact: pricing is linear and nothing rounds
    assert total == attrs_evolve_pattern(whole, total.matched_pattern)
    assert total.total == sum((c.total for c in costs), D(0))
    for cost in costs:
        parts = cost.input + cost.output + cost.cached_input + cost.reasoning + cost.cache_write
        assert parts == cost.total


@given(steps=st.lists(st.tuples(st.sampled_from(MODELS), usages()), min_size=1, max_size=30))
def test_mixed_model_totals_are_exact_to_the_last_digit(steps):
    costs = [TABLE.price(p, m, u) for (p, m), u in steps]
    total = reduce(lambda a, b: a + b, costs, Cost.zero())
    assert total.total == sum((c.total for c in costs), D(0))
    # the sum in integer micro-micro-units agrees: no digit was lost anywhere
    scale = D(10) ** 12
    assert int(total.total * scale) == sum(int(c.total * scale) for c in costs)
    assert total.known


def attrs_evolve_pattern(cost: Cost, pattern: str | None) -> Cost:
    import attrs

    return attrs.evolve(cost, matched_pattern=pattern)
