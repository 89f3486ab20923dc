"""The first-party nodes, tools and dependency factories under a restrictive sandbox policy (the
service's): files only below the files root, connections only where the egress policy allows
(after DNS), environment variables only from the allowlist, templates within their budget, and
CPU-bound work off the event loop so that a run's timeout holds and the loop stays free."""

from __future__ import annotations

import asyncio
import copy
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from llm_wire import Reply
from nodes_support import (
    Page,
    PageServer,
    flow_doc,
    installed_registry,
    llm,
    openai_completion,
    tool,
)

from backpackflow import Backpack, EventStreamer, Node, hookimpl
from backpackflow.errors import ConfigError
from backpackflow.loader import FlowLoader, prepare_inputs
from backpackflow.plugins import build_registry
from backpackflow.policy import EgressPolicy, SandboxPolicy, TemplateBudget
from backpackflow.runner import Flow, RunResult

CANARY = "sk-canary-5e1f0c77"


@pytest.fixture
def root(tmp_path: Path) -> Path:
    """The operator's files root, with a file in it, and secrets beside it."""
    files = tmp_path / "files"
    (files / "data").mkdir(parents=True)
    (files / "notes.md").write_text("The ferry is late.", encoding="utf-8")
    (files / "data" / "sales.csv").write_text("region,amount\nnorth,3\nsouth,4\n", "utf-8")
    (tmp_path / ".env").write_text(f"OPENAI_API_KEY={CANARY}\n", encoding="utf-8")
    (tmp_path / "service.db").write_bytes(b"SQLite format 3\x00 secret rows")
    return files


def policy_for(root: Path, **changes: Any) -> SandboxPolicy:
    """The service's kind of policy: files root, public egress, no environment, offload."""
    options: dict[str, Any] = {
        "files_root": root,
        "egress": EgressPolicy(),
        "env_allowlist": (),
        "templates": TemplateBudget(max_seconds=2.0, max_output=100_000, max_int_bits=4096),
        "offload": True,
    }
    options.update(changes)
    return SandboxPolicy(**options)


def load(doc: dict[str, Any], policy: SandboxPolicy, registry: Any = None) -> Flow:
    from backpackflow.loader import FLOW_DIR
    from backpackflow.runner import DependencyContainer

    deps = DependencyContainer()
    deps.register(FLOW_DIR, policy.files_root)
    loader = FlowLoader(registry if registry is not None else installed_registry())
    return loader.load_flow(copy.deepcopy(doc), deps, policy=policy)


def run(flow: Flow, **inputs: Any) -> tuple[RunResult, str]:
    """Run in an event loop (as the service does); (result, every event as JSON text)."""
    events = EventStreamer()
    result = asyncio.run(
        flow.execute(Backpack(), inputs=prepare_inputs(flow, inputs), events=events)
    )
    return result, events.to_json_str()


# ------------------------------------------------------------------------------ files


@pytest.mark.parametrize("base_dir", ["/", "..", "../..", "/etc"])
def test_a_base_dir_leaving_the_files_root_is_refused_at_load(root: Path, base_dir: str) -> None:
    doc = flow_doc(tool("read", "read_file", arguments={"path": "passwd"}, base_dir=base_dir))
    with pytest.raises(ConfigError, match=f"base_dir {base_dir!r} leaves the files folder"):
        load(doc, policy_for(root))


@pytest.mark.parametrize("path", ["/etc/passwd", "../.env", "../service.db", "data/../../.env"])
@pytest.mark.parametrize("name", ["read_file", "csv_summary"])
def test_file_tools_cannot_leave_the_files_root(root: Path, path: str, name: str) -> None:
    flow = load(
        flow_doc(tool("read", name, arguments={"path": "{{ inputs.p }}"})), policy_for(root)
    )
    result, events = run(flow, p=path)
    assert result.status == "failed"
    assert "outside the flow's folder" in str(result.error)
    assert CANARY not in events and "secret rows" not in events and "root:" not in events
    assert str(root) not in str(result.error)


def test_a_link_planted_in_the_files_root_does_not_lead_out(root: Path) -> None:
    (root / "innocent.md").symlink_to(root.parent / ".env")
    flow = load(
        flow_doc(tool("read", "read_file", arguments={"path": "innocent.md"})), policy_for(root)
    )
    result, events = run(flow)
    assert result.status == "failed"
    assert CANARY not in events


