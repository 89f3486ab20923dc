"""The ``file`` sink: events as JSON Lines, one ``event.to_json()`` per line.

``--sink file:run.jsonl`` appends every run to one file; ``--sink file:traces/`` (an existing
directory, or a path ending in ``/``) writes one file per run, ``traces/<run_id>.jsonl``, created
on the run's first event and closed at its ``run_end`` (events outside runs go to
``outside-runs.jsonl``).

Writing: lines are buffered and written in batches (``flush="batch"``: every ``batch_size``
events, at least every ``batch_interval`` seconds, and at once on ``error``, ``guardrail`` and
``run_end`` so the file of a failed run is complete as soon as it fails) or one by one
(``flush="event"``). Each batch is one ``write`` on an ``O_APPEND`` descriptor under an exclusive
``fcntl.flock``, so runs, threads and processes sharing one file never interleave or split lines.
Files are written with raw descriptors rather than Python file objects so that a batch is never
split by a buffer boundary; that is the one thing here the standard library does not do for us
(``logging.handlers.RotatingFileHandler`` neither locks across processes nor batches).

Rotation (``max_bytes``): before a batch that would push the file past ``max_bytes``, the file is
renamed ``<path>.1`` (older ones shift to ``.2`` ... ``.<backups>``, the oldest is removed) and a
new one is started, all under the lock, so a line is never split across files. A writer that finds
the file replaced by another's rotation reopens it.

``values="full"`` (the default) adds ``payload.value`` to ``backpack_pack`` events: the value
written (``append``: the appended items), so ``backpackflow inspect --state-at`` rebuilds states
exactly; ``"summary"`` keeps only the kernel's truncated ``value_summary``.
"""

from __future__ import annotations

import fcntl
import json
import os
import sys
import tempfile
import threading
from pathlib import Path
from typing import Any, Literal

import attrs

from backpackflow import hookimpl
from backpackflow.events import BackpackEvent, StreamEventType
from backpackflow.jsondata import ListPrefix
from backpackflow.plugins import EventSinkRegistrar
from backpackflow.policy import SandboxPolicy, SandboxViolation
from backpackflow_sinks._common import (
    OnceLog,
    SinkConfigError,
    check_choice,
    check_positive,
    check_type,
)

SINK = "file"
OUTSIDE_RUNS_FILE = "outside-runs.jsonl"
_URGENT = frozenset({StreamEventType.ERROR, StreamEventType.GUARDRAIL, StreamEventType.RUN_END})
_PACK = StreamEventType.BACKPACK_PACK
_RUN_END = StreamEventType.RUN_END
_OPEN_FLAGS = os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC
#: One encoder for every line: json.dumps with options builds a new one per call.
_ENCODER = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"), default=repr)


@attrs.frozen(kw_only=True)
class FileSinkOptions:
    """Options of the ``file`` sink (shorthand ``file:PATH``)."""

    #: A file shared by every run, or a directory (existing, or ending in "/"): one file per run.
    path: str
    #: "batch": buffer, write per batch; "event": write every event as it arrives.
    flush: Literal["event", "batch"] = "batch"
    #: Events per write in batch mode.
    batch_size: int = 100
    #: Seconds a buffered event may wait before it is written (0: only size and urgent events).
    batch_interval: float = 1.0
    #: Rotate a file before it would grow past this many bytes (None: never).
    max_bytes: int | None = None
    #: Rotated files kept: <path>.1 (newest) ... <path>.<backups> (0: rotation discards).
    backups: int = 5
    #: "full": backpack_pack events also carry the written value; "summary": only its summary.
    values: Literal["summary", "full"] = "full"


class _Target:
    """One output file: its descriptor (opened on first use) and the lines waiting for it."""

    __slots__ = ("fd", "lines", "path")

    def __init__(self, path: str) -> None:
        self.path = path
        self.fd: int | None = None
        self.lines: list[str] = []


