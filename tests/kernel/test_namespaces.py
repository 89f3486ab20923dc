import pytest

from backpackflow.errors import InvalidNamespace
from backpackflow.namespaces import (
    compile_pattern,
    join,
    matches,
    matches_any,
    validate_namespace,
)


@pytest.mark.parametrize("ns", ["sales", "sales.research", "sales.research.web", "agent-1.step_2"])
def test_valid_namespaces(ns):
    assert validate_namespace(ns) == ns


@pytest.mark.parametrize(
    ("ns", "problem"),
    [
        ("", "must not be empty"),
        ("sales.*", "wildcard"),
        ("sales.research ", "white space"),
        ("sales research", "white space"),
        ("sales..chat", "empty segment"),
        (".sales", "empty segment"),
        ("sales.", "empty segment"),
        ("sales/chat", "segment 'sales/chat'"),
        (42, "must be a string"),
    ],
)
def test_invalid_namespaces_name_the_problem(ns, problem):
    with pytest.raises(InvalidNamespace, match=problem) as info:
        validate_namespace(ns, where="node 'x'")
    assert str(info.value).startswith("node 'x': ")


@pytest.mark.parametrize(
    ("pattern", "name", "expected"),
    [
        ("sales", "sales", True),
        ("sales", "sales.chat", False),
        ("sales.*", "sales.chat", True),
        ("sales.*", "sales", False),
        ("sales.*", "sales.chat.bot", False),
        ("*.chat", "sales.chat", True),
        ("*.chat", "support.chat", True),
        ("*.chat", "chat", False),
        ("*.chat", "a.b.chat", False),
        ("*", "sales", True),
        ("*", "sales.chat", False),
        ("sales.**", "sales", True),
        ("sales.**", "sales.chat", True),
        ("sales.**", "sales.chat.bot.x", True),
        ("sales.**", "support.chat", False),
        ("a.**.b", "a.b", True),
        ("a.**.b", "a.x.y.b", True),
        ("a.**.b", "a.x.y.c", False),
        ("**", "anything.at.all", True),
        ("**.chat", "chat", True),
        ("**.chat", "x.y.chat", True),
        ("a.*.c", "a.b.c", True),
        ("a.*.c", "a.b.b.c", False),
        ("sales-1.*", "sales-1.x", True),
        ("sales.ch", "sales.chat", False),
    ],
)
def test_pattern_matching(pattern, name, expected):
    assert matches(pattern, name) is expected


def test_dots_in_patterns_are_literal_not_regex():
    assert not matches("a.b", "axb")
    assert not matches("a.*", "axb")


def test_none_never_matches():
    assert matches("*", None) is False
    assert matches_any(["**"], None) is None


def test_matches_any_returns_first_matching_pattern():
    assert matches_any(["support.*", "sales.*", "sales.**"], "sales.chat") == "sales.*"
    assert matches_any(["support.*"], "sales.chat") is None


@pytest.mark.parametrize("pattern", ["", "sales..*", "sal*es", "a.b*", ".x"])
def test_malformed_patterns_are_refused(pattern):
    with pytest.raises(InvalidNamespace):
        compile_pattern(pattern)


def test_compiled_patterns_are_cached():
    assert compile_pattern("cache.*.me") is compile_pattern("cache.*.me")


def test_join_composes_namespaces():
    assert join("sales", "chat") == "sales.chat"
    assert join(None, "chat") == "chat"
    assert join("sales", None) == "sales"
    assert join(None, None) is None
    assert join("a", "", "b.c") == "a.b.c"
