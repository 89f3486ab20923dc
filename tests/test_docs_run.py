"""Every code block of README.md and docs/*.md runs as written.

The blocks of one document run in order in a new folder holding a copy of ``examples/`` (as a
fresh clone has it: commands name ``examples/research/flow.json``), with this environment's
``backpackflow`` and ``python`` first on PATH and no API keys. By the fence's language:

- ``python``: run as a script (``python BLOCK.py``);
- ``bash``: run by ``bash -euo pipefail``;
- ``console``: each ``$ command`` line is run; the lines shown after it must appear, in order,
  in what it prints (stdout and stderr, as a terminal shows them), where any number matches any
  number and ``…`` matches anything;
- ``json``, ``toml``, ``yaml``: parsed;
- ``text``: not code (file trees, output samples), never run.

A fence without one of these languages fails the test. A block can be marked by an HTML comment
on the line before its fence:

- ``<!-- doc-test: skip — REASON -->``: not run, for the REASON given (required);
- ``<!-- doc-test: file NAME -->``: the block is the content of the file NAME, written into the
  folder for the blocks after it (and parsed as its language says);
- ``<!-- doc-test: before COMMAND -->``: COMMAND runs in the folder first (a file the block
  expects, made by a command a reader would run).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tomllib
from pathlib import Path

import attrs
import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
DOCUMENTS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
LANGUAGES = {"python", "bash", "console", "json", "toml", "yaml", "text"}
FENCE = re.compile(r"^(?P<indent> *)```(?P<language>[\w-]*)[ \t]*$")
MARKER = re.compile(r"^\s*<!-- doc-test: (?P<kind>skip|file|before)\b\s*(?P<value>.*?)\s*-->\s*$")
TIMEOUT = 120


@attrs.frozen
class Block:
    document: str
    line: int  # of the opening fence, 1-based
    language: str
    code: str
    marker: str | None = None  # skip | file | before
    value: str = ""

    @property
    def where(self) -> str:
        return f"{self.document}:{self.line} ({self.language or 'no language'} block)"


def blocks_of(path: Path) -> list[Block]:
    """The fenced blocks of a Markdown file (indented ones too), with their markers."""
    lines = path.read_text(encoding="utf-8").splitlines()
    name = str(path.relative_to(ROOT))
    found = []
    index = 0
    while index < len(lines):
        opening = FENCE.match(lines[index])
        if opening is None:
            index += 1
            continue
        indent = opening.group("indent")
        end = index + 1
        while end < len(lines) and lines[end].strip() != "```":
            end += 1
        code = "\n".join(line.removeprefix(indent) for line in lines[index + 1 : end]) + "\n"
        marker = MARKER.match(lines[index - 1]) if index > 0 else None
        found.append(
            Block(
                name,
                index + 1,
                opening.group("language"),
                code,
                marker.group("kind") if marker else None,
                marker.group("value").lstrip("—-: ").strip() if marker else "",
            )
        )
        index = end + 1
    return found


def environment(folder: Path) -> dict[str, str]:
    """This environment's commands first on PATH; no API keys, no backpackflow settings."""
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.endswith("_API_KEY") and not key.startswith("BACKPACKFLOW_")
    }
    scripts = Path(sys.executable).parent
    env.update(
        PATH=f"{scripts}{os.pathsep}{env.get('PATH', '')}",
        NO_COLOR="1",
        PYTHONIOENCODING="utf-8",
        TMPDIR=str(folder),
    )
    return env


