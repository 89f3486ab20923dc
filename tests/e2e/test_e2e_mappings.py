"""Key mappings end to end (issue 15): the third-party node package
``contrib/backpackflow-example-nodes``, installed as a distribution is (its ``.dist-info`` with
its entry point, found by ``importlib.metadata``), composes with the first-party ``llm`` node
through mappings, with no wrapper code: ``text_stats`` reads its ``text`` as the flow input
``ticket``; the ``llm`` node's template reads ``state.measured`` as what ``text_stats`` wrote
under ``figures``. Run from the command line (``run --input``) and through the service's API;
the events say which key was read as which, and so does ``inspect``."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from backpackflow.plugins import DISABLE_AUTOLOAD_ENV, DISABLE_PLUGINS_ENV, build_registry
from example_nodes import PACKAGE, example_nodes_site

FLOW = PACKAGE / "tests" / "flows" / "compose.json"
TICKET = "I was charged twice for my invoice. Please refund the payment."
#: (node, Backpack key, the name the node read it as): every mapped read of the flow
MAPPED_READS = {
    ("stats", "ticket", "text"),
    ("brief", "figures", "measured"),
    ("brief", "ticket", "body"),
}


@pytest.fixture
def site(tmp_path: Path) -> list[str]:
    """The package installed as pip would leave it, for this test."""
    return example_nodes_site(tmp_path / "site")


def cli(site: list[str], *args: str) -> subprocess.CompletedProcess[str]:
    environ = {
        k: v for k, v in os.environ.items() if k not in (DISABLE_AUTOLOAD_ENV, DISABLE_PLUGINS_ENV)
    }
    environ["PYTHONPATH"] = os.pathsep.join([*site, environ.get("PYTHONPATH", "")])
    return subprocess.run(
        [sys.executable, "-m", "backpackflow", *args],
        capture_output=True,
        text=True,
        env=environ,
        timeout=120,
        check=False,
    )


def mapped_reads(events: list[dict[str, Any]]) -> set[tuple[str, str, str]]:
    return {
        (e["node_id"], e["payload"]["key"], e["payload"]["read_as"])
        for e in events
        if e["type"] == "backpack_unpack" and "read_as" in e["payload"]
    }


def expected_words(site: list[str]) -> int:
    """What ``text_stats`` counts in the ticket, by the package's own word splitter."""
    sys.path.insert(0, site[1])
    try:
        from backpackflow_example_nodes.text import words

        return len(words(TICKET))
    finally:
        sys.path.remove(site[1])


def check_outputs(outputs: dict[str, Any], site: list[str]) -> None:
    words = expected_words(site)
    assert outputs["figures"]["words"] == words
    assert outputs["figures"]["characters"] == len(TICKET)
    # the llm node's template read both mapped names
    assert outputs["brief"].startswith(f"A ticket of {words} words: I was charged twice")


def test_mapped_flow_runs_from_the_command_line(site: list[str], tmp_path: Path) -> None:
    trace = tmp_path / "run.jsonl"
    result = cli(
        site, "run", str(FLOW), "--input", f"ticket={TICKET}", "--sink", f"file:{trace}", "--json"
    )
    assert result.returncode == 0, result.stderr
    summary = json.loads(result.stdout)
    assert summary["status"] == "succeeded"
    check_outputs(summary["outputs"], site)
    events = [json.loads(line) for line in trace.read_text(encoding="utf-8").splitlines()]
    assert mapped_reads(events) == MAPPED_READS
    inspected = cli(site, "inspect", str(trace), "--node", "brief")
    assert inspected.returncode == 0, inspected.stderr
    assert "figures (as measured), ticket (as body)" in inspected.stdout


def test_a_mapping_to_a_key_no_one_writes_fails_validate(site: list[str], tmp_path: Path) -> None:
    document = json.loads(FLOW.read_text(encoding="utf-8"))
    document["edges"][0]["mappings"]["measured"] = "stats"
    broken = tmp_path / "broken.json"
    broken.write_text(json.dumps(document))
    result = cli(site, "validate", str(broken))
    assert result.returncode == 1
    assert result.stderr == (
        f"{broken}: $.edges[0].mappings.measured: node 'brief' (llm) reads 'measured' as key "
        "'stats' (the mapping on the edge 'stats' -> 'brief'); no flow input and no node "
        "writes it\n"
    )


def test_mapped_flow_runs_through_the_service(
    site: list[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from starlette.testclient import TestClient

    from backpackflow_server import Settings, create_app
    from backpackflow_server.credentials import hash_token, new_token

    for entry in reversed(site):
        monkeypatch.syspath_prepend(entry)
    monkeypatch.delenv(DISABLE_AUTOLOAD_ENV, raising=False)
    monkeypatch.delenv(DISABLE_PLUGINS_ENV, raising=False)
    registry = build_registry()  # the installed plugins, the package's among them
    assert registry.plugins["example_nodes"].status == "loaded"

    settings = Settings(database_url=f"sqlite:///{tmp_path / 'service.db'}", seed=False)
    app = create_app(settings, registry)
    graph = json.loads(FLOW.read_text(encoding="utf-8"))
    with TestClient(app, base_url="http://127.0.0.1") as client:
        token = new_token()
        app.state.service.store.create_token("mappings", "admin", hash_token(token), hint="t")
        client.headers["Authorization"] = f"Bearer {token}"
        created = client.post("/api/workflows", json={"name": "brief", "graph_json": graph})
        assert created.status_code == 201, created.text
        runs = f"/api/workflows/{created.json()['id']}/runs"
        started = client.post(runs, json={"input_vars": {"ticket": TICKET}})
        assert started.status_code == 202, started.text
        run_id = started.json()["id"]
        deadline = time.monotonic() + 60
        while (run := client.get(f"/api/runs/{run_id}").json())["status"] in ("queued", "running"):
            assert time.monotonic() < deadline, run
            time.sleep(0.02)
        assert run["status"] == "succeeded", run
        check_outputs(run["outputs"], site)
        trace = client.get(f"/api/runs/{run_id}/trace", params={"limit": 1000}).json()
        assert mapped_reads(trace["items"]) == MAPPED_READS

        # an API client's bad mapping: a 422 naming the JSON path, not a crash
        graph["edges"][0]["mappings"] = {"measured": 3}
        refused = client.post("/api/workflows", json={"name": "bad", "graph_json": graph})
        assert refused.status_code == 422, refused.text
        [problem] = refused.json()["detail"]
        assert (problem["path"], problem["msg"]) == (
            "$.edges[0].mappings.measured",
            "3 is not of type 'string'",
        )
