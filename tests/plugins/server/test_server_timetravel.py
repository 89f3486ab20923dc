"""Time travel over the HTTP API, on SQLite and PostgreSQL: a run's commits, its Backpack at any
commit, the diff between two commits, and forks with lineage, a state patch and new inputs.

A source run is a stored run whose checkpoint is in the service's store. Forked runs are
checkpointed by the service itself, so a fork of a fork goes through the API alone; the first
source run is written by :func:`checkpointed_run`: the workflow's flow, as the service loads
it, run with the store as its checkpointer (the service's own runs are not checkpointed yet).
"""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from server_kit import LiveServer, create_workflow, echo, flow, start_run, wait_for_status

from backpackflow import Backpack, Flow, MemoryCheckpointer, Node
from backpackflow_server.timetravel import Histories, state_at

SECRET = "tt-s3cret-value"


def topic_flow(**extra: Any) -> dict[str, Any]:
    """a -> b -> c, each packing echo_<id>; one declared input, ``topic``."""
    return flow(
        echo("a", "first"),
        echo("b", "second"),
        echo("c", "third"),
        inputs={"topic": {"schema": {"type": "string"}, "required": True}},
        **extra,
    )


def checkpointed_run(server: LiveServer, workflow_id: str, **inputs: Any) -> str:
    """A finished run of the workflow whose checkpoint is in the service's store."""
    service = server.app.state.service
    store, manager = service.store, service.manager
    run = store.create_run(workflow_id, inputs, "test")
    store.mark_running(run["id"])
    loaded = manager.load_flow(store.get_workflow(workflow_id))
    result = loaded.execute_sync(inputs=inputs, checkpointer=store, run_id=run["id"])
    store.finish_run(run["id"], result.status, outputs=dict(result.outputs))
    return str(run["id"])


def source_run(server: LiveServer, client: httpx.Client) -> tuple[str, str, dict[str, Any]]:
    """(workflow id, run id, its commits) of a checkpointed run of :func:`topic_flow`."""
    workflow_id = create_workflow(client, topic_flow())
    run_id = checkpointed_run(server, workflow_id, topic="tides")
    return workflow_id, run_id, commits(client, run_id)


def commits(client: httpx.Client, run_id: str, **params: Any) -> dict[str, Any]:
    response = client.get(f"/api/runs/{run_id}/commits", params=params)
    assert response.status_code == 200, response.text
    return dict(response.json())


def commit_of(page: dict[str, Any], key: str) -> str:
    """The id of the last commit of ``key`` in a page of commits."""
    return str([c for c in page["items"] if c["key"] == key][-1]["commit_id"])


def fork(client: httpx.Client, run_id: str, **body: Any) -> httpx.Response:
    return client.post(f"/api/runs/{run_id}/fork", json=body)


# ------------------------------------------------------------------------------ reading


def test_commits_state_and_diff_of_a_checkpointed_run(
    service: LiveServer, client: httpx.Client
) -> None:
    _, run_id, page = source_run(service, client)
    assert page["status"] == "succeeded" and page["forked_from"] is None
    assert [(c["key"], c["step"], c["node_id"]) for c in page["items"]] == [
        ("topic", None, None),  # an input: packed before any step
        ("echo_a", 1, "a"),
        ("echo_b", 2, "b"),
        ("echo_c", 3, "c"),
    ]
    assert [c["seq"] for c in page["items"]] == [1, 2, 3, 4] and page["last_seq"] == 4
    assert not any(c["inherited"] for c in page["items"]) and not page["has_more"]
    assert {c["op"] for c in page["items"]} == {"pack"}
    # pages, by seq
    first = commits(client, run_id, limit=2)
    assert [c["seq"] for c in first["items"]] == [1, 2] and first["has_more"]
    rest = commits(client, run_id, after=first["next_after"])
    assert [c["seq"] for c in rest["items"]] == [3, 4] and not rest["has_more"]

    at_a = client.get(f"/api/runs/{run_id}/state", params={"commit": commit_of(page, "echo_a")})
    assert at_a.status_code == 200, at_a.text
    state = at_a.json()
    assert state["state"] == {"topic": "tides", "echo_a": "first"}
    assert state["seq"] == 2 and state["commit_id"] == commit_of(page, "echo_a")
    assert state["items"]["echo_a"]["node_id"] == "a" and state["items"]["echo_a"]["version"] == 1
    assert state["backpack"] is None

    last = client.get(f"/api/runs/{run_id}/state", params={"history": "true"}).json()
    assert last["state"] == {
        "topic": "tides",
        "echo_a": "first",
        "echo_b": "second",
        "echo_c": "third",
    }
    assert last["commit_id"] == commit_of(page, "echo_c") and last["seq"] == 4
    rebuilt = Backpack.from_json(last["backpack"])  # the Backpack's own JSON form
    assert rebuilt.to_dict() == last["state"] and len(rebuilt.get_history()) == 4

    diff = client.get(
        f"/api/runs/{run_id}/diff",
        params={"from": commit_of(page, "echo_a"), "to": commit_of(page, "echo_c")},
    ).json()
    assert diff["added"] == {"echo_b": "second", "echo_c": "third"}
    assert diff["removed"] == {} and diff["modified"] == {}
    assert (diff["from_seq"], diff["to_seq"]) == (2, 4)
    backwards = client.get(
        f"/api/runs/{run_id}/diff",
        params={"from": commit_of(page, "echo_c"), "to": commit_of(page, "topic")},
    ).json()
    assert set(backwards["removed"]) == {"echo_a", "echo_b", "echo_c"}
    everything = client.get(f"/api/runs/{run_id}/diff").json()  # from nothing to the last
    assert everything["added"] == last["state"] and everything["to_commit"] == last["commit_id"]


