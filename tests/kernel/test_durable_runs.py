"""Durable runs beyond the conformance suite: what cannot resume says why, options that need a
checkpointer say so, flows that cannot be checkpointed are refused, and a resumed run's events
say which node runs again."""

from __future__ import annotations

import itertools

import pytest

from backpackflow import (
    Backpack,
    CheckpointError,
    FileCheckpointer,
    FlowError,
    MemoryCheckpointer,
    Node,
)
from backpackflow.runner import Flow


class Put(Node):
    def __init__(self, node_id: str, fail: dict[str, bool] | None = None) -> None:
        super().__init__(id=node_id)
        self.fail = fail if fail is not None else {}

    def exec(self, prep_res):
        if self.fail.pop(self.id, False):
            raise ValueError(f"{self.id} failed")
        return self.id

    def post(self, backpack, prep_res, exec_res):
        backpack.pack(self.id, exec_res)


def chain(*ids: str, fail: dict[str, bool] | None = None) -> Flow:
    nodes = [Put(i, fail) for i in ids]
    for a, b in itertools.pairwise(nodes):
        a >> b
    return Flow(nodes[0])


def test_a_failed_run_resumes_at_the_failed_node_and_says_so():
    checkpoints = MemoryCheckpointer()
    failed = chain("a", "b", "c", fail={"b": True}).execute_sync(
        checkpointer=checkpoints, run_id="r"
    )
    assert failed.status == "failed"
    assert checkpoints.load("r").position["pending"] == ["b"]

    resumed = chain("a", "b", "c").execute_sync(checkpointer=checkpoints, run_id="r")

    assert resumed.ok, resumed.error
    events = resumed.events.get_events()
    assert events[0].seq == checkpoints.load("r").event_seq - len(events) + 1
    log = next(e for e in events if e.type.value == "log")
    assert log.payload.data["rerun"] == "b" and "node 'b' runs again" in log.payload.message
    assert [e.node_id for e in events if e.type.value == "node_start"] == ["b", "c"]
    assert [e.step for e in events if e.type.value == "node_start"] == [2, 3]


def test_a_changed_flow_cannot_resume_and_a_finished_run_has_nothing_to_resume():
    checkpoints = MemoryCheckpointer()
    chain("a", "b", fail={"b": True}).execute_sync(checkpointer=checkpoints, run_id="r")

    with pytest.raises(CheckpointError, match="changed since it was checkpointed"):
        chain("a", "x").execute_sync(checkpointer=checkpoints, run_id="r")
    with pytest.raises(CheckpointError, match="do not pass one"):
        chain("a", "b").execute_sync(Backpack({"k": 1}), checkpointer=checkpoints, run_id="r")
    with pytest.raises(CheckpointError, match="inputs it started with"):
        chain("a", "b").execute_sync(checkpointer=checkpoints, run_id="r", inputs={"q": 1})
    with pytest.raises(CheckpointError, match="not waiting for an answer"):
        chain("a", "b").execute_sync(checkpointer=checkpoints, run_id="r", answer=1)

    assert chain("a", "b").execute_sync(checkpointer=checkpoints, run_id="r").ok
    with pytest.raises(CheckpointError, match="has already succeeded"):
        chain("a", "b").execute_sync(checkpointer=checkpoints, run_id="r")


def test_durable_options_need_a_checkpointer_and_a_known_mode():
    with pytest.raises(FlowError, match="'answer' needs a checkpointer"):
        chain("a").execute_sync(answer={"ok": True})
    with pytest.raises(FlowError, match="'durability' needs a checkpointer"):
        chain("a").run(durability="commit")
    with pytest.raises(FlowError, match="durability 'always': expected one of commit, node"):
        chain("a").execute_sync(checkpointer=MemoryCheckpointer(), durability="always")


def test_parallel_flows_are_refused_with_the_reason():
    flow = chain("a", "b")
    flow.parallel = True
    with pytest.raises(FlowError, match="a parallel flow cannot be checkpointed"):
        flow.execute_sync(checkpointer=MemoryCheckpointer())


def test_a_fork_of_an_unknown_commit_or_run_names_it():
    checkpoints = MemoryCheckpointer()
    flow = chain("a", "b")
    flow.execute_sync(checkpointer=checkpoints, run_id="r")
    with pytest.raises(CheckpointError, match="run 'r' has no commit 'nope'"):
        flow.fork(checkpoints, "r", "nope")
    with pytest.raises(CheckpointError, match="run 'other' has no checkpoint to fork"):
        flow.fork(checkpoints, "other")


def test_a_fork_says_where_it_comes_from_and_that_nothing_runs_again():
    checkpoints = MemoryCheckpointer()
    source = chain("a", "b", "c").execute_sync(checkpointer=checkpoints, run_id="r")
    at_a = source.backpack.get_history(key="a")[0].commit_id
    chain("a", "b", "c").fork(checkpoints, "r", at_a, new_run_id="f")

    forked = chain("a", "b", "c").execute_sync(checkpointer=checkpoints, run_id="f")

    assert forked.ok, forked.error
    log = next(e for e in forked.events.get_events() if e.type.value == "log")
    assert log.payload.message == (
        f"run forked from run 'r' at commit {at_a!r}, after step 1; it goes on at node 'b'"
    )
    assert log.payload.data["rerun"] is None
    assert log.payload.data["forked_from"] == {"run_id": "r", "commit_id": at_a, "seq": 1}


def test_a_fork_cannot_be_forked_at_a_commit_it_inherited():
    checkpoints = MemoryCheckpointer()
    source = chain("a", "b", "c").execute_sync(checkpointer=checkpoints, run_id="r")
    at_a, at_b = (source.backpack.get_history(key=k)[0].commit_id for k in ("a", "b"))
    chain("a", "b", "c").fork(checkpoints, "r", at_b, new_run_id="f")

    with pytest.raises(CheckpointError, match=r"inherited from run 'r'.*fork run 'r' at it"):
        chain("a", "b", "c").fork(checkpoints, "f", at_a, new_run_id="g")
    # at the commit it was forked at, it can: the fork's own start is that boundary
    chain("a", "b", "c").fork(checkpoints, "f", at_b, new_run_id="h")
    assert chain("a", "b", "c").execute_sync(checkpointer=checkpoints, run_id="h").ok


class Odd(Node):
    """Packs text UTF-8 cannot encode (a lone surrogate) and a NUL character."""

    def post(self, backpack, prep_res, exec_res):
        backpack.pack("odd", {"text": "half \ud800 a pair", "nul": "a\x00b"})


def test_text_utf8_cannot_encode_is_checkpointed_and_resumed_exactly(tmp_path):
    checkpoints = FileCheckpointer(tmp_path)
    first, later = Odd(id="odd"), Put("later", fail={"later": True})
    first >> later
    failed = Flow(first).execute_sync(checkpointer=checkpoints, run_id="r")
    assert failed.status == "failed"
    restored = checkpoints.load("r").backpack()
    assert restored.unpack("odd") == {"text": "half \ud800 a pair", "nul": "a\x00b"}
    first, later = Odd(id="odd"), Put("later")
    first >> later
    resumed = Flow(first).execute_sync(checkpointer=checkpoints, run_id="r")
    assert resumed.ok, resumed.error
    assert resumed.backpack.unpack("odd")["text"] == "half \ud800 a pair"
