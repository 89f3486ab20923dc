"""The budget guard's pure parts: UTC calendar periods and the providers a flow names."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

from backpackflow_server.budgets import flow_providers, period_bounds


def test_periods_are_utc_calendar_days_and_months():
    late = datetime(2026, 12, 31, 23, 59, 59, tzinfo=UTC)
    assert period_bounds("month", late) == (
        "2026-12",
        datetime(2026, 12, 1, tzinfo=UTC),
        datetime(2027, 1, 1, tzinfo=UTC),
    )
    assert period_bounds("day", late)[0] == "2026-12-31"
    # 00:30 in UTC+2 is still the day before in UTC
    local = datetime(2027, 1, 1, 0, 30, tzinfo=timezone(timedelta(hours=2)))
    assert period_bounds("day", local)[0] == "2026-12-31"
    assert period_bounds("month", local)[0] == "2026-12"
    assert period_bounds("month", datetime(2028, 2, 29, tzinfo=UTC))[2] == datetime(
        2028, 3, 1, tzinfo=UTC
    )


def test_flow_providers_resolve_dependency_names_to_their_types():
    graph = {
        "dependencies": {"main": {"type": "openai", "config": {}}},
        "nodes": [
            {"type": "llm", "id": "a", "params": {"provider": "main", "model": "gpt-4o"}},
            {
                "type": "llm",
                "id": "b",
                "params": {
                    "provider": "offline",
                    "fallbacks": [{"provider": "anthropic", "model": "claude-3-5-haiku"}],
                },
            },
            {"type": "echo", "id": "c", "params": {"message": "hi"}},
        ],
    }
    assert flow_providers(graph) == {"openai", "offline", "anthropic"}
    assert flow_providers({"nodes": [{"id": "x"}, "junk"]}) == set()
