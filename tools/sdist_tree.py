"""Build the sdist of this checkout and unpack it into DIR (replaced): the tree tox env
py3-lowest installs and runs the tests from, so that a file the sdist lacks fails them.

    python tools/sdist_tree.py DIR

The sdist is built by ``uv build`` (``python -m uv``: uv installed beside this Python), in an
isolated environment with the build requirements of pyproject.toml, as an installer builds it.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def main(target: Path) -> None:
    with tempfile.TemporaryDirectory() as scratch:
        out = Path(scratch)
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
                str(ROOT),
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
