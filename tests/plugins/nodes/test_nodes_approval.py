"""The ``approval`` node: the run pauses until it is resumed with an answer; approval,
rejection and a timeout are edges."""

from __future__ import annotations

import io
import json
import sys
import time

import pytest
from nodes_support import flow_doc, load, router

from backpackflow import CheckpointError, FileCheckpointer, MemoryCheckpointer, RunPaused
from backpackflow.cli import main
from backpackflow.cli.run import EXIT_PAUSED


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


# ------------------------------------------------------------------------------- the CLI


def write_review(tmp_path):
    path = tmp_path / "review.json"
    path.write_text(json.dumps(review_flow()))
    return str(path)


def test_cli_run_without_a_terminal_exits_with_a_resume_hint_then_resume_answers(tmp_path, capsys):
    flow = write_review(tmp_path)

    assert main(["run", flow, "--run-id", "r1", "--sink", "none"]) == EXIT_PAUSED
    err = capsys.readouterr().err
    assert "run r1 paused at node 'review': Publish it?" in err
    assert "backpackflow resume r1 --answer 'JSON'" in err

    assert main(["resume", "r1", "--answer", '{"approved": 1}', "--sink", "none"]) == 1
    assert "answer.approved: 1 is not of type 'boolean'" in capsys.readouterr().err

    assert main(["resume", "r1", "--answer", '{"approved": false}', "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["status"] == "succeeded"
    assert [s["node_id"] for s in report["steps"]] == ["review", "discard"]

    assert main(["resume", "r1", "--sink", "none"]) == 1  # finished: nothing to resume
    assert "has already succeeded" in capsys.readouterr().err


def test_cli_run_asks_at_a_terminal_until_the_answer_fits(tmp_path, monkeypatch, capsys):
    flow = write_review(tmp_path)
    typed = io.StringIO('yes\n{"approved": true}\n')
    typed.isatty = lambda: True  # type: ignore[method-assign]
    monkeypatch.setattr(sys, "stdin", typed)
    monkeypatch.setattr(sys.stdout, "isatty", lambda: True, raising=False)

    assert main(["run", flow, "--sink", "none"]) == 0

    captured = capsys.readouterr()
    assert "Publish it?" in captured.err
    assert "answer: 'yes' is not of type 'object'" in captured.err
    assert "succeeded" in captured.out


def test_cli_fork_starts_a_new_run_from_a_commit_with_a_patch(tmp_path, capsys):
    flow = write_review(tmp_path)
    main(["run", flow, "--run-id", "r1", "--sink", "none"])
    main(["resume", "r1", "--answer", '{"approved": false}', "--sink", "none"])
    capsys.readouterr()
    records = FileCheckpointer(".backpackflow/checkpoints").load("r1")
    decided = next(c for c in records.commits if c["key"] == "review")

    code = main(
        [
            "fork",
            "r1",
            "--commit",
            decided["commit_id"],
            "--new-run-id",
            "r2",
            "--set",
            'review={"approved": true, "timed_out": false}',
            "--json",
        ]
    )

    assert code == 0, capsys.readouterr().err
    report = json.loads(capsys.readouterr().out)
    assert report["run_id"] == "r2"
    # the fork point is review's last commit: the fork goes on from the node after it, with
    # the patched state
    assert [s["node_id"] for s in report["steps"]] == ["discard"]
    forked = FileCheckpointer(".backpackflow/checkpoints").load("r2")
    assert forked.forked_from["run_id"] == "r1"
    assert forked.forked_from["commit_id"] == decided["commit_id"]
