"""The run lifecycle: queued → running → final, refused transitions, listing, crash recovery."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import pytest

from backpackflow_store_sql import InvalidData, InvalidTransition, NotFound, SqlRunStore


def test_create_run_is_queued_with_zero_totals(store: SqlRunStore, run: dict[str, Any]) -> None:
    assert run["status"] == "queued"
    assert run["input_vars"] == {"topic": "decimals"}
    assert run["triggered_by"] == "test"
    assert run["workflow_version"] == 1
    assert (run["total_tokens_input"], run["total_tokens_output"]) == (0, 0)
    assert run["total_cost"] == "0"
    assert (run["event_count"], run["last_seq"]) == (0, 0)
    assert run["started_at"] is run["finished_at"] is run["total_latency_ms"] is None
    assert store.get_run(run["id"]) == {**run, "steps": []}


def test_lifecycle_records_times_and_latency(store: SqlRunStore, run: dict[str, Any]) -> None:
    running = store.mark_running(run["id"])
    assert running["status"] == "running" and running["started_at"] is not None
    done = store.finish_run(run["id"], "succeeded")
    assert done["status"] == "succeeded"
    started = datetime.fromisoformat(done["started_at"])
    finished = datetime.fromisoformat(done["finished_at"])
    assert done["total_latency_ms"] == pytest.approx((finished - started).total_seconds() * 1000)
    assert store.get_run(run["id"])["status"] == "succeeded"


def test_failed_run_keeps_its_error_summary(store: SqlRunStore, run: dict[str, Any]) -> None:
    store.mark_running(run["id"])
    failed = store.finish_run(run["id"], "failed", error_summary="ValueError: boom")
    assert (failed["status"], failed["error_summary"]) == ("failed", "ValueError: boom")


def test_a_finished_run_keeps_its_outputs(store: SqlRunStore, run: dict[str, Any]) -> None:
    assert run["outputs"] == {}
    store.mark_running(run["id"])
    outputs = {"answer": {"text": "42", "tags": ["a", "b"]}, "score": 0.5}
    assert store.finish_run(run["id"], "succeeded", None, outputs)["outputs"] == outputs
    assert store.get_run(run["id"])["outputs"] == outputs


def test_a_run_with_its_runners_latency_finishes_with_everything_recorded(
    store: SqlRunStore, run: dict[str, Any], trace: Any
) -> None:
    # the service's path: the run_end event gave the latency, the status change is one UPDATE
    store.mark_running(run["id"])
    end = trace(run["id"]).event("run_end", {"status": "failed", "duration_ms": 12.5})
    store.append_events(run["id"], [end])
    outputs = {"answer": "42"}
    done = store.finish_run(run["id"], "failed", "ValueError: boom\x00", outputs)
    assert (done["status"], done["error_summary"], done["outputs"]) == (
        "failed",
        "ValueError: boom\ufffd",
        outputs,
    )
    assert done["total_latency_ms"] == 12.5 and done["finished_at"] is not None
    assert (done["event_count"], done["last_seq"]) == (1, 1)
    assert store.get_run(run["id"]) == {**done, "steps": []}
    with pytest.raises(InvalidTransition, match="from 'failed' to 'succeeded'"):
        store.finish_run(run["id"], "succeeded")


def test_a_refused_change_says_why_before_the_outputs_are_checked(
    store: SqlRunStore, run: dict[str, Any]
) -> None:
    store.mark_running(run["id"])
    store.finish_run(run["id"], "canceled")
    with pytest.raises(InvalidTransition, match="it is final"):
        store.finish_run(run["id"], "succeeded", None, {"bad": float("nan")})
    with pytest.raises(NotFound, match="run 'ghost' not found"):
        store.finish_run("ghost", "succeeded", None, {"bad": float("nan")})
    with pytest.raises(NotFound, match="run 'ghost' not found"):
        store.pause_run("ghost")


def test_started_at_is_kept_when_a_paused_run_goes_on(
    store: SqlRunStore, run: dict[str, Any]
) -> None:
    started = store.mark_running(run["id"])["started_at"]
    assert store.pause_run(run["id"])["status"] == "paused"
    again = store.mark_running(run["id"])
    assert (again["status"], again["started_at"]) == ("running", started)


def test_a_queued_run_can_be_canceled_without_a_latency(
    store: SqlRunStore, run: dict[str, Any]
) -> None:
    canceled = store.finish_run(run["id"], "canceled")
    assert canceled["status"] == "canceled" and canceled["total_latency_ms"] is None


@pytest.mark.parametrize(
    ("path", "target", "message"),
    [
        ([], "succeeded", r"from 'queued' to 'succeeded' \(allowed from 'queued': running"),
        (["running"], "running", "from 'running' to 'running'"),
        (["running", "succeeded"], "failed", r"from 'succeeded' to 'failed' \(it is final\)"),
        (["canceled"], "running", "from 'canceled' to 'running'"),
    ],
)
def test_invalid_transitions_are_refused(
    store: SqlRunStore, run: dict[str, Any], path: list[str], target: str, message: str
) -> None:
    for status in path:
        if status == "running":
            store.mark_running(run["id"])
        else:
            store.finish_run(run["id"], status)
    before = store.get_run(run["id"])
    with pytest.raises(InvalidTransition, match=message) as caught:
        if target == "running":
            store.mark_running(run["id"])
        else:
            store.finish_run(run["id"], target)
    assert isinstance(caught.value, ValueError) and run["id"] in str(caught.value)
    assert store.get_run(run["id"]) == before


def test_unknown_status_and_unknown_run(store: SqlRunStore, run: dict[str, Any]) -> None:
    with pytest.raises(InvalidData, match="not 'done'"):
        store.finish_run(run["id"], "done")
    for call in (
        lambda: store.get_run("ghost"),
        lambda: store.mark_running("ghost"),
        lambda: store.finish_run("ghost", "failed"),
        lambda: store.append_events(
            "ghost", [{"id": "e", "seq": 1, "timestamp": 1.0, "type": "log"}]
        ),
        lambda: store.get_trace("ghost"),
        lambda: store.count_events("ghost"),
    ):
        with pytest.raises(NotFound, match="run 'ghost' not found"):
            call()


def test_list_runs_filters_and_pages(store: SqlRunStore) -> None:
    first = store.create_workflow("a", {})
    second = store.create_workflow("b", {})
    runs = [store.create_run(w["id"], {"i": i}) for i, w in enumerate([first, second] * 3)]
    newest_first = [r["id"] for r in reversed(runs)]
    assert [r["id"] for r in store.list_runs()] == newest_first
    assert [r["id"] for r in store.list_runs(workflow_id=first["id"])] == newest_first[1::2]
    store.mark_running(runs[0]["id"])
    assert [r["id"] for r in store.list_runs(status="running")] == [runs[0]["id"]]
    page = store.list_runs(limit=4)
    assert [r["id"] for r in page] == newest_first[:4]
    assert [r["id"] for r in store.list_runs(limit=4, before=page[-1]["id"])] == newest_first[4:]
    assert "steps" not in page[0]
    with pytest.raises(InvalidData, match="unknown run status 'bogus'"):
        store.list_runs(status="bogus")
    with pytest.raises(InvalidData, match="limit must be an integer >= 1"):
        store.list_runs(limit=0)


def test_recover_interrupted_fails_queued_and_running_runs(store: SqlRunStore, trace: Any) -> None:
    workflow = store.create_workflow("w", {})
    queued = store.create_run(workflow["id"], {})
    running = store.create_run(workflow["id"], {})
    done = store.create_run(workflow["id"], {})
    store.mark_running(running["id"])
    store.mark_running(done["id"])
    store.finish_run(done["id"], "succeeded")
    events = trace(running["id"])
    store.append_events(
        running["id"],
        [
            events.event("node_start", {"node_type": "LLMNode"}, step=1),
            events.event("node_end", {"action": "default", "duration_ms": 5.0}, step=1),
            events.event("node_start", {"node_type": "LLMNode"}, step=2),
        ],
    )

    recovered = store.recover_interrupted("service restarted")
    assert sorted(recovered) == sorted([queued["id"], running["id"]])
    for run_id in recovered:
        run = store.get_run(run_id)
        assert (run["status"], run["error_summary"]) == ("failed", "service restarted")
        assert run["finished_at"] is not None
    steps = store.get_run(running["id"])["steps"]
    assert [(s["status"], s["error"]) for s in steps] == [
        ("succeeded", None),
        ("failed", "service restarted"),
    ]
    assert store.get_run(done["id"])["status"] == "succeeded"
    assert store.recover_interrupted("again") == []


def test_resume_counters_close_the_steps_a_resume_runs_again(
    store: SqlRunStore, trace: Any
) -> None:
    """Steps after the checkpoint's last position (step 1 here) are done again: the one in
    flight and one that ended without its position stored close as failed; nested steps
    count in the numbering; the run is listed active until it ends."""
    workflow = store.create_workflow("w", {})
    run = store.create_run(workflow["id"], {})
    store.mark_running(run["id"])
    events = trace(run["id"])
    store.append_events(
        run["id"],
        [
            events.event("node_start", {}, step=1),
            events.event("node_end", {"action": "default"}, step=1),
            events.event("node_start", {}, step=2),
            events.event("node_end", {"action": "default"}, step=2),
            events.event("node_start", {}, step=3),
            {
                **events.event("tool_request", {"tool": "t"}, step=4, node_id="node3"),
                "parent_step": 3,
            },
        ],
    )
    assert [r["id"] for r in store.active_runs()] == [run["id"]]
    assert store.resume_counters(run["id"], "again", 1) == (6, 4)
    steps = store.get_run(run["id"])["steps"]
    assert [(s["step"], s["status"], s["error"]) for s in steps] == [
        (1, "succeeded", None),
        (2, "failed", "again"),
        (3, "failed", "again"),
        (4, "failed", "again"),
    ]


def test_a_running_run_pauses_and_goes_on(store: SqlRunStore, run: dict[str, Any]) -> None:
    store.mark_running(run["id"])
    started = store.get_run(run["id"])["started_at"]
    assert store.pause_run(run["id"])["status"] == "paused"
    assert store.list_runs(status="paused")[0]["id"] == run["id"]
    assert store.active_runs() == []  # waits for an answer: nothing to recover
    with pytest.raises(InvalidTransition):
        store.pause_run(run["id"])
    resumed = store.mark_running(run["id"])
    assert (resumed["status"], resumed["started_at"]) == ("running", started)
    store.pause_run(run["id"])
    assert store.finish_run(run["id"], "canceled", "no answer")["status"] == "canceled"
