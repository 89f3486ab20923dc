"""Each node type alone (``node.run(backpack)``): what it reads, computes, writes and returns,
and the errors a flow author sees when the input is missing or wrong."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from backpackflow import Backpack, ConfigError, KeyNotFound
from backpackflow.runner import DependencyContainer

from backpackflow_example_nodes import (
    ExtractKeywordsNode,
    KeywordRouterNode,
    NodeInputError,
    Stopwords,
    StopwordsOptions,
    TextStatsNode,
    build_stopwords,
)

ARTICLE = (
    "Backpacks keep state. Every write is a commit!\n\n"
    "Flows route on actions? Yes: nodes return them."
)


def stopwords_container(*words: str) -> DependencyContainer:
    deps = DependencyContainer()
    deps.register("stopwords", Stopwords(words or ("the", "a", "is", "and", "of")))
    return deps


# ------------------------------------------------------------------------------- text_stats


def test_text_stats_counts_and_writes_the_figures() -> None:
    bp = Backpack({"article": ARTICLE})
    node = TextStatsNode(id="stats", params={"source": "article", "words_per_minute": 60})
    assert node.run(bp) is None
    assert bp.unpack("article_stats") == {
        "characters": len(ARTICLE),
        "words": 16,
        "sentences": 4,
        "paragraphs": 2,
        "avg_sentence_words": 4.0,
        "reading_time_seconds": 16,
    }
    assert bp.get_item("article_stats").node_id == "stats"


def test_text_stats_reads_a_list_of_strings_as_paragraphs() -> None:
    bp = Backpack({"chunks": ["One two three.", "Four five."]})
    TextStatsNode(id="s", params={"source": "chunks", "target": "figures"}).run(bp)
    figures = bp.unpack("figures")
    assert (figures["words"], figures["sentences"], figures["paragraphs"]) == (5, 2, 2)


@pytest.mark.parametrize(("text", "action"), [("Short.", "too_short"), ("Long enough.", None)])
def test_text_stats_returns_too_short_below_min_words(text: str, action: str | None) -> None:
    node = TextStatsNode(id="s", params={"source": "t", "min_words": 2})
    assert node.run(Backpack({"t": text})) == action


def test_text_stats_of_an_empty_text() -> None:
    bp = Backpack({"t": ""})
    TextStatsNode(id="s", params={"source": "t"}).run(bp)
    assert bp.unpack("t_stats") == {
        "characters": 0,
        "words": 0,
        "sentences": 0,
        "paragraphs": 0,
        "avg_sentence_words": 0.0,
        "reading_time_seconds": 0,
    }


def test_a_missing_key_names_the_node_the_param_and_the_key() -> None:
    node = TextStatsNode(id="stats", params={"source": "article"})
    node.node_type = "text_stats"  # what the loader sets
    with pytest.raises(KeyNotFound) as caught:
        node.run(Backpack({"other": "x"}))
    assert str(caught.value) == (
        "text_stats node 'stats': params.source names key 'article', which is not in the "
        "Backpack (keys: 'other')"
    )


@pytest.mark.parametrize(
    ("value", "shown"), [(42, "an integer"), ({"a": 1}, "an object"), (["a", 1], "an array")]
)
def test_a_wrong_input_type_names_the_node_the_param_and_the_key(value: Any, shown: str) -> None:
    node = KeywordRouterNode(
        id="route", params={"source": "ticket", "routes": [{"name": "x", "keywords": ["y"]}]}
    )
    with pytest.raises(NodeInputError) as caught:
        node.run(Backpack({"ticket": value}))
    assert str(caught.value) == (
        f"KeywordRouterNode node 'route': key 'ticket' (params.source) holds {shown}; expected "
        "a string or an array of strings"
    )


def test_a_denied_read_is_reported_as_such() -> None:
    bp = Backpack({"secret": "text"}, strict=False)
    bp.register_permissions("stats", read=["public"])
    with pytest.raises(KeyNotFound, match="which this node may not read"):
        TextStatsNode(id="stats", params={"source": "secret"}).run(bp)


# ------------------------------------------------------------------------------- keyword_router

ROUTES = [
    {"name": "billing", "keywords": ["invoice", "refund"]},
    {"name": "technical", "keywords": ["error", "crash", "stack trace"]},
]


def route(text: str, **params: Any) -> tuple[str, dict[str, Any]]:
    bp = Backpack({"ticket": text})
    node = KeywordRouterNode(
        id="route", params={"source": "ticket", "routes": ROUTES, "target": "decision", **params}
    )
    action = node.run(bp)
    return action, bp.unpack("decision")


def test_most_hits_wins() -> None:
    action, decision = route("An invoice error: the app shows an error and a crash.")
    assert action == "technical"
    assert decision == {
        "branch": "technical",
        "hits": {"billing": 1, "technical": 3},
        "matched": ["error", "crash"],
    }


def test_first_takes_the_first_route_with_enough_hits() -> None:
    action, _ = route("An invoice error: the app shows an error.", strategy="first")
    assert action == "billing"


def test_ties_go_to_the_earlier_route() -> None:
    assert route("refund after the crash")[0] == "billing"


def test_fallback_when_no_route_has_enough_hits() -> None:
    assert route("hello there")[0] == "default"
    assert route("one error only", min_hits=2, fallback="unsure") == (
        "unsure",
        {"branch": "unsure", "hits": {"billing": 0, "technical": 1}, "matched": []},
    )


def test_words_phrases_and_substrings() -> None:
    # "errors" and "crashed" are not the words "error" and "crash"; the phrase matches across case
    assert route("Errors happen; it crashed. Stack Trace attached.")[1]["matched"] == [
        "stack trace"
    ]
    assert route("Errors happen; it crashed.", match="substring")[1]["hits"]["technical"] == 2


def test_case_sensitive_matching() -> None:
    assert route("ERROR", case_sensitive=True)[0] == "default"
    assert route("ERROR")[0] == "technical"


def test_without_target_the_router_writes_nothing() -> None:
    bp = Backpack({"ticket": "refund please"})
    node = KeywordRouterNode(id="r", params={"source": "ticket", "routes": ROUTES})
    assert node.run(bp) == "billing"
    assert bp.keys() == ["ticket"]


def test_route_names_must_be_unique() -> None:
    routes = [{"name": "a", "keywords": ["x"]}, {"name": "a", "keywords": ["y"]}]
    with pytest.raises(ConfigError, match=r"routes: each route name must be unique.*\['a'\]"):
        KeywordRouterNode(id="r", params={"source": "t", "routes": routes})


# ------------------------------------------------------------------------------- extract_keywords

TEXT = (
    "The flow loads the config. The config names the nodes, and the nodes read the Backpack. "
    "In 2024 the Backpack kept 2024 commits of the config."
)


def extract(text: str, deps: DependencyContainer | None = None, **params: Any) -> Any:
    bp = Backpack({"doc": text})
    node = ExtractKeywordsNode(id="kw", params={"source": "doc", **params})
    node.deps = deps if deps is not None else stopwords_container()
    node.run(bp)
    return bp.unpack(params.get("target", "keywords"))


def test_keywords_by_frequency_ties_in_order_of_appearance() -> None:
    assert extract(TEXT, top_k=4) == [
        {"term": "config", "count": 3},
        {"term": "nodes", "count": 2},
        {"term": "backpack", "count": 2},
        {"term": "flow", "count": 1},
    ]


def test_numbers_min_length_and_min_count() -> None:
    terms = [k["term"] for k in extract(TEXT, include_numbers=True, min_count=2, target="k")]
    assert terms == ["config", "nodes", "backpack", "2024"]
    assert "flow" not in [k["term"] for k in extract(TEXT, min_length=5)]


def test_stopwords_come_from_the_dependency() -> None:
    terms = [k["term"] for k in extract(TEXT, stopwords_container("config", "the", "of"))]
    assert "config" not in terms and "nodes" in terms


def test_a_plain_set_is_a_valid_stopwords_dependency() -> None:
    deps = DependencyContainer()
    deps.register("stopwords", {"the", "of", "and", "in"})
    assert extract(TEXT, deps, top_k=1) == [{"term": "config", "count": 3}]


def test_a_dependency_that_is_not_a_word_set_is_an_error() -> None:
    deps = DependencyContainer()
    deps.register("stopwords", 42)
    with pytest.raises(TypeError, match="node 'kw': dependency 'stopwords' must support"):
        extract(TEXT, deps)


def test_without_a_container_the_kernel_names_the_missing_dependency() -> None:
    node = ExtractKeywordsNode(id="kw", params={"source": "doc"})
    with pytest.raises(ConfigError, match="node 'kw' needs dependency 'stopwords'"):
        node.run(Backpack({"doc": TEXT}))


# ------------------------------------------------------------------------------- stopwords


def test_builtin_english_list_is_shipped_with_the_package() -> None:
    words = build_stopwords(StopwordsOptions(), DependencyContainer())
    assert "the" in words and "The" in words and "backpack" not in words
    assert len(words) > 100
    assert words.source == "builtin english"


def test_word_file_extra_words_and_keep(tmp_path: Path) -> None:
    path = tmp_path / "domain.txt"
    path.write_text("# domain words\nticket\n  customer  # trailing comment\n\n", encoding="utf-8")
    options = StopwordsOptions(path=str(path), words=["Hello"], keep=["not", "TICKET"])
    words = build_stopwords(options, DependencyContainer())
    assert "customer" in words and "hello" in words and "the" in words
    assert "ticket" not in words and "not" not in words
    assert words.source == f"builtin english, {path}, config.words"


def test_builtin_none_keeps_only_the_given_words() -> None:
    words = build_stopwords(StopwordsOptions(builtin="none", words=["x"]), DependencyContainer())
    assert set(words) == {"x"}


def test_an_unreadable_word_file_names_the_path(tmp_path: Path) -> None:
    missing = tmp_path / "missing.txt"
    with pytest.raises(ConfigError, match=r"cannot read the word list '.*missing\.txt'"):
        build_stopwords(StopwordsOptions(path=str(missing)), DependencyContainer())
