"""The node types in a flow loaded from JSON: core edges (action conditions and ``when``
expressions), dependencies declared by the flow, and the export round trip."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from backpackflow import Backpack, ConfigError, Flow
from backpackflow.loader import FlowLoader

from backpackflow_example_nodes import (
    ExtractKeywordsParams,
    KeywordRouterNode,
    KeywordRouterParams,
    Stopwords,
    TextStatsNode,
    TextStatsParams,
)
from helpers import FLOWS

LONG_TICKET = (
    "Since the update the app crashes when I open the dashboard. I see an error dialog and a "
    "stack trace. The dashboard worked yesterday; today every dashboard tab crashes the app, "
    "even after a reinstall of the app. The error mentions a dashboard widget, and the crash "
    "happens on both of my devices."
)


def run(flow: Flow, ticket: str) -> tuple[Any, Backpack]:
    if flow.input_specs:  # triage.json declares its input "ticket": the run packs it
        bp = Backpack()
        result = flow.execute_sync(bp, inputs={"ticket": ticket})
    else:  # a flow built in code declares none: the caller fills the Backpack
        bp = Backpack({"ticket": ticket})
        result = flow.execute_sync(bp)
    result.raise_for_status()
    return result.action, bp


@pytest.fixture
def triage(loader: FlowLoader) -> Flow:
    return loader.load_flow(FLOWS / "triage.json")


def test_params_are_structured_into_the_params_classes(triage: Flow) -> None:
    nodes = {node.id: node for node in triage.nodes()}
    assert isinstance(nodes["stats"].params, TextStatsParams)
    assert isinstance(nodes["route"].params, KeywordRouterParams)
    assert isinstance(nodes["billing_tags"].params, ExtractKeywordsParams)
    assert nodes["stats"].params.words_per_minute == 238  # the default
    assert nodes["route"].params.routes[1].keywords[-1] == "stack trace"
    assert isinstance(triage.deps.get("stopwords"), Stopwords)


def test_billing_ticket(triage: Flow) -> None:
    action, bp = run(triage, "Hi, I was charged twice for my invoice, please refund the payment.")
    assert action is None  # billing_tags ran last
    assert bp.unpack("ticket.route")["branch"] == "billing"
    assert bp.unpack("billing.keywords") == [
        {"term": "charged", "count": 1},
        {"term": "twice", "count": 1},
        {"term": "invoice", "count": 1},
    ]
    assert not bp.has("technical.route") and not bp.has("ticket.keywords")
    assert bp.get_item("billing.keywords").node_id == "billing_tags"


def test_technical_ticket_goes_through_the_second_router(triage: Flow) -> None:
    action, bp = run(triage, "I cannot login: the page shows an error after I reset my password.")
    assert action == "auth"
    assert bp.unpack("ticket.route")["branch"] == "technical"
    assert bp.unpack("technical.route") == {
        "branch": "auth",
        "hits": {"auth": 2, "crash": 1},
        "matched": ["login", "password"],
    }
    assert not bp.has("billing.keywords")


def test_a_short_ticket_ends_the_flow_with_too_short(triage: Flow) -> None:
    action, bp = run(triage, "Hello there")
    assert action == "too_short"
    assert bp.unpack("ticket.stats")["words"] == 2
    assert bp.keys() == ["ticket", "ticket.stats"]


def test_an_unmatched_ticket_takes_the_fallback(triage: Flow) -> None:
    action, bp = run(triage, "What are your opening hours on public holidays?")
    assert action == "general"
    assert bp.unpack("ticket.route")["hits"] == {"billing": 0, "technical": 0}


def test_the_when_expression_sees_the_stats_of_a_long_ticket(triage: Flow) -> None:
    action, bp = run(triage, LONG_TICKET)
    assert bp.unpack("ticket.stats")["words"] >= 40
    assert action == "crash"
    assert bp.unpack("ticket.keywords") == [
        {"term": "dashboard", "count": 4},
        {"term": "app", "count": 3},
        {"term": "crashes", "count": 2},
        {"term": "error", "count": 2},
    ]


# ------------------------------------------------------------------------------- round trip


def test_export_load_export_is_byte_identical(loader: FlowLoader, triage: Flow) -> None:
    exported = loader.export_json(triage)
    assert loader.export_json(loader.load_flow(exported)) == exported
    document = json.loads(exported)
    # params are exported complete, defaults included, so a config says exactly what ran
    stats = document["nodes"][0]["params"]
    assert stats == {
        "source": "ticket",
        "target": "ticket.stats",
        "words_per_minute": 238,
        "min_words": 3,
    }
    assert document["edges"][1] == {
        "from": "stats",
        "to": "long_ticket_terms",
        "when": "words >= 40",
    }
    assert (
        document["dependencies"] == json.loads((FLOWS / "triage.json").read_text())["dependencies"]
    )


def test_the_exported_flow_runs_like_the_original(loader: FlowLoader, triage: Flow) -> None:
    again = loader.load_flow(loader.export_json(triage))
    for ticket in ("refund my invoice", LONG_TICKET, "Hello there"):
        first, second = run(triage, ticket), run(again, ticket)
        assert first[0] == second[0]
        assert first[1].to_dict() == second[1].to_dict()


def test_a_flow_built_in_code_exports_and_loads(loader: FlowLoader) -> None:
    stats = TextStatsNode(id="stats", params={"source": "ticket", "min_words": 2})
    router = KeywordRouterNode(
        id="route",
        params={"source": "ticket", "routes": [{"name": "billing", "keywords": ["refund"]}]},
    )
    stats >> router
    flow = Flow(stats, name="coded")
    assert stats.to_config().type == "text_stats"
    exported = loader.export_json(flow)
    loaded = loader.load_flow(exported)
    assert loader.export_json(loaded) == exported
    assert run(loaded, "a refund please")[0] == "billing"


def test_from_config_builds_a_node_of_the_class() -> None:
    node = TextStatsNode.from_config(
        {"type": "text_stats", "id": "s", "params": {"source": "t", "words_per_minute": 120}}
    )
    assert isinstance(node, TextStatsNode)
    assert node.params == TextStatsParams(source="t", words_per_minute=120)
    assert node.to_config().params == {
        "source": "t",
        "target": None,
        "words_per_minute": 120,
        "min_words": None,
    }


# ------------------------------------------------------------------------------- dependencies


def flow_with(dependencies: dict[str, Any]) -> dict[str, Any]:
    return {
        "version": "2.0.0",
        "nodes": [{"type": "extract_keywords", "id": "kw", "params": {"source": "doc"}}],
        "dependencies": dependencies,
    }


def test_a_flow_without_the_dependency_is_rejected_naming_node_and_dependency(
    loader: FlowLoader,
) -> None:
    with pytest.raises(ConfigError) as caught:
        loader.load_flow(flow_with({}))
    assert caught.value.problems[0].startswith(
        "$.nodes[0]: node 'kw' (extract_keywords) needs dependency 'stopwords', which is not "
        "provided"
    )


def test_factory_config_errors_have_json_paths(loader: FlowLoader) -> None:
    with pytest.raises(ConfigError) as caught:
        loader.load_flow(flow_with({"stopwords": {"type": "stopwords", "config": {"lists": 1}}}))
    assert caught.value.problems == [
        "$.dependencies.stopwords.config: Additional properties are not allowed ('lists' was "
        "unexpected)"
    ]


def test_a_word_file_from_the_flow_config(loader: FlowLoader, tmp_path: Path) -> None:
    words = tmp_path / "stop.txt"
    words.write_text("backpack\n", encoding="utf-8")
    config = flow_with(
        {"stopwords": {"type": "stopwords", "config": {"builtin": "none", "path": str(words)}}}
    )
    bp = Backpack({"doc": "The backpack holds the state."})
    loader.load_flow(config).run(bp)
    assert [k["term"] for k in bp.unpack("keywords")] == ["the", "holds", "state"]


def test_the_callers_container_wins_over_the_flow(loader: FlowLoader) -> None:
    from backpackflow.runner import DependencyContainer

    deps = DependencyContainer()
    deps.register("stopwords", {"the", "holds"})
    flow = loader.load_flow(flow_with({"stopwords": {"type": "stopwords"}}), deps)
    bp = Backpack({"doc": "The backpack holds the state."})
    flow.run(bp)
    assert [k["term"] for k in bp.unpack("keywords")] == ["backpack", "state"]
