import sys
import time

import pytest

from backpackflow import Backpack, InvalidKey, InvalidNamespace, InvalidValue, KeyNotFound
from backpackflow.jsondata import summarize


def test_pack_and_unpack_round_trip():
    bp = Backpack()
    bp.pack("query", "What is the capital of France?")
    assert bp.unpack("query") == "What is the capital of France?"


def test_initial_values_are_packed():
    bp = Backpack({"a": 1, "b": [1, 2]})
    assert bp.to_dict() == {"a": 1, "b": [1, 2]}
    assert [c.key for c in bp.get_history()] == ["a", "b"]


def test_unpack_missing_returns_default():
    bp = Backpack()
    assert bp.unpack("missing") is None
    assert bp.unpack("missing", "fallback") == "fallback"


def test_unpack_required_raises_key_not_found_naming_key_and_keys():
    bp = Backpack({"present": 1})
    expected = r"key 'missing' is not in the Backpack \(keys: 'present'\)"
    with pytest.raises(KeyNotFound, match=expected):
        bp.unpack_required("missing")


def test_unpack_required_returns_none_values():
    bp = Backpack({"nothing": None})
    assert bp.unpack_required("nothing") is None


def test_values_are_copied_in():
    bp = Backpack()
    data = {"items": [1, 2]}
    bp.pack("data", data)
    data["items"].append(3)
    assert bp.unpack("data") == {"items": [1, 2]}


def test_values_are_copied_out():
    bp = Backpack({"data": {"items": [1, 2]}})
    out = bp.unpack("data")
    out["items"].append(3)
    assert bp.unpack("data") == {"items": [1, 2]}
    assert bp.peek("data") == {"items": [1, 2]}
    bp.get_item("data").value["items"].append(4)
    assert bp.unpack("data") == {"items": [1, 2]}


def test_non_json_value_is_refused_naming_key_and_type():
    bp = Backpack()
    with pytest.raises(InvalidValue, match=r"key 'when': \$ is a value of type datetime.datetime"):
        import datetime

        bp.pack("when", datetime.datetime.now())
    assert not bp.has("when")
    assert bp.get_history() == []


@pytest.mark.parametrize("key", ["", " padded", "a*b", 7, None, ["k"]])
def test_invalid_keys_are_refused(key):
    with pytest.raises(InvalidKey):
        Backpack().pack(key, 1)


def test_a_key_that_only_equals_a_known_key_is_still_refused():
    class Key(str):
        pass

    bp = Backpack()
    view = bp.view(node_id="n")
    bp.pack("k", 1)
    view.pack("k", 2)
    for pack in (bp.pack, view.pack):
        with pytest.raises(InvalidKey):
            pack(Key("k"), 3)
    assert bp.get_version("k") == 2


def test_get_item_has_metadata():
    bp = Backpack()
    before = time.time()
    bp.pack("k", {"v": 1}, node_id="n1", node_name="Chat", namespace="sales.chat", tags=["a", "b"])
    item = bp.get_item("k")
    assert item.key == "k"
    assert item.value == {"v": 1}
    assert (item.node_id, item.node_name, item.namespace) == ("n1", "Chat", "sales.chat")
    assert item.version == 1
    assert item.tags == ("a", "b")
    assert before <= item.timestamp <= time.time()
    assert item.commit_id == bp.head.commit_id


def test_tags_must_be_strings():
    with pytest.raises(InvalidValue, match="tags must be a list of strings"):
        Backpack().pack("k", 1, tags="single")
    with pytest.raises(InvalidValue, match="tags must be strings"):
        Backpack().pack("k", 1, tags=[1])


def test_invalid_namespace_refused_at_pack_time():
    bp = Backpack()
    with pytest.raises(InvalidNamespace, match="pack of key 'k'"):
        bp.pack("k", 1, namespace="sales.*")
    with pytest.raises(InvalidNamespace):
        bp.pack("k", 1, namespace="sales chat")
    with pytest.raises(InvalidNamespace):
        bp.pack("k", 1, namespace="sales..chat")
    assert bp.keys() == []


def test_versions_increase_per_key():
    bp = Backpack()
    bp.pack("a", 1)
    bp.pack("a", 2)
    bp.pack("b", 1)
    bp.append("c", [1])
    bp.append("c", [2])
    assert bp.get_version("a") == 2
    assert bp.get_version("b") == 1
    assert bp.get_version("c") == 2
    with pytest.raises(KeyNotFound):
        bp.get_version("missing")


def test_version_continues_after_delete():
    bp = Backpack({"a": 1})
    bp.delete("a")
    bp.pack("a", 2)
    assert bp.get_version("a") == 3
    assert [c.version for c in bp.get_key_history("a")] == [1, 2, 3]


def test_has_keys_len_contains():
    bp = Backpack({"a": 1, "b": 2})
    assert bp.has("a") and "b" in bp and not bp.has("c")
    assert bp.keys() == ["a", "b"]
    assert len(bp) == 2


