"""Events emitted from worker threads reach subscribers in seq order, on the run's thread."""

from __future__ import annotations

import threading

from backpackflow import Backpack, EventStreamer, Flow, Node, ParallelBatchNode, current_run
from backpackflow.events import LogPayload, StreamEventType


class Chatty(ParallelBatchNode):
    """Items run in worker threads; each emits several events from its thread."""

    def prep(self, backpack):
        return list(range(40))

    def exec(self, item):
        run = current_run()
        for n in range(25):
            run.emit(StreamEventType.LOG, LogPayload("info", f"item {item} event {n}"))
        return item


class Blocking(Node):
    def __init__(self) -> None:
        super().__init__(blocking=True, id="blocking")

    def exec(self, prep_res):
        current_run().log("from a worker thread")
        return threading.get_ident()


def test_thread_emitted_events_arrive_in_seq_order_on_the_run_thread():
    streamer = EventStreamer(history_size=0)
    seqs: list[int] = []
    threads: set[int] = set()

    def handler(event):
        seqs.append(event.seq)
        threads.add(threading.get_ident())

    streamer.subscribe("*", handler)
    node = Chatty(id="chatty")
    result = Flow(node, parallel=True).execute_sync(Backpack(), events=streamer)
    assert result.ok
    assert len(seqs) == 40 * 25 + 6  # the logs, run_start/end and the node's 4 lifecycle events
    assert seqs == sorted(seqs) and len(set(seqs)) == len(seqs)
    assert seqs == list(range(1, len(seqs) + 1))
    assert len(threads) == 1


def test_a_blocking_node_logs_from_its_thread_with_its_identity():
    streamer = EventStreamer()
    result = Flow(Blocking(), parallel=True).execute_sync(Backpack(), events=streamer)
    assert result.ok
    (log,) = streamer.get_events(type=StreamEventType.LOG)
    assert (log.node_id, log.step) == ("blocking", 1)
    exec_complete = streamer.get_events(type=StreamEventType.EXEC_COMPLETE)[0]
    assert exec_complete.payload.exec_result != threading.get_ident()  # it ran elsewhere
    assert log.seq < exec_complete.seq
