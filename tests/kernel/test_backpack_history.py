import gc
import tracemalloc

import pytest

from backpackflow import Backpack, Change, CommitEvicted, CommitNotFound, InvalidSetting
from backpackflow.ids import id_time


def test_every_write_is_a_commit_with_full_metadata():
    bp = Backpack()
    c1 = bp.pack("a", 1, node_id="n1", node_name="First", namespace="ns")
    c2 = bp.append("b", [1], node_id="n2")
    c3 = bp.delete("a", node_id="n3")
    history = bp.get_history()
    assert history == [c1, c2, c3]
    assert [c.seq for c in history] == [1, 2, 3]
    assert [c.op for c in history] == ["pack", "append", "delete"]
    assert c1.parent_id is None and c2.parent_id == c1.commit_id and c3.parent_id == c2.commit_id
    assert (c1.node_id, c1.node_name, c1.namespace, c1.key, c1.version) == (
        "n1",
        "First",
        "ns",
        "a",
        1,
    )
    assert c3.version == 2
    assert bp.head is c3


def test_a_long_history_of_scalars_leaves_the_garbage_collector_nothing_to_traverse():
    # a 100,000-node run keeps 100,000 commits: each one the collector tracked was traversed
    # by every full collection, which made a long chain's nodes 1.7x dearer than a short one's
    bp = Backpack()
    bp.pack("k", 0)
    gc.collect()
    before = len(gc.get_objects())
    for i in range(1_000):
        bp.pack("k", i, node_id=f"n{i}", namespace="a.b", tags=["t"])
    for _ in range(3):  # a pass untracks a tuple once its items are: tags, commit, log entry
        gc.collect()
    assert len(gc.get_objects()) - before < 10
    head = bp.head
    assert head is not None and type(head).__name__ == "Commit" and head.seq == 1_001
    assert bp.get_history()[-1] == head and bp.get_commit(head.commit_id) == head


def test_commit_ids_are_unique_and_time_ordered():
    bp = Backpack()
    commits = [bp.pack(f"k{i}", i) for i in range(500)]
    ids = [c.commit_id for c in commits]
    assert len(set(ids)) == 500
    assert ids == sorted(ids)
    assert abs(id_time(ids[0]) - commits[0].timestamp) < 1.0


def test_history_filters():
    bp = Backpack()
    bp.pack("a", 1, node_id="x")
    bp.pack("b", 1, node_id="y")
    bp.pack("a", 2, node_id="y")
    assert [c.version for c in bp.get_history(key="a")] == [1, 2]
    assert [c.key for c in bp.get_history(node_id="y")] == ["b", "a"]
    assert [c.seq for c in bp.get_history(limit=2)] == [2, 3]
    assert bp.get_history(limit=0) == []
    assert [c.seq for c in bp.get_key_history("a")] == [1, 3]
    assert bp.get_key_history("nope") == []


def test_snapshot_at_commit_rebuilds_state():
    bp = Backpack()
    c1 = bp.pack("a", 1)
    c2 = bp.pack("b", {"x": [1]})
    c3 = bp.pack("a", 2)
    c4 = bp.delete("b")
    c5 = bp.append("msgs", ["hi"])
    c6 = bp.append("msgs", ["there"])
    assert bp.get_snapshot_at_commit(c1.commit_id).to_dict() == {"a": 1}
    assert bp.get_snapshot_at_commit(c2.commit_id).to_dict() == {"a": 1, "b": {"x": [1]}}
    assert bp.get_snapshot_at_commit(c3.commit_id).to_dict() == {"a": 2, "b": {"x": [1]}}
    assert bp.get_snapshot_at_commit(c4.commit_id).to_dict() == {"a": 2}
    assert bp.get_snapshot_at_commit(c5.commit_id).to_dict() == {"a": 2, "msgs": ["hi"]}
    assert bp.get_snapshot_at_commit(c6.commit_id).to_dict() == {"a": 2, "msgs": ["hi", "there"]}


