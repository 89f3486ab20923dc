"""The checkpointer conformance suite: what every :class:`~backpackflow.Checkpointer` must do.

A test module runs it against its implementation by importing these tests and defining a
``checkpointer`` fixture (a fresh, empty checkpointer per test):
tests/kernel/test_checkpointer_conformance.py runs it for the in-memory and file checkpointers,
tests/plugins/store_sql for SQLite and PostgreSQL.

What it checks: records come back as appended (save/load/list/delete); a run resumed after a
crash at any node ends exactly as the same run uninterrupted (hypothesis over random flows:
the Backpack's values and history, the outputs, the step count, contiguous event seqs); forks
keep their lineage; concurrent writers lose nothing.
"""

from __future__ import annotations

import itertools
import threading
from typing import Any

from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from backpackflow import Backpack, Checkpointer, Flow, Node, RunPaused
from backpackflow.runner import current_run

__all__ = [
    "test_a_crash_at_any_node_resumes_to_the_uninterrupted_result",
    "test_a_fork_keeps_its_lineage_and_runs_on_from_the_commit",
    "test_a_paused_run_resumes_with_its_answer",
    "test_concurrent_writers_lose_nothing",
    "test_records_come_back_as_appended",
]


class Crash(BaseException):
    """Stands for the process dying mid-node: nothing after it reaches the checkpointer."""


class Stop:
    """Shared by a test's nodes: the step to crash at, and whether the process is "dead"."""

    def __init__(self) -> None:
        self.at_step: int | None = None
        self.dead = False


class Killable(Checkpointer):
    """Wraps a real checkpointer; while ``stop.dead`` is set, appends are lost (as when the
    process making them is killed). Reads go through."""

    def __init__(self, inner: Checkpointer, stop: Stop) -> None:
        self.inner = inner
        self.stop = stop

    def append(self, run_id: str, records: Any) -> None:
        if not self.stop.dead:
            self.inner.append(run_id, records)

    def records(self, run_id: str) -> Any:
        return self.inner.records(run_id)

    def run_ids(self) -> list[str]:
        return self.inner.run_ids()

    def delete(self, run_id: str) -> None:
        self.inner.delete(run_id)


# ------------------------------------------------------------------------------- flows


class Step(Node):
    """A node whose writes and action follow from the state: replaying it is deterministic.
    ``ops`` are (op, key) pairs; the action is ``"a"`` or ``"b"`` by the counter's parity,
    ``"end"`` once the counter reaches ``limit``."""

    def __init__(self, node_id: str, ops: list[tuple[str, str]], limit: int, stop: Stop) -> None:
        super().__init__(id=node_id)
        self.ops = ops
        self.limit = limit
        self.stop = stop

    def prep(self, backpack: Any) -> int:
        return backpack.unpack("counter", 0)

    def exec(self, counter: int) -> int:
        run = current_run()
        if self.stop.at_step is not None and run.node_count == self.stop.at_step:
            self.stop.dead = True
            raise Crash(f"killed at step {run.node_count}")
        run.add_usage(input_tokens=counter, output_tokens=1, cost="0.001")
        return counter + 1

    def post(self, backpack: Any, counter: int, result: int) -> str:
        backpack.pack("counter", result)
        for op, key in self.ops:
            if op == "pack":
                backpack.pack(key, {"by": self.id, "at": result})
            elif op == "append":
                if not isinstance(backpack.peek(key), list):
                    backpack.pack(key, [])
                backpack.append(key, [f"{self.id}:{result}"])
            elif backpack.has(key):
                backpack.delete(key)
        if result >= self.limit:
            return "end"
        return "a" if result % 2 else "b"


FLOWS = st.fixed_dictionaries(
    {
        "size": st.integers(2, 5),
        "ops": st.lists(
            st.lists(
                st.tuples(st.sampled_from(["pack", "append", "delete"]), st.sampled_from("xyz")),
                max_size=3,
            ),
            min_size=5,
            max_size=5,
        ),
        "edges": st.lists(st.tuples(st.integers(0, 4), st.integers(0, 4)), min_size=5, max_size=5),
        "limit": st.integers(3, 12),
    }
)


def build(spec: dict[str, Any], stop: Stop) -> Flow:
    size = spec["size"]
    nodes = [Step(f"n{i}", spec["ops"][i], spec["limit"], stop) for i in range(size)]
    for i, node in enumerate(nodes):
        a, b = spec["edges"][i]
        node - "a" >> nodes[a % size]
        node - "b" >> nodes[b % size]
        node - "end" >> None  # type: ignore[operator]
    return Flow(nodes[0], max_steps=100)


def history(backpack: Backpack) -> list[tuple[Any, ...]]:
    return [(c.seq, c.op, c.key, c.version, c.node_id) for c in backpack.get_history()]


# ------------------------------------------------------------------------------- tests

_RUN_NUMBERS = itertools.count(1)  # a new run id per example: a reused one would resume


def test_records_come_back_as_appended(checkpointer):
    assert checkpointer.records("r-none") is None
    assert checkpointer.load("r-none") is None
    checkpointer.append("r-1", [{"k": "x", "n": 1}, {"k": "y", "nested": {"a": [1, "ü"]}}])
    checkpointer.append("r-1", [{"k": "z"}])
    checkpointer.append("r-2", [{"k": "w"}])

    assert checkpointer.records("r-1") == [
        {"k": "x", "n": 1},
        {"k": "y", "nested": {"a": [1, "ü"]}},
        {"k": "z"},
    ]
    assert sorted(checkpointer.run_ids()) == ["r-1", "r-2"]
    checkpointer.delete("r-1")
    assert checkpointer.records("r-1") is None
    assert checkpointer.run_ids() == ["r-2"]


