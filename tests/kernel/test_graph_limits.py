"""Graphs of any size and JSON of any depth: every graph algorithm of the kernel is iterative
(a 20,000-node chain validates, loads, runs and exports: twenty times Python's recursion
limit, and hours for any quadratic step), and JSON nested deeper than the limit is refused
with a clear error wherever the loader or the CLI reads it. How the cost grows up to 100,000
nodes is measured in bench/scaling.py, not here."""

from __future__ import annotations

import itertools
import json
from pathlib import Path
from typing import Any

import pytest

from backpackflow import AsyncNode, Backpack, EventStreamer, Flow, FlowLoader, Node
from backpackflow.cli import main
from backpackflow.errors import ConfigError, SerializationError
from backpackflow.jsondata import MAX_JSON_DEPTH, JSONTooDeep, check_depth, loads
from backpackflow.loader.checks import _find_cycle
from backpackflow.plugins import build_registry
from backpackflow.runner import DEFAULT_MAX_STEPS


class Step(Node):
    pass


def _loader() -> FlowLoader:
    loader = FlowLoader(build_registry(plugins=[], autoload=False))
    loader.register("step", Step)
    return loader


def chain(count: int, *, ring: bool = False) -> dict[str, Any]:
    edges = [{"from": f"n{i}", "to": f"n{i + 1}"} for i in range(count - 1)]
    if ring:
        edges.append({"from": f"n{count - 1}", "to": "n0"})
    return {
        "version": "2.0.0",
        "limits": {"max_steps": count + 1},
        "nodes": [{"type": "step", "id": f"n{i}"} for i in range(count)],
        "edges": edges,
    }


def test_a_20000_node_chain_validates_loads_runs_and_exports() -> None:
    loader = _loader()
    document = chain(20_000)
    document["nodes"][12_345]["id"] = "bad id"  # found, named, among alike nodes
    report = loader.validate(document)
    assert report.errors == [
        "$.nodes[12345].id: 'bad id' does not match '^[A-Za-z0-9][A-Za-z0-9_.:-]*$'"
    ]
    document["nodes"][12_345]["id"] = "n12345"
    flow = loader.load_flow(json.dumps(document))  # read, validate, check the graph, build
    result = flow.execute_sync(Backpack(), events=EventStreamer(history_size=0))
    assert result.ok
    assert result.node_count == 20_000
    exported = loader.export_flow(flow)
    assert len(exported["nodes"]) == 20_000
    assert exported["edges"][-1] == {"from": "n19998", "to": "n19999"}


def test_a_200000_node_ring_is_reported_as_one_short_cycle_message() -> None:
    successors = {f"n{i}": [f"n{(i + 1) % 200_000}"] for i in range(200_000)}
    cycle = _find_cycle(successors)
    assert cycle is not None
    assert len(cycle) == 200_001
    assert cycle[0] == cycle[-1]
    report = _loader().validate(chain(3_000, ring=True))
    [problem] = report.errors
    assert problem.startswith("$.edges: the graph has a cycle (n0 -> n1 -> n2 -> n3 -> n4 -> …")
    assert len(problem) < 400


def test_cycles_are_found_in_any_shape() -> None:
    assert _find_cycle({"a": ["b", "c"], "b": ["d"], "c": ["d"], "d": []}) is None
    assert _find_cycle({"a": ["b"], "b": ["c"], "c": ["b"]}) == ["b", "c", "b"]
    assert _find_cycle({"a": ["a"]}) == ["a", "a"]


def test_a_3000_node_chain_validates_without_recursion() -> None:
    report = _loader().validate(chain(3_000))
    assert report.ok, report.errors


def test_a_join_of_long_branches_runs_each_node_once() -> None:
    # the join waits for the long branch; asking whether a pending node can still be reached
    # costs no all-pairs reachability (quadratic: many minutes at this length)
    nodes = [Step(id=f"a{i}") for i in range(20_000)]
    for left, right in itertools.pairwise(nodes):
        left >> right
    start, join, short = Step(id="start"), Step(id="join"), Step(id="short")
    start >> nodes[0]
    start >> short
    nodes[-1] >> join
    short >> join
    events = EventStreamer(history_size=0)
    result = Flow(start, max_steps=40_000).execute_sync(Backpack(), events=events)
    assert result.node_count == 20_003


# ------------------------------------------------------------------------------ JSON depth


def nested(depth: int) -> str:
    return "[" * depth + "]" * depth


def test_deep_json_is_refused_with_a_clear_error() -> None:
    with pytest.raises(JSONTooDeep, match=f"nested more than {MAX_JSON_DEPTH} levels"):
        loads(nested(50_000))
    with pytest.raises(JSONTooDeep, match=r"\$\[0\]\[0\]"):
        loads(nested(MAX_JSON_DEPTH + 1))
    assert loads(nested(MAX_JSON_DEPTH)) is not None
    with pytest.raises(ValueError, match="NaN is not a JSON number"):
        loads("[NaN]")


def test_depth_is_measured_without_recursion() -> None:
    value: Any = "x"
    for _ in range(100_000):
        value = {"a": value}
    with pytest.raises(JSONTooDeep, match=r"\$\.a\.a\.a"):
        check_depth(value)


