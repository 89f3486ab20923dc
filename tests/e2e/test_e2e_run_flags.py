"""`backpackflow run --verbose / --quiet` shape the console trace; `--sandbox` keeps the
operator's response cache."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from backpackflow.cli import main

ROOT = Path(__file__).resolve().parents[2]
CSV_REPORT = str(ROOT / "examples" / "csv-report" / "flow.json")


def _run(capsys: pytest.CaptureFixture[str], *flags: str) -> str:
    assert main(["run", CSV_REPORT, "--no-cache", *flags]) == 0
    return capsys.readouterr().err


def test_verbose_shows_each_steps_prompt_and_raw_result(capsys):
    err = _run(capsys, "--verbose")
    assert "prompt:" in err and "result:" in err
    assert "Summarize the key facts" in err


def test_the_default_trace_shows_steps_but_not_prompts(capsys):
    err = _run(capsys)
    assert "analysis #2" in err
    assert "prompt:" not in err


def test_quiet_shows_only_the_end_of_the_run(capsys):
    err = _run(capsys, "--quiet")
    assert "succeeded" in err
    assert "analysis #2" not in err


def test_verbose_and_quiet_exclude_each_other(capsys):
    with pytest.raises(SystemExit):
        main(["run", CSV_REPORT, "--verbose", "--quiet"])


def test_the_flags_need_the_console_sink(capsys):
    assert main(["run", CSV_REPORT, "--no-cache", "--sink", "none", "--verbose"]) == 1
    assert "add --sink console" in capsys.readouterr().err


def test_a_sandboxed_run_keeps_the_operators_response_cache(capsys, tmp_path, monkeypatch):
    """--sandbox confines the flow to its folder; the cache --cache-path names is the
    operator's (the command's working directory by default) and still serves the run."""
    monkeypatch.chdir(tmp_path)
    assert main(["examples", "copy", "research", "theirs"]) == 0
    capsys.readouterr()
    for run in ("first", "cached"):
        assert main(["run", "--sandbox", "theirs/flow.json", "--json"]) == 0, run
        summary = json.loads(capsys.readouterr().out)
        assert summary["status"] == "succeeded"
    assert summary["totals"]["cost"] == "0"  # the second run: every LLM step from the cache
    assert (tmp_path / ".backpackflow" / "llm-cache.sqlite").is_file()
