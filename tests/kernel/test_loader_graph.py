"""Graph validation at load (PRD-003): unknown node ids in edges, duplicate ids, unreachable nodes
(a warning), cycles (an error unless the flow allows them), unknown entry, nested flows as scopes
of their own; every problem reported together with its JSON path."""

from __future__ import annotations

import warnings

import pytest

import backpackflow_conditions.plugin as conditions_plugin
from backpackflow import Backpack, ConfigError, EventStreamer, Node, hookimpl
from backpackflow.config import CURRENT_VERSION
from backpackflow.loader import ConfigWarning, FlowLoader
from backpackflow.plugins import build_registry

V = CURRENT_VERSION


class Step(Node):
    def post(self, backpack, prep_res, exec_res):
        count = backpack.unpack(f"count.{self.id}", 0)
        backpack.pack(f"count.{self.id}", count + 1)
        return self.params.get("action")


class Nodes:
    __name__ = "graph_nodes"

    @hookimpl
    def backpackflow_register_node_types(self, register):
        register("step", Step)


@pytest.fixture
def loader():
    return FlowLoader(build_registry(plugins=[Nodes(), conditions_plugin], autoload=False))


def node(node_id, **extra):
    return {"type": "step", "id": node_id, **extra}


def flow(nodes, edges=(), **extra):
    return {"version": V, "nodes": list(nodes), "edges": list(edges), **extra}


def problems(loader, document):
    with pytest.raises(ConfigError) as info, warnings.catch_warnings():
        warnings.simplefilter("ignore", ConfigWarning)
        loader.load_flow(document)
    assert loader.validate(document).errors == info.value.problems
    return info.value.problems


def test_edges_to_unknown_node_ids_are_errors_naming_the_end(loader):
    found = problems(
        loader,
        flow(
            [node("a"), node("b")],
            [{"from": "a", "to": "c"}, {"from": "x", "to": "b"}],
        ),
    )
    assert found == [
        "$.edges[0].to: unknown node id 'c' (nodes: 'a', 'b')",
        "$.edges[1].from: unknown node id 'x' (nodes: 'a', 'b')",
    ]


def test_duplicate_node_ids_are_errors_naming_both_places(loader):
    found = problems(loader, flow([node("a"), node("b"), node("a")]))
    assert found == ["$.nodes[2].id: duplicate node id 'a' (also $.nodes[0])"]


def test_an_unknown_entry_is_an_error(loader):
    found = problems(loader, flow([node("a")], entry="start"))
    assert found == ["$.entry: unknown node id 'start'"]


def test_unreachable_nodes_are_a_warning_not_an_error(loader):
    document = flow([node("a"), node("b"), node("c")], [{"from": "a", "to": "b"}])
    with pytest.warns(ConfigWarning) as caught:
        loaded = loader.load_flow(document)
    messages = [str(w.message) for w in caught]
    assert any("$.nodes[2]" in m and "'c'" in m and "unreachable" in m for m in messages)
    report = loader.validate(document)
    assert report.ok
    assert report.warnings == [
        "$.nodes[2]: node 'c' is unreachable from the entry node 'a'; it will never run"
    ]
    backpack = Backpack()
    loaded.run(backpack)
    assert "count.c" not in backpack.to_dict()


def test_reachability_starts_at_the_entry(loader):
    document = flow([node("a"), node("b")], [{"from": "b", "to": "b2"}], entry="b")
    document["nodes"].append(node("b2"))
    report = loader.validate(document)
    assert report.ok
    assert report.warnings == [
        "$.nodes[0]: node 'a' is unreachable from the entry node 'b'; it will never run"
    ]


