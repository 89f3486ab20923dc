"""This package's nodes compose with first-party ones through key mappings, with no wrapper
code: ``compose.json`` maps ``text_stats``'s ``text`` to the flow input ``ticket`` and lets the
``llm`` node's template read what ``text_stats`` wrote under ``figures`` as ``measured``."""

from __future__ import annotations

import json

from backpackflow import Backpack
from backpackflow.loader import FlowLoader

from backpackflow_example_nodes.text import words
from helpers import FLOWS, cli

COMPOSE = FLOWS / "compose.json"
TICKET = "The app crashes at login. It shows an error and a stack trace."


def test_compose_runs_from_the_command_line() -> None:
    result = cli("run", str(COMPOSE), "--input", f"ticket={TICKET}", "--sink", "none", "--json")
    assert result.returncode == 0, result.stderr
    outputs = json.loads(result.stdout)["outputs"]
    assert outputs["figures"]["words"] == len(words(TICKET))
    assert outputs["brief"].startswith(f"A ticket of {len(words(TICKET))} words: The app")


def test_the_mapped_reads_are_in_the_events(loader: FlowLoader) -> None:
    result = loader.load_flow(COMPOSE).execute_sync(Backpack(), inputs={"ticket": TICKET})
    reads = {
        (e.node_id, e.payload.key, e.payload.read_as)
        for e in result.events.get_events(run_id=result.run_id)
        if e.type == "backpack_unpack"
    }
    assert reads == {
        ("stats", "ticket", "text"),
        ("brief", "figures", "measured"),
        ("brief", "ticket", "body"),
    }