def test_snapshot_is_a_mapping_with_metadata():
    bp = Backpack()
    c = bp.pack("a", [1], node_id="n", namespace="ns")
    bp.pack("a", [2])
    snap = bp.get_snapshot_at_commit(c.commit_id)
    assert snap.commit_id == c.commit_id and snap.seq == 1
    assert snap["a"] == [1] and "a" in snap and len(snap) == 1 and list(snap) == ["a"]
    assert snap.get_item("a").node_id == "n" and snap.get_item("a").version == 1
    with pytest.raises(KeyError):
        snap["missing"]
    snap["a"].append(99)
    assert snap["a"] == [1]


def test_snapshots_do_not_change_when_the_backpack_does():
    bp = Backpack({"xs": [1]})
    snap = bp.snapshot()
    bp.append("xs", [2])
    bp.pack("y", 1)
    assert snap.to_dict() == {"xs": [1]}


def test_unknown_commit_is_a_clear_error():
    bp = Backpack({"a": 1})
    with pytest.raises(CommitNotFound, match="commit 'nope' is not in the history of Backpack"):
        bp.get_snapshot_at_commit("nope")
    with pytest.raises(CommitNotFound):
        bp.replay_from_commit("nope")


def test_snapshot_before_node_uses_view_marks():
    bp = Backpack({"input": "q"})
    view = bp.view(node_id="chat")
    view.pack("answer", "a")
    view2 = bp.view(node_id="judge")
    view2.pack("score", 1)
    assert bp.get_snapshot_before_node("chat").to_dict() == {"input": "q"}
    assert bp.get_snapshot_before_node("judge").to_dict() == {"input": "q", "answer": "a"}


def test_snapshot_before_node_occurrences():
    bp = Backpack()
    for i in range(3):
        bp.view(node_id="loop").pack("i", i)
    assert bp.get_snapshot_before_node("loop").to_dict() == {}
    assert bp.get_snapshot_before_node("loop", occurrence=1).to_dict() == {"i": 0}
    assert bp.get_snapshot_before_node("loop", occurrence=-1).to_dict() == {"i": 1}
    with pytest.raises(CommitNotFound, match="ran 3 time"):
        bp.get_snapshot_before_node("loop", occurrence=5)


def test_snapshot_before_node_falls_back_to_first_commit():
    bp = Backpack()
    bp.pack("a", 1)
    bp.pack("b", 2, node_id="writer")
    assert bp.get_snapshot_before_node("writer").to_dict() == {"a": 1}
    with pytest.raises(CommitNotFound, match="node 'ghost' has neither run nor written"):
        bp.get_snapshot_before_node("ghost")


def test_diff_added_removed_modified():
    before = {"same": 1, "gone": "x", "changed": [1]}
    after = {"same": 1, "new": True, "changed": [1, 2]}
    diff = Backpack.diff(before, after)
    assert diff.added == {"new": True}
    assert diff.removed == {"gone": "x"}
    assert diff.modified == {"changed": Change([1], [1, 2])}
    assert diff.apply(before) == after
    assert bool(diff)
    assert not Backpack.diff(after, after)


def test_diff_between_snapshots_and_backpacks():
    bp = Backpack({"a": 1, "b": 2})
    c = bp.head.commit_id
    bp.pack("a", 10)
    bp.delete("b")
    bp.pack("c", 3)
    diff = Backpack.diff(bp.get_snapshot_at_commit(c), bp)
    assert diff.to_json() == {
        "added": {"c": 3},
        "removed": {"b": 2},
        "modified": {"a": {"old": 1, "new": 10}},
    }


def test_diff_is_type_exact():
    assert Backpack.diff({"a": 1}, {"a": True}).modified == {"a": Change(1, True)}
    assert Backpack.diff({"a": 1}, {"a": 1.0}).modified == {"a": Change(1, 1.0)}


