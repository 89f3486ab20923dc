"""The FlowTrace ``version 1`` migration: the shipped example migrates, validates and runs, and
every field is carried over or refused with its JSON path."""

from __future__ import annotations

import copy
import json
import warnings
from pathlib import Path

import pytest

from backpackflow import Backpack
from backpackflow.cli import main
from backpackflow.config import CURRENT_VERSION
from backpackflow.errors import ConfigError
from backpackflow.loader import ConfigWarning, FlowLoader, validate_flow_document
from backpackflow.plugins import build_registry
from backpackflow_flowtrace.plugin import migrate_flowtrace_v1

EXAMPLE = Path(__file__).resolve().parents[3] / "examples" / "flowtrace" / "workflow-v1.json"

MINIMAL = {
    "version": "1",
    "entry": "ask",
    "nodes": [
        {"id": "ask", "type": "llm", "config": {"provider": "offline"}, "inputs": {"q": "hi"}}
    ],
}


REGISTRY = build_registry()


def schema_problems(document):
    return validate_flow_document(document, REGISTRY)


def with_limits(**limits):
    document = copy.deepcopy(MINIMAL)
    document["limits"] = limits
    return document


def test_the_example_migrates_to_a_valid_current_document():
    document = json.loads(EXAMPLE.read_text(encoding="utf-8"))
    migrated = migrate_flowtrace_v1(document)
    assert migrated["version"] == CURRENT_VERSION
    assert schema_problems(migrated) == []
    by_id = {n["id"]: n for n in migrated["nodes"]}
    assert by_id["ingest"]["params"] == {
        "tool": "read_file",
        "arguments": {"path": "release-notes.md"},
    }
    assert by_id["summarize"]["params"]["prompt"] == "{{ text }}"  # made from its one input
    assert by_id["summarize"]["inputs"] == {"text": "{{node.ingest.output.content}}"}
    assert migrated["limits"] == {"max_steps": 20, "max_tokens": 150000, "timeout": 120}
    assert migrated["edges"][2]["when"] == "branch=='deep'"
    assert document["version"] == "1"  # the caller's document is left alone


def test_the_example_loads_with_a_migration_warning_and_runs_offline():
    loader = FlowLoader(REGISTRY)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        flow = loader.load_flow(EXAMPLE)
    assert any(
        issubclass(w.category, ConfigWarning) and "migrated" in str(w.message) for w in caught
    )
    backpack = Backpack()
    result = flow.execute_sync(backpack)
    assert result.ok, result.error
    assert result.node_count >= 3


def test_a_url_tool_becomes_http_fetch_allowed_to_reach_that_host_only():
    document = copy.deepcopy(MINIMAL)
    document["nodes"].append(
        {"id": "get", "type": "tool", "config": {"url": "https://docs.example.org/a"}}
    )
    tool = migrate_flowtrace_v1(document)["nodes"][1]["params"]
    assert tool == {
        "tool": "http_fetch",
        "arguments": {"url": "https://docs.example.org/a", "allowed_hosts": ["docs.example.org"]},
    }


@pytest.mark.parametrize(
    ("given", "expected"),
    [(1e-07, "0.0000001"), (0.5, "0.5"), (2, "2"), ("0.25", "0.25")],
)
def test_max_cost_becomes_an_exact_positional_decimal_the_schema_accepts(given, expected):
    migrated = migrate_flowtrace_v1(with_limits(maxCostUsd=given))
    assert migrated["limits"] == {"max_cost": expected}
    assert schema_problems(migrated) == []


def test_a_max_cost_that_is_no_number_is_refused_at_its_path():
    migrated = migrate_flowtrace_v1(with_limits(maxCostUsd=True))
    problems = schema_problems(migrated)
    assert len(problems) == 1 and problems[0].startswith("$.limits.max_cost: ")


def test_unknown_fields_are_errors_naming_their_paths():
    document = copy.deepcopy(MINIMAL)
    document["retries"] = 3
    document["nodes"][0]["timeout"] = 5
    document["limits"] = {"maxNodes": 3, "budget": 1}
    with pytest.raises(ConfigError) as caught:
        migrate_flowtrace_v1(document)
    problems = caught.value.problems
    assert any(p.startswith("$: ") and "'retries'" in p for p in problems)
    assert any(p.startswith("$.nodes[0]: ") and "'timeout'" in p for p in problems)
    assert any(p.startswith("$.limits: ") and "'budget'" in p for p in problems)


def test_migrate_rewrites_the_example_in_the_current_version(tmp_path, capsys):
    target = tmp_path / "workflow.json"
    assert main(["migrate", str(EXAMPLE), "--output", str(target)]) == 0
    assert json.loads(target.read_text(encoding="utf-8"))["version"] == CURRENT_VERSION
