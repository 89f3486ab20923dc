import json

import pytest

from backpackflow import Backpack, SerializationError


def rich_backpack(**kwargs):
    bp = Backpack(**kwargs)
    bp.pack("query", "hi", node_id="in", node_name="Input", namespace="sales.in", tags=["user"])
    bp.append("msgs", [{"role": "user", "content": "hi"}], node_id="chat")
    bp.append("msgs", [{"role": "assistant", "content": "hello"}], node_id="chat")
    bp.pack("score", 0.5)
    bp.delete("score")
    bp.pack("msgs2", [1, 2])
    bp.append("msgs2", [3])
    bp.register_permissions("chat", read=["msgs", "query"], namespace_write=["sales.*"])
    bp.view(node_id="chat")
    bp.strict = False
    bp.register_permissions("judge", read=[])
    bp.unpack("query", node_id="judge")
    return bp


def test_round_trip_is_exact():
    bp = rich_backpack()
    data = bp.to_json()
    restored = Backpack.from_json(data)
    assert restored.to_json() == data
    assert restored.to_dict() == bp.to_dict()
    assert restored.get_history() == bp.get_history()
    assert restored.get_permissions("chat") == bp.get_permissions("chat")
    assert restored.id == bp.id and restored.strict is False
    assert restored.get_item("query") == bp.get_item("query")
    for commit in bp.get_history():
        assert (
            restored.get_snapshot_at_commit(commit.commit_id).to_dict()
            == bp.get_snapshot_at_commit(commit.commit_id).to_dict()
        )
    assert restored.get_snapshot_before_node("chat").to_dict() == (
        bp.get_snapshot_before_node("chat").to_dict()
    )
    assert [d.to_json() for d in restored.get_access_denials()] == [
        d.to_json() for d in bp.get_access_denials()
    ]


def test_round_trip_through_a_json_string():
    bp = rich_backpack()
    text = bp.to_json_str()
    assert Backpack.from_json(text).to_json() == json.loads(text)


def test_round_trip_of_bounded_history():
    bp = rich_backpack(max_history=3)
    for i in range(5):
        bp.append("msgs", [i])
    data = bp.to_json()
    restored = Backpack.from_json(data)
    assert restored.to_json() == data
    assert restored.to_dict() == bp.to_dict()
    assert restored.evicted_count == bp.evicted_count
    restored.append("msgs", ["more"])
    assert restored.unpack("msgs")[-1] == "more"


def test_restored_backpack_continues_history():
    bp = rich_backpack()
    restored = Backpack.from_json(bp.to_json())
    commit = restored.pack("after", 1)
    assert commit.seq == bp.head.seq + 1
    assert commit.parent_id == bp.head.commit_id


def test_fork_lineage_round_trips():
    bp = rich_backpack()
    fork = bp.replay_from_commit(bp.get_history()[1].commit_id)
    restored = Backpack.from_json(fork.to_json())
    assert restored.forked_from == fork.forked_from


def test_empty_backpack_round_trips():
    data = Backpack().to_json()
    assert Backpack.from_json(data).to_json() == data


def test_append_history_is_stored_as_deltas():
    bp = Backpack()
    for i in range(100):
        bp.append("chat", [f"message {i}"])
    commits = bp.to_json()["commits"]
    assert all(c["items"] == [f"message {i}"] for i, c in enumerate(commits))


@pytest.mark.parametrize(
    ("mutate", "where"),
    [
        (lambda d: d.pop("commits"), "$: 'commits' is a required property"),
        (lambda d: d["commits"][0].update(op="merge"), "$.commits[0].op"),
        (lambda d: d["commits"][1].update(seq=7), "$.commits[1].seq: expected 2, got 7"),
        (lambda d: d["commits"][1].update(parent_id="x"), "$.commits[1].parent_id"),
        (lambda d: d["commits"][0].pop("value"), "$.commits[0]: a pack commit needs 'value'"),
        (lambda d: d["commits"][0].update(namespace="bad ns"), "$.commits[0].namespace"),
        (lambda d: d.update(format="other"), "$.format"),
        (lambda d: d.update(seq=99), "$.seq"),
        (lambda d: d["permissions"]["chat"].update(read="x"), "$.permissions.chat.read"),
    ],
)
@pytest.mark.parametrize("validate", [True, False])
def test_malformed_documents_name_the_json_path(mutate, where, validate):
    data = rich_backpack().to_json()
    mutate(data)
    with pytest.raises(SerializationError) as info:
        Backpack.from_json(data, validate=validate)
    assert where in str(info.value)


def test_an_unvalidated_load_of_a_good_document_is_the_same_backpack():
    data = rich_backpack().to_json()
    assert Backpack.from_json(data, validate=False).to_json() == data


def test_invalid_json_text():
    with pytest.raises(SerializationError, match="not valid JSON"):
        Backpack.from_json("{nope")
