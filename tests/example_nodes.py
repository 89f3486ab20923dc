"""The third-party node package ``contrib/backpackflow-example-nodes`` installed as pip would
leave it, without installing it: its source and a ``.dist-info`` declaring its entry point (read
from its pyproject.toml), both to put on ``PYTHONPATH`` of a process that loads plugins."""

from __future__ import annotations

import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "contrib" / "backpackflow-example-nodes"


def example_nodes_site(folder: Path) -> list[str]:
    """Write the ``.dist-info`` under ``folder``; the ``PYTHONPATH`` entries to use."""
    info = folder / "backpackflow_example_nodes-0.1.0.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text(
        "Metadata-Version: 2.1\nName: backpackflow-example-nodes\nVersion: 0.1.0\n"
    )
    project = tomllib.loads((PACKAGE / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    declared = project["entry-points"]["backpackflow"]
    lines = "".join(f"{name} = {target}\n" for name, target in declared.items())
    (info / "entry_points.txt").write_text(f"[backpackflow]\n{lines}")
    return [str(folder), str(PACKAGE / "src")]
