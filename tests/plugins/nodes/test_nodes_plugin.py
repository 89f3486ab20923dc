"""What the installed ``nodes`` and ``llm`` plugins register, as the registry, the CLI and the
composed schema see it; and the offline default provider: deterministic, no network."""

from __future__ import annotations

import json

from nodes_support import CSV_REPORT, RESEARCH, SHORT_PROMPT, flow_doc, installed_registry, llm
from nodes_support import run_flow as run

from backpackflow.cli import main
from backpackflow_llm.plugin import OfflineOptions
from backpackflow_nodes.llm import LLMNode, LLMParams
from backpackflow_nodes.router import RouterNode, RouterParams
from backpackflow_nodes.tool import ToolNode, ToolParams


def test_the_node_types_tools_and_dependency_factories_are_registered():
    registry = installed_registry()
    for name, cls, params in [
        ("llm", LLMNode, LLMParams),
        ("tool", ToolNode, ToolParams),
        ("router", RouterNode, RouterParams),
    ]:
        node_type = registry.node_type(name)
        assert (node_type.node_class, node_type.params, node_type.plugin) == (cls, params, "nodes")
    assert {"http_fetch", "read_file", "csv_summary"} <= set(registry.tools)
    factories = registry.dependency_factories
    for name in ("offline", "openai", "anthropic", "memory_cache", "sqlite_cache", "pricing"):
        assert factories[name].plugin == "llm"
    assert factories["offline"].options is OfflineOptions
    assert not registry.conflicts


def test_the_composed_schema_knows_the_node_params(capsys):
    assert main(["schema", "export"]) == 0
    rendered = json.dumps(json.loads(capsys.readouterr().out))
    for field in ("prompt", "response_format", "fallbacks", "cache_ttl", "rule", "branches"):
        assert f'"{field}"' in rendered


def test_the_examples_validate_from_the_command_line(capsys):
    assert main(["validate", str(RESEARCH), str(CSV_REPORT)]) == 0
    out = capsys.readouterr().out
    assert f"{RESEARCH}: ok" in out and f"{CSV_REPORT}: ok" in out


def test_the_offline_default_needs_no_configuration_and_is_deterministic():
    doc = flow_doc(llm("ask", SHORT_PROMPT))  # no provider, no dependencies
    first, second = run(doc), run(doc)
    a, b = first.one("llm_response"), second.one("llm_response")
    assert (a["provider"], a["model"]) == ("offline", "offline-extractive-1")
    assert (a["text"], a["usage"], a["cost"]) == (b["text"], b["usage"], b["cost"])
    assert a["cost_known"] is True  # priced from the shipped map like any model