def test_diff_repacked_equal_value_is_not_modified():
    bp = Backpack({"a": [1, 2]})
    snap = bp.snapshot()
    bp.pack("a", [1, 2])
    assert not Backpack.diff(snap, bp)


def test_replay_from_commit_forks_with_lineage():
    bp = Backpack()
    c1 = bp.pack("a", 1)
    c2 = bp.pack("b", 2)
    bp.pack("a", 3)
    fork = bp.replay_from_commit(c2.commit_id)
    assert fork.to_dict() == {"a": 1, "b": 2}
    assert [c.commit_id for c in fork.get_history()] == [c1.commit_id, c2.commit_id]
    assert fork.forked_from == {"backpack_id": bp.id, "commit_id": c2.commit_id}
    assert fork.id != bp.id
    c = fork.pack("c", 4)
    assert c.parent_id == c2.commit_id and c.seq == 3
    assert bp.to_dict() == {"a": 3, "b": 2}
    assert fork.to_dict() == {"a": 1, "b": 2, "c": 4}
    assert fork.get_snapshot_at_commit(c1.commit_id).to_dict() == {"a": 1}


def test_fork_and_original_append_independently_to_shared_lists():
    bp = Backpack()
    bp.append("msgs", ["a", "b"])
    c = bp.head.commit_id
    fork = bp.replay_from_commit(c)
    fork.append("msgs", ["fork-1"])
    bp.append("msgs", ["orig-1"])
    fork.append("msgs", ["fork-2"])
    bp.append("msgs", ["orig-2"])
    assert bp.unpack("msgs") == ["a", "b", "orig-1", "orig-2"]
    assert fork.unpack("msgs") == ["a", "b", "fork-1", "fork-2"]
    assert bp.get_snapshot_at_commit(c).to_dict() == {"msgs": ["a", "b"]}
    assert fork.get_snapshot_at_commit(c).to_dict() == {"msgs": ["a", "b"]}


def test_fork_keeps_permissions():
    bp = Backpack()
    bp.register_permissions("n", read=["a"])
    c = bp.pack("a", 1)
    fork = bp.replay_from_commit(c.commit_id)
    assert fork.get_permissions("n") == bp.get_permissions("n")


def test_bounded_history_keeps_snapshots_correct():
    bp = Backpack(max_history=5)
    commits = []
    states = []
    for i in range(20):
        if i % 4 == 3:
            commits.append(bp.delete(f"k{(i - 1) % 3}") or bp.pack("filler", i))
        elif i % 5 == 0:
            commits.append(bp.append("log", [i]))
        else:
            commits.append(bp.pack(f"k{i % 3}", i))
        states.append(bp.to_dict())
    assert len(bp.get_history()) == 5
    assert bp.evicted_count == 15
    for commit, state in zip(commits[-5:], states[-5:], strict=True):
        assert bp.get_snapshot_at_commit(commit.commit_id).to_dict() == state
    assert bp.to_dict() == states[-1]


def test_evicted_commit_is_named_as_evicted():
    bp = Backpack(max_history=2)
    first = bp.pack("a", 1)
    bp.pack("a", 2)
    bp.pack("a", 3)
    with pytest.raises(CommitEvicted, match=r"was evicted: this Backpack keeps the last 2 commits"):
        bp.get_snapshot_at_commit(first.commit_id)
    with pytest.raises(CommitNotFound, match="is not in the history"):
        bp.get_snapshot_at_commit("ffffffffffff")


def test_bounded_history_snapshot_before_evicted_node_is_reported():
    bp = Backpack(max_history=2)
    bp.pack("first", 0)
    bp.view(node_id="early").pack("a", 1)
    for i in range(5):
        bp.pack("b", i)
    with pytest.raises(CommitEvicted, match="before node 'early'"):
        bp.get_snapshot_before_node("early")


