"""The web UI's committed bundle: check that it is what its source builds, and measure it.

``python tools/ui_bundle.py check`` (tox env ``ui``, from the ``ui/`` folder's parent or
anywhere): rebuilds the app into a temporary folder with the locked dependencies (``npm ci``
must have run), fails if any file differs from ``plugins/backpackflow_server/static/`` (a stale
bundle: run ``npm run build`` in ``plugins/backpackflow_server/ui`` and commit ``static/``), and
fails if the initial JavaScript exceeds the budget of docs/ui.md.

``python tools/ui_bundle.py size``: print the initial JavaScript of the committed bundle.

"Initial JavaScript" is what the browser must fetch before the first page renders: the entry
script of ``index.html`` and the modules it preloads, each gzip-compressed (level 9, as a
server or proxy would send it). Pages loaded on demand (the editor, the run view) are not in it.
"""

from __future__ import annotations

import argparse
import filecmp
import gzip
import re
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
UI = ROOT / "plugins" / "backpackflow_server" / "ui"
STATIC = ROOT / "plugins" / "backpackflow_server" / "static"
#: docs/ui.md states it; the check fails above it.
INITIAL_JS_BUDGET_BYTES = 125 * 1024
INITIAL = re.compile(
    r'<script[^>]*type="module"[^>]*src="/assets/([^"]+)"|'
    r'<link[^>]*rel="modulepreload"[^>]*href="/assets/([^"]+)"'
)


def initial_scripts(folder: Path) -> list[Path]:
    """The entry script and preloaded modules ``folder/index.html`` names."""
    html = (folder / "index.html").read_text(encoding="utf-8")
    return [folder / "assets" / (a or b) for a, b in INITIAL.findall(html)]


def gzip_size(path: Path) -> int:
    return len(gzip.compress(path.read_bytes(), compresslevel=9, mtime=0))


def initial_js(folder: Path) -> int:
    return sum(gzip_size(path) for path in initial_scripts(folder))


def differences(built: Path, committed: Path) -> list[str]:
    """Paths (relative) that differ between two bundle folders, or exist in one only."""
    found: list[str] = []

    def walk(compare: filecmp.dircmp[str], prefix: str) -> None:
        found.extend(prefix + name for name in compare.left_only + compare.right_only)
        _, mismatch, errors = filecmp.cmpfiles(
            compare.left, compare.right, compare.common_files, shallow=False
        )
        found.extend(prefix + name for name in mismatch + errors)
        for name, sub in compare.subdirs.items():
            walk(sub, f"{prefix}{name}/")

    walk(filecmp.dircmp(built, committed), "")
    return sorted(found)


def check() -> int:
    with tempfile.TemporaryDirectory() as temp:
        out = Path(temp) / "static"
        subprocess.run(
            ["npm", "run", "build", "--", "--outDir", str(out), "--emptyOutDir"],
            cwd=UI,
            check=True,
        )
        stale = differences(out, STATIC)
    if stale:
        print(
            "the committed web UI bundle is stale: these files differ from a fresh build: "
            + ", ".join(stale)
            + "\nrun `npm run build` in plugins/backpackflow_server/ui and commit static/",
            file=sys.stderr,
        )
        return 1
    size = initial_js(STATIC)
    print(f"initial JavaScript: {size} bytes gzip (budget {INITIAL_JS_BUDGET_BYTES})")
    if size > INITIAL_JS_BUDGET_BYTES:
        print("the initial JavaScript is over its budget (docs/ui.md)", file=sys.stderr)
        return 1
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n", 1)[0])
    parser.add_argument("command", choices=["check", "size"])
    args = parser.parse_args(argv)
    if args.command == "check":
        return check()
    for path in initial_scripts(STATIC):
        print(f"{path.name}: {gzip_size(path)} bytes gzip")
    print(f"initial JavaScript: {initial_js(STATIC)} bytes gzip")
    return 0


if __name__ == "__main__":
    sys.exit(main())
