"""Key mappings (issue 15): ``{"from": "search", "to": "analyze", "mappings": {"data":
"search_results"}}`` on an edge, or ``"mappings"`` on a node of any type: the node reads
``data`` and gets the value of ``search_results``. Permissions apply to the key read; events
and the trace say which key was read as which; the static dataflow check follows mappings;
bad mappings are errors naming the JSON path."""

from __future__ import annotations

import warnings
from typing import Any

import attrs
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from test_dataflow_check import KEYS, check_agrees_with_running

from backpackflow import AccessDenied, Backpack, ConfigError, EventStreamer, KeyNotFound, Node
from backpackflow.loader import FlowLoader
from backpackflow.plugins import build_registry
from backpackflow.runner import ContractViolation


class Search(Node):
    """Writes a fixed list under ``search_results`` (another package's key name)."""

    writes = {"search_results": list[str]}

    def post(self, backpack: Any, prep_res: Any, exec_res: Any) -> None:
        backpack.pack("search_results", ["alpha", "beta", "gamma"])


class Count(Node):
    """Counts the items under ``data_to_analyze`` (this package's key name) into ``count``."""

    reads = {"data_to_analyze": list[str]}
    writes = {"count": int}

    def prep(self, backpack: Any) -> Any:
        return backpack.unpack_required("data_to_analyze")

    def post(self, backpack: Any, prep_res: Any, exec_res: Any) -> None:
        backpack.pack("count", len(prep_res))


class Untyped(Node):
    """Declares no contract: reads ``text`` in prep and again in post, writes ``echo``."""

    def prep(self, backpack: Any) -> Any:
        return backpack.unpack("text")

    def post(self, backpack: Any, prep_res: Any, exec_res: Any) -> None:
        assert backpack.has("text") and "text" in backpack
        backpack.pack("echo", [prep_res, backpack.peek("text"), backpack.get_version("text")])


@attrs.frozen
class NumberParams:
    value: Any = 3


class Number(Node):
    """Writes ``params.value`` under ``number`` (declared an integer)."""

    Params = NumberParams
    writes = {"number": int}

    def post(self, backpack: Any, prep_res: Any, exec_res: Any) -> None:
        backpack.pack("number", self.params.value)


def loader() -> FlowLoader:
    loader = FlowLoader(build_registry(plugins=[], autoload=False))
    loader.register("search", Search)
    loader.register("count", Count)
    loader.register("untyped", Untyped)
    loader.register("number", Number)
    return loader


def flow_doc(**changes: Any) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "version": "2.0.0",
        "contracts": "strict",
        "outputs": ["count"],
        "nodes": [{"type": "search", "id": "search"}, {"type": "count", "id": "analyze"}],
        "edges": [
            {"from": "search", "to": "analyze", "mappings": {"data_to_analyze": "search_results"}}
        ],
    }
    doc.update(changes)
    return doc


def unpack_events(events: EventStreamer, node_id: str) -> list[dict[str, Any]]:
    return [
        e.to_json()["payload"]
        for e in events.get_events()
        if e.type.value == "backpack_unpack" and e.node_id == node_id
    ]


# ------------------------------------------------------------------------------- running


def test_an_edge_mapping_connects_two_nodes_with_different_key_names() -> None:
    flow = loader().load_flow(flow_doc())
    events = EventStreamer()
    backpack = Backpack()
    assert flow.run(backpack, events=events) == {"count": 3}
    # the event says which key was read as which; the Backpack is not copied into
    assert unpack_events(events, "analyze") == [
        {
            "key": "search_results",
            "access_granted": True,
            "reason": None,
            "found": True,
            "read_as": "data_to_analyze",
        }
    ]
    assert not backpack.has("data_to_analyze")
    prep = next(
        e for e in events.get_events() if e.type.value == "prep_complete" and e.node_id == "analyze"
    )
    assert prep.payload.reads == ["search_results"]


def test_a_node_mapping_works_for_a_type_without_contract_in_prep_and_post() -> None:
    doc = flow_doc(
        outputs=["echo"],
        nodes=[
            {"type": "search", "id": "search"},
            {"type": "untyped", "id": "echo", "mappings": {"text": "search_results"}},
        ],
        edges=[{"from": "search", "to": "echo"}],
    )
    flow = loader().load_flow(doc)
    backpack = Backpack({"text": "a key of the same name is not what the node reads"})
    result = flow.run(backpack)
    values = ["alpha", "beta", "gamma"]
    assert result == {"echo": [values, values, backpack.get_version("search_results")]}