def test_bounded_history_key_history_and_fork():
    bp = Backpack(max_history=3)
    for i in range(10):
        bp.append("xs", [i])
    assert [c.version for c in bp.get_key_history("xs")] == [8, 9, 10]
    mid = bp.get_history()[1]
    fork = bp.replay_from_commit(mid.commit_id)
    assert fork.unpack("xs") == list(range(9))
    fork.append("xs", ["f"])
    assert fork.unpack("xs") == [*range(9), "f"]
    assert bp.unpack("xs") == list(range(10))


@pytest.mark.parametrize("bad", [0, -1, 1.5, "3"])
def test_max_history_must_be_positive(bad):
    with pytest.raises(InvalidSetting, match="max_history") as caught:
        Backpack(max_history=bad)
    assert isinstance(caught.value, ValueError)  # errors.py: project errors, built-ins kept


def test_long_bounded_history_compacts_and_stays_correct():
    bp = Backpack(max_history=10)
    for i in range(5000):
        bp.pack(f"k{i % 7}", i)
    assert len(bp.get_history()) == 10
    for commit in bp.get_history():
        snap = bp.get_snapshot_at_commit(commit.commit_id)
        assert snap[commit.key] == commit.seq - 1


def test_max_history_keeps_no_evicted_version_alive():
    # each version is a distinct 200 KB value: what stays allocated is the retained versions
    # plus the one base the oldest retained commit needs, never a backlog of evicted ones
    size, kept = 200_000, 5
    tracemalloc.start()
    try:
        bp = Backpack(max_history=kept)
        before = tracemalloc.get_traced_memory()[0]
        for i in range(60):
            bp.pack("big", f"{i:08d}" + "x" * size)
        held = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
    assert held < (kept + 1) * size + 100_000, held
    assert [c.seq for c in bp.get_history()] == [56, 57, 58, 59, 60]
    assert bp.get_snapshot_at_commit(bp.get_history()[0].commit_id)["big"].startswith("00000055")


def test_a_node_that_runs_at_every_step_keeps_its_retained_marks_exactly():
    bp = Backpack(max_history=10)
    for i in range(100):
        bp.view(node_id="a").pack("k", i)  # the view marks seq i, the pack commits seq i + 1
    assert [c.seq for c in bp.get_history()] == list(range(91, 101))
    assert bp.get_snapshot_before_node("a")["k"] == 90  # the oldest retained mark: seq 91
    assert bp.get_snapshot_before_node("a", occurrence=-1)["k"] == 98
    with pytest.raises(CommitNotFound, match="ran 9 time"):
        bp.get_snapshot_before_node("a", occurrence=9)
    copy = Backpack.from_json(bp.to_json())
    assert copy.get_snapshot_before_node("a").to_dict() == {"k": 90}
    fork = bp.replay_from_commit(bp.get_history()[-1].commit_id)
    assert fork.get_snapshot_before_node("a", occurrence=-1)["k"] == 98


def test_approx_bytes_kept_up_to_date_by_writes_agrees_with_measuring_afresh():
    # writes keep a Backpack's size estimate current for scalars, strings and deletes; a
    # Backpack loaded from JSON measures the same commits afresh: the two agree at every step
    values = [1, 2.5, True, None, "", "short", "é" * 300, [1, {"x": "y"}], {"a": [1, 2]}]
    backpack = Backpack()
    for i in range(60):
        key = f"k{i % 7}"
        if i % 11 == 10:
            backpack.delete(key)
        elif i % 13 == 12:
            backpack.append(f"list{i % 3}", [i, "item"])
        else:
            backpack.pack(key, values[i % len(values)])
        if i % 5 == 0:
            measured = backpack.approx_bytes()
            assert measured == Backpack.from_json(backpack.to_json()).approx_bytes()
    assert backpack.approx_bytes() == Backpack.from_json(backpack.to_json()).approx_bytes()
    assert backpack.approx_bytes() > 60 * 400  # every commit counted, values on top
