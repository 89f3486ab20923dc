"""The file sink: JSON Lines of real runs, flushing, rotation, per-run files, concurrent
writers on one file, failed runs, and I/O errors that never reach the run."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import pytest
from sinks_support import chain, event_ids, failing_flow, read_jsonl, run_flow

from backpackflow import Backpack, EventStreamer, Flow, Node, current_run
from backpackflow.events import StreamEventType
from backpackflow_sinks.jsonl import FileSinkOptions, JsonlFileSink


def make(path: Path | str, **options: Any) -> JsonlFileSink:
    return JsonlFileSink(FileSinkOptions(path=str(path), **options))


def test_one_json_line_per_event_of_the_run(tmp_path: Path) -> None:
    path = tmp_path / "run.jsonl"
    sink = make(path)
    result = run_flow(chain(5), [sink], k0="café ☕")
    report = sink.close()

    lines = read_jsonl(path)
    assert [e["id"] for e in lines] == event_ids(result)
    expected = [e.to_json() for e in result.events.get_events(run_id=result.run_id)]
    for line, event in zip(lines, expected, strict=True):
        if event["type"] == "backpack_pack":
            assert line["payload"].pop("value") == result.backpack.unpack(line["payload"]["key"])
        assert line == json.loads(json.dumps(event))
    raw = path.read_bytes()
    assert "café ☕".encode() in raw  # ensure_ascii=False: text stays readable
    assert raw.endswith(b"\n") and raw.count(b"\n") == 32
    assert report == {
        "sink": "file",
        "path": str(path),
        "events": 32,
        "bytes": len(raw),
        "files": [str(path)],
        "rotations": 0,
        "dropped": {"write_error": 0, "unserializable": 0, "after_close": 0},
        "last_error": None,
    }


def test_values_summary_keeps_only_the_kernel_summary(tmp_path: Path) -> None:
    path = tmp_path / "run.jsonl"
    sink = make(path, values="summary")
    run_flow(chain(1), [sink])
    sink.close()
    (pack,) = [e for e in read_jsonl(path) if e["type"] == "backpack_pack"]
    assert "value" not in pack["payload"]
    assert pack["payload"]["value_summary"] == '"start>n1"'


def test_full_values_record_what_pack_and_append_wrote(tmp_path: Path) -> None:
    class Lists(Node):
        def post(self, backpack: Any, prep_res: Any, exec_res: Any) -> Any:
            backpack.pack("log", ["a"])
            backpack.append("log", ["b", "c"])
            backpack.delete("k0")
            return None

    path = tmp_path / "run.jsonl"
    sink = make(path)
    run_flow(Flow(Lists(id="lists")), [sink])
    sink.close()
    packs = [e["payload"] for e in read_jsonl(path) if e["type"] == "backpack_pack"]
    assert [(p["op"], p.get("value")) for p in packs] == [
        ("pack", ["a"]),  # what pack wrote, not the list as later appends extended it
        ("append", ["b", "c"]),
        ("delete", None),
    ]


def test_event_mode_writes_each_event_as_it_arrives(tmp_path: Path) -> None:
    seen: list[int] = []
    path = tmp_path / "live.jsonl"

    class Peek(Node):
        def exec(self, prep_res: Any) -> Any:
            seen.append(len(path.read_bytes().splitlines()))

    sink = make(path, flush="event")
    run_flow(Flow(Peek(id="peek")), [sink])
    sink.close()
    assert seen == [3]  # run_start, node_start, prep_complete are on disk during exec


def test_batch_mode_buffers_until_size_urgent_event_or_interval(tmp_path: Path) -> None:
    path = tmp_path / "batched.jsonl"
    sink = make(path, batch_size=3, batch_interval=0)
    events = EventStreamer()
    events.subscribe(sink.handle)
    events.emit_event(StreamEventType.LOG, None, run_id="r")
    events.emit_event(StreamEventType.LOG, None, run_id="r")
    assert path.read_bytes() == b""
    events.emit_event(StreamEventType.LOG, None, run_id="r")
    assert len(read_jsonl(path)) == 3  # batch full
    events.emit_event(StreamEventType.LOG, None, run_id="r")
    events.emit_event(StreamEventType.GUARDRAIL, None, run_id="r")
    assert len(read_jsonl(path)) == 5  # a guardrail is written at once
    sink.close()

    timed = tmp_path / "timed.jsonl"
    sink = make(timed, batch_size=100, batch_interval=0.05)
    events = EventStreamer()
    events.subscribe(sink.handle)
    events.emit_event(StreamEventType.LOG, None, run_id="r")
    deadline = threading.Event()
    for _ in range(100):
        if timed.read_bytes():
            break
        deadline.wait(0.01)
    assert len(read_jsonl(timed)) == 1  # written by the interval, with no further events
    assert sink.close()["events"] == 1


def test_a_failed_run_leaves_a_complete_file(tmp_path: Path) -> None:
    path = tmp_path / "failed.jsonl"
    sink = make(path, batch_size=1000, batch_interval=0)
    result = run_flow(failing_flow(), [sink])
    assert result.status == "failed"
    # written by the error and run_end events themselves, before close()
    lines = read_jsonl(path)
    assert [e["id"] for e in lines] == event_ids(result)
    error = next(e for e in lines if e["type"] == "error")
    assert error["node_id"] == "broken"
    assert error["payload"]["phase"] == "exec" and error["payload"]["error"] == "boom"
    assert lines[-1]["payload"]["status"] == "failed"
    sink.close()


def test_rotation_by_size_never_splits_a_line(tmp_path: Path) -> None:
    path = tmp_path / "rot.jsonl"
    sink = make(path, flush="event", max_bytes=4000, backups=3)
    results = [run_flow(chain(5), [sink]) for _ in range(6)]
    report = sink.close()

    names = sorted(p.name for p in tmp_path.iterdir())
    assert names == ["rot.jsonl", "rot.jsonl.1", "rot.jsonl.2", "rot.jsonl.3"]
    kept: list[dict[str, Any]] = []
    for name in ["rot.jsonl.3", "rot.jsonl.2", "rot.jsonl.1", "rot.jsonl"]:
        raw = (tmp_path / name).read_bytes()
        assert raw.endswith(b"\n")
        assert len(raw) <= 4000
        kept.extend(json.loads(line) for line in raw.splitlines())
    all_ids = [i for r in results for i in event_ids(r)]
    assert [e["id"] for e in kept] == all_ids[-len(kept) :]  # the newest, in order
    assert report["rotations"] > 3  # older files were discarded beyond backups=3
    assert report["events"] == len(all_ids)
    assert report["files"] == [str(path)]


def test_rotation_with_no_backups_starts_over(tmp_path: Path) -> None:
    path = tmp_path / "rot.jsonl"
    sink = make(path, max_bytes=3000, backups=0, flush="event")
    run_flow(chain(5), [sink])
    report = sink.close()
    assert [p.name for p in tmp_path.iterdir()] == ["rot.jsonl"]
    assert report["rotations"] >= 1
    read_jsonl(path)  # whole lines only


def test_a_directory_gets_one_file_per_run_created_on_its_first_event(tmp_path: Path) -> None:
    directory = tmp_path / "traces"
    existed: list[bool] = []

    class Check(Node):
        def exec(self, prep_res: Any) -> Any:
            existed.append((directory / f"{current_run().run_id}.jsonl").exists())

    sink = make(f"{directory}/", batch_size=1000, batch_interval=0)
    results = [run_flow(Flow(Check(id="check")), [sink]) for _ in range(3)]
    results.append(run_flow(chain(2), [sink]))
    report = sink.close()

    assert existed == [True, True, True]
    assert sorted(p.name for p in directory.iterdir()) == sorted(
        f"{r.run_id}.jsonl" for r in results
    )
    for result in results:
        lines = read_jsonl(directory / f"{result.run_id}.jsonl")
        assert [e["id"] for e in lines] == event_ids(result)
    assert report["files"] == sorted(str(directory / f"{r.run_id}.jsonl") for r in results)
    assert report["events"] == sum(len(event_ids(r)) for r in results)


def test_an_existing_directory_path_without_slash_is_per_run(tmp_path: Path) -> None:
    sink = make(tmp_path)
    result = run_flow(chain(1), [sink])
    sink.close()
    assert [p.name for p in tmp_path.iterdir()] == [f"{result.run_id}.jsonl"]


@pytest.mark.parametrize("flush", ["event", "batch"])
def test_concurrent_runs_append_whole_lines_to_one_file(tmp_path: Path, flush: str) -> None:
    path = tmp_path / "shared.jsonl"
    results: list[Any] = []
    lock = threading.Lock()

    def worker() -> None:
        sink = make(path, flush=flush, batch_size=7, batch_interval=0.01)  # one file, many fds
        for _ in range(10):
            result = run_flow(chain(5), [sink], k0="x" * 3000)  # long lines
            with lock:
                results.append(result)
        sink.close()

    threads = [threading.Thread(target=worker) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()

    lines = read_jsonl(path)  # raises on any interleaved or partial line
    assert len(lines) == 60 * 32
    for result in results:
        mine = [e["seq"] for e in lines if e["run_id"] == result.run_id]
        assert mine == list(range(1, 33))


WRITER = """
import sys
from sinks_support import chain, run_flow
from backpackflow_sinks.jsonl import FileSinkOptions, JsonlFileSink
options = FileSinkOptions(path=sys.argv[1], flush="event", max_bytes=50_000, backups=100)
sink = JsonlFileSink(options)
for _ in range(15):
    run_flow(chain(5), [sink], k0="y" * 500)
