"""``validate`` checks what ``load`` checks (issue 15): the checks node classes run when a flow
is built (router rules, templates, a router default outside its branches) are part of
``FlowLoader.validate`` and ``backpackflow validate``, listed together with the graph's."""

from __future__ import annotations

from pathlib import Path

import pytest
from nodes_support import flow_doc, installed_registry, llm, router, write_flow

from backpackflow import ConfigError
from backpackflow.cli import main
from backpackflow.loader import FlowLoader

BAD = flow_doc(
    router("r1", "size(text) >", inputs={"text": "x"}),
    router("r2", "__import__('os')"),
    router("r3", "'a'", branches=["a", "b"], default="c"),
    llm("l", "{{ text ", provider="offline"),
    edges=[
        {"from": "r1", "to": "r2"},
        {"from": "r2", "to": "r3"},
        {"from": "r3", "to": "l", "condition": "a"},
        {"from": "l", "to": "ghost"},
    ],
)


def _places(problems: list[str]) -> list[str]:
    return [p.split(": ", 1)[0] for p in problems]


def test_validate_lists_graph_and_node_problems_at_once() -> None:
    report = FlowLoader(installed_registry()).validate(BAD)
    assert _places(report.errors) == [
        "$.edges[3].to",
        "$.nodes[0]",
        "$.nodes[1]",
        "$.nodes[2]",
        "$.nodes[3]",
    ]
    r1, r2, r3, template = report.errors[1:]
    assert "invalid cel condition 'size(text) >'" in r1
    assert "unknown CEL function '__import__'" in r2
    assert "default 'c' is not one of the branches ['a', 'b']" in r3
    assert "params.prompt: template syntax error" in template


def test_what_fails_validate_fails_load_with_every_node_listed() -> None:
    good_graph = {**BAD, "edges": BAD["edges"][:3]}
    report = FlowLoader(installed_registry()).validate(good_graph)
    with pytest.raises(ConfigError) as error:
        FlowLoader(installed_registry()).load_flow(good_graph)
    assert error.value.problems == report.errors
    assert _places(report.errors) == ["$.nodes[0]", "$.nodes[1]", "$.nodes[2]", "$.nodes[3]"]


def test_a_declared_dependency_is_named_not_built(tmp_path: Path) -> None:
    doc = flow_doc(llm("l", "hi", provider="mine"), dependencies={"mine": {"type": "offline"}})
    assert FlowLoader(installed_registry()).validate(doc).ok


def test_the_cli_fails_validate_with_every_problem(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = write_flow(tmp_path / "bad.json", BAD)
    assert main(["validate", str(path)], registry=installed_registry()) == 1
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) >= 5 and "__import__" in err and "ghost" in err
