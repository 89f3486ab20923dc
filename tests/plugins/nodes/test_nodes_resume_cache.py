"""A durable run killed after an llm node's call, before its checkpoint landed: the resume runs
the node again, and the response cache answers it, so the provider is called once."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from llm_wire import Reply
from nodes_support import cached_openai, flow_doc, llm, load, openai_completion

from backpackflow import Backpack, EventStreamer, MemoryCheckpointer


class _Killed(BaseException):
    """The process dying: nothing after it runs (not an Exception a node could catch)."""


class KilledBeforeFirstPosition(MemoryCheckpointer):
    """Loses the first node's records, as a kill -9 right after its call would."""

    def __init__(self) -> None:
        super().__init__()
        self.killed = False

    def append(self, run_id: str, records: Sequence[Mapping[str, Any]]) -> None:
        if not self.killed and any(r.get("k") == "pos" for r in records):
            self.killed = True
            raise _Killed
        super().append(run_id, records)


def test_the_node_in_flight_runs_again_from_the_cache(wire_server, monkeypatch) -> None:
    monkeypatch.setenv("BPF_TEST_KEY", "sk-resume-test")
    openai = wire_server(Reply(json=openai_completion("Paris.", prompt_tokens=40)))
    flow = load(
        flow_doc(
            llm("ask", "Capital of France?", provider="primary", model="gpt-4o-mini"),
            dependencies=cached_openai(openai.url),
        )
    )
    checkpoints = KilledBeforeFirstPosition()
    try:
        flow.execute_sync(Backpack(), checkpointer=checkpoints, run_id="r")
    except _Killed:
        pass
    assert checkpoints.killed and len(openai.requests) == 1
    assert checkpoints.load("r").position["pending"] == ["ask"]  # the node never finished

    events = EventStreamer()
    resumed = flow.execute_sync(Backpack(), checkpointer=checkpoints, run_id="r", events=events)

    assert resumed.ok, resumed.error
    assert len(openai.requests) == 1  # answered by the cache, not the provider
    assert [e.node_id for e in events.get_events() if e.type.value == "cache_hit"] == ["ask"]
    log = next(e for e in events.get_events() if e.type.value == "log")
    assert "node 'ask' runs again" in log.payload.message
    assert resumed.backpack.peek("ask") == "Paris."
