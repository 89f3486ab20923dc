"""The SQL store as a Checkpointer: the checkpointer conformance suite
(tests/checkpointer_conformance.py) on SQLite and PostgreSQL, and what the store adds (the
bytes a checkpoint takes; the ``canceled`` step status of migration 0006)."""

from __future__ import annotations

import pytest

from backpackflow import Backpack, Flow, Node
from checkpointer_conformance import *  # noqa: F403 - the suite's tests run here


@pytest.fixture
def checkpointer(store):
    return store


class Chat(Node):
    def __init__(self, turns: int) -> None:
        super().__init__(id="chat")
        self.turns = turns

    def post(self, backpack, prep_res, exec_res):
        turn = backpack.unpack("turn", 0) + 1
        backpack.pack("turn", turn)
        backpack.append("messages", [{"role": "user", "content": f"message {turn} " * 10}])
        return "again" if turn < self.turns else "done"


def chat_checkpoint_size(store, turns: int) -> int:
    node = Chat(turns)
    node - "again" >> node
    node - "done" >> None
    run_id = f"chat-{turns}"
    result = Flow(node, max_steps=1000).execute_sync(Backpack(), checkpointer=store, run_id=run_id)
    assert result.ok, result.error
    loaded = store.load(run_id)
    assert loaded.backpack(loaded.last_seq).peek("messages") == result.backpack.peek("messages")
    return store.checkpoint_size(run_id)


def test_a_chat_checkpoint_grows_linearly_with_what_was_appended(store):
    # each step stores its delta (one message, the counter, the position), never the chat so
    # far: twice the turns take twice the bytes (full copies per step would take four times)
    short, long = chat_checkpoint_size(store, 100), chat_checkpoint_size(store, 200)
    assert 1.9 < long / short < 2.2


def test_a_step_stopped_by_a_cancel_is_stored_canceled_not_failed(store, run, trace):
    t = trace(run["id"])
    store.mark_running(run["id"])
    store.append_events(
        run["id"],
        [
            t.event("run_start", {"flow_name": "f", "inputs": {}, "limits": {}}),
            t.event("node_start", {"node_name": "Slow", "node_type": "Node"}, step=1),
            t.event(
                "error",
                {"phase": "exec", "error": "canceled", "error_type": "CancelledError"},
                step=1,
            ),
            t.event("run_end", {"status": "canceled", "duration_ms": 5.0, "node_count": 1}),
        ],
    )
    store.finish_run(run["id"], "canceled", "canceled through the API")

    (step,) = store.get_run(run["id"])["steps"]
    assert (step["status"], step["error"]) == ("canceled", "CancelledError: canceled")