def test_delete_removes_key_and_commits():
    bp = Backpack({"a": 1})
    commit = bp.delete("a")
    assert commit is not None and commit.op == "delete"
    assert not bp.has("a")
    assert bp.unpack("a") is None


def test_delete_missing_key_makes_no_commit():
    bp = Backpack()
    assert bp.delete("nope") is None
    assert bp.get_history() == []


def test_append_creates_and_extends_lists():
    bp = Backpack()
    bp.append("messages", [{"role": "user", "content": "hi"}])
    bp.append("messages", ({"role": "assistant", "content": "hello"},))
    assert bp.unpack("messages") == [
        {"role": "user", "content": "hi"},
        {"role": "assistant", "content": "hello"},
    ]
    assert [c.op for c in bp.get_history()] == ["append", "append"]


def test_append_after_pack_of_list():
    bp = Backpack({"xs": [1, 2]})
    bp.append("xs", [3])
    assert bp.unpack("xs") == [1, 2, 3]


def test_append_to_non_list_is_refused():
    bp = Backpack({"x": {"a": 1}})
    with pytest.raises(InvalidValue, match="append to key 'x': it holds dict, not a list"):
        bp.append("x", [1])
    assert bp.get_version("x") == 1


@pytest.mark.parametrize("items", ["abc", {"a": 1}, 5])
def test_append_needs_a_list_of_items(items):
    with pytest.raises(InvalidValue, match="items must be a list"):
        Backpack().append("x", items)


def test_append_nothing_makes_no_commit():
    bp = Backpack({"xs": [1]})
    assert bp.append("xs", []) is None
    assert len(bp.get_history()) == 1


def test_append_keeps_namespace_and_tags_unless_given():
    bp = Backpack()
    bp.pack("xs", [1], namespace="chat", tags=["t"])
    bp.append("xs", [2], node_id="n")
    item = bp.get_item("xs")
    assert item.namespace == "chat" and item.tags == ("t",) and item.node_id == "n"
    bp.append("xs", [3], namespace="other", tags=[])
    item = bp.get_item("xs")
    assert item.namespace == "other" and item.tags == ()


def test_appended_items_are_copied():
    bp = Backpack()
    item = {"a": [1]}
    bp.append("xs", [item])
    item["a"].append(2)
    assert bp.unpack("xs") == [{"a": [1]}]


def test_peek_does_not_notify_observers():
    bp = Backpack({"a": 1})
    seen = []
    bp.add_observer(seen.append)
    assert bp.peek("a") == 1
    assert seen == []
    bp.unpack("a")
    assert [r.op for r in seen] == ["unpack"]


def test_observers_and_views_are_told_what_each_write_wrote_not_the_list_as_extended():
    bp = Backpack()
    seen = []
    bp.add_observer(seen.append)
    reported = []
    view = bp.view(node_id="n")
    view.report_to(lambda _type, payload: reported.append(payload))
    for write in (bp, view):
        packed, appended = f"{write is view}-packed", f"{write is view}-appended"
        write.pack(packed, ["a"])
        write.append(packed, ["b"])
        write.append(appended, ["a"])  # the append that makes the key
        write.append(appended, ["b"])
    expected = [("pack", '["a"]'), ("append", '["b"]'), ("append", '["a"]'), ("append", '["b"]')]
    assert [(r.op, summarize(r.value)) for r in seen] == expected
    assert [(p.op, p.value_summary) for p in reported] == expected


def test_observer_sees_writes_and_reads_and_can_be_removed():
    bp = Backpack()
    seen = []
    remove = bp.add_observer(seen.append)
    bp.pack("a", 1, node_id="n")
    bp.unpack("a")
    bp.unpack("missing")
    remove()
    bp.pack("b", 2)
    assert [(r.op, r.key, r.granted, r.found) for r in seen] == [
        ("pack", "a", True, True),
        ("unpack", "a", True, True),
        ("unpack", "missing", True, False),
    ]
    assert seen[0].commit is not None and seen[0].node_id == "n"


def test_a_value_that_contains_itself_is_invalid_with_its_key_and_path():
    loop: list = [1, {"inner": []}]
    loop[1]["inner"].append(loop)
    with pytest.raises(InvalidValue, match=r"key 'k': \$\[1\]\.inner\[0\] contains itself"):
        Backpack().pack("k", loop)
    node: dict = {}
    node["self"] = node
    bp = Backpack({"x": 1})
    with pytest.raises(InvalidValue, match=r"append to key 'x'.*\$\[0\]\.self contains itself"):
        bp.pack("x", [])
        bp.append("x", [node])
    assert bp.unpack("x") == []  # nothing half-written


def test_a_value_nested_deeper_than_recursion_allows_is_invalid_not_a_crash():
    deep: list = []
    cursor = deep
    for _ in range(sys.getrecursionlimit() * 3):
        cursor.append([])
        cursor = cursor[0]
    with pytest.raises(InvalidValue, match="key 'deep'"):
        Backpack().pack("deep", deep)
