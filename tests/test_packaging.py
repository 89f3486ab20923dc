"""What the distribution promises about its dependencies and CI recipes: the lowest versions
pyproject.toml allows are the ones tox env py3-lowest tests, and the pre-commit hook of
.pre-commit-hooks.yaml validates flows with what it installs."""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

import pytest
import yaml
from packaging.requirements import Requirement
from packaging.version import Version

from project_support import ROOT, requirements


def floor(requirement: Requirement) -> Version:
    (lowest,) = [Version(s.version) for s in requirement.specifier if s.operator in (">=", "==")]
    return lowest


# ------------------------------------------------------------------------------- floors


DIRECT = sorted({r.name: r for r in requirements("all", "test")}.values(), key=str)


@pytest.mark.skipif(
    not os.environ.get("BACKPACKFLOW_TEST_LOWEST"),
    reason="checks the lowest-version install of tox -e py3-lowest (BACKPACKFLOW_TEST_LOWEST=1)",
)
@pytest.mark.parametrize("requirement", DIRECT, ids=str)
def test_each_direct_dependency_is_tested_at_its_floor(requirement: Requirement) -> None:
    """A floor that the other requirements push up (fastapi by sse-starlette's starlette, say)
    is one nobody tests: raise it to what is installed."""
    installed = Version(version(requirement.name))
    assert installed == floor(requirement), (
        f"{requirement.name} {installed} is installed for {requirement}: raise the floor in "
        f"pyproject.toml to {installed} (or find what pushes it up)"
    )


def test_every_requirement_of_the_package_and_its_tests_has_one_floor() -> None:
    for requirement in requirements("all", "test"):
        assert floor(requirement) <= Version(version(requirement.name)), requirement


# ------------------------------------------------------------------------------- pre-commit

HOOKS = yaml.safe_load((ROOT / ".pre-commit-hooks.yaml").read_text(encoding="utf-8"))


def test_the_validate_hook_installs_what_the_first_party_node_types_need() -> None:
    (hook,) = [h for h in HOOKS if h["id"] == "backpackflow-validate"]
    assert hook["language"] == "python"
    nodes = {str(r) for r in requirements("nodes")} - {str(r) for r in requirements()}
    assert sorted(hook["additional_dependencies"]) == sorted(nodes)


def test_the_validate_hook_runs_on_flow_files_and_fails_on_a_bad_one(tmp_path: Path) -> None:
    (hook,) = [h for h in HOOKS if h["id"] == "backpackflow-validate"]
    files = re.compile(hook["files"])
    assert files.search("flows/research.json") and files.search("ci/flows/a/b.json")
    assert not files.search("package.json") and not files.search("flows/notes.md")
    command, *options = shlex.split(hook["entry"])
    assert command == "backpackflow"
    entry = [sys.executable, "-m", "backpackflow", *options]
    flows = sorted(str(p) for p in (ROOT / "examples").glob("*/flow.json"))
    env = {k: v for k, v in os.environ.items() if not k.endswith("_API_KEY")}
    good = subprocess.run([*entry, *flows], capture_output=True, text=True, env=env, check=False)
    assert (good.returncode, good.stdout) == (0, ""), good.stderr  # --quiet: problems only
    bad = tmp_path / "bad.json"
    bad.write_text('{"version": "2.0.0", "nodes": [{"type": "nope", "id": "x"}]}')
    failed = subprocess.run([*entry, str(bad)], capture_output=True, text=True, check=False)
    assert failed.returncode == 1 and f"{bad}: $.nodes[0].type" in failed.stderr


def test_the_readme_pre_commit_recipe_names_the_hooks_of_this_repository() -> None:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    (recipe,) = re.findall(r"```yaml\n(.*?)```", readme, re.DOTALL)
    repos = yaml.safe_load(recipe)["repos"]
    ours = [r for r in repos if r["repo"].endswith("/backpackflow")]
    assert [h["id"] for r in ours for h in r["hooks"]] == [h["id"] for h in HOOKS]
    assert any(h["id"] == "check-jsonschema" for r in repos for h in r["hooks"])


def test_the_package_metadata_names_license_urls_and_pythons() -> None:
    try:
        metadata = __import__("importlib.metadata").metadata.metadata("backpackflow")
    except PackageNotFoundError:  # pragma: no cover - the tests run against an install
        pytest.fail("backpackflow is not installed")
    assert metadata["License-Expression"] == "Apache-2.0"
    assert "LICENSE" in (metadata.get_all("License-File") or [])
    assert "Apache License" in (ROOT / "LICENSE").read_text(encoding="utf-8")
    classifiers = metadata.get_all("Classifier") or []
    for minor in ("3.11", "3.12", "3.13"):
        assert f"Programming Language :: Python :: {minor}" in classifiers
    assert metadata.get_all("Project-URL")
