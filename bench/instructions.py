"""Instructions per node of bench/overhead.py's flow, counted by callgrind: repeatable on a
shared, noisy machine where wall-clock figures swing by ±50%.

Run: python bench/instructions.py [--runs 400] [--warmup 1000]   (needs valgrind)

The flow of bench/overhead.py (everything on) runs under ``valgrind --tool=callgrind``:
``--warmup`` runs first (caches, the specializing interpreter, and the 10,000-event history
ring filled, so that every run also drops old events, as in a long-lived process), then
``--runs`` measured runs between two calls of a marker function, ``sys.getallocatedblocks``;
callgrind dumps its counts before each marker call (``--dump-before``), so the second dump
holds exactly the measured runs: start-up, imports and exit are not in it. Counting the
measured runs alone matters: start-up costs differ from one process to the next by millions
of instructions (counting two processes and taking the difference swung PocketFlow's figure
by ±7%). Bare PocketFlow is counted the same way when installed, for the ratio.
"""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
MARKER = "sys_getallocatedblocks"  # the C function behind sys.getallocatedblocks()

_CHILD = """
import sys
sys.path.insert(0, {here!r})
from overhead import ours
from peers import EXPECTED, RUNNERS
run = ours() if {which!r} == "backpackflow" else RUNNERS[{which!r}]()
for _ in range({warmup}):
    assert run() == EXPECTED
sys.getallocatedblocks()  # marker: callgrind dumps the counts so far
for _ in range({runs}):
    run()
sys.getallocatedblocks()  # marker: the second dump is the measured runs
"""


def count(which: str, runs: int, warmup: int) -> int:
    """Instructions callgrind counts in ``runs`` runs of ``which`` after ``warmup`` runs."""
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "callgrind.out"
        subprocess.run(
            [
                "valgrind",
                "--tool=callgrind",
                f"--callgrind-out-file={out}",
                f"--dump-before={MARKER}",
                sys.executable,
                "-c",
                _CHILD.format(here=str(HERE), which=which, runs=runs, warmup=warmup),
            ],
            check=True,
            capture_output=True,
        )
        measured = Path(f"{out}.2")
        if not measured.exists():
            raise SystemExit(
                f"callgrind made no dump at {MARKER}: this Python's symbols are not visible "
                "to valgrind"
            )
        text = measured.read_text()
    match = re.search(r"^summary:\s+(\d+)", text, re.MULTILINE) or re.search(
        r"^totals:\s+(\d+)", text, re.MULTILINE
    )
    assert match, "callgrind wrote no summary"
    return int(match.group(1))


def per_node(which: str, runs: int, warmup: int = 1000) -> float:
    from peers import NODES

    return count(which, runs, warmup) / (runs * NODES)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=400)
    parser.add_argument("--warmup", type=int, default=1000)
    args = parser.parse_args(argv)
    sys.path.insert(0, str(HERE))
    from peers import available

    ours = per_node("backpackflow", args.runs, args.warmup)
    print(f"backpackflow: {ours:,.0f} instructions per node")
    if available().get("pocketflow"):
        bare = per_node("pocketflow", args.runs, args.warmup)
        print(f"pocketflow:   {bare:,.0f} instructions per node")
        print(f"ratio: {ours / bare:.2f}x  (goal <= 5x in time; instructions are a proxy)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
