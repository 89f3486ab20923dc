"""The static dataflow check (issue 15): every key a node's contract reads is written by a flow
input or an upstream node on every path that reaches it, with compatible types; strict flows
fail to load, advisory ones warn. A Hypothesis test runs random DAGs: the check agrees with what
running them does."""

from __future__ import annotations

import warnings
from typing import Any

import attrs
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from backpackflow import Backpack, ConfigError, Node
from backpackflow.loader import FlowLoader
from backpackflow.plugins import build_registry
from backpackflow.runner import ContractViolation


@attrs.frozen
class KeysParams:
    reads: list[str] = attrs.field(factory=list)
    writes: list[str] = attrs.field(factory=list)


class KeysNode(Node):
    """Reads every key of ``params.reads`` (a missing one fails the run), writes
    ``params.writes``."""

    Params = KeysParams

    def prep(self, backpack: Any) -> Any:
        return [backpack.unpack_required(k) for k in self.params.reads]

    def post(self, backpack: Any, prep_res: Any, exec_res: Any) -> None:
        for key in self.params.writes:
            backpack.pack(key, 1)


class Source(Node):
    reads: dict[str, Any] = {}
    writes = {"{key}": int}


class Reader(Node):
    reads = {"{key}": str}


@attrs.frozen
class KeyParams:
    key: str


Source.Params = KeyParams  # type: ignore[attr-defined]
Reader.Params = KeyParams  # type: ignore[attr-defined]

KEYS = ["a", "b", "c"]


def keys_loader() -> FlowLoader:
    loader = FlowLoader(build_registry(plugins=[], autoload=False))
    loader.register("src", Source)
    loader.register("reader", Reader)
    return loader


def test_a_read_no_one_writes_fails_validate_naming_both_ends() -> None:
    loader = keys_loader()
    doc = {
        "version": "2.0.0",
        "contracts": "strict",
        "nodes": [
            {"type": "src", "id": "pick", "params": {"key": "other"}},
            {"type": "src", "id": "search", "params": {"key": "results"}},
            {"type": "reader", "id": "analyze", "params": {"key": "results"}},
        ],
        "edges": [
            {"from": "pick", "to": "search", "condition": "deep"},
            {"from": "pick", "to": "analyze", "condition": "shallow"},
            {"from": "search", "to": "analyze"},
        ],
    }
    report = loader.validate(doc)
    assert report.errors == [
        "$.nodes[2]: node 'analyze' (reader) reads key 'results'; node(s) 'search' write it, "
        "but not on every path that reaches 'analyze'"
    ]
    doc["nodes"][1]["params"]["key"] = "elsewhere"
    assert loader.validate(doc).errors == [
        "$.nodes[2]: node 'analyze' (reader) reads key 'results'; no flow input and no node "
        "writes it"
    ]
    with pytest.raises(ConfigError, match="reads key 'results'"):
        loader.load_flow(doc)


def test_types_must_agree_where_both_sides_declare_them() -> None:
    doc = {
        "version": "2.0.0",
        "contracts": "strict",
        "nodes": [
            {"type": "src", "id": "count", "params": {"key": "n"}},
            {"type": "reader", "id": "show", "params": {"key": "n"}},
        ],
        "edges": [{"from": "count", "to": "show"}],
    }
    assert keys_loader().validate(doc).errors == [
        "$.nodes[1]: node 'show' (reader) reads key 'n' as string, but node 'count' writes integer"
    ]


def test_an_input_provides_a_key_and_advisory_flows_only_warn() -> None:
    loader = keys_loader()
    doc = {
        "version": "2.0.0",
        "inputs": {"q": {"schema": {"type": "string"}}},
        "nodes": [{"type": "reader", "id": "show", "params": {"key": "q"}}],
    }
    assert loader.validate(doc).ok
    doc["nodes"][0]["params"]["key"] = "missing"
    assert not loader.validate(doc).ok
    doc["contracts"] = "advisory"
    report = loader.validate(doc)
    assert report.ok and "reads key 'missing'" in report.warnings[0]


def test_keys_cross_nested_flow_boundaries_both_ways() -> None:
    """An inner node reads what an outer node wrote; an outer node after the nested flow reads
    what an inner node wrote; a read nothing provides is named by its path inside the nesting."""
    doc = {
        "version": "2.0.0",
        "contracts": "strict",
        "nodes": [
            {"type": "src", "id": "outer_source", "params": {"key": "a"}},
            {
                "type": "flow",
                "id": "inner",
                "params": {
                    "nodes": [
                        {"type": "reader", "id": "inner_reader", "params": {"key": "a"}},
                        {"type": "src", "id": "inner_source", "params": {"key": "b"}},
                    ],
                    "edges": [{"from": "inner_reader", "to": "inner_source"}],
                },
            },
            {"type": "reader", "id": "after", "params": {"key": "b"}},
        ],
        "edges": [{"from": "outer_source", "to": "inner"}, {"from": "inner", "to": "after"}],
    }
    # the types differ on purpose (src writes integers, reader reads strings): both reads are
    # found, through the nesting, with the writer each one sees
    assert keys_loader().validate(doc).errors == [
        "$.nodes[1].params.nodes[0]: node 'inner_reader' (reader) reads key 'a' as string, "
        "but node 'outer_source' writes integer",
        "$.nodes[2]: node 'after' (reader) reads key 'b' as string, but node 'inner_source' "
        "writes integer",
    ]
    doc["nodes"][1]["params"]["nodes"][0]["params"]["key"] = "nowhere"
    assert keys_loader().validate(doc).errors[0] == (
        "$.nodes[1].params.nodes[0]: node 'inner_reader' (reader) reads key 'nowhere'; no flow "
        "input and no node writes it"
    )


