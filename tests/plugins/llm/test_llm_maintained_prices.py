"""Prices from genai-prices: the default layering (overrides, genai-prices, the shipped
fallback), totals equal to genai-prices' own calculation, no network, and
``backpackflow prices MODEL``.

Every expected number here comes from the installed genai-prices itself (``calc_price`` at the
same moment) or from a file the test writes, so the tests hold for any genai-prices version.
"""

from __future__ import annotations

import argparse
import json
import socket
import subprocess
import sys
from datetime import UTC, datetime
from decimal import Decimal

import genai_prices
from genai_prices import data_snapshot
from hypothesis import given, settings
from hypothesis import strategies as st

from backpackflow_llm import PricingTable, Usage
from backpackflow_llm.prices_command import prices_arguments, run_prices

AT = datetime(2026, 6, 1, 12, tzinfo=UTC)
TABLE = PricingTable.load()
VERSION = f"genai-prices {genai_prices.__version__}"


def theirs(provider: str, model: str, usage: Usage, at: datetime = AT, **extra: int) -> Decimal:
    """genai-prices' own total for the same call."""
    their_usage = genai_prices.Usage(
        input_tokens=usage.input_tokens,
        cache_read_tokens=usage.cached_input_tokens,
        cache_write_tokens=usage.cache_write_tokens,
        output_tokens=usage.output_tokens,
        **extra,
    )
    calculation = genai_prices.calc_price(
        their_usage, model, provider_id=provider, genai_request_timestamp=at
    )
    return Decimal(calculation.total_price)


def test_the_default_layers_are_genai_prices_then_the_shipped_fallback():
    assert TABLE.sources == (VERSION, "backpackflow_llm/pricing.json")
    assert TABLE.overrides is None
    entry = TABLE.lookup("openai", "gpt-4o", at=AT)
    assert entry is not None and entry.source == VERSION
    offline = TABLE.lookup("offline", "offline-extractive-1")
    assert offline is not None and offline.source == "backpackflow_llm/pricing.json"


@st.composite
def usages(draw: st.DrawFn, *, max_input: int = 400_000) -> Usage:
    input_tokens = draw(st.integers(0, max_input))
    cached = draw(st.integers(0, input_tokens))
    written = draw(st.integers(0, input_tokens - cached))
    output = draw(st.integers(0, 50_000))
    return Usage(input_tokens, output, cached, 0, written)


MODELS = [
    ("openai", "gpt-4o"),
    ("openai", "gpt-4o-mini-2024-07-18"),
    ("openai", "gpt-5"),
    ("anthropic", "claude-sonnet-4-20250514"),
    ("anthropic", "claude-sonnet-4-5"),  # tiered above 200k input tokens
    ("anthropic", "claude-3-5-haiku-latest"),
]


@settings(max_examples=60, deadline=None)
@given(usage=usages(), pick=st.sampled_from(MODELS))
def test_totals_equal_genai_prices_own_calculation(usage, pick):
    provider, model = pick
    cost = TABLE.price(provider, model, usage, at=AT)
    assert cost.known and cost.matched_pattern
    assert cost.total == theirs(provider, model, usage)
    parts = cost.input + cost.cached_input + cost.cache_write + cost.output + cost.reasoning
    assert parts == cost.total


def test_reasoning_tokens_have_their_own_price_where_the_source_has_one():
    usage = Usage(1000, 5000, reasoning_tokens=3000)
    cost = TABLE.price("perplexity", "sonar-deep-research", usage, at=AT)
    entry = TABLE.lookup("perplexity", "sonar-deep-research", at=AT)
    assert entry is not None and "reasoning" not in entry.inherited
    assert entry.reasoning != entry.output
    assert cost.reasoning == Decimal(3000) * entry.reasoning / 1_000_000
    assert cost.output == Decimal(2000) * entry.output / 1_000_000
    # genai-prices counts reasoning within output too: the same total
    assert cost.total == theirs(
        "perplexity", "sonar-deep-research", usage, output_reasoning_tokens=3000
    )


def test_cached_input_and_cache_writes_are_priced_separately():
    entry = TABLE.lookup("anthropic", "claude-sonnet-4-20250514", at=AT)
    assert entry is not None and entry.inherited == {"reasoning"}
    assert entry.cached_input < entry.input < entry.cache_write
    usage = Usage(1000, 10, cached_input_tokens=600, cache_write_tokens=300)
    cost = TABLE.price("anthropic", "claude-sonnet-4-20250514", usage, at=AT)
    assert cost.cached_input == Decimal(600) * entry.cached_input / 1_000_000
    assert cost.cache_write == Decimal(300) * entry.cache_write / 1_000_000
    assert cost.input == Decimal(100) * entry.input / 1_000_000


