"""The flow builder in Chromium against a real ``backpackflow serve`` (issue 18): build a
4-node tool/llm/router flow from an empty canvas, save, reload and find it stored; a stale
save gets a conflict, not a silent overwrite; the service's validation error shows on the node
and the field its JSON path names. Screenshots go to ``$BACKPACKFLOW_UI_SCREENSHOTS/builder``.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable
from typing import Any

import pytest
from playwright.sync_api import expect
from ui_kit import UiServer

from example_nodes import example_nodes_site

SCREENSHOTS = "builder"


@pytest.fixture(scope="module")
def ui_server(
    start_ui_server: Callable[..., UiServer], tmp_path_factory: pytest.TempPathFactory
) -> UiServer:
    """The module's server, with a third-party node package installed (not imported by the
    UI or by these tests): its node types must reach the palette with no UI change."""
    site = example_nodes_site(tmp_path_factory.mktemp("site"))
    path = os.pathsep.join([*site, os.environ.get("PYTHONPATH", "")])
    return start_ui_server("--no-seed", env={"PYTHONPATH": path})


def node(page: Any, node_id: str) -> Any:
    """A node on the canvas, by its accessible name (its node id)."""
    return page.get_by_role("group", name=node_id, exact=True)


def add_node(page: Any, node_type: str, node_id: str) -> None:
    """Add a node from the palette and rename it (the config panel opens on it)."""
    page.get_by_role("button", name=f"Add {node_type} node").click()
    field = page.get_by_label("Node id")
    field.fill(node_id)
    field.press("Enter")
    expect(node(page, node_id)).to_be_visible()


def connect(page: Any, source: str, target: str, action: str = "") -> None:
    node(page, source).click()
    page.get_by_label("Connect to").select_option(target)
    page.get_by_label("Edge action").fill(action)
    page.get_by_role("button", name="Add edge").click()


def wait_valid(page: Any) -> None:
    expect(page.get_by_role("status").filter(has_text=re.compile("^Valid"))).to_be_visible()


def test_build_a_four_node_flow_from_an_empty_canvas_save_and_reload(
    ui_server: UiServer, page: Any, signed_in: Any, screenshot: Any
) -> None:
    signed_in(page)
    expect(page.get_by_text("No workflow yet")).to_be_visible()
    screenshot(page, "workflows-empty")
    page.get_by_role("button", name="New workflow").click()
    page.get_by_role("dialog").get_by_label("Name").fill("triage")
    expect(page.get_by_role("radio", name=re.compile("^research"))).to_be_visible()  # templates
    screenshot(page, "new-workflow")
    page.get_by_role("button", name="Create").click()
    expect(page.get_by_text("Empty canvas: add a node")).to_be_visible()

    add_node(page, "tool", "fetch")
    page.get_by_label("tool", exact=True).fill("read_file")
    page.get_by_label("arguments (JSON)").fill('{"path": "notes.md"}')

    add_node(page, "llm", "summarize")
    prompt = page.get_by_label("prompt", exact=True)
    prompt.fill("Summarize: {{ no")  # completion of the other nodes' outputs
    page.get_by_role("option", name=re.compile("node.fetch.output")).click()
    expect(prompt).to_have_value("Summarize: {{ node.fetch.output }}")

    add_node(page, "router", "decide")
    page.get_by_label("rule", exact=True).fill("'deep'")

    add_node(page, "llm", "deep")
    page.get_by_label("prompt", exact=True).fill("Go deeper: {{ node.summarize.output }}")

    connect(page, "fetch", "summarize")
    # by hand on the canvas: from summarize's bottom handle to decide's top handle
    node(page, "summarize").locator(".react-flow__handle.source").drag_to(
        node(page, "decide").locator(".react-flow__handle.target")
    )
    connect(page, "decide", "deep", action="go")
    page.get_by_role("button", name=re.compile("→ deep")).click()  # the edge's own panel
    page.get_by_label("Action").fill("")  # back to the default action ...
    page.get_by_label("When condition").fill("branch == 'deep'")  # ... with a condition
    page.get_by_role("button", name="Auto-layout").click()
    wait_valid(page)
    screenshot(page, "editor-built")

    asked: list[str] = []
    page.once("dialog", lambda dialog: (asked.append(dialog.message), dialog.dismiss()))
    page.get_by_role("link", name="Workflows").click()  # unsaved: it asks, and we stay
    expect(page).to_have_url(re.compile("/workflows/new"))
    assert asked and "not saved" in asked[0]
    page.once("dialog", lambda dialog: (asked.append(dialog.message), dialog.dismiss()))
    page.evaluate("history.back()")  # the browser's Back button: it asks too, and we stay
    # polled with evaluate: wait_for_function compiles its predicate in the page, which the
    # page's CSP (no eval) refuses unless the first check already holds
    for _ in range(600):
        if page.evaluate("() => Boolean(history.state && history.state.backpackflowUnsaved)"):
            break
        page.wait_for_timeout(50)
    else:
        pytest.fail("the page did not stay on the unsaved workflow after Back")
    assert len(asked) == 2 and "not saved" in asked[1]
    expect(node(page, "deep")).to_be_visible()

    page.get_by_role("button", name="Save").click()
    expect(page).to_have_url(re.compile(r"/workflows/(?!new)[^/?]+$"))
    workflow_id = page.url.rsplit("/", 1)[1]
    page.reload()
    for node_id in ("fetch", "summarize", "decide", "deep"):
        expect(node(page, node_id)).to_be_visible()
    expect(page.get_by_text("version 1")).to_be_visible()

    with ui_server.client() as client:
        stored = client.get(f"/api/workflows/{workflow_id}").json()
    graph = stored["graph_json"]
    assert stored["name"] == "triage"
    assert [(n["id"], n["type"]) for n in graph["nodes"]] == [
        ("fetch", "tool"),
        ("summarize", "llm"),
        ("decide", "router"),
        ("deep", "llm"),
    ]
    assert graph["nodes"][0]["params"] == {"tool": "read_file", "arguments": {"path": "notes.md"}}
    assert graph["nodes"][1]["params"] == {"prompt": "Summarize: {{ node.fetch.output }}"}
    assert graph["edges"] == [
        {"from": "fetch", "to": "summarize"},
        {"from": "summarize", "to": "decide"},
        {"from": "decide", "to": "deep", "when": "branch == 'deep'"},
    ]

    # the JSON view shows exactly what is stored, and undo takes back a change
    page.get_by_role("button", name="JSON view").click()
    shown = page.get_by_label("Flow JSON text").input_value()
    assert __import__("json").loads(shown) == graph
    screenshot(page, "editor-json")
    page.get_by_role("button", name="JSON view").click()
    node(page, "deep").click()
    page.get_by_role("button", name="Delete node").click()
    expect(node(page, "deep")).to_have_count(0)
    run_button = page.get_by_role("button", name="Run", exact=True)
    expect(run_button).to_be_disabled()  # unsaved changes: a run runs the saved version
    page.get_by_role("button", name="Undo").click()
    expect(node(page, "deep")).to_be_visible()

    # run the saved workflow from the editor: the run view opens on the new run
    run_button.click()
    page.get_by_role("dialog").get_by_role("button", name="Run", exact=True).click()
    expect(page).to_have_url(re.compile(r"/runs/[^/?]+$"))
    run_id = page.url.rsplit("/", 1)[1]
    expect(page.get_by_label("Run summary")).to_be_visible()
    with ui_server.client() as client:
        run = client.get(f"/api/runs/{run_id}").json()
    assert (run["workflow_id"], run["workflow_version"]) == (workflow_id, 1)
    assert run["triggered_by"] == "web"
    assert not [e for e in page.errors if "401" not in e and "422" not in e], page.errors


def test_a_stale_save_is_refused_with_a_clear_conflict(
    ui_server: UiServer, page: Any, signed_in: Any, screenshot: Any
) -> None:
    graph = {
        "version": "2.0.0",
        "nodes": [{"type": "llm", "id": "ask", "params": {"prompt": "hi"}}],
        "edges": [],
    }
    with ui_server.client() as client:
        workflow = client.post("/api/workflows", json={"name": "shared", "graph_json": graph})
        workflow_id = workflow.json()["id"]
    signed_in(page, path=f"/workflows/{workflow_id}")
    expect(node(page, "ask")).to_be_visible()
    with ui_server.client() as client:  # someone else saves first
        theirs = {**graph, "nodes": [{**graph["nodes"][0], "params": {"prompt": "theirs"}}]}
        changed = client.put(
            f"/api/workflows/{workflow_id}",
            json={"graph_json": theirs},
            headers={"If-Match": '"1"'},
        )
        assert changed.status_code == 200
    node(page, "ask").click()
    page.get_by_label("prompt", exact=True).fill("mine")
    page.get_by_role("button", name="Save").click()
    conflict = page.get_by_role("alert").filter(has_text="changed since you opened it")
    expect(conflict).to_contain_text("version 2")
    screenshot(page, "editor-conflict")
    with ui_server.client() as client:
        assert client.get(f"/api/workflows/{workflow_id}").json()["version"] == 2  # not lost
    page.get_by_role("button", name="Save mine over theirs").click()
    expect(conflict).to_have_count(0)
    expect(page.get_by_text("Saved version 3")).to_be_visible()
    with ui_server.client() as client:
        stored = client.get(f"/api/workflows/{workflow_id}").json()
    assert stored["graph_json"]["nodes"][0]["params"] == {"prompt": "mine"}


def test_a_validation_error_shows_on_its_node_and_field(
    ui_server: UiServer, page: Any, signed_in: Any, screenshot: Any
) -> None:
    graph = {
        "version": "2.0.0",
        "nodes": [
            {"type": "llm", "id": "draft", "params": {"prompt": "write"}},
            {"type": "llm", "id": "review", "params": {"prompt": "{{ node.draft.output }}"}},
        ],
        "edges": [{"from": "draft", "to": "review"}],
    }
    with ui_server.client() as client:
        workflow_id = client.post(
            "/api/workflows", json={"name": "checked", "graph_json": graph}
        ).json()["id"]
    signed_in(page, path=f"/workflows/{workflow_id}")
    wait_valid(page)
    node(page, "review").click()
    page.get_by_label("temperature", exact=True).fill("5")
    expect(page.get_by_role("status")).to_have_text("1 problem")
    problem = page.get_by_role("note", name="Problems of review")
    expect(problem).to_contain_text("temperature")
    expect(page.get_by_role("note", name="Problems of draft")).to_have_count(0)
    field = page.locator(".rjsf-field-error").filter(has=page.get_by_label("temperature"))
    expect(field).to_contain_text("greater than the maximum of 2")
    screenshot(page, "editor-validation")
    page.get_by_role("button", name="Save").click()  # the service refuses it the same way
    expect(page.get_by_role("alert").filter(has_text="Not saved")).to_be_visible()
    page.get_by_label("temperature", exact=True).fill("0.5")
    wait_valid(page)

    # an edge's when condition is checked as it is typed, and the problem shown on the edge
    node(page, "draft").click()
    page.get_by_role("button", name=re.compile("→ review")).click()
    condition = page.get_by_label("When condition")
    condition.fill("output ==")
    expect(page.get_by_role("alert", name="Problems of this edge")).to_contain_text(
        "CEL syntax error"
    )
    condition.fill("output != ''")
    wait_valid(page)


def test_a_third_party_node_type_is_in_the_palette_with_its_form(page: Any, signed_in: Any) -> None:
    signed_in(page, path="/workflows/new")
    page.errors.clear()  # the 401 of the session check before signing in
    palette = page.get_by_role("complementary", name="Node types")
    palette.get_by_role("heading", name="example_nodes").wait_for()
    add_node(page, "text_stats", "measure")
    # its params form comes from the package's params JSON Schema
    source = page.get_by_label("source", exact=True)
    source.fill("ticket")
    page.get_by_label("target", exact=True).fill("figures")
    wait_valid(page)
    # a check while only one field was filled may answer 422 (shown on the form, as the first
    # test's build does); nothing else may reach the console
    assert not [e for e in page.errors if "422" not in e], page.errors
