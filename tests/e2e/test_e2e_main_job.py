"""The main job as a user runs it: ``backpackflow run FLOW.json`` in a fresh process with no API
key and no configuration, twice (the second run hits the cache), and the README saying so."""

from __future__ import annotations

import os
import re
import subprocess
import sys

import pytest
from e2e_support import dollars, table
from nodes_support import CSV_REPORT, RESEARCH, ROOT

from project_support import requirements


def fresh_env(tmp_path) -> dict[str, str]:
    """An environment as on a fresh machine: no API keys, no proxies, an empty home."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.endswith("_API_KEY") and "proxy" not in k.lower() and not k.startswith("BACKPACK")
    }
    env.update(HOME=str(tmp_path), NO_COLOR="1", PYTHONIOENCODING="utf-8")
    return env


@pytest.mark.parametrize("flow", [RESEARCH, CSV_REPORT], ids=["research", "csv-report"])
def test_backpackflow_run_in_a_fresh_process_then_again_from_the_cache(tmp_path, flow):
    command = [sys.executable, "-m", "backpackflow", "run", str(flow)]
    first = subprocess.run(
        command, cwd=tmp_path, env=fresh_env(tmp_path), capture_output=True, text=True, timeout=60
    )
    assert first.returncode == 0, first.stderr
    steps, total = table(first.stdout)
    assert total["status"] == "succeeded" and dollars(total["cost"]) > 0
    assert all(s["status"] == "succeeded" for s in steps)

    second = subprocess.run(
        command, cwd=tmp_path, env=fresh_env(tmp_path), capture_output=True, text=True, timeout=60
    )
    assert second.returncode == 0, second.stderr
    steps, total = table(second.stdout)
    llm_steps = [s for s in steps if s["type"] == "llm"]
    assert llm_steps and all(s["cache"].startswith("hit (saved $") for s in llm_steps)
    assert total["cost"] == "$0"
    assert total["cache"] == f"{len(llm_steps)}/{len(steps)} hits"


def test_the_readme_main_job_command_runs_an_example_flow():
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    section = readme.split("## Set up and run", 1)[1].split("\n## ", 1)[0]
    match = re.search(r"backpackflow run (examples/\S+\.json)", section)
    assert match, "the main-job command does not run an example flow"
    assert (ROOT / match.group(1)).is_file()
    # the install command must bring what the example's node types need (jinja2, rich ...),
    # through the extras it names, expanded as pip expands them
    extras = re.search(r"pip install -e \"?\.\[([^\]]*)\]", section)
    assert extras, "the main-job command does not install the project with extras"
    installed = {r.name for r in requirements(*extras.group(1).split(","))}
    for needed in ("jinja2", "rich", "cel-python", "httpx"):
        assert needed in installed, needed
