"""The ``approval`` node: the run pauses until it is resumed with an answer; approval,
rejection and a timeout are edges."""

from __future__ import annotations

import time

import pytest
from nodes_support import flow_doc, load, router

from backpackflow import CheckpointError, MemoryCheckpointer, RunPaused


def review_flow(**params):
    """review (approval) -> publish | discard | escalate, by its action."""
    return flow_doc(
        {"type": "approval", "id": "review", "params": {"prompt": "Publish it?", **params}},
        router("publish", "'published'"),
        router("discard", "'discarded'"),
        router("escalate", "'escalated'"),
        edges=[
            {"from": "review", "to": "publish", "condition": "approved"},
            {"from": "review", "to": "discard", "condition": "rejected"},
            {"from": "review", "to": "escalate", "condition": "timeout"},
        ],
    )


def ran_nodes(result):
    return [e.node_id for e in result.events.get_events() if e.type.value == "node_end"]


@pytest.mark.parametrize(("approved", "then"), [(True, "publish"), (False, "discard")])
def test_the_run_pauses_then_takes_the_edge_of_the_answer(approved, then):
    flow = load(review_flow())
    checkpoints = MemoryCheckpointer()

    paused = flow.execute_sync(checkpointer=checkpoints, run_id="r1")

    assert paused.status == "paused"
    assert isinstance(paused.error, RunPaused)
    assert paused.error.prompt == "Publish it?"
    asked = [e for e in paused.events.get_events() if e.type.value == "custom"]
    assert asked[0].node_id == "review" and asked[0].payload["name"] == "interrupt"
    assert paused.events.get_events()[-1].payload.status == "paused"
    assert checkpoints.load("r1").status == "paused"

    answer = {"approved": approved, "comment": "looks fine"}
    done = flow.execute_sync(checkpointer=checkpoints, run_id="r1", answer=answer)

    assert done.status == "succeeded", done.error
    assert ran_nodes(done) == ["review", then]
    assert done.backpack.peek("review") == {**answer, "timed_out": False}
    assert checkpoints.load("r1").status == "succeeded"


def test_an_answer_that_breaks_the_schema_is_refused_and_the_run_stays_paused():
    flow = load(review_flow())
    checkpoints = MemoryCheckpointer()
    flow.execute_sync(checkpointer=checkpoints, run_id="r1")

    with pytest.raises(CheckpointError, match=r"answer\.approved: 'yes' is not of type 'boolean'"):
        flow.execute_sync(checkpointer=checkpoints, run_id="r1", answer={"approved": "yes"})
    with pytest.raises(CheckpointError, match="waiting for an answer"):
        flow.execute_sync(checkpointer=checkpoints, run_id="r1")

    assert checkpoints.load("r1").status == "paused"


def test_a_resume_after_the_timeout_without_an_answer_takes_the_timeout_edge():
    flow = load(review_flow(timeout=0.01))
    checkpoints = MemoryCheckpointer()
    flow.execute_sync(checkpointer=checkpoints, run_id="r1")
    time.sleep(0.02)

    done = flow.execute_sync(checkpointer=checkpoints, run_id="r1")

    assert done.status == "succeeded", done.error
    assert ran_nodes(done) == ["review", "escalate"]
    assert done.backpack.peek("review")["timed_out"] is True
