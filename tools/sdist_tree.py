"""Build the sdist of this checkout and unpack it into DIR (replaced): the tree tox env
py3-lowest installs and runs the tests from, so that a file the sdist lacks fails them.

    python tools/sdist_tree.py DIR

The sdist is built by ``uv build`` (``python -m uv``: uv installed beside this Python), in an
isolated environment with the build requirements of pyproject.toml, as an installer builds it.
It is built from a copy of the checkout, not the checkout itself: setuptools writes its
``*.egg-info`` and ``build/`` into the tree it builds, and the other tox environments, run in
parallel (``tox p``), install the same checkout at the same time.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
# What a build never reads and a copy need not carry: VCS data, virtualenvs, caches and earlier
# build output (the sdist's contents come from MANIFEST.in and the package data, not from these).
NOT_SOURCE = shutil.ignore_patterns(
    ".git",
    ".venv",
    ".tox",
    "build",
    "dist",
    "node_modules",
    "*.egg-info",
    "__pycache__",
    ".*_cache",
    ".hypothesis",
)


def main(target: Path) -> None:
    with tempfile.TemporaryDirectory() as scratch:
        out = Path(scratch)
        source = out / "source"
        shutil.copytree(ROOT, source, ignore=NOT_SOURCE, symlinks=True)
        subprocess.run(
            [
                sys.executable,
                "-m",
                "uv",
                "build",
                "--sdist",
                "--quiet",
                "--out-dir",
                str(out / "dist"),
                str(source),
            ],
            check=True,
        )
        (archive,) = (out / "dist").glob("*.tar.gz")
        with tarfile.open(archive) as tar:
            tar.extractall(out / "unpacked", filter="data")
        (top,) = (out / "unpacked").iterdir()  # backpackflow-<version>/
        shutil.rmtree(target, ignore_errors=True)
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.move(top, target)
    print(f"{archive.name} unpacked into {target}")


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    main(Path(sys.argv[1]).resolve())