def test_a_plain_read_keeps_its_event_shape_and_unmapped_nodes_keep_their_class() -> None:
    doc = flow_doc(
        outputs=["echo"],
        nodes=[{"type": "untyped", "id": "echo"}],
        edges=[],
        inputs={"text": {"schema": {"type": "string"}}},
    )
    flow = loader().load_flow(doc)
    (node,) = flow.nodes()
    assert type(node) is Untyped  # nothing bound: no per-run cost for nodes without mappings
    events = EventStreamer()
    flow.run(Backpack(), inputs={"text": "hi"}, events=events)
    assert unpack_events(events, "echo")[0] == {
        "key": "text",
        "access_granted": True,
        "reason": None,
        "found": True,
    }


def test_mappings_are_not_chained_and_writes_are_not_mapped() -> None:
    doc = flow_doc(
        outputs=["echo", "text"],
        inputs={"a": {"schema": True}, "b": {"schema": True}},
        nodes=[{"type": "untyped", "id": "echo", "mappings": {"text": "a", "a": "b"}}],
        edges=[],
    )
    flow = loader().load_flow(doc)
    result = flow.run(Backpack(), inputs={"a": "from a", "b": "from b"})
    assert result["echo"][0] == "from a"  # text -> a, not on to b
    assert "text" not in result  # the node wrote only its own key


def test_a_mapping_never_widens_what_a_node_may_read() -> None:
    flow = loader().load_flow(flow_doc())
    backpack = Backpack()
    backpack.register_permissions("analyze", read=["data_to_analyze"])
    with pytest.raises(AccessDenied) as caught:
        flow.run(backpack)
    message = str(caught.value)
    assert "'search_results'" in message
    assert "mapped from 'data_to_analyze' by $.edges[0].mappings.data_to_analyze" in message
    assert caught.value.key == "search_results"

    allowed = Backpack()
    allowed.register_permissions("analyze", read=["search_results"])
    assert flow.run(allowed) == {"count": 3}


def test_a_missing_mapped_key_at_run_time_names_the_mapping() -> None:
    doc = flow_doc(contracts="advisory", nodes=[{"type": "count", "id": "analyze"}], edges=[])
    doc["nodes"][0]["mappings"] = {"data_to_analyze": "search_results"}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        flow = loader().load_flow(doc)
    with pytest.raises(KeyNotFound) as caught:
        flow.run(Backpack())
    assert "key 'search_results' is not in the Backpack" in str(caught.value)
    assert "mapped from 'data_to_analyze' by $.nodes[0].mappings.data_to_analyze" in str(
        caught.value
    )


def test_a_value_read_through_a_mapping_is_checked_against_the_readers_contract() -> None:
    doc = flow_doc(
        contracts="strict",
        inputs={"raw": {"schema": {"type": "array"}}},
        nodes=[{"type": "count", "id": "analyze", "mappings": {"data_to_analyze": "raw"}}],
        edges=[],
    )
    flow = loader().load_flow(doc)
    with pytest.raises(ContractViolation) as caught:
        flow.run(Backpack(), inputs={"raw": ["ok", 2]})
    assert caught.value.key == "data_to_analyze"
    assert "(mapped to key 'raw')" in str(caught.value)
    assert caught.value.problems == ["data_to_analyze[1]: 2 is not of type 'string'"]


def test_mappings_inside_a_nested_flow() -> None:
    inner = {
        "nodes": [{"type": "search", "id": "search"}, {"type": "count", "id": "analyze"}],
        "edges": [
            {"from": "search", "to": "analyze", "mappings": {"data_to_analyze": "search_results"}}
        ],
    }
    doc = flow_doc(nodes=[{"type": "flow", "id": "sub", "params": inner}], edges=[])
    assert loader().load_flow(doc).run(Backpack()) == {"count": 3}


def test_load_export_round_trip_keeps_edge_and_node_mappings() -> None:
    doc = flow_doc(
        outputs=["count", "echo"],
        nodes=[
            {"type": "search", "id": "search"},
            {"type": "count", "id": "analyze"},
            {"type": "untyped", "id": "echo", "mappings": {"text": "count"}},
        ],
        edges=[
            {"from": "search", "to": "analyze", "mappings": {"data_to_analyze": "search_results"}},
            {"from": "analyze", "to": "echo"},
        ],
    )
    ld = loader()
    exported = ld.export_flow(ld.load_flow(doc))
    assert exported["edges"][0]["mappings"] == {"data_to_analyze": "search_results"}
    assert exported["nodes"][2]["mappings"] == {"text": "count"}
    assert exported["outputs"] == ["count", "echo"] and exported["contracts"] == "strict"
    assert ld.export_json(ld.load_flow(exported)) == ld.export_json(ld.load_flow(doc))


