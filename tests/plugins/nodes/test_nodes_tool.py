"""The ``tool`` node and the built-in tools through flows: ``tool_request`` / ``tool_response``
events, ``read_file`` and ``csv_summary`` confined to the flow's folder, ``http_fetch`` with its
host allowlist, timeout and size cap against a real server on 127.0.0.1, and tools registered
by a plugin."""

from __future__ import annotations

import csv
import os
import statistics
import sys
import types
from decimal import Decimal
from pathlib import Path

import pytest
from nodes_support import (
    CSV_REPORT,
    Page,
    PageServer,
    execute,
    flow_doc,
    installed_registry,
    load,
    run_flow,
    tool,
    write_flow,
)

from backpackflow import hookimpl
from backpackflow.errors import ConfigError
from backpackflow.loader import FlowLoader
from backpackflow.plugins import build_registry
from backpackflow.runner import DependencyContainer


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    """A flow folder with a few files, and a secret next to it (outside it)."""
    flow_dir = tmp_path / "flow"
    (flow_dir / "data").mkdir(parents=True)
    (flow_dir / "notes.md").write_text("# Notes\n\nThe ferry is late.\n", encoding="utf-8")
    (flow_dir / "data" / "inner.txt").write_text("inner text", encoding="utf-8")
    (tmp_path / "secret.txt").write_text("TOP-SECRET-VALUE", encoding="utf-8")
    return flow_dir


def run_in(folder: Path, *nodes, inputs=None, **top):
    """Write the flow into ``folder`` and run it from there (paths are relative to it)."""
    path = write_flow(folder / "flow.json", flow_doc(*nodes, **top))
    return run_flow(path, inputs=inputs)


# ------------------------------------------------------------------------------- read_file


def test_read_file_reads_below_the_flow_folder_with_exact_events(folder):
    ran = run_in(
        folder,
        tool("read", "read_file", arguments={"path": "{{ inputs.doc }}"}),
        inputs={"doc": "notes.md"},
    )

    assert ran.result.ok, ran.result.error
    content = "# Notes\n\nThe ferry is late.\n"
    arguments = {"path": "notes.md", "max_bytes": 1_000_000, "encoding": "utf-8"}
    result = {"path": "notes.md", "content": content, "bytes": len(content)}
    assert ran.one("prep_complete", "read") == {"prep_result": arguments, "reads": []}
    assert ran.one("tool_request", "read") == {"tool": "read_file", "arguments": arguments}
    response = ran.one("tool_response", "read")
    assert response["tool"] == "read_file"
    assert response["result"] == result
    assert response["error"] is None
    assert response["duration_ms"] >= 0
    assert ran.one("exec_complete", "read")["exec_result"] == result
    assert ran.result.backpack.peek("read") == result
    assert ran.types("read") == [
        "node_start",
        "prep_complete",
        "tool_request",
        "tool_response",
        "exec_complete",
        "backpack_pack",
        "node_end",
    ]


def test_relative_paths_resolve_against_the_flow_folder_not_the_working_directory(
    folder, tmp_path, monkeypatch
):
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (elsewhere / "notes.md").write_text("the wrong file", encoding="utf-8")
    monkeypatch.chdir(elsewhere)
    ran = run_in(folder, tool("read", "read_file", arguments={"path": "notes.md"}))
    assert ran.result.backpack.peek("read")["content"].startswith("# Notes")


@pytest.mark.parametrize(
    "path",
    ["../secret.txt", "data/../../secret.txt", "{secret}"],
    ids=["parent", "dotdot-inside", "absolute"],
)
def test_read_file_refuses_paths_that_leave_the_flow_folder(folder, path):
    path = path.format(secret=folder.parent / "secret.txt")
    ran = run_in(folder, tool("read", "read_file", arguments={"path": path}))

    assert ran.result.status == "failed"
    assert "outside the flow's folder" in ran.error
    response = ran.one("tool_response", "read")
    assert response["result"] is None and "outside the flow's folder" in response["error"]
    assert ran.one("error", "read")["error_type"] == "ToolError"
    assert "TOP-SECRET-VALUE" not in ran.serialized()


@pytest.mark.skipif(sys.platform == "win32", reason="symlinks need privileges on Windows")
def test_read_file_refuses_a_symlink_that_points_outside(folder):
    os.symlink(folder.parent / "secret.txt", folder / "link.txt")
    ran = run_in(folder, tool("read", "read_file", arguments={"path": "link.txt"}))
    assert ran.result.status == "failed"
    assert "outside the flow's folder" in ran.error
    assert "TOP-SECRET-VALUE" not in ran.serialized()