def test_state_and_diff_mask_the_workflows_secrets(
    service: LiveServer, client: httpx.Client, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("BPF_SERVER_TEST_SECRET", SECRET)
    workflow_id = create_workflow(
        client, flow(echo("a", "key ${BPF_SERVER_TEST_SECRET} here"), echo("b"))
    )
    run_id = checkpointed_run(service, workflow_id)
    store = service.app.state.service.store
    assert SECRET in str(store.records(run_id))  # the checkpoint keeps the value (resume needs it)
    for path, params in (
        ("state", {"history": "true"}),
        ("diff", {}),
        ("commits", {}),
    ):
        response = client.get(f"/api/runs/{run_id}/{path}", params=params)
        assert response.status_code == 200, response.text
        assert SECRET not in response.text
    state = client.get(f"/api/runs/{run_id}/state").json()["state"]
    assert state["echo_a"] == "key ${BPF_SERVER_TEST_SECRET} here"


# ------------------------------------------------------------------------------ forks


def test_fork_goes_on_from_the_commit_with_a_patch_and_lineage(
    service: LiveServer, client: httpx.Client
) -> None:
    _, source, page = source_run(service, client)
    at_a = commit_of(page, "echo_a")

    response = fork(client, source, commit_id=at_a, patch={"note": {"why": "try again"}})
    assert response.status_code == 202, response.text
    forked = response.json()
    assert response.headers["Location"] == f"/api/runs/{forked['id']}"
    assert forked["forked_from"] == {"run_id": source, "commit_id": at_a}
    assert forked["triggered_by"] == "fork" and forked["input_vars"] == {"topic": "tides"}
    done = wait_for_status(client, forked["id"], "succeeded", "failed")
    assert done["status"] == "succeeded", done["error_summary"]
    assert done["forked_from"] == {"run_id": source, "commit_id": at_a}
    # the fork ran what came after the commit's node, not the node itself
    assert [s["node_id"] for s in done["steps"]] == ["b", "c"]
    assert [s["step"] for s in done["steps"]] == [2, 3]  # steps keep their numbers

    state = client.get(f"/api/runs/{forked['id']}/state").json()["state"]
    assert state == {
        "topic": "tides",
        "echo_a": "first",
        "note": {"why": "try again"},
        "echo_b": "second",
        "echo_c": "third",
    }
    page = commits(client, forked["id"])
    assert page["forked_from"]["run_id"] == source
    assert [(c["key"], c["inherited"], c["node_id"], c["step"]) for c in page["items"]] == [
        ("topic", True, None, None),
        ("echo_a", True, "a", None),
        ("note", False, "fork", None),
        ("echo_b", False, "b", 2),
        ("echo_c", False, "c", 3),
    ]
    # the source is unchanged; the run list shows the lineage, and filters by it
    assert client.get(f"/api/runs/{source}").json()["forked_from"] is None
    listed = client.get("/api/runs", params={"forked_from": source}).json()
    assert [r["id"] for r in listed] == [forked["id"]]
    assert listed[0]["forked_from"] == {"run_id": source, "commit_id": at_a}
    assert client.get("/api/runs", params={"forked_from": forked["id"]}).json() == []

    # a fork of the fork: through the API alone (the service checkpointed the first fork)
    at_note = commit_of(page, "note")
    again = fork(client, forked["id"], commit_id=at_note, patch={"note": "second try"})
    assert again.status_code == 202, again.text
    second = wait_for_status(client, again.json()["id"], "succeeded", "failed")
    assert second["status"] == "succeeded", second["error_summary"]
    assert second["forked_from"] == {"run_id": forked["id"], "commit_id": at_note}
    state = client.get(f"/api/runs/{second['id']}/state").json()["state"]
    assert state["note"] == "second try" and state["echo_c"] == "third"
    # a commit the fork inherited is forked from the run it came from
    inherited = fork(client, forked["id"], commit_id=commit_of(page, "topic"))
    assert inherited.status_code == 409
    assert f"inherited from run {source!r}" in inherited.json()["detail"]
    # the fork's trace is its own, from seq 1
    trace = client.get(f"/api/runs/{second['id']}/trace", params={"limit": 1000}).json()
    assert trace["items"][0]["seq"] == 1
    said = next(e for e in trace["items"] if e["type"] == "log")["payload"]
    assert said["message"].startswith(f"run forked from run {forked['id']!r} at commit")
    assert {e["node_id"] for e in trace["items"] if e["type"] == "node_start"} == {"b", "c"}


def test_fork_with_new_inputs_and_a_changed_param(
    service: LiveServer, client: httpx.Client
) -> None:
    workflow_id, source, page = source_run(service, client)
    at_topic = commit_of(page, "topic")
    # the params of c change, the graph does not: the fork runs the new version
    changed = client.put(
        f"/api/workflows/{workflow_id}",
        json={
            "graph_json": topic_flow() | {"nodes": [*topic_flow()["nodes"][:2], echo("c", "new")]}
        },
    )
    assert changed.status_code == 200, changed.text

    response = fork(client, source, commit_id=at_topic, input_vars={"topic": "waves"})
    assert response.status_code == 202, response.text
    assert response.json()["input_vars"] == {"topic": "waves"}
    assert response.json()["workflow_version"] == 2
    done = wait_for_status(client, response.json()["id"], "succeeded", "failed")
    assert done["status"] == "succeeded", done["error_summary"]
    state = client.get(f"/api/runs/{done['id']}/state").json()["state"]
    assert state["topic"] == "waves" and state["echo_c"] == "new"

    bad = fork(client, source, commit_id=at_topic, input_vars={"topic": 7})
    assert bad.status_code == 422
    [problem] = bad.json()["detail"]
    assert problem["path"] == "$.input_vars.topic" and "not of type 'string'" in problem["msg"]


def test_fork_refuses_a_changed_graph_and_a_deleted_workflow(
    service: LiveServer, client: httpx.Client
) -> None:
    workflow_id, source, page = source_run(service, client)
    at_a = commit_of(page, "echo_a")
    graph = topic_flow()
    graph["nodes"].append(echo("d"))
    graph["edges"].append({"from": "c", "to": "d"})
    assert client.put(f"/api/workflows/{workflow_id}", json={"graph_json": graph}).is_success

    refused = fork(client, source, commit_id=at_a)
    assert refused.status_code == 409
    assert "changed since the run (version 1 -> 2)" in refused.json()["detail"]
    assert client.get("/api/runs", params={"forked_from": source}).json() == []

    assert client.delete(f"/api/workflows/{workflow_id}").status_code == 204
    gone = fork(client, source, commit_id=at_a)
    assert gone.status_code == 409 and "workflow was deleted" in gone.json()["detail"]
    # reading the past still works without the workflow
    assert client.get(f"/api/runs/{source}/state", params={"commit": at_a}).status_code == 200


# ------------------------------------------------------------------------------ refusals


def test_clear_refusals(service: LiveServer, client: httpx.Client) -> None:
    _, source, _ = source_run(service, client)
    # the runner checkpoints no parallel flow: its runs have no checkpoint
    parallel = create_workflow(client, flow(echo("a"), echo("b"), parallel=True))
    plain = start_run(client, parallel)
    wait_for_status(client, plain["id"], "succeeded")
    for path in ("commits", "state", "diff"):
        response = client.get(f"/api/runs/{plain['id']}/{path}")
        assert response.status_code == 404
        assert "has no checkpoint" in response.json()["detail"]
        unknown = client.get(f"/api/runs/{'0' * 32}/{path}")
        assert unknown.status_code == 404 and "not found" in unknown.json()["detail"]
    assert fork(client, plain["id"], commit_id="abc").status_code == 404

    missing = "f" * 32
    response = client.get(f"/api/runs/{source}/state", params={"commit": missing})
    assert response.status_code == 404
    assert f"has no commit '{missing}' (query parameter commit)" in response.json()["detail"]
    response = client.get(f"/api/runs/{source}/diff", params={"from": missing})
    assert "(query parameter from)" in response.json()["detail"]
    response = client.get(f"/api/runs/{source}/diff", params={"to": missing})
    assert "(query parameter to)" in response.json()["detail"]
    response = fork(client, source, commit_id=missing)
    assert response.status_code == 404 and "(commit_id)" in response.json()["detail"]

    bad_key = fork(client, source, commit_id=missing, patch={"ok": 1, " padded": 2, "a*": 3})
    assert bad_key.status_code == 422
    problems = bad_key.json()["detail"]
    assert [p["loc"] for p in problems] == [["body", "patch", " padded"], ["body", "patch", "a*"]]
    assert "without surrounding white space or '*'" in problems[0]["msg"]
    # text the store cannot keep, nested anywhere in the patch (no schema says it: the fuzzing
    # test relies on this refusal)
    nested = {"ok": {"deep": ["fine", {"k\x00ey": 1}]}, "text": {"v": "a\x00b"}}
    unstorable = fork(client, source, commit_id=missing, patch=nested)
    assert unstorable.status_code == 422
    named = [f"{p['path']} {p['msg']}" for p in unstorable.json()["detail"]]
    assert any("$.patch.ok.deep[1]" in n and "key contains a NUL character" in n for n in named)
    assert any(n.startswith("$.patch.text.v contains a NUL character") for n in named), named
    no_commit = fork(client, source, patch={})
    assert no_commit.status_code == 422 and no_commit.json()["detail"][0]["path"] == "$.commit_id"
    assert (
        client.get(f"/api/runs/{source}/state", params={"commit": "not an id"}).status_code == 422
    )

    viewer = service.client(token=service.token("viewer"))
    with viewer:
        assert viewer.get(f"/api/runs/{source}/state").status_code == 200
        assert viewer.get(f"/api/runs/{source}/commits").status_code == 200
        refused = viewer.post(f"/api/runs/{source}/fork", json={"commit_id": missing})
        assert refused.status_code == 403
    with service.client(token=None) as anonymous:
        assert anonymous.get(f"/api/runs/{source}/state").status_code == 401


# ------------------------------------------------------------------------------ the cache


class CountingCheckpoints(MemoryCheckpointer):
    """A checkpointer that counts how often a run's records are read."""

    def __init__(self) -> None:
        super().__init__()
        self.reads = 0

    def records(self, run_id: str) -> list[dict[str, Any]] | None:
        self.reads += 1
        return super().records(run_id)


def test_a_finished_runs_history_is_rebuilt_once_and_an_active_ones_every_time() -> None:
    class Put(Node):
        def post(self, backpack: Any, prep_res: Any, exec_res: Any) -> None:
            backpack.pack(self.id, backpack.unpack("n", 0))

    store = CountingCheckpoints()
    first, second = Put(id="a"), Put(id="b")
    first >> second
    Flow(first).execute_sync(checkpointer=store, run_id="r")
    store.reads = 0
    histories = Histories(size=1)
    row = {"id": "r", "status": "succeeded", "last_seq": 9, "finished_at": "t1"}

    one = histories.get(store, row)
    assert histories.get(store, dict(row)) is one and store.reads == 1
    assert state_at(one, None, False)["state"] == {"a": 0, "b": 0}
    histories.get(store, {**row, "finished_at": "t2"})  # resumed and finished again: reread
    assert store.reads == 2
    histories.get(store, {**row, "id": "r", "last_seq": 10})  # evicts the oldest (size 1)
    histories.get(store, {**row, "finished_at": "t2"})
    assert store.reads == 4
    for _ in range(2):  # an active run changes under the reader: never kept
        histories.get(store, {**row, "status": "running"})
    assert store.reads == 6
