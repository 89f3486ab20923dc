"""Checking flow files that use the package's node types, as CI does: ``backpackflow
validate``, or ``check-jsonschema`` against the output of ``backpackflow schema export``."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from helpers import FLOWS, cli

GOOD = str(FLOWS / "triage.json")
BAD = str(FLOWS / "bad_params.json")


def test_a_good_flow_validates() -> None:
    result = cli("validate", GOOD)
    assert result.returncode == 0, result.stderr
    assert result.stdout == f"{GOOD}: ok\n"
    assert result.stderr == ""


def test_a_bad_flow_fails_with_the_json_path_of_the_param() -> None:
    result = cli("validate", BAD)
    assert result.returncode == 1
    assert result.stdout == ""
    assert result.stderr == (
        f"{BAD}: $.nodes[0].params.words_per_minute: 5 is less than the minimum of 50\n"
    )


def test_one_bad_file_fails_the_batch() -> None:
    result = cli("validate", "--quiet", GOOD, BAD)
    assert result.returncode == 1
    assert result.stdout == ""
    assert "words_per_minute" in result.stderr


def test_check_jsonschema_with_the_exported_schema(tmp_path: Path) -> None:
    schema = tmp_path / "flow.schema.json"
    assert cli("schema", "export", "--output", str(schema)).returncode == 0

    def check(flow: str) -> subprocess.CompletedProcess[str]:
        command = [sys.executable, "-m", "check_jsonschema", "--schemafile", str(schema), flow]
        return subprocess.run(command, capture_output=True, text=True, timeout=60, check=False)

    good = check(GOOD)
    assert good.returncode == 0, good.stdout + good.stderr
    bad = check(BAD)
    assert bad.returncode == 1
    assert f"{BAD}::$.nodes[0].params.words_per_minute: 5 is less than the minimum of 50" in (
        bad.stdout
    )
