"""Turning problems into 422 bodies: every entry has a ``loc`` (FastAPI's) and a JSON ``path``.

The kernel reports flow problems as ``"$.nodes[2].params.temperature: message"`` strings;
FastAPI reports request problems as ``loc`` tuples. Both become the same shape here, so a
client handles one format for every 422 of the API.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any

from .models import Problem

_PROBLEM = re.compile(r"^(\$(?:\.[^\s.\[:]+|\[\d+\])*):\s(.*)$", re.DOTALL)
_STEP = re.compile(r"\.([^\s.\[:]+)|\[(\d+)\]")
_PARAMETER_SOURCES = ("path", "query", "header", "cookie")


def split_problem(problem: str) -> tuple[str, list[str | int], str]:
    """``"$.a[2].b: msg"`` → (``"$.a[2].b"``, ``["a", 2, "b"]``, ``"msg"``)."""
    match = _PROBLEM.match(problem)
    if match is None:
        return "$", [], problem
    path, message = match.groups()
    steps: list[str | int] = [
        int(index) if index else name for name, index in _STEP.findall(path[1:])
    ]
    return path, steps, message


def flow_problems(where: str, problems: Sequence[str]) -> list[Problem]:
    """Problems of a flow document (``where``: ``graph_json``, ``workflow``, ``input_vars``, a
    paused run's ``answer``), or of the request body itself (``body``: text the databases
    cannot store, deep nesting).

    Flow paths stay relative to the flow document (as ``backpackflow validate`` prints them);
    ``loc`` places them in the request.
    """
    result = []
    for problem in problems:
        path, steps, message = split_problem(problem)
        if where in ("input_vars", "answer"):  # the kernel-style path starts at the body
            loc: list[str | int] = ["body", *steps]
            kind = "run_input" if where == "input_vars" else "run_answer"
        elif where == "body":
            loc, kind = ["body", *steps], "request_body"
        elif where == "workflow":
            loc = ["workflow", "graph_json", *steps]
            kind = "stored_flow"
        else:
            loc = ["body", where, *steps]
            kind = "flow_config"
        result.append(Problem(loc=loc, path=path, msg=message, type=kind))
    return result


def path_of(loc: Sequence[Any]) -> str:
    """A JSON path for a FastAPI ``loc``: body fields as ``$.a[0].b``, parameters as
    ``query.limit`` / ``header.last-event-id`` / ``path.run_id``."""
    if not loc:
        return "$"
    source, *rest = loc
    if source != "body":
        return ".".join(str(part) for part in loc)
    path = "$"
    for part in rest:
        path += f"[{part}]" if isinstance(part, int) else f".{part}"
    return path


def request_problems(errors: Sequence[Mapping[str, Any]]) -> list[Problem]:
    """FastAPI's validation errors with a JSON path added."""
    problems = []
    for error in errors:
        loc = [part if isinstance(part, int) else str(part) for part in error.get("loc", ())]
        if loc and loc[0] in _PARAMETER_SOURCES:
            loc = loc[:2]  # a parameter is its name; the rest is pydantic's union member tag
        problems.append(
            Problem(
                loc=loc,
                path=path_of(loc),
                msg=str(error.get("msg", "invalid")),
                type=str(error.get("type", "value_error")),
            )
        )
    return problems
