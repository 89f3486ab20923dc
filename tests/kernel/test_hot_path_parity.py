"""Every hot-path copy gives what the code it copies gives (each copy sits next to its original;
Emitter.emit vs EventStreamer.emit is checked in test_events.py):

- the node lifecycle runs one attempt of a plain sync node inline instead of through
  ``exec_phase`` / ``_exec_with_retries`` (runner/lifecycle.py);
- a node view's own accesses become events inline in ``Backpack._write`` / ``_read`` instead of
  through ``access_event`` (backpack/_backpack.py);
- ``NodeFrame.__init__`` inlines ``Emitter.__init__`` (runner/context.py);
- the scheduler follows one unconditional edge itself instead of calling ``_follow``, and the
  lifecycle joins namespaces inline instead of calling ``namespaces.join``.
"""

from __future__ import annotations

import itertools
from typing import Any

import pytest

from backpackflow import Backpack, EventStreamer, Flow, Node, StreamEventType
from backpackflow.backpack import AccessRecord, access_event
from backpackflow.events import Emitter
from backpackflow.namespaces import join
from backpackflow.runner import NodeFrame, Run
from backpackflow.runner.graph import _follow
from backpackflow.runner.lifecycle import exec_phase

T = StreamEventType


class Plain(Node):
    """Takes the inline path: a sync Node, one attempt, plain exec phase."""

    def __init__(self, outcome: str, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.outcome = outcome

    def prep(self, backpack):
        return backpack.unpack("question", "?")

    def exec(self, prep_res):
        if self.outcome in ("raise", "fallback"):
            raise RuntimeError("exec failed")
        return f"answer to {prep_res}"

    def exec_fallback(self, prep_res, exc):
        if self.outcome == "fallback":
            return "fallback answer"
        raise exc

    def post(self, backpack, prep_res, exec_res):
        backpack.pack("answer", exec_res)
        return "done"


class General(Plain):
    """The same node through the general path: an exec phase that is not the plain one object
    (so the lifecycle cannot inline it) but does what the plain one does."""

    async def _exec_phase(self, run, prep_res, namespace):
        return await exec_phase(self, run, prep_res, namespace)


def _trace(node_class: type[Plain], outcome: str) -> tuple[list[tuple[Any, ...]], Any]:
    events = EventStreamer()
    node = node_class(outcome, id="n", name="N", namespace="inner")
    node.node_type = "answer"  # events name the node type; the classes differ
    backpack = Backpack({"question": "q"})
    result = Flow(node, namespace="outer").execute_sync(backpack, events=events)
    shown = []
    for event in events.get_events():
        payload = event.payload
        if event.type in (T.EXEC_COMPLETE, T.NODE_END):
            payload = payload[:-1]  # without the duration
        elif event.type == T.RUN_END:
            payload = (payload[0], *payload[2:])  # without the duration
        elif event.type in (T.NODE_START, T.ERROR):
            payload = payload[:3]  # without the state snapshot and the stack
        elif event.type == T.BACKPACK_PACK:
            payload = (payload.key, payload.op, payload.value, payload.version)
        elif event.type == T.RUN_START:
            payload = payload[0]
        shown.append((event.seq, event.step, event.node_id, event.namespace, event.type, payload))
    return shown, (result.status, result.action, backpack.to_dict())


@pytest.mark.parametrize("outcome", ["ok", "fallback", "raise"])
def test_the_inline_lifecycle_gives_what_the_general_path_gives(outcome):
    inline, inline_result = _trace(Plain, outcome)
    general, general_result = _trace(General, outcome)
    assert inline == general
    assert inline_result == general_result
    types = [e[4] for e in inline]
    assert T.EXEC_COMPLETE in types or outcome == "raise"
    assert (T.LOG in types) == (outcome == "fallback")  # the fallback is reported either way


def test_a_views_own_access_events_are_what_access_event_makes():
    reporting, observing = Backpack({"keep": [1]}), Backpack({"keep": [1]})
    reported: list[tuple[Any, Any, Any]] = []
    view = reporting._view("n", "N", "ns", lambda t, p, at=None: reported.append((t, p, at)))
    observed: list[AccessRecord] = []
    observing.add_observer(observed.append)
    plain = observing.view(node_id="n", node_name="N", namespace="ns")
    for target in (view, plain):
        target.pack("k", {"a": 1}, tags=["t"])
        target.append("keep", [2])
        target.unpack("k")
        target.unpack("missing")
        target.delete("k")
    # the same five accesses, reported inline by one view and observed (then access_event) for
    # the other: the events must match except for the commit ids
    assert len(reported) == len(observed) == 5
    for (type_, payload, at), record in zip(reported, observed, strict=True):
        made_type, made, made_at = access_event(record)
        assert type_ is made_type
        if type_ is T.BACKPACK_PACK:
            assert payload._replace(commit_id=None) == made._replace(commit_id=None)
            # a write's event: its commit's time
            assert at == reporting.get_commit(payload.commit_id).timestamp
            assert made_at == record.timestamp == record.commit.timestamp
        else:
            assert payload == made
            assert at is None  # a read is stamped when its event is made


def test_a_node_frame_is_the_emitter_it_inlines():
    backpack = Backpack()
    run = Run(flow_name="f", backpack=backpack, events=EventStreamer())
    frame = NodeFrame(run, "n", "N", "ns", 3)
    emitter = Emitter(run.events, run._seq, run.run_id, 3, "n", "N", "ns", run._home, run._away)
    for slot in (
        "_stream",
        "_counter",
        "run_id",
        "step",
        "node_id",
        "node_name",
        "namespace",
        "parent_step",
    ):
        assert getattr(frame, slot) is getattr(emitter, slot), slot
    assert frame._home == emitter._home and frame._away == emitter._away
    slots = {s for cls in type(emitter).__mro__ for s in getattr(cls, "__slots__", ())}
    assert slots == {"_away", "_counter", "_home", "_stream"} | {
        "namespace",
        "node_id",
        "node_name",
        "parent_step",
        "run_id",
        "step",
    }, "Emitter has a new attribute: NodeFrame.__init__ must set it too"


def test_the_schedulers_one_edge_shortcut_is_follows_common_case():
    a, b = Plain("ok", id="a"), Plain("ok", id="b")
    a - "done" >> b
    run = Run(flow_name="f", backpack=Backpack(), events=EventStreamer())
    assert list(_follow(run, a, "done", None, None)) == [b]
    trace, _ = _trace(Plain, "ok")
    assert trace  # and a run through the shortcut reaches b:
    events = EventStreamer()
    Flow(a).execute_sync(Backpack(), events=events)
    assert [e.node_id for e in events.get_events() if e.type is T.NODE_START] == ["a", "b"]


@pytest.mark.parametrize(
    ("flow_ns", "node_ns"), list(itertools.product([None, "outer", "o.p"], [None, "inner"]))
)
def test_the_lifecycles_inline_namespace_join_is_join(flow_ns, node_ns):
    events = EventStreamer()
    Flow(Plain("ok", id="n", namespace=node_ns), namespace=flow_ns).execute_sync(
        Backpack(), events=events
    )
    (start,) = [e for e in events.get_events() if e.type is T.NODE_START]
    assert start.namespace == join(flow_ns, node_ns)
