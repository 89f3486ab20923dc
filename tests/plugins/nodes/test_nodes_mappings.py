"""Key mappings reach the first-party nodes' templates and rules: ``state.<name>`` reads
through the node's view, so a node mapping ``{"size": "n"}`` lets a router rule or an llm
prompt use ``state.size`` for the Backpack key ``n`` (and the read's event says so)."""

from __future__ import annotations

from backpackflow import Backpack, EventStreamer
from backpackflow.loader import FlowLoader


def test_a_router_rule_reads_a_mapped_name() -> None:
    doc = {
        "version": "2.0.0",
        "inputs": {"n": {"schema": {"type": "integer"}}},
        "outputs": ["pick"],
        "nodes": [
            {
                "type": "router",
                "id": "pick",
                "params": {"rule": "state.size > 3 ? 'big' : 'small'"},
                "mappings": {"size": "n"},
            }
        ],
    }
    flow = FlowLoader().load_flow(doc)
    events = EventStreamer()
    assert flow.run(Backpack(), inputs={"n": 5}, events=events) == {"pick": "big"}
    assert flow.run(Backpack(), inputs={"n": 1}) == {"pick": "small"}
    reads = [
        (e.payload.key, e.payload.read_as)
        for e in events.get_events()
        if e.type == "backpack_unpack" and e.node_id == "pick"
    ]
    # a rule's context holds the whole state (every key the node may read, the mapped names
    # among them): ``n`` is read as itself and as ``size``
    assert set(reads) == {("n", None), ("n", "size")}


def test_an_llm_prompt_reads_a_mapped_name() -> None:
    doc = {
        "version": "2.0.0",
        "inputs": {"question": {"schema": {"type": "string"}}},
        "outputs": ["answer"],
        "nodes": [
            {
                "type": "llm",
                "id": "answer",
                "params": {"provider": "offline", "prompt": "Q: {{ state.q }}", "cache": False},
                "mappings": {"q": "question"},
            }
        ],
    }
    flow = FlowLoader().load_flow(doc)
    result = flow.execute_sync(Backpack(), inputs={"question": "Why is the sky blue?"})
    assert result.ok, result.error
    prompt = next(
        e.payload.prep_result
        for e in result.events.get_events(run_id=result.run_id)
        if e.type == "prep_complete"
    )
    assert "Q: Why is the sky blue?" in str(prompt)
