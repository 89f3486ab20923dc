"""Instructions per node of bench/overhead.py's flow, counted by callgrind: repeatable on a
shared, noisy machine where wall-clock figures swing by ±50%.

Run: python bench/instructions.py [--runs 400]   (needs valgrind)

The flow of bench/overhead.py (everything on) runs ``--runs`` and then twice as many runs under
``valgrind --tool=callgrind``, each after the same warm-up; the difference of the two counts
over the difference of nodes run is the instructions one node costs, start-up excluded. Bare
PocketFlow is counted the same way when installed, for the ratio.
"""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent

_CHILD = """
import sys
sys.path.insert(0, {here!r})
from overhead import ours
from peers import EXPECTED, RUNNERS
run = ours() if {which!r} == "backpackflow" else RUNNERS[{which!r}]()
for _ in range(200):  # warm-up: caches, the specializing interpreter, the history ring
    assert run() == EXPECTED
for _ in range({runs}):
    run()
"""


def count(which: str, runs: int) -> int:
    """Instructions callgrind counts for the child program with ``runs`` measured runs."""
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "callgrind.out"
        subprocess.run(
            [
                "valgrind",
                "--tool=callgrind",
                f"--callgrind-out-file={out}",
                sys.executable,
                "-c",
                _CHILD.format(here=str(HERE), which=which, runs=runs),
            ],
            check=True,
            capture_output=True,
        )
        text = out.read_text()
    match = re.search(r"^summary:\s+(\d+)", text, re.MULTILINE) or re.search(
        r"^totals:\s+(\d+)", text, re.MULTILINE
    )
    assert match, "callgrind wrote no summary"
    return int(match.group(1))


def per_node(which: str, runs: int) -> float:
    from peers import NODES

    return (count(which, 2 * runs) - count(which, runs)) / (runs * NODES)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=400)
    args = parser.parse_args(argv)
    sys.path.insert(0, str(HERE))
    from peers import available

    ours = per_node("backpackflow", args.runs)
    print(f"backpackflow: {ours:,.0f} instructions per node")
    if available().get("pocketflow"):
        bare = per_node("pocketflow", args.runs)
        print(f"pocketflow:   {bare:,.0f} instructions per node")
        print(f"ratio: {ours / bare:.2f}x  (goal <= 5x in time; instructions are a proxy)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
