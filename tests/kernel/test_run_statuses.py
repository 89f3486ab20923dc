"""What run statuses say: a timeout interrupts a synchronous node that is still running (the
run ends with the timeout; the node's thread is left to finish on its own), and a canceled
step is reported canceled, not failed."""

from __future__ import annotations

import asyncio
import threading

from backpackflow import Backpack, Flow, GuardrailExceeded, Node, RunControl, RunResult
from backpackflow.events import summarize


class Blocking(Node):
    """Waits (synchronously) until released: stands for a node that runs too long."""

    finished_any = False

    def __init__(self, release: threading.Event, started: threading.Event) -> None:
        super().__init__(id="slow")
        self.release = release
        self.started = started

    def exec(self, prep_res: object) -> str:
        self.started.set()
        self.release.wait(30)
        type(self).finished_any = True
        return "done"


def test_a_timeout_ends_the_run_while_a_sync_node_is_still_running():
    release, started = threading.Event(), threading.Event()
    Blocking.finished_any = False
    flow = Flow(Blocking(release, started), timeout=0.2)
    try:
        result = flow.execute_sync(Backpack())
        # the run ended while the node was still waiting: it never got to return
        assert not Blocking.finished_any
    finally:
        release.set()
    assert result.status == "failed"
    assert isinstance(result.error, GuardrailExceeded)
    assert result.error.limit == "timeout"
    guardrails = [e for e in result.events.get_events() if e.type.value == "guardrail"]
    assert guardrails[0].payload.limit == "timeout"


def test_a_canceled_step_is_reported_canceled():
    release, started = threading.Event(), threading.Event()
    control = RunControl()
    node = Blocking(release, started)
    node.blocking = True  # sent to a thread: the run's loop stays free to take the cancel
    flow = Flow(node)

    async def main() -> RunResult:
        run = asyncio.ensure_future(flow.execute(Backpack(), control=control))
        await asyncio.to_thread(started.wait, 30)
        control.cancel("stop it")
        try:
            return await run
        finally:
            release.set()

    result = asyncio.run(main())

    assert result.status == "canceled"
    errors = [e.payload for e in result.events.get_events() if e.type.value == "error"]
    assert errors[0].error_type == "CancelledError"
    summary = summarize(result.events.get_events(run_id=result.run_id))
    assert [s.status for s in summary.steps] == ["canceled"]