# ------------------------------------------------------------------------------- the check


def errors(doc: dict[str, Any]) -> list[str]:
    return loader().validate(doc).errors


def test_a_read_satisfied_by_a_mapping_passes_and_without_it_fails() -> None:
    assert errors(flow_doc()) == []
    doc = flow_doc(edges=[{"from": "search", "to": "analyze"}])
    assert errors(doc) == [
        "$.nodes[1]: node 'analyze' (count) reads key 'data_to_analyze'; no flow input and no "
        "node writes it"
    ]


def test_a_mapping_whose_key_no_one_writes_names_both_nodes_the_key_and_the_path() -> None:
    doc = flow_doc(
        edges=[{"from": "search", "to": "analyze", "mappings": {"data_to_analyze": "results"}}]
    )
    assert errors(doc) == [
        "$.edges[0].mappings.data_to_analyze: node 'analyze' (count) reads 'data_to_analyze' "
        "as key 'results' (the mapping on the edge 'search' -> 'analyze'); no flow input and no "
        "node writes it"
    ]


def test_a_mapped_key_written_on_one_branch_only_fails() -> None:
    doc = flow_doc(
        nodes=[
            {"type": "number", "id": "start"},
            {"type": "search", "id": "search"},
            {"type": "count", "id": "analyze"},
        ],
        edges=[
            {"from": "start", "to": "search", "condition": "deep"},
            {"from": "start", "to": "analyze"},
            {"from": "search", "to": "analyze", "mappings": {"data_to_analyze": "search_results"}},
        ],
    )
    assert errors(doc) == [
        "$.edges[2].mappings.data_to_analyze: node 'analyze' (count) reads 'data_to_analyze' "
        "as key 'search_results' (the mapping on the edge 'search' -> 'analyze'); node(s) "
        "'search' write it, but not on every path that reaches 'analyze'"
    ]


def test_mapped_types_must_be_compatible_where_both_declare() -> None:
    doc = flow_doc(
        nodes=[{"type": "number", "id": "num"}, {"type": "count", "id": "analyze"}],
        edges=[{"from": "num", "to": "analyze", "mappings": {"data_to_analyze": "number"}}],
    )
    assert errors(doc) == [
        "$.edges[0].mappings.data_to_analyze: node 'analyze' (count) reads 'data_to_analyze' "
        "as key 'number' (the mapping on the edge 'num' -> 'analyze'), expecting array, but "
        "node 'num' writes integer"
    ]


def test_mapping_a_name_the_node_does_not_read_is_an_error_when_strict() -> None:
    edges = [{"from": "search", "to": "analyze", "mappings": {"data": "search_results"}}]
    expected = (
        "$.edges[0].mappings.data: node 'analyze' (count) reads no key 'data' (it reads: "
        "'data_to_analyze'), so the mapping would never be used"
    )
    assert expected in errors(flow_doc(edges=edges))
    report = loader().validate(flow_doc(edges=edges, contracts="advisory"))
    assert report.errors == [] and expected in report.warnings


def test_a_type_without_contract_may_map_any_name_but_the_key_must_be_written() -> None:
    nodes = [{"type": "search", "id": "search"}, {"type": "untyped", "id": "echo"}]
    ok = [{"from": "search", "to": "echo", "mappings": {"text": "search_results"}}]
    assert errors(flow_doc(outputs=[], nodes=nodes, edges=ok)) == []
    bad = [{"from": "search", "to": "echo", "mappings": {"text": "nowhere"}}]
    assert errors(flow_doc(outputs=[], nodes=nodes, edges=bad)) == [
        "$.edges[0].mappings.text: node 'echo' (untyped) reads 'text' as key 'nowhere' (the "
        "mapping on the edge 'search' -> 'echo'); no flow input and no node writes it"
    ]


