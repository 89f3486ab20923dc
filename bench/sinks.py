"""Per-event overhead of the event sinks on the 5-node linear flow, relative to no sink.

Each node reads one key and writes one key (32 events per run: run_start, 6 per node, run_end).
For every configuration the same flow runs ``--runs`` times per repeat, with a fresh Backpack
per run and the sink attached to one EventStreamer, ``--repeats`` times, the configurations
interleaved. Printed: the median µs per event with the range over the repeats [min-max], µs per
run and the ratio of medians to no sink.

* none: the streamer with no subscriber (history ring buffer on, as in every run);
* console: ``mode=quiet`` writing to a null stream (what a quiet trace costs);
* file: JSON Lines with the defaults (``flush=batch``, ``values=full``) to a temporary file,
  plus ``flush=event`` for comparison;
* webhook: to a local HTTP server running in a **separate process** (a server thread here would
  compete for the GIL and be counted as sink overhead), default options; what close() reports
  (sent, dropped) is printed so a sink that silently dropped events cannot look fast. After each
  timed round the benchmark waits (untimed) until the webhook thread has caught up, so its
  delivery work never lands in another configuration's figures.
* otlp: OpenTelemetry spans (a run span and one per node: 6 spans per run) exported over
  OTLP/HTTP protobuf to the same local server, default options, and with ``capture_content``
  (run inputs serialized into the run span); the spans exported and dropped are printed.

The console's cost in quiet mode is mostly rich rendering the one ``run_end`` line of each run
(about 0.1 ms a line), spread over the run's 32 events.

Requires the console, webhook and otel extras: pip install -e '.[console,webhook,otel]'
Run: python bench/sinks.py [--runs 300] [--repeats 7]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from backpackflow import Backpack, EventStreamer
from backpackflow.plugins import EventSink
from backpackflow_otel.sink import OtlpOptions, OtlpSink
from backpackflow_sinks.console import ConsoleOptions, ConsoleSink
from backpackflow_sinks.jsonl import FileSinkOptions, JsonlFileSink
from backpackflow_sinks.webhook import WebhookOptions, WebhookSink
from flows import NODES, linear_flow

EVENTS_PER_RUN = 2 + 6 * NODES

SERVER = """
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, as a real collector would
    def log_message(self, *args): pass
    def do_POST(self):
        self.rfile.read(int(self.headers.get("Content-Length", "0")))
        self.send_response(200)
        self.send_header("Content-Length", "0")
        self.end_headers()

