import asyncio
import itertools
import threading

import pytest

from backpackflow import AccessDenied, Backpack, InvalidNamespace, KeyNotFound


def test_view_stamps_identity_on_writes():
    bp = Backpack()
    view = bp.view(node_id="chat-1", node_name="ChatNode", namespace="sales.chat")
    view.pack("answer", "42", tags=["llm"])
    item = bp.get_item("answer")
    assert (item.node_id, item.node_name, item.namespace, item.tags) == (
        "chat-1",
        "ChatNode",
        "sales.chat",
        ("llm",),
    )
    assert bp.head.node_id == "chat-1"


def test_view_records_reads_and_writes_in_first_touch_order():
    bp = Backpack({"q": "?", "ctx": []})
    view = bp.view(node_id="n")
    view.unpack("q")
    view.unpack("ctx")
    view.unpack("q")
    view.unpack("missing")
    view.peek("ctx")
    view.pack("a", 1)
    view.append("log", ["x"])
    view.pack("a", 2)
    view.delete("q")
    assert view.reads == ["q", "ctx", "missing"]
    assert view.writes == ["a", "log", "q"]


def test_view_enforces_permissions():
    bp = Backpack({"allowed": 1, "forbidden": 2})
    bp.register_permissions("n", read=["allowed"], write=["out"])
    view = bp.view(node_id="n")
    assert view.unpack("allowed") == 1
    with pytest.raises(AccessDenied):
        view.unpack("forbidden")
    with pytest.raises(AccessDenied):
        view.pack("allowed", 3)
    view.pack("out", 1)
    assert view.keys() == ["allowed"]
    assert view.writes == ["out"]


def test_view_denied_write_in_graceful_mode_is_not_recorded_as_write():
    bp = Backpack(strict=False)
    bp.register_permissions("n", write=[])
    view = bp.view(node_id="n")
    assert view.pack("x", 1) is None
    assert view.writes == []
    assert bp.get_access_denials()[0].node_name is None


def test_view_unpack_required_names_node():
    view = Backpack().view(node_id="n")
    with pytest.raises(KeyNotFound, match="node 'n': key 'x' is not in the Backpack"):
        view.unpack_required("x")


def test_view_namespace_is_validated():
    with pytest.raises(InvalidNamespace, match="node 'n'"):
        Backpack().view(node_id="n", namespace="bad ns")


def test_view_queries():
    bp = Backpack()
    bp.view(node_id="a", namespace="sales.chat").pack("x", 1)
    bp.view(node_id="b", namespace="support.chat").pack("y", 2)
    reader = bp.view(node_id="r")
    assert [i.key for i in reader.get_items_by_namespace("*.chat")] == ["x", "y"]
    assert reader.get_namespaces() == ["sales.chat", "support.chat"]
    assert reader.reads == ["x", "y"]
    assert reader.get_item("x").value == 1
    assert reader.get_version("x") == 1
    assert reader.has("x") and "y" in reader


def test_concurrent_asyncio_views_never_share_identity():
    bp = Backpack()

    async def node(i: int) -> None:
        view = bp.view(node_id=f"node-{i}", node_name=f"N{i}", namespace=f"team.n{i}")
        for step in range(20):
            view.pack(f"k{i}.{step}", step)
            await asyncio.sleep(0)
            view.unpack(f"k{(i + 1) % 10}.{step}")
            await asyncio.sleep(0)

    async def main() -> None:
        await asyncio.gather(*(node(i) for i in range(10)))

    asyncio.run(main())
    for commit in bp.get_history():
        i = commit.key.split(".")[0][1:]
        assert commit.node_id == f"node-{i}"
        assert commit.node_name == f"N{i}"
        assert commit.namespace == f"team.n{i}"
    assert len(bp.get_history()) == 200


def test_concurrent_threads_keep_history_consistent():
    bp = Backpack()

    def worker(i: int) -> None:
        view = bp.view(node_id=f"t{i}")
        for step in range(200):
            view.append("shared", [[i, step]])
            view.pack(f"own.{i}", step)

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    history = bp.get_history()
    assert [c.seq for c in history] == list(range(1, 1601))
    assert len(bp.unpack("shared")) == 800
    assert all(c.parent_id == p.commit_id for p, c in itertools.pairwise(history))
