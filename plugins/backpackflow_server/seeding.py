"""Demo workflows on first start: the examples of the installed plugins, or the flow files of
a directory.

By default the seeds are the examples the installed plugins register (``backpackflow examples
list``: the first-party ones ship inside the wheel), each run in its own folder. With
``--seed-dir DIR`` (the ``seed_dir`` setting) they are the files ``DIR/*.json`` and
``DIR/<folder>/*.json`` instead. "First start" means an empty database (no workflow and no run):
a restart, or a database whose user deleted the demos, is never seeded again. An invalid flow is
skipped with a warning naming the file and its problems, so a broken example never keeps the
service from starting. Older config versions are stored migrated to the current one.

A seeded flow's relative file paths point into its folder: :func:`seed_folders` maps each seed
document to its folder (on every start), and the run manager gives a workflow whose document is
still exactly a seed's that folder as its ``flow_dir``.
"""

from __future__ import annotations

import logging
import os
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Any

from starlette.concurrency import run_in_threadpool

from backpackflow.config import KeepUnset
from backpackflow.jsondata import loads as load_json
from backpackflow.loader import FlowLoader

from .runs import RunStore, document_key

if TYPE_CHECKING:
    from backpackflow.plugins import Registry

    from .settings import Settings

log = logging.getLogger("backpackflow_server.seeding")


def seed_files(directory: Path) -> list[Path]:
    return sorted([*directory.glob("*.json"), *directory.glob("*/*.json")])


def read_seeds(settings: Settings, registry: Registry, loader: FlowLoader) -> list[dict[str, Any]]:
    """The seeds ``settings`` ask for: none (``seed`` off), the flows of ``seed_dir``, or the
    installed plugins' examples."""
    if not settings.seed:
        return []
    if settings.seed_dir is not None:
        if not settings.seed_dir.is_dir():
            log.warning("seed directory %s does not exist; nothing seeded", settings.seed_dir)
            return []
        return read_seed_files(settings.seed_dir, loader)
    return example_seeds(registry, loader)


def example_seeds(registry: Registry, loader: FlowLoader) -> list[dict[str, Any]]:
    """The installed plugins' valid examples as seeds (the web UI's templates too)."""
    seeds = []
    for example in sorted(registry.examples.values(), key=lambda e: e.name):
        seed = _read_seed(example.flow_path, loader, example.name, example.description or None)
        if seed is not None:
            seeds.append(seed)
    return seeds


def read_seed_files(directory: Path, loader: FlowLoader) -> list[dict[str, Any]]:
    """The valid flow files under ``directory``: name, description, graph_json, folder."""
    seeds = []
    for path in seed_files(directory):
        name = path.parent.name if path.parent != directory else path.stem
        seed = _read_seed(path, loader, name, None, label=path.relative_to(directory))
        if seed is not None:
            seeds.append(seed)
    return seeds


def _read_seed(
    path: Path,
    loader: FlowLoader,
    name: str,
    description: str | None,
    *,
    label: Path | None = None,
) -> dict[str, Any] | None:
    """One seed (the flow's own name and description win), or ``None`` with a warning."""
    try:
        document = load_json(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:  # ValueError: not JSON (or nested too deeply)
        log.warning("not seeding %s: cannot read it as JSON (%s)", path, exc)
        return None
    if not isinstance(document, dict):
        log.warning("not seeding %s: a flow config is a JSON object", path)
        return None
    report = loader.validate(document, environ=KeepUnset(os.environ))
    if report.errors:
        log.warning("not seeding %s: %s", path, "; ".join(report.errors))
        return None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "migrated from version 1": expected here
        document = loader.migrate(document, label=str(path))
    own_name = document.get("name")
    own_description = document.get("description")
    return {
        "name": own_name if isinstance(own_name, str) and own_name.strip() else name,
        "description": own_description
        if isinstance(own_description, str)
        else description or f"demo workflow seeded from {label or path}",
        "graph_json": document,
        "folder": path.parent,
        "source": path,
    }


def seed_folders(seeds: list[dict[str, Any]]) -> dict[str, Path]:
    """Each seed document (by :func:`document_key`) → the folder its file is in."""
    return {document_key(seed["graph_json"]): seed["folder"] for seed in seeds}


async def seed_workflows(store: RunStore, seeds: list[dict[str, Any]]) -> list[str]:
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
        log.info("seeded demo workflow %r from %s", seed["name"], seed["source"])
    return created