server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
print(server.server_address[1], flush=True)
server.serve_forever()
"""


class NoopSink:
    """Subscribes and does nothing: separates the bus's cost from each sink's own."""

    def handle(self, event: Any) -> None:
        pass

    def close(self) -> dict[str, Any]:
        return {}


def make_run(sink: EventSink | None) -> Callable[[], None]:
    flow = linear_flow()
    events = EventStreamer()
    if sink is not None:
        events.subscribe("*", sink.handle)

    def run() -> None:
        backpack = Backpack()
        backpack.pack("k0", 0)
        result = flow.execute_sync(backpack, events=events)
        if result.backpack.unpack(f"k{NODES}") != NODES:
            raise RuntimeError("the benchmark flow computed the wrong result")

    return run


def us_per_event(
    runs_by_name: dict[str, Callable[[], None]],
    runs: int,
    repeats: int,
    settle: Callable[[], None],
) -> dict[str, list[float]]:
    """µs per event of each configuration in each repeat. Repeats are interleaved (every
    configuration once per round) so that load from elsewhere on the machine hits them all
    alike."""
    for run in runs_by_name.values():  # warm-up
        for _ in range(max(10, runs // 10)):
            run()
        settle()
    times: dict[str, list[float]] = {name: [] for name in runs_by_name}
    for _ in range(repeats):
        for name, run in runs_by_name.items():
            start = time.perf_counter()
            for _ in range(runs):
                run()
            times[name].append((time.perf_counter() - start) / (runs * EVENTS_PER_RUN) * 1e6)
            settle()  # untimed, so no sink's leftover work lands in the next figures
    return times


def start_server() -> tuple[subprocess.Popen[str], str]:
    proc = subprocess.Popen([sys.executable, "-c", SERVER], stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    port = int(proc.stdout.readline())
    return proc, f"http://127.0.0.1:{port}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=300, help="runs per repeat")
    parser.add_argument("--repeats", type=int, default=7, help="repeats (median and range)")
    args = parser.parse_args()

    server, url = start_server()
    null = open(os.devnull, "w", encoding="utf-8")  # noqa: SIM115 - closed below
    tmp = Path(tempfile.mkdtemp(prefix="bench-sinks-"))
    try:
        sinks: list[tuple[str, Callable[[], EventSink | None]]] = [
            ("none", lambda: None),
            ("no-op subscriber (bus cost)", lambda: NoopSink()),
            (
                "console (quiet, null stream)",
                lambda: ConsoleSink(ConsoleOptions(mode="quiet"), file=null),
            ),
            (
                "file (batch, values=full)",
                lambda: JsonlFileSink(FileSinkOptions(path=str(tmp / "batch.jsonl"))),
            ),
            (
                "file (flush=event)",
                lambda: JsonlFileSink(
                    FileSinkOptions(path=str(tmp / "event.jsonl"), flush="event")
                ),
            ),
            (
                "webhook (local server)",
                lambda: WebhookSink(WebhookOptions(url=f"{url}/events", trust_env=False)),
            ),
            ("otlp (local server)", lambda: OtlpSink(OtlpOptions(endpoint=url))),
            (
                "otlp (capture_content)",
                lambda: OtlpSink(
                    OtlpOptions(endpoint=url, capture_content=True, service_name="capture")
                ),
            ),
        ]
        print(
            f"5-node linear flow, {EVENTS_PER_RUN} events per run, {args.repeats} repeats x "
            f"{args.runs} runs (median [min-max]); Python {sys.version.split()[0]}"
        )
        print(f"{'sink':<30} {'µs/event [range]':>21} {'µs/run':>9} {'ratio':>7}  notes")
        built = {name: factory() for name, factory in sinks}
        webhooks = [s for s in built.values() if isinstance(s, WebhookSink)]
        otlps = [s for s in built.values() if isinstance(s, OtlpSink)]

        def settle() -> None:
            """Let the webhook and export threads catch up, so they never run during another
            configuration's timing."""
            while any(w.pending for w in webhooks) or any(o.stats()["pending"] for o in otlps):
                time.sleep(0.005)

        timings = us_per_event(
            {name: make_run(sink) for name, sink in built.items()},
            args.runs,
            args.repeats,
            settle,
        )
        baseline = statistics.median(timings["none"])
        for name, sink in built.items():
            us = statistics.median(timings[name])
            low, high = min(timings[name]), max(timings[name])
            note = ""
            if sink is not None:
                report = sink.close()
                if "sent" in report:
                    dropped = sum(report["dropped"].values())
                    note = f"sent {report['sent']:,}, dropped {dropped:,}"
                elif "bytes" in report:
                    note = f"{report['events']:,} events, {report['bytes'] / 1e6:.1f} MB"
                elif report.get("sink") == "otlp":
                    dropped = sum(report["dropped"].values())
                    note = f"spans {report['spans']:,}, exported {report['exported']:,}"
                    note += f", dropped {dropped:,}"
            spread = f"{us:.2f} [{low:.2f}-{high:.2f}]"
            per_run = us * EVENTS_PER_RUN
            print(f"{name:<30} {spread:>21} {per_run:>9.1f} {us / baseline:>6.2f}x  {note}")
    finally:
        null.close()
        server.terminate()
        server.wait()
        for file in tmp.iterdir():
            file.unlink()
        tmp.rmdir()


if __name__ == "__main__":
    main()