@pytest.mark.parametrize(
    ("edges", "cycle"),
    [
        ([("a", "b"), ("b", "a")], "a -> b -> a"),
        ([("a", "a")], "a -> a"),
        ([("a", "b"), ("b", "c"), ("c", "b")], "b -> c -> b"),
    ],
)
def test_cycles_are_errors_unless_the_flow_allows_them(loader, edges, cycle):
    nodes = [node(i) for i in sorted({x for e in edges for x in e})]
    document = flow(nodes, [{"from": a, "to": b} for a, b in edges])
    found = problems(loader, document)
    assert len(found) == 1
    assert found[0].startswith(f"$.edges: the graph has a cycle ({cycle})")
    assert "allow_cycles" in found[0]
    document["allow_cycles"] = True
    document["limits"] = {"max_steps": 5}
    assert loader.validate(document).ok
    loader.load_flow(document)


def test_a_cycle_through_different_actions_is_still_a_cycle(loader):
    document = flow(
        [node("a"), node("b")],
        [
            {"from": "a", "to": "b", "condition": "go"},
            {"from": "b", "to": "a", "condition": "back"},
        ],
    )
    assert "cycle" in problems(loader, document)[0]


def test_an_allowed_loop_runs_until_the_node_leaves_it(loader):
    class Counter(Node):
        def post(self, backpack, prep_res, exec_res):
            n = backpack.unpack("n", 0) + 1
            backpack.pack("n", n)
            return "again" if n < 3 else "done"

    loader.register("counter", Counter)
    document = {
        "version": V,
        "allow_cycles": True,
        "nodes": [{"type": "counter", "id": "loop"}, node("end")],
        "edges": [
            {"from": "loop", "to": "loop", "condition": "again"},
            {"from": "loop", "to": "end", "condition": "done"},
        ],
    }
    backpack = Backpack()
    loader.load_flow(document).run(backpack)
    assert backpack.to_dict()["n"] == 3
    assert backpack.to_dict()["count.end"] == 1


def test_all_graph_problems_are_reported_together(loader):
    document = flow(
        [node("a"), node("a"), {"type": "nope", "id": "n"}],
        [{"from": "a", "to": "zz"}],
        entry="missing",
    )
    # an unknown type is a schema error: it is reported before the graph checks run
    assert problems(loader, document)[0].startswith("$.nodes[2].type: unknown node type 'nope'")
    document["nodes"].pop()
    found = problems(loader, document)
    assert found == [
        "$.nodes[1].id: duplicate node id 'a' (also $.nodes[0])",
        "$.edges[0].to: unknown node id 'zz' (nodes: 'a')",
        "$.entry: unknown node id 'missing'",
    ]


def test_an_invalid_when_names_the_edge(loader):
    found = problems(
        loader,
        flow(
            [node("a"), node("b"), node("c")],
            [
                {"from": "a", "to": "b", "when": "branch =="},
                {"from": "a", "to": "c", "when": {"nope": [1, 2]}},
            ],
        ),
    )
    assert len(found) == 2
    assert found[0].startswith("$.edges[0].when: invalid cel condition")
    assert found[1].startswith("$.edges[1].when: invalid jsonlogic condition")
    assert "unknown JSON Logic operation 'nope'" in found[1]


def test_an_empty_when_is_an_error(loader):
    found = problems(loader, flow([node("a"), node("b")], [{"from": "a", "to": "b", "when": " "}]))
    assert found == ["$.edges[0].when: the condition is empty"]


def test_conditions_without_a_language_plugin_fail_naming_the_edge():
    loader = FlowLoader(build_registry(plugins=[Nodes()], autoload=False))
    document = flow([node("a"), node("b")], [{"from": "a", "to": "b", "when": "x == 1"}])
    found = problems(loader, document)
    assert len(found) == 1
    assert found[0].startswith("$.edges[0].when: conditions in cel need a plugin")


# ------------------------------------------------------------------------------- nested flows


def subflow(node_id, nodes, edges=(), **extra):
    return {
        "type": "flow",
        "id": node_id,
        "params": {"nodes": list(nodes), "edges": list(edges), **extra},
    }


