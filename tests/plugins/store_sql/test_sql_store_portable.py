"""What a user gives is stored alike on SQLite and PostgreSQL, or refused alike: text with
U+0000 or a lone surrogate, anywhere in a name or a document, is refused before anything is
written; a row written by an older version that holds one never breaks a list."""

from __future__ import annotations

import json
from typing import Any

import pytest
from sqlalchemy import text

from backpackflow_store_sql import InvalidData, SqlRunStore
from backpackflow_store_sql.portable import MAX_DEPTH, make_portable, unportable_problems

BAD_TEXTS = ["a\x00b", "\ud800", "x\udfff"]


@pytest.mark.parametrize("bad", BAD_TEXTS)
def test_user_text_that_cannot_be_stored_is_refused_on_both_backends(
    store: SqlRunStore, bad: str
) -> None:
    workflow = store.create_workflow("ok", {"nodes": []})
    with pytest.raises(InvalidData, match="workflow name"):
        store.create_workflow(f"name {bad}", {"nodes": []})
    with pytest.raises(InvalidData, match="description"):
        store.create_workflow("ok", {}, description=bad)
    with pytest.raises(InvalidData, match=r"graph_json: \$\.nodes\[0\]\.id: contains"):
        store.create_workflow("ok", {"nodes": [{"id": bad}]})
    with pytest.raises(InvalidData, match=r"graph_json: \$\.meta\[.*\]: the key contains"):
        store.update_workflow(workflow["id"], graph_json={"meta": {bad: 1}})
    with pytest.raises(InvalidData, match=r"input_vars: \$\.a\.b\[1\]: contains"):
        store.create_run(workflow["id"], {"a": {"b": ["fine", bad]}})
    with pytest.raises(InvalidData, match="triggered_by"):
        store.create_run(workflow["id"], {}, triggered_by=bad)
    assert store.list_runs() == []
    assert [w["id"] for w in store.list_workflows()] == [workflow["id"]]
    assert store.get_workflow(workflow["id"])["version"] == 1


def test_a_legacy_sqlite_row_with_a_lone_surrogate_reads_back_replaced(tmp_path: Any) -> None:
    with SqlRunStore(f"sqlite:///{tmp_path / 'legacy.db'}") as store:
        store.upgrade()
        workflow = store.create_workflow("wf", {"nodes": []})
        run = store.create_run(workflow["id"], {"x": "placeholder"})
        # What an older version stored for input_vars {"x": "\ud800", "emoji": "😀"}:
        legacy = json.dumps({"x": "\ud800", "emoji": "😀"})
        assert "\\ud800" in legacy
        with store.engine.begin() as connection:
            connection.execute(
                text("UPDATE workflow_runs SET input_vars = :v WHERE id = :id"),
                {"v": legacy, "id": run["id"]},
            )
        listed = store.list_runs()
        assert listed[0]["input_vars"] == {"x": "\ufffd", "emoji": "😀"}
        json.dumps(listed, ensure_ascii=False).encode("utf-8")  # serializable as UTF-8
        assert store.get_run(run["id"])["input_vars"]["x"] == "\ufffd"


def nested(levels: int) -> Any:
    value: Any = "leaf"
    for _ in range(levels):
        value = {"a": value}
    return value


def depth_of(value: Any) -> int:
    """Objects nested in one another (each with one member), ``value`` the first."""
    depth = 0
    while isinstance(value, dict):
        value, depth = next(iter(value.values())), depth + 1
    return depth


def test_nesting_is_bounded_alike(store: SqlRunStore, run: dict[str, Any], trace: Any) -> None:
    workflow = store.create_workflow("ok", {"deep": nested(MAX_DEPTH - 1)})  # at the bound
    for levels in (MAX_DEPTH, 5_000):
        with pytest.raises(InvalidData, match=f"at most {MAX_DEPTH} levels"):
            store.create_run(workflow["id"], {"v": nested(levels)})
    t = trace(run["id"])
    store.append_events(run["id"], [t.event("log", {"v": nested(5_000)})])  # run output: cut
    payload = store.get_trace(run["id"])[0]["payload"]
    assert depth_of(payload) == MAX_DEPTH
    assert "nested deeper than" in json.dumps(payload)


def test_a_legacy_row_nested_too_deeply_reads_back_cut(store: SqlRunStore) -> None:
    workflow = store.create_workflow("wf", {"nodes": []})
    run = store.create_run(workflow["id"], {"x": 1})
    legacy = json.dumps({"v": nested(300)})  # what an older version stored (the issue's 256+)
    cast = "CAST(:v AS JSONB)" if store.dialect == "postgresql" else ":v"
    with store.engine.begin() as connection:
        connection.execute(
            text(f"UPDATE workflow_runs SET input_vars = {cast} WHERE id = :id"),
            {"v": legacy, "id": run["id"]},
        )
    [listed] = store.list_runs()
    assert depth_of(listed["input_vars"]) == MAX_DEPTH
    assert store.get_run(run["id"])["input_vars"] == listed["input_vars"]


def test_workflow_pages(store: SqlRunStore) -> None:
    ids = [store.create_workflow(f"w{i}", {})["id"] for i in range(5)]
    first = store.list_workflows(2)
    assert [w["id"] for w in first] == ids[:2:-1][:2] == [ids[4], ids[3]]
    rest = store.list_workflows(10, before=first[-1]["id"])
    assert [w["id"] for w in rest] == [ids[2], ids[1], ids[0]]
    with pytest.raises(InvalidData, match="limit"):
        store.list_workflows(0)


def test_problems_name_paths_and_bound_depth() -> None:
    deep: Any = "leaf"
    for _ in range(100_000):  # far beyond the interpreter's recursion limit
        deep = [deep]
    assert unportable_problems(deep, max_depth=64) == [
        "$" + "[0]" * 64 + ": nested 65 levels deep; at most 64 levels of objects and arrays "
        "are accepted"
    ]
    assert unportable_problems({"a b": ["\x00"]}) == [
        "$['a b'][0]: contains a NUL character (U+0000) at position 0"
    ]
    assert len(unportable_problems(["\x00"] * 1000)) == 20
    portable, depth = make_portable(deep), 0  # copied without recursion too
    while isinstance(portable, list):
        assert portable is not deep
        portable, deep, depth = portable[0], deep[0], depth + 1
    assert (portable, depth) == ("leaf", 100_000)
    assert make_portable({"\ud800": ["\x00"]}) == {"\ufffd": ["\ufffd"]}
