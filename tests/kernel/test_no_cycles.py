"""A run leaves no reference cycles behind: everything it made is freed by reference counting
the moment it is dropped, not later by the cyclic garbage collector (whose full collections
would otherwise cost every run in a long-lived process)."""

from __future__ import annotations

import gc

from backpackflow import AsyncNode, Backpack, EventStreamer, Flow, Node


class Step(Node):
    def __init__(self, i: int) -> None:
        super().__init__(id=f"n{i}")
        self.i = i

    def prep(self, backpack):
        return backpack.unpack(f"k{self.i - 1}")

    def exec(self, value):
        return value + 1

    def post(self, backpack, prep_res, exec_res):
        backpack.pack(f"k{self.i}", exec_res)


class AsyncStep(AsyncNode):
    async def exec_async(self, prep_res):
        return 1


def _cyclic_garbage(run_once) -> list[object]:
    run_once()  # warm caches (compiled graphs, known keys)
    gc.collect()
    gc.disable()
    gc.set_debug(gc.DEBUG_SAVEALL)
    try:
        for _ in range(5):
            run_once()
        gc.collect()
        return list(gc.garbage)
    finally:
        gc.set_debug(0)
        gc.garbage.clear()
        gc.enable()


def test_a_sync_run_with_events_and_permissions_leaves_no_cycles():
    steps = [Step(i) for i in range(1, 4)]
    steps[0] >> steps[1] >> steps[2]
    flow = Flow(steps[0], namespace="demo")

    def run_once():
        events = EventStreamer()
        events.subscribe("*", lambda event: None)
        events.subscribe("demo.*", lambda event: None)
        backpack = Backpack({"k0": 0})
        backpack.register_permissions("n1", read=["k0"], write=["k1"])
        flow.run(backpack, events=events)

    assert _cyclic_garbage(run_once) == []


def test_an_async_run_leaves_no_cycles():
    flow = Flow(AsyncStep(id="a"))
    assert _cyclic_garbage(lambda: flow.run(Backpack())) == []
