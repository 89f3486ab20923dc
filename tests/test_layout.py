"""House rules of the layout (DESIGN §2) that tools alone would not catch."""

from __future__ import annotations

import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_import_linter_contract_forbids_every_plugin_package():
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())
    contracts = config["tool"]["importlinter"]["contracts"]
    kernel_contract = next(c for c in contracts if c["source_modules"] == ["backpackflow"])
    plugin_packages = sorted(
        p.name for p in (ROOT / "plugins").iterdir() if (p / "__init__.py").exists()
    )
    assert sorted(kernel_contract["forbidden_modules"]) == plugin_packages
    root_packages = config["tool"]["importlinter"]["root_packages"]
    assert sorted(root_packages) == sorted(["backpackflow", *plugin_packages])
