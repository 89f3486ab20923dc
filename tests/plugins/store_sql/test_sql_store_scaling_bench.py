"""bench/scaling_store.py stays runnable (briefly, on both databases): it fills the store in
bulk as the store's own runs, and each figure it prints comes from a working call."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

from backpackflow_store_sql import SqlRunStore

BENCH = Path(__file__).resolve().parents[3] / "bench" / "scaling_store.py"


def test_the_store_scaling_bench_runs(db_url: str, capsys: pytest.CaptureFixture[str]) -> None:
    spec = importlib.util.spec_from_file_location("scaling_store_bench", BENCH)
    assert spec is not None and spec.loader is not None
    bench = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = bench
    spec.loader.exec_module(bench)
    results = bench.main(["--sizes", "200,400", "--calls", "2", "--database", db_url])
    assert [r["stored_runs"] for r in results] == [200, 400]
    assert all(len(r["list by status"]) == 2 for r in results)
    assert "list by workflow" in capsys.readouterr().out
    with SqlRunStore(db_url) as store:  # the bulk-inserted runs read back like any others
        failed = store.list_runs(status="failed", limit=100)
        assert len(failed) >= 2 and all(r["workflow_name"].startswith("bench") for r in failed)
        assert len(store.list_runs(limit=1000)) > 400
