"""What the loader binds to a node about its data: its contract and its key mappings.

Data contracts at run time: a value a node reads or writes that breaks its contract's JSON
Schema is an error naming the node, the key and the place inside the value — where it happens,
not three nodes later. (Advisory flows get a ``log`` event at level ``warning`` instead.)

Key mappings (``{name: Backpack key}``, from the flow's edges and nodes): the node reads ``name``
and gets the key's value, through a :class:`~backpackflow.backpack.MappedView` around its view.
A contract's read ``name`` is checked against the value so read.

Both run around the node's own ``prep`` and ``post`` (a subclass per node class, made once, so
the lifecycle and its per-execution copies of the node are untouched, and a node with neither
costs nothing)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import attrs

from backpackflow.backpack import MappedView
from backpackflow.config import DataSchema, value_problems
from backpackflow.errors import BackpackFlowError
from backpackflow.runner.base import BaseNode
from backpackflow.runner.context import current_run_or_none


class ContractViolation(BackpackFlowError, ValueError):
    """A Backpack value breaks the data contract of the node reading or writing it."""

    def __init__(self, message: str, *, node_id: str, key: str, problems: list[str]) -> None:
        super().__init__(message)
        self.node_id = node_id
        self.key = key
        self.problems = problems


@attrs.frozen
class BoundContract:
    """The contract of one node: ``{key: JSON Schema}`` read and written, whether a
    violation fails the run (``strict``) or is logged, and its key ``mappings`` (``{name:
    Backpack key}``; ``origins``: where each is declared, e.g. ``$.edges[0].mappings``)."""

    reads: Mapping[str, DataSchema]
    writes: Mapping[str, DataSchema]
    strict: bool = True
    mappings: Mapping[str, str] = attrs.field(factory=dict)
    origins: Mapping[str, str] = attrs.field(factory=dict)


_CHECKED: dict[type, type] = {}
_ABSENT = object()


def bind_contract(node: BaseNode, contract: BoundContract) -> None:
    """Check ``node``'s reads and writes against ``contract`` and apply its mappings whenever
    it runs."""
    if not contract.mappings and not any(
        s is not True for s in (*contract.reads.values(), *contract.writes.values())
    ):
        return  # nothing a value could break, no name to map
    cls = type(node)
    checked = _CHECKED.get(cls)
    if checked is None:
        checked = _CHECKED[cls] = _checked_class(cls)
    node.data_contract = contract  # type: ignore[attr-defined]
    node.__class__ = checked


def check_values(
    node: BaseNode, view: Any, keys: Any, schemas: Mapping[str, Any], verb: str
) -> None:
    """Check the values of ``keys`` the node read (through ``view``: its permissions and
    mappings apply; a read a graceful Backpack denies is not checked) or wrote (``verb``
    ``"wrote"``: the stored value, which the node may write without being allowed to read)."""
    contract: BoundContract = node.data_contract  # type: ignore[attr-defined]
    run = current_run_or_none() if verb == "wrote" else None
    peek = view.peek if run is None else run.backpack.peek
    for key in keys:
        schema = schemas.get(key, True)
        if schema is True:
            continue
        value = peek(key, _ABSENT)
        if value is _ABSENT:  # absent, deleted, or a read a graceful Backpack denied
            continue
        problems = value_problems(schema, value, f"{key}")
        if not problems:
            continue
        source = contract.mappings.get(key) if verb == "reads" else None
        shown = f"{key!r}" if source is None else f"{key!r} (mapped to key {source!r})"
        message = (
            f"node {node.id!r} {verb} key {shown}, which breaks its data contract: "
            + "; ".join(problems)
        )
        if contract.strict:
            raise ContractViolation(message, node_id=node.id, key=key, problems=problems)
        run = current_run_or_none()
        if run is not None:
            run.log(message, level="warning", data={"key": key, "problems": problems})


def _checked_class(cls: type) -> type:
    """``cls`` with its mappings applied to the views it is handed, its reads checked before
    ``prep`` and its writes after ``post``."""
    if cls.is_async:  # type: ignore[attr-defined]

        async def prep_async(self: Any, backpack: Any) -> Any:
            contract = self.data_contract
            if contract.mappings:
                backpack = MappedView(backpack, contract.mappings, contract.origins)
            check_values(self, backpack, contract.reads, contract.reads, "reads")
            return await cls.prep_async(self, backpack)  # type: ignore[attr-defined]

        async def post_async(self: Any, backpack: Any, prep_res: Any, exec_res: Any) -> Any:
            contract = self.data_contract
            if contract.mappings:
                backpack = MappedView(backpack, contract.mappings, contract.origins)
            action = await cls.post_async(self, backpack, prep_res, exec_res)  # type: ignore[attr-defined]
            check_values(self, backpack, backpack.writes, contract.writes, "wrote")
            return action

        body: dict[str, Any] = {"prep_async": prep_async, "post_async": post_async}
    else:

        def prep(self: Any, backpack: Any) -> Any:
            contract = self.data_contract
            if contract.mappings:
                backpack = MappedView(backpack, contract.mappings, contract.origins)
            check_values(self, backpack, contract.reads, contract.reads, "reads")
            return cls.prep(self, backpack)  # type: ignore[attr-defined]

        def post(self: Any, backpack: Any, prep_res: Any, exec_res: Any) -> Any:
            contract = self.data_contract
            if contract.mappings:
                backpack = MappedView(backpack, contract.mappings, contract.origins)
            action = cls.post(self, backpack, prep_res, exec_res)  # type: ignore[attr-defined]
            check_values(self, backpack, backpack.writes, contract.writes, "wrote")
            return action

        body = {"prep": prep, "post": post}
    body["__module__"] = cls.__module__
    body["__doc__"] = cls.__doc__
    checked = type(cls.__name__, (cls,), body)
    return checked