# ------------------------------------------------------------------------------- property


@st.composite
def dags(draw: Any) -> dict[str, Any]:
    size = draw(st.integers(1, 6))
    keys = st.lists(st.sampled_from(KEYS), unique=True, max_size=2)
    nodes = [
        {"type": "keys", "id": f"n{i}", "params": {"reads": draw(keys), "writes": draw(keys)}}
        for i in range(size)
    ]
    edges = [
        {"from": f"n{i}", "to": f"n{j}"}
        for i in range(size)
        for j in range(i + 1, size)
        if draw(st.booleans())
    ]
    inputs = {k: {"default": 1} for k in draw(keys)}
    doc = {"version": "2.0.0", "inputs": inputs, "nodes": nodes, "edges": edges}
    return {**doc, "contracts": "strict"}


@settings(max_examples=60, deadline=None)
@given(dags())
def test_the_static_check_agrees_with_running_random_dags(doc: dict[str, Any]) -> None:
    check_agrees_with_running(doc)


def check_agrees_with_running(doc: dict[str, Any]) -> None:
    """A flow the static check accepts runs; one it refuses runs only through a race."""
    loader = FlowLoader(build_registry(plugins=[], autoload=False))
    for node in doc["nodes"]:  # each node's contract: the keys its params name
        node["type"] = _type_for(loader, node["params"]["reads"], node["params"]["writes"])
    report = loader.validate(doc)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # unreachable nodes
        flow = loader.load_flow({**doc, "contracts": "advisory"})  # runs whatever the check says
    result = flow.execute_sync(Backpack())
    if report.ok:
        assert result.ok, result.error
    elif result.ok:
        # refused, yet it ran: only a read of a key a sibling branch writes, which the run met
        # because that branch happened to run first (a race the check refuses), never a read of
        # a key no node on any path writes
        assert all("not on every path" in e for e in report.errors), report.errors


def _type_for(loader: FlowLoader, reads: list[str], writes: list[str]) -> str:
    """A node type whose contract reads ``reads`` and writes ``writes``."""
    name = f"keys-{'.'.join(reads)}-{'.'.join(writes)}"
    if name not in loader._local:
        loader.register(
            name,
            KeysNode,
            reads={k: {"type": "integer"} for k in reads},
            writes={k: {"type": "integer"} for k in writes},
        )
    return name


# ------------------------------------------------------------------------------- run time


def test_a_value_breaking_its_contract_at_run_time_names_node_key_and_path() -> None:
    loader = FlowLoader(build_registry(plugins=[], autoload=False))
    schema = {
        "type": "object",
        "properties": {"tags": {"type": "array", "items": {"type": "string"}}},
    }
    loader.register("tags", KeysNode, reads={"doc": schema}, writes={"out": {"type": "string"}})
    doc = {
        "version": "2.0.0",
        "inputs": {"doc": {}},
        "nodes": [
            {"type": "tags", "id": "tagger", "params": {"reads": ["doc"], "writes": ["out"]}}
        ],
    }
    flow = loader.load_flow(doc)
    result = flow.execute_sync(Backpack(), inputs={"doc": {"tags": ["a", 3]}})
    assert isinstance(result.error, ContractViolation)
    assert (result.error.node_id, result.error.key) == ("tagger", "doc")
    assert str(result.error) == (
        "node 'tagger' reads key 'doc', which breaks its data contract: doc.tags[1]: 3 is not "
        "of type 'string'"
    )
    # its own write: KeysNode packs 1 where the contract says a string
    result = flow.execute_sync(Backpack(), inputs={"doc": {"tags": ["a"]}})
    assert "node 'tagger' wrote key 'out', which breaks its data contract: out: 1 is not" in str(
        result.error
    )
    advisory = loader.load_flow({**doc, "contracts": "advisory"})
    result = advisory.execute_sync(Backpack(), inputs={"doc": {"tags": [3]}})
    assert result.ok
    logs = [e for e in result.events.get_events(run_id=result.run_id) if e.type == "log"]
    assert [e.payload.level for e in logs] == ["warning", "warning"]
    assert logs[0].node_id == "tagger" and "doc.tags[0]" in logs[0].payload.message
