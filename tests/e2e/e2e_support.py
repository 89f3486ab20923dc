"""Helpers of the end-to-end tests: run ``backpackflow`` commands in-process and read the
summary table that ``run`` prints."""

from __future__ import annotations

from decimal import Decimal

from backpackflow.cli import main
from backpackflow.events import COLUMNS


def table(stdout: str) -> tuple[list[dict[str, str]], dict[str, str]]:
    """The summary table printed by ``run``: its step rows and its total row, as dicts by
    column (cells are sliced at the header's column positions)."""
    lines = stdout.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("#  node"))
    header = lines[start]
    positions = [header.index(name) for name in COLUMNS]
    assert positions == sorted(positions)
    bounds = [*positions[1:], None]

    def cells(line: str) -> dict[str, str]:
        return {
            name: line[begin:end].strip()
            for name, begin, end in zip(COLUMNS, positions, bounds, strict=True)
        }

    body = lines[start + 2 :]
    rules = [i for i, line in enumerate(body) if set(line.replace(" ", "")) == {"-"}]
    steps = [cells(line) for line in body[: rules[0]]]
    total = cells(body[rules[0] + 1])
    return steps, total


def dollars(cell: str) -> Decimal:
    assert cell.startswith("$"), cell
    return Decimal(cell[1:])


def run_cli(capsys, *argv: str) -> tuple[int, str, str]:
    code = main(["run", *argv])
    out, err = capsys.readouterr()
    return code, out, err