def run(command: list[str], folder: Path, block: Block) -> str:
    """Run ``command``; on a timeout kill it with everything it started (a block that starts a
    server must not leave it running)."""
    process = subprocess.Popen(
        command,
        cwd=folder,
        env=environment(folder),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    try:
        output, _ = process.communicate(timeout=TIMEOUT)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        output, _ = process.communicate()
        pytest.fail(f"{block.where} did not end within {TIMEOUT} s:\n{output}")
    assert process.returncode == 0, f"{block.where} failed ({process.returncode}):\n{output}"
    return output


def bash(script: str, folder: Path, block: Block) -> str:
    return run(["bash", "-euo", "pipefail", "-c", script], folder, block)


def shape(line: str) -> str:
    """A line with numbers as ``#`` and runs of blanks as one space. A duration's unit goes
    with its number: a step the README shows at ``7.9 ms`` may take ``1.15 s`` on a busy
    machine."""
    return " ".join(re.sub(r"\d+(?:[.,]\d+)*(?: ?(?:µs|ms|s)\b)?", "#", line).split())


def shows(expected: str, actual: str) -> bool:
    """Whether ``actual`` (one line) shows ``expected``: ``…`` stands for anything, and so does
    the word it ends (``01a1fd…`` is an elided id)."""
    position = 0
    for part in (shape(p) for p in re.split(r"\S*…", expected)):
        found = shape(actual).find(part, position)
        if found < 0:
            return False
        position = found + len(part)
    return True


def check_console(block: Block, folder: Path) -> None:
    sessions: list[tuple[str, list[str]]] = []
    for line in block.code.splitlines():
        if line.startswith("$ "):
            sessions.append((line[2:], []))
        elif sessions and line.strip() and line.strip() != "…":
            sessions[-1][1].append(line)
    assert sessions, f"{block.where}: a console block shows '$ command' lines"
    for command, expected in sessions:
        printed = bash(command, folder, block).splitlines()
        position = 0
        for wanted in expected:
            while position < len(printed) and not shows(wanted, printed[position]):
                position += 1
            assert position < len(printed), (
                f"{block.where}: '$ {command}' did not print (in this order) {wanted!r}; it "
                "printed:\n" + "\n".join(printed)
            )
            position += 1


def check(block: Block, folder: Path) -> None:
    assert block.language in LANGUAGES, (
        f"{block.where}: say what the block is: one of {sorted(LANGUAGES)}"
    )
    if block.marker == "skip":
        assert block.value, f"{block.where}: a skipped block says why"
        return
    if block.marker == "before":
        bash(block.value, folder, block)
    if block.marker == "file":
        (folder / block.value).write_text(block.code, encoding="utf-8")
    match block.language:
        case "python":
            script = folder / f"block_{block.line}.py"
            script.write_text(block.code, encoding="utf-8")
            run([sys.executable, script.name], folder, block)
        case "bash":
            bash(block.code, folder, block)
        case "console":
            check_console(block, folder)
        case "json":
            json.loads(block.code)
        case "toml":
            tomllib.loads(block.code)
        case "yaml":
            yaml.safe_load(block.code)


@pytest.mark.parametrize("document", DOCUMENTS, ids=lambda p: p.name)
def test_every_code_block_runs_as_written(document: Path, tmp_path: Path) -> None:
    blocks = blocks_of(document)
    assert blocks, f"{document.name} has no code block"
    shutil.copytree(
        ROOT / "examples", tmp_path / "examples", ignore=shutil.ignore_patterns("__pycache__")
    )
    for block in blocks:
        check(block, tmp_path)


def test_blocks_are_found_with_their_markers() -> None:
    readme = {b.line: b for b in blocks_of(ROOT / "README.md")}
    first = readme[min(readme)]
    assert (first.language, first.marker) == ("bash", "skip")
    assert first.value.startswith("the project's own set-up and test commands")
    files = [b for b in readme.values() if b.marker == "file"]
    assert [(b.language, b.value) for b in files] == [("json", "flow.json")]
    indented = [b for b in blocks_of(ROOT / "docs" / "write-a-node-package.md") if "\n" in b.code]
    assert all(not b.code.startswith(" ") or b.language == "text" for b in indented)


@pytest.mark.parametrize(
    ("expected", "actual", "shown"),
    [
        ("1  research   tool  $0.0000922  7.9ms", "1 research tool $0.000092 23.2ms", True),
        ("▶ run 01a1fd… · flow research", "▶ run 01a23b79334687 · flow research", True),
        ("2  summarize  llm", "2 summarize router", False),
        ("run … of research: succeeded", "run 01 of research: failed", False),
    ],
)
def test_console_output_matches_by_shape(expected: str, actual: str, shown: bool) -> None:
    assert shows(expected, actual) is shown