def test_the_loader_refuses_deep_documents_as_text_and_as_objects() -> None:
    deep: Any = "x"
    for _ in range(50_000):
        deep = {"a": deep}
    document = {"version": "2.0.0", "nodes": [{"type": "step", "id": "s", "params": deep}]}
    with pytest.raises(ConfigError, match="nested more than 256 levels deep"):
        _loader().load_flow(document)
    text = '{"version": "2.0.0", "nodes": [' + nested(50_000) + "]}"
    with pytest.raises(ConfigError, match=r"<json>: .*nested more than 256 levels deep"):
        _loader().load_flow(text)
    [problem] = _loader().validate(text).errors
    assert "nested more than 256 levels deep" in problem


def test_backpack_json_refuses_deep_documents() -> None:
    with pytest.raises(SerializationError, match="nested more than"):
        Backpack.from_json(nested(50_000))


@pytest.fixture
def deep_file(tmp_path: Path) -> Path:
    path = tmp_path / "deep.json"
    path.write_text('{"version": "2.0.0", "nodes": ' + nested(50_000) + "}", encoding="utf-8")
    return path


def test_the_cli_reports_deep_json_without_a_traceback(
    deep_file: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    registry = build_registry(plugins=[], autoload=False)
    assert main(["validate", str(deep_file)], registry=registry) == 1
    err = capsys.readouterr().err
    assert "nested more than 256 levels deep" in err
    assert "Traceback" not in err
    assert main(["run", str(deep_file)], registry=registry) == 1
    err = capsys.readouterr().err
    assert "nested more than 256 levels deep" in err
    assert "Traceback" not in err


def test_cli_json_arguments_are_bounded_too(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    flow = tmp_path / "flow.json"
    flow.write_text(json.dumps({"version": "2.0.0", "nodes": [{"type": "step", "id": "s"}]}))
    registry = build_registry(plugins=[], autoload=False)
    code = main(["run", str(flow), "--input-json", f"x={nested(50_000)}"], registry=registry)
    assert code == 1
    err = capsys.readouterr().err
    assert "--input-json" in err and "nested more than 256 levels deep" in err
    assert "Traceback" not in err


# ------------------------------------------------------------------------------ compile


def test_the_default_max_steps_lets_a_10000_node_chain_run_and_still_stops_loops() -> None:
    nodes = [Step(id=f"n{i}") for i in range(10_000)]
    for left, right in itertools.pairwise(nodes):
        left >> right
    result = Flow(nodes[0]).execute_sync(Backpack(), events=EventStreamer(history_size=0))
    assert result.ok, result.error
    assert result.node_count == 10_000
    # a loop over a small flow still ends at the floor of the default rule
    a, b = Step(id="a"), Step(id="b")
    a >> b
    b >> a
    looping = Flow(a).execute_sync(Backpack(), events=EventStreamer(history_size=0))
    assert looping.status == "failed"
    assert looping.node_count == DEFAULT_MAX_STEPS == 1000
    # and an explicit limit is honoured exactly, even one equal to the default's floor
    explicit = Flow(nodes[0], max_steps=1000).execute_sync(
        Backpack(), events=EventStreamer(history_size=0)
    )
    assert explicit.status == "failed"
    assert explicit.node_count == 1000
    assert "max_steps=1000" in str(explicit.error)


def test_an_explicit_max_steps_of_1000_survives_export_and_load() -> None:
    loader = _loader()
    document = chain(3)
    document["limits"] = {"max_steps": 1000}
    flow = loader.load_flow(document)
    assert loader.export_flow(flow)["limits"] == {"max_steps": 1000}
    del document["limits"]
    assert "limits" not in loader.export_flow(loader.load_flow(document))


def test_wiring_one_flow_leaves_other_flows_compiled() -> None:
    a, b = Step(id="a"), Step(id="b")
    a >> b
    first = Flow(a)
    compiled = first._compiled()
    x, y = Step(id="x"), Step(id="y")
    x >> y  # nodes of no flow of ours
    second = Flow(x)
    second._compiled()
    y >> Step(id="z")
    assert first._compiled() is compiled
    b >> Step(id="c")  # a node of the first flow: it compiles again and runs the new node
    assert first._compiled() is not compiled
    result = first.execute_sync(Backpack(), events=EventStreamer(history_size=0))
    assert result.node_count == 3


def test_a_change_inside_a_nested_flow_reaches_the_flows_holding_it() -> None:
    class Later(AsyncNode):
        async def exec_async(self, prep_res: Any) -> Any:
            return "async"

        async def post_async(self, backpack: Any, prep_res: Any, exec_res: Any) -> Any:
            backpack.pack("later", exec_res)

    inner_start = Step(id="inner")
    inner = Flow(inner_start, id="sub")
    outer = Flow(inner)
    assert not outer._compiled().needs_loop
    inner_start >> Later(id="later")  # the inner flow now needs an event loop
    backpack = Backpack()
    result = outer.execute_sync(backpack, events=EventStreamer(history_size=0))
    assert result.ok, result.error
    assert backpack.unpack("later") == "async"
    assert result.node_count == 3
