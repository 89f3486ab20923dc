"""Demo workflows on first start: every valid flow file of a directory.

Flow files are ``<dir>/*.json`` and ``<dir>/<folder>/*.json`` (the examples keep each flow in a
folder with its data: ``examples/research/flow.json`` beside ``notes.md``). "First start" means
an empty database (no workflow and no run): a restart, or a database whose user deleted the
demos, is never seeded again. Files are seeded in path order; an invalid one is skipped with a
warning naming the file and its problems, so a broken example never keeps the service from
starting. Older config versions are stored migrated to the current one.

A seeded flow's relative file paths point into its folder: :func:`seed_folders` maps each seed
document to its folder (on every start), and the run manager gives a workflow whose document is
still exactly a seed's that folder as its ``flow_dir``.
"""

from __future__ import annotations

import logging
import os
import warnings
from pathlib import Path
from typing import Any

from starlette.concurrency import run_in_threadpool

from backpackflow.config import KeepUnset
from backpackflow.jsondata import loads as load_json
from backpackflow.loader import FlowLoader

from .runs import RunStore, document_key

log = logging.getLogger("backpackflow_server.seeding")


def seed_files(directory: Path) -> list[Path]:
    return sorted([*directory.glob("*.json"), *directory.glob("*/*.json")])


def read_seed_files(directory: Path, loader: FlowLoader) -> list[dict[str, Any]]:
    """The valid flow files under ``directory``: name, description, graph_json, folder."""
    seeds: list[dict[str, Any]] = []
    for path in seed_files(directory):
        try:
            document = load_json(path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:  # ValueError: not JSON (or nested too deeply)
            log.warning("not seeding %s: cannot read it as JSON (%s)", path, exc)
            continue
        if not isinstance(document, dict):
            log.warning("not seeding %s: a flow config is a JSON object", path)
            continue
        report = loader.validate(document, environ=KeepUnset(os.environ))
        if report.errors:
            log.warning("not seeding %s: %s", path, "; ".join(report.errors))
            continue
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # "migrated from version 1": expected here
            document = loader.migrate(document, label=str(path))
        name = document.get("name")
        if not (isinstance(name, str) and name.strip()):
            name = path.parent.name if path.parent != directory else path.stem
        description = document.get("description")
        seeds.append(
            {
                "name": name,
                "description": description
                if isinstance(description, str)
                else f"demo workflow seeded from {path.relative_to(directory)}",
                "graph_json": document,
                "folder": path.parent,
            }
        )
    return seeds


def seed_folders(seeds: list[dict[str, Any]]) -> dict[str, Path]:
    """Each seed document (by :func:`document_key`) → the folder its file is in."""
    return {document_key(seed["graph_json"]): seed["folder"] for seed in seeds}


async def seed_workflows(
    store: RunStore, seeds: list[dict[str, Any]], directory: Path
) -> list[str]:
    """Store the seeds as workflows if the database is new; returns the ids created."""
    workflows = await run_in_threadpool(store.list_workflows)
    runs = await run_in_threadpool(store.list_runs, None, None, 1)
    if workflows or runs:
        return []
    created = []
    for seed in seeds:
        workflow = await run_in_threadpool(
            store.create_workflow, seed["name"], seed["graph_json"], seed["description"]
        )
        created.append(workflow["id"])
        log.info("seeded demo workflow %r from %s", seed["name"], directory)
    return created
