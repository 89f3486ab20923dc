"""bench/checkpoint.py stays runnable (briefly): every checkpointer it measures completes the
chat, its bytes table has a row per stored checkpointer, a peer that is not installed is named
rather than crashing the bench, and its PostgreSQL schema is dropped at the end."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text

BENCH = Path(__file__).resolve().parents[3] / "bench" / "checkpoint.py"


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_the_checkpoint_bench_runs(
    backend: str, request: pytest.FixtureRequest, capsys: pytest.CaptureFixture[str]
) -> None:
    spec = importlib.util.spec_from_file_location("checkpoint_bench", BENCH)
    assert spec is not None and spec.loader is not None
    bench = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = bench
    spec.loader.exec_module(bench)
    argv = ["--turns", "5", "--repeats", "1"]
    url = request.getfixturevalue("postgres_url") if backend == "postgresql" else None
    if url is not None:
        argv += ["--postgres", url]
    bench.main(argv)
    out = capsys.readouterr().out
    for row in ("ours: no checkpointer", "ours: file / commit", "ours: sqlite / node"):
        assert row in out
    assert ("ours: postgres / node" in out) == (url is not None)
    assert "full state per step (computed)" in out
    if bench.installed(("langgraph.graph",), ("langgraph",)) is None:
        assert "langgraph: not installed" in out
    else:
        assert "langgraph: sqlite / sync" in out
    if url is not None:  # the bench's schema is gone
        engine = create_engine(url)
        with engine.connect() as connection:
            schemas = connection.execute(
                text("SELECT nspname FROM pg_namespace WHERE nspname LIKE 'bench_checkpoint_%'")
            ).all()
        engine.dispose()
        assert schemas == []
