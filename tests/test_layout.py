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


def test_the_layers_contract_places_every_part_of_the_kernel():
    """Every folder and leaf module of the kernel is in exactly one layer, in data-path order
    (docs/architecture.md): a new folder cannot escape the one-way imports."""
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())
    (layers,) = [
        c for c in config["tool"]["importlinter"]["contracts"] if c.get("type") == "layers"
    ]
    assert layers["containers"] == ["backpackflow"]
    placed = [name.strip() for layer in layers["layers"] for name in layer.split("|")]
    assert placed[:8] == [
        "cli",
        "loader",
        "runner",
        "backpack",
        "events",
        "plugins",
        "config",
        "policy",
    ]
    kernel = ROOT / "kernel" / "backpackflow"
    parts = {p.name for p in kernel.iterdir() if (p / "__init__.py").is_file()} | {
        p.stem for p in kernel.glob("*.py") if p.stem not in ("__init__", "__main__")
    }
    assert sorted(placed) == sorted(parts)
