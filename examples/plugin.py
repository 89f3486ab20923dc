"""The first-party examples, registered like a third party's (entry point ``examples``)."""

from __future__ import annotations

import sys
from pathlib import Path

from backpackflow import hookimpl
from backpackflow.plugins import ExampleRegistrar

HERE = Path(__file__).resolve().parent


@hookimpl
def backpackflow_register_examples(register: ExampleRegistrar) -> None:
    register("research", HERE / "research")
    register("csv-report", HERE / "csv-report")
    register("agent", HERE / "agent")
    register(
        "flowtrace",
        HERE / "flowtrace",
        flow="workflow-v1.json",
        description="A FlowTrace (version 1) workflow, loaded through a migration: read "
        "release notes, summarize them, decide whether they need a deep analysis.",
    )


#: What the entry point names ("<module>:plugin"): this module itself.
plugin = sys.modules[__name__]