def test_problems_inside_nested_flows_have_nested_paths(loader):
    document = flow(
        [
            node("a"),
            subflow(
                "sub",
                [node("x"), node("x"), node("y")],
                [{"from": "x", "to": "a"}, {"from": "y", "to": "y"}],
                entry="nowhere",
            ),
        ],
        [{"from": "a", "to": "sub"}],
    )
    found = problems(loader, document)
    assert found == [
        "$.nodes[1].params.nodes[1].id: duplicate node id 'x' (also $.nodes[1].params.nodes[0])",
        "$.nodes[1].params.edges[0].to: unknown node id 'a' (nodes: 'x', 'y')",
        "$.nodes[1].params.entry: unknown node id 'nowhere'",
    ]


def test_ids_are_scoped_per_flow_level(loader):
    # the same id inside a nested flow and outside is fine: each flow is a scope of its own
    document = flow([node("a"), subflow("sub", [node("a")])], [{"from": "a", "to": "sub"}])
    loaded = loader.load_flow(document)
    assert loader.export_flow(loaded)["nodes"][1]["params"]["nodes"][0]["id"] == "a"


def test_outer_edges_cannot_reach_into_a_nested_flow(loader):
    document = flow([node("a"), subflow("sub", [node("inner")])], [{"from": "a", "to": "inner"}])
    assert problems(loader, document) == [
        "$.edges[0].to: unknown node id 'inner' (nodes: 'a', 'sub')"
    ]


def test_cycles_inside_nested_flows_follow_the_flows_allow_cycles(loader):
    inner = subflow(
        "sub", [node("x"), node("y")], [{"from": "x", "to": "y"}, {"from": "y", "to": "x"}]
    )
    found = problems(loader, flow([inner]))
    assert found[0].startswith("$.nodes[0].params.edges: the graph has a cycle (x -> y -> x)")
    assert loader.validate(flow([inner], allow_cycles=True)).ok


def test_unreachable_nodes_inside_nested_flows_are_warnings(loader):
    report = loader.validate(flow([subflow("sub", [node("x"), node("y")])]))
    assert report.ok
    assert report.warnings == [
        "$.nodes[0].params.nodes[1]: node 'y' is unreachable from the entry node 'x'; "
        "it will never run"
    ]


def test_a_nested_flow_needs_at_least_one_node(loader):
    found = problems(loader, flow([subflow("sub", [])]))
    assert len(found) == 1 and found[0].startswith("$.nodes[0].params.nodes")


@pytest.mark.parametrize(
    ("params", "expected"),
    [
        ({"nodes": [node("x")], "bogus": 1}, "$.nodes[0].params: Additional properties"),
        ({"edges": []}, "$.nodes[0].params: 'nodes' is a required property"),
        ({"nodes": [{"type": "step"}]}, "$.nodes[0].params.nodes[0]: 'id' is a required property"),
    ],
)
def test_nested_flow_params_are_validated(loader, params, expected):
    document = flow([{"type": "flow", "id": "sub", "params": params}])
    assert problems(loader, document)[0].startswith(expected)


def test_a_deeply_nested_flow_loads_runs_and_round_trips(loader):
    document = flow(
        [
            subflow(
                "level1",
                [subflow("level2", [subflow("level3", [node("leaf")])])],
                namespace_free=None,
            )
        ]
    )
    del document["nodes"][0]["params"]["namespace_free"]
    loaded = loader.load_flow(document)
    streamer = EventStreamer()
    backpack = Backpack()
    loaded.run(backpack, events=streamer)
    assert backpack.to_dict() == {"count.leaf": 1}
    exported = loader.export_json(loaded)
    assert loader.export_json(loader.load_flow(exported)) == exported


def test_fields_of_a_nested_flow_node_are_honoured_or_refused(loader):
    document = flow(
        [
            {
                "type": "flow",
                "id": "sub",
                "params": {"nodes": [node("x")]},
                "dependencies": ["missing-dependency"],
                "inputs": {"q": 1},
                "retry": {"max_retries": 3},
            }
        ]
    )
    try:
        loaded = loader.load_flow(document)
    except ConfigError:
        return
    exported = loader.export_flow(loaded)["nodes"][0]
    assert exported.get("dependencies") == ["missing-dependency"]
    assert exported.get("inputs") == {"q": 1}
    assert exported.get("retry") == {"max_retries": 3}