def test_file_tools_work_inside_the_root(root: Path) -> None:
    doc = flow_doc(
        tool("read", "read_file", arguments={"path": "notes.md"}),
        tool("csv", "csv_summary", arguments={"path": "sales.csv"}, base_dir="data"),
    )
    result, _ = run(load(doc, policy_for(root)))
    assert result.ok, result.error
    assert result.backpack.unpack("read")["content"] == "The ferry is late."
    assert result.backpack.unpack("csv")["rows"] == 2


@pytest.mark.parametrize(
    ("kind", "config"),
    [
        ("sqlite_cache", {"path": "../../planted.db"}),
        ("sqlite_cache", {"path": "/tmp/bpf-sandbox-planted.db"}),
        ("pricing", {"overrides": "../.env"}),
    ],
)
def test_dependency_files_stay_in_the_files_root(
    root: Path, kind: str, config: dict[str, Any]
) -> None:
    name = "llm_cache" if kind == "sqlite_cache" else "pricing"
    doc = flow_doc(llm("ask", "Say hi."), dependencies={name: {"type": kind, "config": config}})
    result, events = run(load(doc, policy_for(root)))
    assert result.status == "failed"
    assert "outside the files folder the operator lets flows use" in str(result.error)
    assert not (root.parent.parent / "planted.db").exists()
    assert not Path("/tmp/bpf-sandbox-planted.db").exists()
    assert CANARY not in events


# ------------------------------------------------------------------------------ network


@pytest.fixture
def internal(monkeypatch: pytest.MonkeyPatch) -> Any:
    """An "internal" HTTP service on 127.0.0.1 that must never see a flow's request."""
    with PageServer({"/admin": Page(body=b"internal admin page")}) as server:
        yield server


def fetch(url: str, hosts: list[str], **arguments: Any) -> dict[str, Any]:
    return tool("get", "http_fetch", arguments={"url": url, "allowed_hosts": hosts, **arguments})


@pytest.mark.parametrize("host", ["127.0.0.1", "localhost"])
def test_http_fetch_cannot_reach_internal_addresses(root: Path, internal: Any, host: str) -> None:
    port = internal.url.rsplit(":", 1)[1]
    doc = flow_doc(
        fetch(f"http://{host}:{port}/admin", [host], headers={"Authorization": "Bearer x-secret"})
    )
    result, events = run(load(doc, policy_for(root)))
    assert result.status == "failed"
    assert "loopback" in str(result.error)
    assert internal.hits == []  # nothing was sent, the header included
    assert "internal admin page" not in events


def test_the_operator_can_allow_a_network_and_the_flow_can_only_narrow_it(
    root: Path, internal: Any
) -> None:
    port = internal.url.rsplit(":", 1)[1]
    allowed = policy_for(root, egress=EgressPolicy.from_settings(allow_networks=["127.0.0.1"]))
    result, _ = run(load(flow_doc(fetch(f"http://127.0.0.1:{port}/admin", ["127.0.0.1"])), allowed))
    assert result.ok, result.error
    assert result.backpack.unpack("get")["content"] == "internal admin page"
    # the flow's own allowed_hosts still narrows what the operator allows
    narrowed = flow_doc(fetch(f"http://127.0.0.1:{port}/admin", ["api.example.com"]))
    result, _ = run(load(narrowed, allowed))
    assert result.status == "failed"
    assert "not in allowed_hosts" in str(result.error)


def test_an_llm_base_url_cannot_reach_internal_addresses(
    root: Path, wire_server: Callable[..., Any]
) -> None:
    server = wire_server(Reply(json=openai_completion("hi")))
    doc = flow_doc(
        llm("ask", "Say hi.", provider="internal", model="gpt-4o-mini", max_attempts=1),
        dependencies={
            "internal": {
                "type": "openai",
                "config": {"base_url": server.url, "api_key": "${BPF_SANDBOX_KEY}"},
            }
        },
    )
    policy = policy_for(root, env_allowlist={"BPF_SANDBOX_KEY"})
    import os

    os.environ["BPF_SANDBOX_KEY"] = CANARY
    try:
        result, events = run(load(doc, policy))
    finally:
        del os.environ["BPF_SANDBOX_KEY"]
    assert result.status == "failed"
    assert "loopback" in str(result.error)
    assert server.requests == []  # the API key never left the process
    assert CANARY not in events