class JsonlFileSink:
    """Writes events as JSON Lines (see the module docstring). Thread-safe: one instance may
    serve concurrent runs; several instances and processes may share a file."""

    def __init__(self, options: FileSinkOptions, *, policy: SandboxPolicy | None = None) -> None:
        if policy is not None and policy.files_root is not None:
            options = attrs.evolve(options, path=_confined(options.path, policy))
        self.options = options
        self._directory = _validate(options)
        self._full = options.values == "full"
        self._batched = options.flush == "batch"
        self._lock = threading.Lock()
        self._targets: dict[str | None, _Target] = {}
        self._files: set[str] = set()
        self._events = self._bytes = self._rotations = 0
        self._dropped = {"write_error": 0, "unserializable": 0, "after_close": 0}
        self._last_error: str | None = None
        self._log = OnceLog(SINK)
        self._closed = False
        self._report: dict[str, Any] | None = None
        if self._directory is None:
            # open the shared file now: a bad path fails here, before any run starts
            target = _Target(str(Path(options.path).expanduser()))
            try:
                target.fd = os.open(target.path, _OPEN_FLAGS, 0o666)
            except OSError as exc:
                raise SinkConfigError(
                    SINK, "path", f"cannot open {target.path!r} for appending: {exc.strerror}"
                ) from None
            self._targets[None] = target
        self._stop = threading.Event()
        self._flusher: threading.Thread | None = None
        if self._batched and options.batch_interval > 0:
            self._flusher = threading.Thread(
                target=self._flush_periodically, name="backpackflow-file-sink", daemon=True
            )
            self._flusher.start()

    # -------------------------------------------------------------- EventSink

    def handle(self, event: BackpackEvent) -> None:
        """Serialize ``event`` (now, while its lazy parts still describe this moment) and buffer
        or write it. Never raises: failures are counted in the report."""
        try:
            line = self._line(event)
        except Exception as exc:  # noqa: BLE001 - a sink never breaks the run it observes
            with self._lock:
                self._dropped["unserializable"] += 1
                self._last_error = f"unserializable event: {type(exc).__name__}: {exc}"
            self._log.error("could not serialize an event", exc)
            return
        type_ = event.type
        key = event.run_id if self._directory is not None else None
        with self._lock:
            if self._closed:
                self._dropped["after_close"] += 1
                return
            target = self._targets.get(key)
            if target is None:
                target = self._targets[key] = _Target(self._run_file(key))
                self._open(target)  # the run's file exists from its first event on
            target.lines.append(line)
            if (
                not self._batched
                or type_ in _URGENT
                or len(target.lines) >= self.options.batch_size
            ):
                self._write(target)
            if type_ is _RUN_END and self._directory is not None:
                self._release(key)

    def close(self) -> dict[str, Any]:
        """Write what is buffered, close the files and return the report (idempotent)."""
        self._stop.set()
        if self._flusher is not None:
            self._flusher.join(timeout=5)
        with self._lock:
            if self._report is None:
                self._closed = True
                for key in list(self._targets):
                    target = self._targets[key]
                    self._write(target)
                    self._release(key)
                self._report = {
                    "sink": SINK,
                    "path": self.options.path,
                    "events": self._events,
                    "bytes": self._bytes,
                    "files": sorted(self._files),
                    "rotations": self._rotations,
                    "dropped": dict(self._dropped),
                    "last_error": self._last_error,
                }
            return dict(self._report)

    # -------------------------------------------------------------- serializing

    def _line(self, event: BackpackEvent) -> str:
        data = event.to_json()
        if self._full and event.type is _PACK:
            payload = event.payload
            if getattr(payload, "access_granted", False) and getattr(payload, "op", None) in (
                "pack",
                "append",
            ):
                value = payload.value
                # stored values are immutable JSON data: encode them in place, no copy
                data["payload"]["value"] = (
                    value.to_json() if isinstance(value, ListPrefix) else value
                )
        return _ENCODER.encode(data) + "\n"

    # -------------------------------------------------------------- files (lock held)

    def _run_file(self, run_id: str | None) -> str:
        assert self._directory is not None
        name = OUTSIDE_RUNS_FILE if run_id is None else f"{_safe_name(run_id)}.jsonl"
        return str(self._directory / name)

    def _open(self, target: _Target) -> None:
        if target.fd is None:
            try:
                target.fd = os.open(target.path, _OPEN_FLAGS, 0o666)
            except OSError as exc:
                self._failed(f"cannot open {target.path}", exc)

    def _write(self, target: _Target) -> None:
        if not target.lines:
            return
        count = len(target.lines)
        data = "".join(target.lines).encode("utf-8")
        target.lines.clear()
        try:
            self._append(target, data)
        except OSError as exc:
            self._dropped["write_error"] += count
            self._failed(f"cannot write {target.path}", exc)
            if target.fd is not None:  # reopen on the next batch
                _close_quietly(target.fd)
                target.fd = None
            return
        self._events += count
        self._bytes += len(data)
        self._files.add(target.path)

    def _append(self, target: _Target, data: bytes) -> None:
        fd = self._lock_current(target)
        try:
            limit = self.options.max_bytes
            if limit is not None:
                size = os.fstat(fd).st_size
                if size > 0 and size + len(data) > limit:
                    fd = self._rotate(target, fd)
            view = memoryview(data)
            while view:  # os.write may write less than asked (signals, quotas)
                written = os.write(fd, view)
                view = view[written:]
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)

    def _lock_current(self, target: _Target) -> int:
        """Lock the file now at ``target.path``; reopen first if another writer rotated or
        removed the one our descriptor points to."""
        for _ in range(20):
            if target.fd is None:
                target.fd = os.open(target.path, _OPEN_FLAGS, 0o666)
            fd = target.fd
            fcntl.flock(fd, fcntl.LOCK_EX)
            try:
                on_disk = os.stat(target.path)
            except FileNotFoundError:
                on_disk = None
            ours = os.fstat(fd)
            if on_disk is not None and (on_disk.st_ino, on_disk.st_dev) == (
                ours.st_ino,
                ours.st_dev,
            ):
                return fd
            fcntl.flock(fd, fcntl.LOCK_UN)
            _close_quietly(fd)
            target.fd = None
        raise OSError(f"{target.path} keeps being replaced while we try to lock it")

    def _rotate(self, target: _Target, fd: int) -> int:
        """Shift ``path.N`` files up, move ``path`` to ``path.1``, start a new file (locked);
        called with ``fd`` locked, returns the new locked descriptor."""
        path, backups = target.path, self.options.backups
        if backups > 0:
            for i in range(backups - 1, 0, -1):
                if os.path.exists(f"{path}.{i}"):
                    os.replace(f"{path}.{i}", f"{path}.{i + 1}")
            os.replace(path, f"{path}.1")
        else:
            os.unlink(path)
        new_fd = os.open(path, _OPEN_FLAGS, 0o666)
        fcntl.flock(new_fd, fcntl.LOCK_EX)
        target.fd = new_fd
        fcntl.flock(fd, fcntl.LOCK_UN)
        _close_quietly(fd)
        self._rotations += 1
        return new_fd

    def _release(self, key: str | None) -> None:
        target = self._targets.pop(key, None)
        if target is not None and target.fd is not None:
            _close_quietly(target.fd)
            target.fd = None

    def _failed(self, what: str, exc: OSError) -> None:
        self._last_error = f"{what}: {exc.strerror or exc}"
        self._log.error(what, exc)

    def _flush_periodically(self) -> None:
        interval = self.options.batch_interval
        while not self._stop.wait(interval):
            with self._lock:
                for target in self._targets.values():
                    self._write(target)


