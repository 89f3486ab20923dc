"""Publishing the flow schema: the document under ``schemas/flow/<version>.json`` (and its copy
shipped in the package) is the core composed with this distribution's own node types, dependency
factories and sinks, nothing else that happens to be installed.

It lives outside the kernel because it needs the first-party plugins by name, and the kernel
never imports a plugin. Regenerate a new version's document with::

    python tools/publish_schema.py            # prints the document
    python tools/publish_schema.py --write    # writes schemas/flow/ and the package's copy

(released versions are never edited: tests/test_schemas_published.py checks both copies).
"""

from __future__ import annotations

import argparse
import importlib
import sys
from pathlib import Path
from typing import Any

from backpackflow.config import CURRENT_VERSION
from backpackflow.loader import SCHEMA_ID, dumps_schema, flow_schema
from backpackflow.plugins import build_registry

ROOT = Path(__file__).resolve().parents[1]

#: The plugins whose node types, dependency factories and sinks the published schemas describe
#: (this distribution's own).
FIRST_PARTY_NODE_PLUGINS = (
    "backpackflow_nodes.plugin",
    "backpackflow_llm.plugin",
    "backpackflow_sinks.console",
    "backpackflow_sinks.jsonl",
    "backpackflow_sinks.webhook",
)


def published_schema(version: str = CURRENT_VERSION) -> dict[str, Any]:
    """The schema of ``version`` as published: the core with the first-party plugins only, so it
    does not depend on what else is installed. The only document that carries the ``$id``."""
    modules = [importlib.import_module(name) for name in FIRST_PARTY_NODE_PLUGINS]
    registry = build_registry(plugins=modules, autoload=False)
    return {**flow_schema(registry, version=version), "$id": SCHEMA_ID.format(version=version)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--version", default=CURRENT_VERSION, help="the schema version")
    parser.add_argument(
        "--write", action="store_true", help="write schemas/flow/ and the package's copy"
    )
    args = parser.parse_args(argv)
    text = dumps_schema(published_schema(args.version))
    if not args.write:
        sys.stdout.write(text)
        return 0
    for folder in (
        ROOT / "schemas" / "flow",
        ROOT / "kernel" / "backpackflow" / "schemas" / "flow",
    ):
        (folder / f"{args.version}.json").write_text(text, encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