def test_a_tiered_price_follows_the_request_size():
    small = TABLE.lookup("anthropic", "claude-sonnet-4-5", at=AT, input_tokens=1000)
    large = TABLE.lookup("anthropic", "claude-sonnet-4-5", at=AT, input_tokens=300_000)
    assert small is not None and large is not None
    assert large.input > small.input and large.output > small.output


def test_overrides_win_over_genai_prices(tmp_path):
    path = tmp_path / "mine.json"
    path.write_text(
        json.dumps({"providers": {"openai": [{"pattern": "gpt-4o", "input": "1", "output": "2"}]}})
    )
    table = PricingTable.load(overrides=path)
    assert table.sources == (str(path), VERSION, "backpackflow_llm/pricing.json")
    assert table.price("openai", "gpt-4o", Usage(10**6, 10**6)).total == Decimal(3)
    mini = table.lookup("openai", "gpt-4o-mini", at=AT)  # not overridden: genai-prices
    assert mini is not None and mini.source == VERSION


def test_unknown_models_stay_unknown():
    for provider, model in [("openai", "gpt-nonexistent-9"), ("offline", "gpt-4o"), ("zz", "m")]:
        assert TABLE.price(provider, model, Usage(10, 10)).known is False


def test_pricing_never_touches_the_network(monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError(f"pricing opened a connection: {args}")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    table = PricingTable.load()
    assert table.price("openai", "gpt-4o", Usage(100, 100)).known
    assert data_snapshot.get_snapshot().from_auto_update is False  # the bundled data


# ------------------------------------------------------------------ backpackflow prices


def prices(capsys, *args: str) -> tuple[int, str, str]:
    """The command's handler, given the arguments its parser makes of ``args``."""
    parser = argparse.ArgumentParser(prog="backpackflow prices")
    prices_arguments(parser)
    code = run_prices(parser.parse_args(args), None)
    out, err = capsys.readouterr()
    return code, out, err


def test_the_llm_plugin_adds_the_prices_command_to_the_cli():
    done = subprocess.run(
        [sys.executable, "-m", "backpackflow", "prices", "offline-extractive-1", "--json"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["prices"]["output"] == "0.40"


def test_prices_command_json_shows_each_token_kind_and_the_source(capsys):
    code, out, err = prices(capsys, "gpt-4o", "--json", "--at", AT.isoformat())
    assert code == 0, err
    report = json.loads(out)
    entry = TABLE.lookup("openai", "gpt-4o", at=AT)
    assert entry is not None
    assert report["provider"] == "openai" and report["matched"] == entry.pattern
    assert report["source"] == {"kind": "genai-prices", "name": VERSION}
    assert report["currency"] == "USD" and report["unit"] == "per million tokens"
    for kind in ("input", "cached_input", "cache_write", "output", "reasoning"):
        assert Decimal(report["prices"][kind]) == getattr(entry, kind)
    assert report["inherited"] == {"cache_write": "input", "reasoning": "output"}


def test_prices_command_text_names_the_override_file(capsys, tmp_path):
    path = tmp_path / "mine.json"
    path.write_text(
        json.dumps(
            {"providers": {"openai": [{"pattern": "gpt-4o*", "input": "1.5", "output": "6"}]}}
        )
    )
    code, out, err = prices(capsys, "gpt-4o-mini", "--overrides", str(path))
    assert code == 0, err
    assert f"priced by {path} (overrides), entry 'gpt-4o*'" in out
    assert "  input         1.5\n" in out
    assert "  reasoning     6  (no price of its own: the output price)" in out


def test_prices_command_for_the_offline_model_names_the_shipped_file(capsys):
    code, out, _ = prices(capsys, "offline-extractive-1", "--json")
    assert code == 0
    report = json.loads(out)
    assert report["source"] == {"kind": "file", "name": "backpackflow_llm/pricing.json"}
    assert report["provider"] == "offline" and report["prices"]["input"] == "0.10"


def test_prices_command_unknown_model_names_it_and_close_matches(capsys):
    code, out, err = prices(capsys, "gpt-4oo")
    assert code == 1 and out == ""
    assert "no price for model 'gpt-4oo'" in err and "openai/gpt-4o" in err
    code, _, err = prices(capsys, "gpt-4oo", "--provider", "openai")
    assert code == 1
    assert "of provider 'openai'" in err and "close matches: gpt-4o" in err
    code, _, err = prices(capsys, "x", "--at", "yesterday")
    assert code == 2 and "--at 'yesterday' is not an ISO-8601 time" in err