def _close_quietly(fd: int) -> None:
    try:
        os.close(fd)
    except OSError:
        pass


def _safe_name(run_id: str) -> str:
    """Run ids are hex, but a caller may pass its own: keep file names inside the directory."""
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in run_id).lstrip(".") or "_"


def _confined(path: str, policy: SandboxPolicy) -> str:
    """A flow's sink path inside the policy's files root (a relative path is relative to it):
    a flow may not make the process write anywhere else."""
    check_type(SINK, "path", path, str)
    assert policy.files_root is not None
    target = policy.files_root / path
    try:
        confined = policy.confine(target, what=f"sink {SINK!r}", shown=path)
    except SandboxViolation as exc:
        raise SinkConfigError(SINK, "path", str(exc)) from None
    return str(confined) + ("/" if path.endswith(("/", os.sep)) else "")


def _validate(options: FileSinkOptions) -> Path | None:
    """Check every option; returns the directory in per-run mode, None for a shared file."""
    check_type(SINK, "path", options.path, str)
    if not options.path.strip():
        raise SinkConfigError(SINK, "path", "must name a file or a directory, got ''")
    check_choice(SINK, "flush", options.flush, ("event", "batch"))
    check_choice(SINK, "values", options.values, ("summary", "full"))
    check_type(SINK, "batch_size", options.batch_size, int)
    check_positive(SINK, "batch_size", options.batch_size)
    check_positive(SINK, "batch_interval", options.batch_interval, allow_zero=True)
    if options.max_bytes is not None:
        check_type(SINK, "max_bytes", options.max_bytes, int)
        check_positive(SINK, "max_bytes", options.max_bytes)
    check_type(SINK, "backups", options.backups, int)
    check_positive(SINK, "backups", options.backups, allow_zero=True)
    path = Path(options.path).expanduser()
    if options.path.endswith(("/", os.sep)) or path.is_dir():
        try:
            path.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise SinkConfigError(
                SINK, "path", f"cannot create directory {str(path)!r}: {exc.strerror or exc}"
            ) from None
        try:  # a real write: os.access says yes to root even on read-only mounts
            fd, probe = tempfile.mkstemp(dir=path, prefix=".backpackflow-probe-")
            os.close(fd)
            os.unlink(probe)
        except OSError as exc:
            raise SinkConfigError(
                SINK, "path", f"directory {str(path)!r} is not writable: {exc.strerror or exc}"
            ) from None
        return path
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise SinkConfigError(
            SINK,
            "path",
            f"cannot create directory {str(path.parent)!r}: {exc.strerror or exc}",
        ) from None
    return None


@hookimpl
def backpackflow_register_event_sinks(register: EventSinkRegistrar) -> None:
    register(
        SINK,
        JsonlFileSink,
        options=FileSinkOptions,
        shorthand="path",
        description="JSON Lines file (or one file per run in a directory), rotated, lock-safe",
    )


#: What the entry point names ("<module>:plugin [extra]"): this module itself.
plugin = sys.modules[__name__]
