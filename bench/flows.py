"""The flow every overhead benchmark measures: 5 nodes in a line, node i reads ``k{i-1}`` and
writes ``k{i}`` = that value + 1, so a run from ``k0 = 0`` ends with ``k5 == 5``. The nodes do
no work of their own: what is measured is the framework."""

from __future__ import annotations

import itertools
from typing import Any

from backpackflow import BackpackView, Flow, Node
from backpackflow.runner import BoundContract, bind_contract

NODES = 5


class Step(Node):
    """Reads k{i-1}, writes k{i} = value + 1."""

    def __init__(self, i: int) -> None:
        super().__init__(id=f"n{i}")
        self.source = f"k{i - 1}"
        self.target = f"k{i}"

    def prep(self, backpack: BackpackView) -> Any:
        return backpack.unpack(self.source)

    def exec(self, value: Any) -> Any:
        return value + 1

    def post(self, backpack: BackpackView, prep_res: Any, exec_res: Any) -> None:
        backpack.pack(self.target, exec_res)


def linear_flow(nodes: int = NODES, *, mapped: bool = False) -> Flow:
    """A fresh flow of ``nodes`` Steps in a line. ``mapped``: each Step reads ``input``, a key
    mapping to ``k{i-1}`` (as a flow config's ``"mappings"`` binds it), so every read goes
    through a mapping."""
    steps = [Step(i) for i in range(1, nodes + 1)]
    if mapped:
        for step in steps:
            bind_contract(step, BoundContract({}, {}, mappings={"input": step.source}))
            step.source = "input"
    for a, b in itertools.pairwise(steps):
        a >> b
    return Flow(steps[0])
