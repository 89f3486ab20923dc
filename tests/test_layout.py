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
        [p.name for p in (ROOT / "plugins").iterdir() if (p / "__init__.py").exists()]
        + ["backpackflow_examples"]  # examples/ (see below)
    )
    assert sorted(kernel_contract["forbidden_modules"]) == plugin_packages
    root_packages = config["tool"]["importlinter"]["root_packages"]
    assert sorted(root_packages) == sorted(["backpackflow", *plugin_packages])


def test_every_package_of_the_tree_is_in_the_distribution():
    """Packages are listed in pyproject.toml (examples/ ships as backpackflow_examples, which a
    found package cannot): a new package missing from the list would be missing from the wheel."""
    setuptools = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    package_dir = setuptools["package-dir"]
    assert package_dir == {
        "": "plugins",
        "backpackflow": "kernel/backpackflow",
        "backpackflow_examples": "examples",
    }

    def folder(package: str) -> Path:
        top, _, rest = package.partition(".")
        base = ROOT / package_dir.get(top, f"{package_dir['']}/{top}")
        return base.joinpath(*rest.split(".")) if rest else base

    listed = setuptools["packages"]
    assert listed == sorted(listed)
    assert all((folder(package) / "__init__.py").is_file() for package in listed)
    in_tree = {
        ".".join(init.parent.relative_to(base).parts)
        for base in (ROOT / "kernel", ROOT / "plugins")
        for init in base.rglob("__init__.py")
        if "__pycache__" not in init.parts
    }
    assert set(listed) == in_tree | {"backpackflow_examples"}