def test_base_dir_narrows_the_folder_further(folder):
    ok = run_in(folder, tool("read", "read_file", arguments={"path": "inner.txt"}, base_dir="data"))
    assert ok.result.backpack.peek("read")["content"] == "inner text"
    escaped = run_in(
        folder, tool("read", "read_file", arguments={"path": "../notes.md"}, base_dir="data")
    )
    assert escaped.result.status == "failed" and "outside" in escaped.error


def test_read_file_errors_name_the_problem(folder):
    missing = run_in(folder, tool("read", "read_file", arguments={"path": "nope.md"}))
    assert "no file 'nope.md'" in missing.error
    big = run_in(folder, tool("read", "read_file", arguments={"path": "notes.md", "max_bytes": 5}))
    assert "over max_bytes=5" in big.error


def test_static_arguments_are_checked_at_load_time(folder):
    with pytest.raises(ConfigError) as caught:
        load(flow_doc(tool("read", "read_file", arguments={"max_bytes": 10})))
    assert "node 'read'" in str(caught.value) and "path" in str(caught.value)


def test_an_unknown_tool_is_a_load_time_error_naming_node_and_tool():
    with pytest.raises(ConfigError) as caught:
        load(flow_doc(tool("t", "no_such_tool")))
    assert "node 't'" in str(caught.value) and "'no_such_tool'" in str(caught.value)


def test_templated_arguments_are_structured_after_rendering(folder):
    node = tool("read", "read_file", arguments={"path": "notes.md", "max_bytes": "{{ inputs.n }}"})
    ran = run_in(folder, node, inputs={"n": 3})
    assert ran.one("tool_request")["arguments"]["max_bytes"] == 3
    assert "over max_bytes=3" in ran.error


# ------------------------------------------------------------------------------- csv_summary