print(sink.close()["events"])
"""


def test_processes_share_a_rotating_file(tmp_path: Path) -> None:
    """flock and rotation across processes: each writer reopens a file another rotated."""
    path = tmp_path / "multi.jsonl"
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join(
            [str(Path(__file__).parent), os.environ.get("PYTHONPATH", "")]
        ),
    }
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", WRITER, str(path)], env=env, stdout=subprocess.PIPE, text=True
        )
        for _ in range(4)
    ]
    written = [int(p.communicate(timeout=60)[0]) for p in procs]
    assert all(p.returncode == 0 for p in procs)
    assert written == [15 * 32] * 4
    files = sorted(tmp_path.iterdir())
    assert len(files) > 4  # rotated while the others were writing
    lines = [line for f in files for line in read_jsonl(f)]
    assert len(lines) == 4 * 15 * 32
    runs: dict[str, list[int]] = {}
    for line in lines:
        runs.setdefault(line["run_id"], []).append(line["seq"])
    assert len(runs) == 60
    assert all(sorted(seqs) == list(range(1, 33)) for seqs in runs.values())


def test_one_sink_shared_by_threads(tmp_path: Path) -> None:
    path = tmp_path / "shared.jsonl"
    sink = make(path, batch_size=5, max_bytes=20_000, backups=50)
    threads = [
        threading.Thread(target=lambda: [run_flow(chain(3), [sink]) for _ in range(5)])
        for _ in range(4)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    report = sink.close()
    files = sorted(tmp_path.iterdir())
    total = sum(len(read_jsonl(f)) for f in files)
    assert total == report["events"] == 20 * 20
    assert report["rotations"] == len(files) - 1 > 0


def test_write_errors_are_counted_never_raised() -> None:
    if not os.path.exists("/dev/full"):
        pytest.skip("needs /dev/full")
    sink = make("/dev/full", flush="event")
    result = run_flow(chain(1), [sink])
    assert result.ok
    report = sink.close()
    assert report["events"] == 0
    assert report["dropped"]["write_error"] == 8
    assert "No space left" in report["last_error"]
    assert result.events.get_stats()["handler_errors"] == 0


def test_events_outside_runs_and_after_close(tmp_path: Path) -> None:
    sink = make(tmp_path)
    events = EventStreamer()
    events.subscribe(sink.handle)
    events.emit_event(StreamEventType.LOG, None)
    report = sink.close()
    assert (tmp_path / "outside-runs.jsonl").exists()
    assert report["events"] == 1
    events.emit_event(StreamEventType.LOG, None)
    assert sink.close() == report


def test_unserializable_values_are_summarized(tmp_path: Path) -> None:
    class Odd(Node):
        def exec(self, prep_res: Any) -> Any:
            return {"lock": threading.Lock(), "data": b"\x00\x01", "set": {1}}

    path = tmp_path / "odd.jsonl"
    sink = make(path)
    run_flow(Flow(Odd(id="odd")), [sink], backpack=Backpack())
    assert sink.close()["events"] == 6
    (done,) = [e for e in read_jsonl(path) if e["type"] == "exec_complete"]
    result = done["payload"]["exec_result"]
    assert "lock" in result["lock"]["$type"] and result["set"] == [1]
    assert result["data"]["$type"] == "bytes"