def test_one_name_mapped_to_two_keys_names_both_places() -> None:
    doc = flow_doc()
    doc["nodes"][1]["mappings"] = {"data_to_analyze": "search_results"}  # the same: fine
    assert errors(doc) == []
    doc["nodes"][1]["mappings"] = {"data_to_analyze": "other"}
    assert (
        "$.edges[0].mappings.data_to_analyze: node 'analyze' reads 'data_to_analyze' as key "
        "'search_results' here, but as key 'other' by $.nodes[1].mappings.data_to_analyze (on "
        "the node); a name is read as one key"
    ) in errors(doc)


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        (
            {"edges": [{"from": "search", "to": "analyze", "mappings": {"data_to_analyze": 3}}]},
            "$.edges[0].mappings.data_to_analyze: 3 is not of type 'string'",
        ),
        (
            {"edges": [{"from": "search", "to": "analyze", "mappings": ["data_to_analyze"]}]},
            "$.edges[0].mappings: ['data_to_analyze'] is not of type 'object'",
        ),
        (
            {"edges": [{"from": "search", "to": "analyze", "mappings": {" x": "y"}}]},
            "$.edges[0].mappings: ' x' does not match",
        ),
        (
            {"edges": [{"from": "search", "to": "nowhere", "mappings": {"a": "b"}}]},
            "$.edges[0].to: unknown node id 'nowhere'",
        ),
        (
            {
                "edges": [
                    {
                        "from": "search",
                        "to": "analyze",
                        "mappings": {"search_results": "search_results"},
                    }
                ]
            },
            "$.edges[0].mappings.search_results: maps 'search_results' onto itself",
        ),
    ],
)
def test_bad_mappings_are_errors_with_their_json_path(
    change: dict[str, Any], expected: str
) -> None:
    found = errors(flow_doc(**change))
    assert any(e.startswith(expected) for e in found), found
    with pytest.raises(ConfigError) as caught:
        loader().load_flow(flow_doc(**change))
    assert expected in str(caught.value)


def test_a_nested_flow_takes_no_mappings_itself() -> None:
    inner = {"nodes": [{"type": "search", "id": "search"}]}
    doc = flow_doc(
        outputs=[],
        nodes=[
            {"type": "search", "id": "first"},
            {"type": "flow", "id": "sub", "params": inner, "mappings": {"a": "b"}},
        ],
        edges=[{"from": "first", "to": "sub", "mappings": {"c": "search_results"}}],
    )
    found = errors(doc)
    assert any(
        e.startswith("$.nodes[1].mappings: a nested flow node takes no mappings") for e in found
    )
    assert any(
        e.startswith("$.edges[0].mappings: the edge 'first' -> 'sub' leads into a nested flow")
        for e in found
    )


def test_input_names_and_outputs_must_be_backpack_keys() -> None:
    doc = flow_doc(inputs={"a*": {"schema": True}}, outputs=[" count"])
    found = errors(doc)
    assert (
        "$.outputs[0]: ' count' is not a Backpack key (keys are non-empty strings without "
        "surrounding white space or '*')" in found
    )
    assert any(e.startswith("$.inputs: the input name 'a*' is not a Backpack key") for e in found)


# ------------------------------------------------------------------------------- property


@st.composite
def mapped_dags(draw: Any) -> dict[str, Any]:
    """Random DAGs of nodes reading and writing random keys, some reads mapped to other keys
    (on the node, or on one of the edges into it)."""
    size = draw(st.integers(1, 6))
    keys = st.lists(st.sampled_from(KEYS), unique=True, max_size=2)
    nodes: list[dict[str, Any]] = [
        {"type": "keys", "id": f"n{i}", "params": {"reads": draw(keys), "writes": draw(keys)}}
        for i in range(size)
    ]
    edges = [
        {"from": f"n{i}", "to": f"n{j}"}
        for i in range(size)
        for j in range(i + 1, size)
        if draw(st.booleans())
    ]
    for node in nodes:
        mappings = {
            name: draw(st.sampled_from([k for k in KEYS if k != name]))
            for name in node["params"]["reads"]
            if draw(st.booleans())
        }
        if not mappings:
            continue
        incoming = [e for e in edges if e["to"] == node["id"]]
        if incoming and draw(st.booleans()):
            draw(st.sampled_from(incoming))["mappings"] = mappings
        else:
            node["mappings"] = mappings
    inputs = {k: {"default": 1} for k in draw(keys)}
    return {
        "version": "2.0.0",
        "contracts": "strict",
        "inputs": inputs,
        "nodes": nodes,
        "edges": edges,
    }


@settings(max_examples=60, deadline=None)
@given(mapped_dags())
def test_the_static_check_agrees_with_running_random_mapped_dags(doc: dict[str, Any]) -> None:
    check_agrees_with_running(doc)