def test_csv_summary_figures_match_the_shipped_csv():
    deps = DependencyContainer()
    deps.register("flow_dir", CSV_REPORT.parent)
    ran = run_flow(
        flow_doc(tool("table", "csv_summary", arguments={"path": "sales.csv"})), deps=deps
    )
    assert ran.result.ok, ran.result.error
    summary = ran.result.backpack.peek("table")

    with (CSV_REPORT.parent / "sales.csv").open(encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    assert summary["path"] == "sales.csv"
    assert summary["rows"] == len(rows) == 24
    assert summary["sample"] == rows[:3]
    by_name = {c["name"]: c for c in summary["columns"]}
    assert list(by_name) == ["month", "region", "product", "units", "revenue", "returns"]
    for name in ("units", "revenue", "returns"):
        values = [Decimal(r[name]) for r in rows]
        column = by_name[name]
        assert column["type"] == "number"
        assert column["non_empty"] == 24
        assert Decimal(str(column["min"])) == min(values)
        assert Decimal(str(column["max"])) == max(values)
        assert Decimal(str(column["sum"])) == sum(values)
        mean = statistics.fmean(float(v) for v in values)
        assert column["mean"] == pytest.approx(mean, abs=5e-5)
    assert Decimal(str(by_name["revenue"]["sum"])) == Decimal("171847.00")
    assert by_name["units"]["sum"] == 2203
    assert by_name["returns"]["sum"] == 66
    assert by_name["region"] == {
        "name": "region",
        "non_empty": 24,
        "type": "text",
        "distinct": 3,
        "top": [
            {"value": "North", "count": 8},
            {"value": "South", "count": 8},
            {"value": "West", "count": 8},
        ],
    }
    assert by_name["month"]["type"] == "text"  # "2026-01" is not a number
    assert by_name["month"]["distinct"] == 4
    assert by_name["product"]["distinct"] == 2


def test_csv_summary_handles_gaps_and_mixed_columns(folder):
    (folder / "mixed.csv").write_text(
        "name;score;note\nann;1,5;x\nbob;;y\ncid;4;y\n", encoding="utf-8"
    )
    node = tool("t", "csv_summary", arguments={"path": "mixed.csv", "delimiter": ";"})
    ran = run_in(folder, node)
    columns = {c["name"]: c for c in ran.result.backpack.peek("t")["columns"]}
    # "1,5" reads as 15 (a thousands separator), the empty cell is skipped
    assert columns["score"] == {
        "name": "score",
        "non_empty": 2,
        "type": "number",
        "min": 4.0,
        "max": 15.0,
        "mean": 9.5,
        "sum": 19.0,
    }
    assert columns["note"]["top"] == [{"value": "y", "count": 2}, {"value": "x", "count": 1}]


def test_csv_summary_is_confined_too(folder):
    (folder.parent / "outside.csv").write_text("a\n1\n", encoding="utf-8")
    ran = run_in(folder, tool("t", "csv_summary", arguments={"path": "../outside.csv"}))
    assert ran.result.status == "failed" and "outside the flow's folder" in ran.error


# ------------------------------------------------------------------------------- http_fetch


def fetch(url: str, **arguments):
    return tool("get", "http_fetch", arguments={"url": url, **arguments})


def test_http_fetch_gets_a_page_from_an_allowed_host():
    with PageServer({"/page": Page(body=b"hello, world")}) as server:
        node = fetch("{{ inputs.base }}/page", allowed_hosts=["127.0.0.1"], timeout=5)
        ran = run_flow(flow_doc(node), inputs={"base": server.url})
    assert ran.result.ok, ran.result.error
    assert ran.one("tool_request")["arguments"] == {
        "url": f"{server.url}/page",
        "allowed_hosts": ["127.0.0.1"],
        "timeout": 5.0,
        "max_bytes": 1_000_000,
        "headers": {},
    }
    assert ran.one("tool_response")["result"] == {
        "url": f"{server.url}/page",
        "status": 200,
        "content_type": "text/plain; charset=utf-8",
        "content": "hello, world",
        "bytes": 12,
    }
    assert server.hits == ["/page"]


@pytest.mark.parametrize("allowed", [[], ["example.com"], ["127.0.0.10"]], ids=str)
def test_http_fetch_refuses_hosts_outside_the_allowlist_before_connecting(allowed):
    with PageServer({"/page": Page()}) as server:
        ran = run_flow(flow_doc(fetch(f"{server.url}/page", allowed_hosts=allowed)))
    assert server.hits == []
    assert ran.result.status == "failed"
    assert "host '127.0.0.1' is not in allowed_hosts" in ran.error
    response = ran.one("tool_response")
    assert response["result"] is None and "allowed_hosts" in response["error"]


@pytest.mark.parametrize(
    ("url", "allowed"),
    [
        ("http://evilexample.com/", ["*.example.com"]),
        ("http://example.com.evil.org/", ["example.com"]),
        ("http://example.com@evil.org/", ["example.com"]),
    ],
)
def test_http_fetch_allowlist_is_not_fooled_by_lookalike_hosts(url, allowed):
    ran = run_flow(flow_doc(fetch(url, allowed_hosts=allowed)))
    assert ran.result.status == "failed"
    assert "is not in allowed_hosts" in ran.error


def test_http_fetch_refuses_other_schemes():
    ran = run_flow(flow_doc(fetch("file:///etc/passwd", allowed_hosts=["*"])))
    assert "is not an http(s) URL" in ran.error


def test_http_fetch_times_out():
    with PageServer({"/slow": Page(delay=1.0)}) as server:
        ran = run_flow(
            flow_doc(fetch(f"{server.url}/slow", allowed_hosts=["127.0.0.1"], timeout=0.2))
        )
    assert ran.result.status == "failed"
    assert "timed out after 0.2s" in ran.error


def test_http_fetch_caps_the_size():
    with PageServer({"/big": Page(body=b"x" * 5000)}) as server:
        ran = run_flow(
            flow_doc(fetch(f"{server.url}/big", allowed_hosts=["127.0.0.1"], max_bytes=1000))
        )
    assert "larger than max_bytes=1000" in ran.error


def test_a_secret_in_the_arguments_is_sent_but_never_shown(monkeypatch):
    monkeypatch.setenv("BPF_TEST_TOKEN", "tok-5ecret-value")
    with PageServer({"/api": Page(body=b"{}")}) as server:
        node = fetch(
            f"{server.url}/api",
            allowed_hosts=["127.0.0.1"],
            headers={"Authorization": "Bearer ${BPF_TEST_TOKEN}"},
        )
        flow = load(flow_doc(node))
        ran = execute(flow)
    assert ran.result.ok, ran.result.error
    assert server.headers[0]["authorization"] == "Bearer tok-5ecret-value"
    assert "tok-5ecret-value" not in ran.serialized()
    shown = {"Authorization": "Bearer ${BPF_TEST_TOKEN}"}
    assert ran.one("tool_request")["arguments"]["headers"] == shown
    assert ran.one("prep_complete")["prep_result"]["headers"] == shown
    exported = FlowLoader(installed_registry()).export_json(flow)
    assert "tok-5ecret-value" not in exported and "${BPF_TEST_TOKEN}" in exported


def test_templates_nested_in_the_arguments_are_rendered_too():
    with PageServer({"/p": Page()}) as server:
        node = fetch(
            f"{server.url}/p",
            allowed_hosts=["{{ inputs.host }}"],
            headers={"X-Who": "{{ inputs.who }}", "X-Static": "plain"},
        )
        ran = run_flow(flow_doc(node), inputs={"host": "127.0.0.1", "who": "me"})
    assert ran.result.ok, ran.result.error
    assert server.headers[0]["x-who"] == "me" and server.headers[0]["x-static"] == "plain"
    arguments = ran.one("tool_request")["arguments"]
    assert arguments["allowed_hosts"] == ["127.0.0.1"]
    assert arguments["headers"] == {"X-Who": "me", "X-Static": "plain"}


def test_an_undefined_name_nested_in_the_arguments_is_a_load_time_error():
    node = fetch("http://127.0.0.1/", headers={"X-Who": "{{ who }}"})
    with pytest.raises(ConfigError) as caught:
        load(flow_doc(node))
    assert "node 'get' params.arguments.headers.X-Who" in str(caught.value)
    assert "'who'" in str(caught.value)


def test_http_fetch_does_not_follow_redirects_off_the_allowlist():
    redirect = Page(302, b"", headers={"Location": "http://example.org/"})
    with PageServer({"/go": redirect}) as server:
        ran = run_flow(flow_doc(fetch(f"{server.url}/go", allowed_hosts=["127.0.0.1"])))
    assert ran.result.ok
    assert ran.one("tool_response")["result"]["status"] == 302
    assert server.hits == ["/go"]


# ------------------------------------------------------------------------------- registered tools


def _plugin(name: str, **hooks) -> types.ModuleType:
    module = types.ModuleType(name)
    for hook_name, function in hooks.items():
        setattr(module, hook_name, hookimpl(function))
    return module


def _register_shout(register):
    def shout(arguments):
        """Upper-case a text (one argument, as the hookspec documents tools)."""
        return {"text": arguments["text"].upper()}

    register("shout", shout)


def _register_where(register):
    def where(arguments, context):
        return {"base_dir": str(context.base_dir), "n": arguments["n"]}

    register("where", where)


def test_a_tool_registered_by_a_plugin_as_the_hookspec_documents_it(install_plugins):
    install_plugins(_plugin("shout_tools", backpackflow_register_tools=_register_shout))
    node = tool("t", "shout", arguments={"text": "{{ inputs.word }}"})
    ran = run_flow(flow_doc(node), inputs={"word": "hello"})
    assert ran.result.ok, ran.result.error
    assert ran.one("tool_request") == {"tool": "shout", "arguments": {"text": "hello"}}
    assert ran.one("tool_response")["result"] == {"text": "HELLO"}


def test_a_registered_tool_may_take_the_context(install_plugins, folder):
    install_plugins(_plugin("where_tools", backpackflow_register_tools=_register_where))
    ran = run_in(folder, tool("t", "where", arguments={"n": 2}))
    assert ran.result.ok, ran.result.error
    assert ran.result.backpack.peek("t") == {"base_dir": str(folder.resolve()), "n": 2}


def test_a_failing_tool_reports_its_error_in_tool_response(install_plugins):
    def register(register):
        def broken(arguments, context):
            raise RuntimeError("disk on fire")

        register("broken", broken)

    install_plugins(_plugin("broken_tools", backpackflow_register_tools=register))
    ran = run_flow(flow_doc(tool("t", "broken")))
    assert ran.result.status == "failed"
    assert ran.one("tool_response")["error"] == "disk on fire"
    error = ran.one("error", "t")
    assert (error["phase"], error["error_type"]) == ("exec", "RuntimeError")


def test_a_tool_from_an_explicit_registry_is_found():
    registry = build_registry(
        plugins=[_plugin("only_here", backpackflow_register_tools=_register_shout)]
    )
    assert "shout" in registry.tools and "shout" not in installed_registry().tools
    ran = run_flow(flow_doc(tool("t", "shout", arguments={"text": "a"})), registry=registry)
    assert ran.result.backpack.peek("t") == {"text": "A"}