@settings(
    max_examples=25,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(spec=FLOWS, crash_at=st.integers(0, 1000), mode=st.sampled_from(["node", "commit"]))
def test_a_crash_at_any_node_resumes_to_the_uninterrupted_result(
    checkpointer, spec, crash_at, mode
):
    reference = build(spec, Stop()).execute_sync(Backpack())
    assert reference.ok, reference.error

    stop = Stop()
    stop.at_step = 1 + crash_at % reference.node_count  # a step the run reaches (from 1)
    run_id = f"r-{next(_RUN_NUMBERS)}"
    killable = Killable(checkpointer, stop)
    crashed = None
    try:
        crashed = build(spec, stop).execute_sync(
            checkpointer=killable, run_id=run_id, durability=mode
        )
    except Crash:
        pass
    stop.dead = False  # the service restarts
    assert crashed is None, "the run reached its crash step"
    event(f"crashed ({mode}) in the {'last' if stop.at_step == reference.node_count else 'middle'}")
    assert checkpointer.load(run_id).status == "running"  # killed: nobody wrote its end

    resumed = build(spec, Stop()).execute_sync(checkpointer=checkpointer, run_id=run_id)

    assert resumed.ok, resumed.error
    assert resumed.backpack.to_dict() == reference.backpack.to_dict()
    assert history(resumed.backpack) == history(reference.backpack)
    assert resumed.node_count == reference.node_count
    assert resumed.totals == reference.totals
    assert resumed.action == reference.action
    seqs = [e.seq for e in resumed.events.get_events()]
    assert seqs == list(range(seqs[0], seqs[0] + len(seqs)))  # contiguous after the resume
    logs = [e.payload for e in resumed.events.get_events() if e.type.value == "log"]
    assert logs[0].data["resumed"] is True
    assert logs[0].data["rerun"] in {f"n{i}" for i in range(spec["size"])}
    assert checkpointer.load(run_id).status == "succeeded"
    # the resumed run's checkpoint is the same Backpack, rebuilt from its records alone
    rebuilt = checkpointer.load(run_id).backpack(checkpointer.load(run_id).last_seq)
    assert rebuilt.to_dict() == reference.backpack.to_dict()
    assert history(rebuilt) == history(reference.backpack)


def test_a_fork_keeps_its_lineage_and_runs_on_from_the_commit(checkpointer):
    spec = {
        "size": 2,
        "ops": [[("append", "x")], [("pack", "y")]] + [[]] * 3,
        "edges": [(1, 1), (0, 0)] + [(0, 0)] * 3,
        "limit": 6,
    }
    flow = build(spec, Stop())
    done = flow.execute_sync(checkpointer=checkpointer, run_id="source")
    assert done.ok, done.error
    commits = done.backpack.get_history()
    middle = next(c for c in commits if c.key == "counter" and c.version == 3)

    fork_id = flow.fork(checkpointer, "source", middle.commit_id, patch={"note": "forked"})
    forked = checkpointer.load(fork_id)
    assert forked.forked_from == {
        "run_id": "source",
        "commit_id": middle.commit_id,
        "seq": middle.seq,
    }
    assert forked.backpack().peek("counter") == 3
    assert forked.backpack().forked_from["commit_id"] == middle.commit_id

    ran = flow.execute_sync(checkpointer=checkpointer, run_id=fork_id)

    assert ran.ok, ran.error
    assert ran.backpack.peek("counter") == 6
    assert ran.backpack.peek("note") == "forked"
    # the fork's history keeps the source's commits up to the fork point
    assert [c.commit_id for c in ran.backpack.get_history()][: middle.seq] == [
        c.commit_id for c in commits[: middle.seq]
    ]
    assert checkpointer.load("source").status == "succeeded"  # the source is untouched
    assert checkpointer.load("source").last_seq == done.backpack.head.seq


class Ask(Node):
    def exec(self, _: Any) -> Any:
        return current_run().interrupt("name?", {"type": "string", "minLength": 1})

    def post(self, backpack: Any, prep_res: Any, answer: Any) -> None:
        backpack.pack("name", answer)


def test_a_paused_run_resumes_with_its_answer(checkpointer):
    flow = Flow(Ask(id="ask"))

    paused = flow.execute_sync(checkpointer=checkpointer, run_id="p-1")
    assert paused.status == "paused"
    assert isinstance(paused.error, RunPaused)
    assert checkpointer.load("p-1").paused["schema"] == {"type": "string", "minLength": 1}

    done = flow.execute_sync(checkpointer=checkpointer, run_id="p-1", answer="Ada")
    assert done.ok, done.error
    assert done.backpack.peek("name") == "Ada"


def test_concurrent_writers_lose_nothing(checkpointer):
    def write(run_id: str, n: int) -> None:
        for i in range(n):
            checkpointer.append(run_id, [{"k": "w", "i": i, "pad": "x" * (i % 7) * 100}])

    threads = [threading.Thread(target=write, args=(f"c-{i % 3}", 60)) for i in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    for run in range(3):
        records = checkpointer.records(f"c-{run}")
        assert len(records) == 120
        assert sorted(r["i"] for r in records) == sorted([*range(60), *range(60)])