def test_api_key_env_reads_only_allowlisted_variables(
    root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("BPF_SANDBOX_SERVER_SECRET", CANARY)
    doc = flow_doc(
        llm("ask", "Say hi.", provider="p", model="gpt-4o-mini", max_attempts=1),
        dependencies={
            "p": {"type": "openai", "config": {"api_key_env": "BPF_SANDBOX_SERVER_SECRET"}}
        },
    )
    result, events = run(load(doc, policy_for(root)))
    assert result.status == "failed"
    assert "BPF_SANDBOX_SERVER_SECRET is not one the operator lets flows read" in str(result.error)
    assert CANARY not in events


# ------------------------------------------------------------------------------ templates


def test_huge_arithmetic_is_refused_at_load_in_milliseconds(root: Path) -> None:
    started = time.perf_counter()
    with pytest.raises(ConfigError, match="over the template budget of 4096 bits"):
        load(flow_doc(llm("ask", "{{ (10**(10**7)) > 1 }}")), policy_for(root))
    assert time.perf_counter() - started < 1.0


def test_huge_arithmetic_from_inputs_fails_at_render_in_milliseconds(root: Path) -> None:
    flow = load(flow_doc(llm("ask", "{{ (inputs.n ** (10 ** 7)) > 1 }}")), policy_for(root))
    started = time.perf_counter()
    result, _ = run(flow, n=10)
    assert time.perf_counter() - started < 1.0
    assert result.status == "failed"
    assert "over the template budget of 4096 bits (template max_int_bits)" in str(result.error)


NESTED_LOOP = "{% for i in range(100000) %}{% for j in range(100000) %}{% endfor %}{% endfor %}x"


def test_a_nested_loop_stops_at_the_render_budget(root: Path) -> None:
    budget = TemplateBudget(max_seconds=0.5, max_output=100_000, max_int_bits=4096)
    flow = load(flow_doc(llm("ask", NESTED_LOOP)), policy_for(root, templates=budget))
    started = time.perf_counter()
    result, _ = run(flow)
    took = time.perf_counter() - started
    assert result.status == "failed"
    assert "ran longer than its budget of 0.5s" in str(result.error)
    assert took < 1.5


def test_a_runs_timeout_holds_while_a_template_renders_and_the_loop_stays_free(
    root: Path,
) -> None:
    budget = TemplateBudget(max_seconds=30.0, max_output=100_000, max_int_bits=4096)
    doc = flow_doc(llm("ask", NESTED_LOOP), limits={"timeout": 1})
    flow = load(doc, policy_for(root, templates=budget))
    result, took, worst_gap = _run_with_ticker(flow)
    assert result.status == "failed"
    assert "timeout" in str(result.error)
    assert took < 1.6  # the timeout, plus at most a loop turn and the run's own bookkeeping
    assert worst_gap < 0.25  # the event loop kept answering
    assert _cpu_after(0.5) < 0.2  # and the render thread stopped at its next check


class Spin(Node):
    """A synchronous node that burns CPU for a while without ever checking the run."""

    def exec(self, prep_res: Any) -> Any:
        end = time.monotonic() + 3.0
        count = 0
        while time.monotonic() < end:
            count += 1
        return count


class _SpinPlugin:
    __name__ = "spin"

    @hookimpl
    def backpackflow_register_node_types(self, register: Any) -> None:
        register("spin", Spin)


def test_a_busy_sync_node_does_not_stall_the_loop_and_the_timeout_holds(root: Path) -> None:
    registry = build_registry(plugins=[_SpinPlugin()], autoload=False)
    doc = flow_doc({"type": "spin", "id": "spin"}, limits={"timeout": 0.5})
    flow = load(doc, policy_for(root), registry)
    result, took, worst_gap = _run_with_ticker(flow)
    assert result.status == "failed"
    assert "timeout" in str(result.error)
    assert took < 1.0
    assert worst_gap < 0.25


def _run_with_ticker(flow: Flow) -> tuple[RunResult, float, float]:
    """Run ``flow`` in an event loop beside a task that ticks every 10 ms; (result, seconds the
    run took, the longest the loop went without ticking)."""

    async def main() -> tuple[RunResult, float, float]:
        gaps: list[float] = []
        stop = asyncio.Event()

        async def ticker() -> None:
            last = time.perf_counter()
            while not stop.is_set():
                await asyncio.sleep(0.01)
                now = time.perf_counter()
                gaps.append(now - last)
                last = now

        task = asyncio.create_task(ticker())
        started = time.perf_counter()
        result = await flow.execute(Backpack())
        took = time.perf_counter() - started
        stop.set()
        await task
        return result, took, max(gaps)

    return asyncio.run(main())


def _cpu_after(seconds: float) -> float:
    """CPU seconds this process spends over the next ``seconds`` (idle: near 0)."""
    time.sleep(0.1)  # a check in the worker may still be finishing its step
    before = time.process_time()
    time.sleep(seconds)
    return time.process_time() - before
