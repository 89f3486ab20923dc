"""The run view with a large run, in Chromium: a stored run of 2,000 steps and 50,000 trace
events (made directly in a SQLite store), served by ``backpackflow serve --local-dev``, opened
at ``/runs/<id>``. Measures, per round:

* load: from navigation until the summary counts every step (a finished run's steps come from
  its stored row; its events are paged in only as the Events list shows them);
* events_bottom: from opening the Events list and jumping to its end until the last event is
  shown (the page of the last 1,000 events fetched);
* the rows in the DOM (virtualised lists keep only the visible ones);
* scrolling: the timeline (2,000 rows) and the events list (50,000 rows) scrolled top to bottom
  in 120 animation frames; frames per second and the longest gap between two frames.

Timing goals live here, not in tests (tests/ui checks behaviour). Needs the built bundle
(``plugins/backpackflow_server/static``), Playwright and Debian's Chromium::

    python bench/ui_run_view.py --rounds 3
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(ROOT / "tests" / "ui"))

from run_kit import store_run  # noqa: E402
from ui_kit import free_port  # noqa: E402

from browsers import chromium  # noqa: E402

SCROLL_FRAMES = 120
#: Scrolls a list top to bottom, one step per animation frame; resolves to the frame times.
SCROLL_SCRIPT = """
async ([testId, frames]) => {
  const list = document.querySelector(`[data-testid="${testId}"]`);
  const times = [];
  const end = list.scrollHeight - list.clientHeight;
  for (let i = 1; i <= frames; i++) {
    await new Promise((resolve) => requestAnimationFrame(resolve));
    times.push(performance.now());
    list.scrollTop = (end * i) / frames;
  }
  return { times, rows: list.querySelectorAll('[role="listitem"]').length };
}
"""


def scroll(page: Any, test_id: str) -> dict[str, float]:
    result = page.evaluate(SCROLL_SCRIPT, [test_id, SCROLL_FRAMES])
    gaps = [b - a for a, b in zip(result["times"], result["times"][1:], strict=False)]
    return {
        "fps": 1000 / statistics.mean(gaps),
        "worst_ms": max(gaps),
        "rows": result["rows"],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--steps", type=int, default=2000)
    parser.add_argument("--events-per-step", type=int, default=25)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        url = f"sqlite:///{Path(folder) / 'big.db'}"
        made = time.perf_counter()
        run_id = store_run(url, args.steps, args.events_per_step)
        print(
            f"stored {args.steps} steps, {args.steps * args.events_per_step + 2} events "
            f"in {time.perf_counter() - made:.1f} s"
        )
        port = free_port()
        server = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "backpackflow",
                "serve",
                "--local-dev",
                "--no-seed",
                "--port",
                str(port),
                "--database",
                url,
                "--log-level",
                "warning",
            ],
            cwd=folder,
        )
        base = f"http://127.0.0.1:{port}"
        try:
            for _ in range(100):
                try:
                    if httpx.get(f"{base}/health", timeout=2).status_code == 200:
                        break
                except httpx.TransportError:
                    pass
                time.sleep(0.2)
            rounds: list[dict[str, float]] = []
            with chromium() as browser:
                for number in range(args.rounds):
                    page = browser.new_page(viewport={"width": 1280, "height": 800})
                    started = time.perf_counter()
                    page.goto(f"{base}/runs/{run_id}")
                    page.get_by_test_id("run-steps").filter(has_text=str(args.steps)).wait_for(
                        timeout=120_000
                    )
                    page.get_by_test_id("run-status").filter(has_text="succeeded").wait_for()
                    loaded = time.perf_counter() - started
                    timeline = scroll(page, "timeline")
                    opened = time.perf_counter()
                    page.get_by_role("tab", name="Events").click()
                    page.get_by_test_id("events").evaluate(
                        "el => { el.scrollTop = el.scrollHeight }"
                    )
                    last_seq = args.steps * args.events_per_step + 2
                    page.locator(".event-row .seq", has_text=f"{last_seq}").first.wait_for(
                        timeout=120_000
                    )
                    bottom = time.perf_counter() - opened
                    events = scroll(page, "events")
                    page.close()
                    figures = {
                        "load_s": loaded,
                        "events_bottom_s": bottom,
                        "timeline_fps": timeline["fps"],
                        "timeline_worst_ms": timeline["worst_ms"],
                        "timeline_rows": timeline["rows"],
                        "events_fps": events["fps"],
                        "events_worst_ms": events["worst_ms"],
                        "events_rows": events["rows"],
                    }
                    rounds.append(figures)
                    print(
                        f"round {number + 1}: "
                        + ", ".join(f"{k} {v:.1f}" for k, v in figures.items())
                    )
            print("median [min-max] over the rounds:")
            for key in rounds[0]:
                values = [r[key] for r in rounds]
                print(
                    f"  {key:18} {statistics.median(values):8.1f} "
                    f"[{min(values):.1f}-{max(values):.1f}]"
                )
        finally:
            server.terminate()
            server.wait(20)


if __name__ == "__main__":
    main()
