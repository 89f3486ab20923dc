"""The workflow list in Chromium against a real ``backpackflow serve`` (issue 18): empty
states that say what to do, create from a demo template, search, duplicate, export and import
flow JSON, delete, and each workflow's own run history linking to its runs."""

from __future__ import annotations

import json
import re
import time
from pathlib import Path
from typing import Any

from playwright.sync_api import expect
from ui_kit import UiServer

SCREENSHOTS = "workflows"

OFFLINE_FLOW = {
    "version": "2.0.0",
    "nodes": [{"type": "llm", "id": "answer", "params": {"prompt": "Say hello"}}],
    "edges": [],
}


def row(page: Any, name: str) -> Any:
    return page.get_by_role("listitem", name=name, exact=True)


def test_a_viewer_is_told_who_can_create_a_workflow(
    ui_server: UiServer, page: Any, signed_in: Any
) -> None:
    signed_in(page, role="viewer")
    expect(page.get_by_text("No workflow yet")).to_be_visible()
    expect(page.get_by_text("An admin has to create one")).to_be_visible()
    expect(page.get_by_role("button", name="New workflow")).to_have_count(0)


def test_create_from_a_template_search_duplicate_export_import_and_delete(
    ui_server: UiServer, page: Any, signed_in: Any, screenshot: Any, tmp_path: Path
) -> None:
    signed_in(page)
    page.get_by_role("button", name="New workflow").click()
    dialog = page.get_by_role("dialog", name="New workflow")
    dialog.get_by_role("radio", name=re.compile("^research")).check()
    dialog.get_by_role("button", name="Create").click()
    expect(page).to_have_url(re.compile(r"/workflows/[^/]+$"))
    expect(page.get_by_role("group", name="decide", exact=True)).to_be_visible()

    page.get_by_role("link", name="Workflows").click()
    expect(row(page, "research")).to_be_visible()
    row(page, "research").get_by_role("button", name="Duplicate").click()
    expect(row(page, "research (copy)")).to_be_visible()

    with page.expect_download() as download_info:
        row(page, "research").get_by_role("button", name="Export").click()
    exported = tmp_path / download_info.value.suggested_filename
    download_info.value.save_as(exported)
    assert exported.name == "research.json"
    document = json.loads(exported.read_text())
    assert document["name"] == "research" and len(document["nodes"]) == 4

    document["name"] = "imported"
    changed = tmp_path / "imported.json"
    changed.write_text(json.dumps(document))
    page.get_by_label("Flow JSON file").set_input_files(changed)
    expect(row(page, "imported")).to_be_visible()
    broken = tmp_path / "broken.json"
    broken.write_text("{not json")
    page.get_by_label("Flow JSON file").set_input_files(broken)
    expect(page.get_by_role("alert")).to_contain_text("broken.json: the file is not JSON")

    page.get_by_label("Search workflows").fill("copy")
    expect(row(page, "research (copy)")).to_be_visible()
    expect(row(page, "imported")).to_have_count(0)
    page.get_by_label("Search workflows").fill("nothing like it")
    expect(page.get_by_text("No workflow matches")).to_be_visible()
    page.get_by_role("button", name="Clear the search").click()
    screenshot(page, "workflows")

    row(page, "research (copy)").get_by_role("button", name="Delete").click()
    row(page, "research (copy)").get_by_role("button", name="Confirm delete").click()
    expect(row(page, "research (copy)")).to_have_count(0)
    with ui_server.client() as client:
        names = sorted(w["name"] for w in client.get("/api/workflows").json())
    assert names == ["imported", "research"]


def test_each_workflow_lists_its_own_runs(
    ui_server: UiServer, page: Any, signed_in: Any, screenshot: Any
) -> None:
    with ui_server.client() as client:
        ran = client.post("/api/workflows", json={"name": "greeter", "graph_json": OFFLINE_FLOW})
        workflow_id = ran.json()["id"]
        client.post("/api/workflows", json={"name": "idle", "graph_json": OFFLINE_FLOW})
        run = client.post(f"/api/workflows/{workflow_id}/runs", json={}).json()
        deadline = time.monotonic() + 30
        while client.get(f"/api/runs/{run['id']}").json()["status"] not in ("succeeded", "failed"):
            assert time.monotonic() < deadline, "the run did not finish"
            time.sleep(0.2)
    signed_in(page)
    row(page, "idle").get_by_role("button", name="Runs").click()
    expect(row(page, "idle").get_by_text("No run yet")).to_be_visible()
    row(page, "greeter").get_by_role("button", name="Runs").click()
    history = row(page, "greeter").get_by_role("table", name="Run history")
    expect(history.get_by_text("succeeded")).to_be_visible()
    screenshot(page, "run-history")
    history.get_by_role("link").click()
    expect(page).to_have_url(re.compile(f"/runs/{run['id']}$"))
