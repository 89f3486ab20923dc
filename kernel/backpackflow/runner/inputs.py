"""A flow's declared run inputs and outputs: checking the inputs a caller gives (unknown names,
missing required ones, values against their JSON Schemas, defaults filled), packing them into
the Backpack when the run starts, and reading the declared outputs back when it ends.

Inputs are packed as ordinary commits (by ``node_name="inputs"``), so they show in the history,
in snapshots and as ``backpack_pack`` events of the run like any node's writes: a node reads a
flow input exactly as it reads what an upstream node wrote.
"""

from __future__ import annotations

import copy
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any

import attrs

from backpackflow.config import DataSchema, value_problems
from backpackflow.errors import ConfigError

if TYPE_CHECKING:  # annotations only: the Backpack is handed in by the flow
    from backpackflow.backpack import Backpack

#: The ``node_name`` of the commits that pack a run's inputs.
INPUTS_WRITER = "inputs"


@attrs.frozen(kw_only=True)
class InputSpec:
    """One declared input: its JSON ``schema`` (``None``: any JSON value), ``default`` (used
    when the caller gives none; ``None``: no default), whether it is ``required``."""

    name: str
    schema: DataSchema | None = None
    default: Any = None
    required: bool = False
    description: str | None = None


def resolve_inputs(
    specs: Mapping[str, InputSpec], given: Mapping[str, Any] | None, *, path: str = "inputs"
) -> dict[str, Any]:
    """The inputs of a run: ``given`` checked against ``specs``, defaults filled in.

    With no specs every given input is accepted as it is (a flow built in code, or one that
    declares no inputs). Otherwise an input the flow does not declare, a required one missing
    and a value that breaks its schema are all errors, reported together, each at
    ``<path>.<name>`` (and the place inside the value)."""
    given = dict(given or {})
    if not specs:
        return given
    problems = [
        f"{path}.{name}: unknown input; the flow declares {', '.join(repr(n) for n in specs)}"
        for name in sorted(set(given) - set(specs))
    ]
    inputs: dict[str, Any] = {}
    for name, spec in specs.items():
        if name in given:
            value = given[name]
        elif spec.default is not None:
            value = copy.deepcopy(spec.default)
        else:
            if spec.required:
                what = f" ({spec.description})" if spec.description else ""
                problems.append(f"{path}.{name}: required input missing{what}")
            continue
        if spec.schema is not None:
            problems.extend(value_problems(spec.schema, value, f"{path}.{name}"))
        inputs[name] = value
    if problems:
        raise ConfigError("; ".join(problems), problems)
    return inputs


def pack_inputs(
    backpack: Backpack, specs: Mapping[str, InputSpec], inputs: Mapping[str, Any], namespace: Any
) -> None:
    """Pack the declared inputs a run has into its Backpack, in declaration order."""
    for name in specs:
        if name in inputs:
            backpack.pack(name, inputs[name], node_name=INPUTS_WRITER, namespace=namespace)


def read_outputs(backpack: Backpack, keys: Iterable[str]) -> dict[str, Any]:
    """The declared outputs the Backpack holds at the end of a run (absent keys are left out:
    a branch that did not run wrote nothing)."""
    return {key: backpack.unpack(key) for key in keys if backpack.has(key)}
