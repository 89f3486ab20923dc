"""Attacks by a flow submitted over the API, against a real ``backpackflow serve`` on SQLite and
on PostgreSQL, each of which must fail safely: reading files outside the files folder, reading
the server's environment, reaching internal addresses (the service itself, metadata, loopback
services), leaking secrets into traces, freezing the service with a template, crashing the
graph check with a long chain. And the canary: a secret the operator lets flows use is masked
in every stored event, every SSE frame, the run's summary, a webhook's deliveries and a file
sink's lines."""

from __future__ import annotations

import itertools
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sandbox_kit import (
    CANARY,
    SERVER_SECRET,
    HealthProbe,
    ServiceProcess,
    create,
    created,
    everything_about,
    jsonl_text,
    run_to_end,
    trace_events,
)

from loopback import RecordingServer
from services import BACKENDS, new_database

PASSWD_LINE = "root:x:0:0"
SQLITE_HEADER = "SQLite format 3"


# ------------------------------------------------------------------------------ the setting


@pytest.fixture(scope="module", params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture(scope="module")
def workdir(tmp_path_factory: pytest.TempPathFactory, backend: str) -> Path:
    """The service's working directory: its .env and database beside the files folder, a
    planted link in the files folder pointing out of it."""
    root = tmp_path_factory.mktemp(f"service-{backend}")
    (root / ".env").write_text(f"BPF_SERVER_SECRET={SERVER_SECRET}\n", encoding="utf-8")
    files = root / "files"
    files.mkdir()
    (files / "notes.md").write_text("The harbor reopened on Monday.", encoding="utf-8")
    (files / "report.txt").write_text(f"Quarterly report. Access key {CANARY} inside.", "utf-8")
    (files / "escape").symlink_to(root)
    return root


def _service(
    request: pytest.FixtureRequest, workdir: Path, backend: str, name: str, *options: str
) -> Iterator[ServiceProcess]:
    folder = workdir / name
    folder.mkdir()
    url = new_database(request, backend, workdir / f"{name}.db")
    service = ServiceProcess(
        folder, url, "--files-dir", str(workdir / "files"), "--env-allow", "BPF_CANARY", *options
    )
    service.start()
    yield service
    service.stop()


@pytest.fixture(scope="module")
def service(
    request: pytest.FixtureRequest, workdir: Path, backend: str
) -> Iterator[ServiceProcess]:
    """The service with its default sandbox (only BPF_CANARY allowlisted)."""
    yield from _service(request, workdir, backend, "strict")


@pytest.fixture(scope="module")
def open_service(
    request: pytest.FixtureRequest, workdir: Path, backend: str
) -> Iterator[ServiceProcess]:
    """A service whose operator lets flows reach 127.0.0.1 and declare file sinks too, and
    gives a template a minute (so what stops a long render there is the run's own timeout)."""
    yield from _service(
        request,
        workdir,
        backend,
        "open",
        "--egress-allow",
        "127.0.0.1",
        "--flow-sink",
        "webhook",
        "--flow-sink",
        "file",
        "--template-timeout",
        "60",
    )


@pytest.fixture
def client(service: ServiceProcess) -> Iterator[Any]:
    with service.client() as http:
        yield http


def flow(*nodes: dict[str, Any], **top: Any) -> dict[str, Any]:
    edges = [{"from": a["id"], "to": b["id"]} for a, b in itertools.pairwise(nodes)]
    return {"version": "2.0.0", "nodes": list(nodes), "edges": edges, **top}


def tool(node_id: str, name: str, **params: Any) -> dict[str, Any]:
    return {"type": "tool", "id": node_id, "params": {"tool": name, **params}}


def llm(node_id: str, prompt: str, **params: Any) -> dict[str, Any]:
    return {"type": "llm", "id": node_id, "params": {"prompt": prompt, **params}}


def problems(response: Any) -> str:
    return " | ".join(p["msg"] for p in response.json()["detail"])


# ------------------------------------------------------------------------------ 1. files


@pytest.mark.parametrize("base_dir", ["/", "../..", "..", "/etc", "escape"])
def test_a_base_dir_outside_the_files_folder_is_refused(client: Any, base_dir: str) -> None:
    graph = flow(tool("read", "read_file", arguments={"path": "passwd"}, base_dir=base_dir))
    response = create(client, graph)
    assert response.status_code == 422
    assert "leaves the files folder" in problems(response)


@pytest.mark.parametrize(
    "path",
    [
        "/etc/passwd",
        "../.env",
        "../../etc/passwd",
        "escape/.env",
        "escape/strict.db",
        "../strict.db",
        "notes.md/../../.env",
    ],
)
def test_file_tools_read_nothing_outside_the_files_folder(client: Any, path: str) -> None:
    for name in ("read_file", "csv_summary"):
        workflow = created(client, flow(tool("read", name, arguments={"path": "{{ inputs.p }}"})))
        run = run_to_end(client, workflow, p=path)
        assert run["status"] == "failed"
        seen = everything_about(client, run["id"])
        for leaked in (PASSWD_LINE, SERVER_SECRET, SQLITE_HEADER, "/tmp/"):
            assert leaked not in seen, (name, path, leaked)


def test_a_file_inside_the_files_folder_is_read(client: Any) -> None:
    workflow = created(client, flow(tool("read", "read_file", arguments={"path": "notes.md"})))
    run = run_to_end(client, workflow)
    assert run["status"] == "succeeded", run["error_summary"]
    assert "The harbor reopened" in everything_about(client, run["id"])


# ------------------------------------------------------------------------------ 2. environment


@pytest.mark.parametrize("name", ["BPF_SERVER_SECRET", "DATABASE_URL", "HOME", "PATH"])
def test_references_to_the_servers_environment_are_refused(client: Any, name: str) -> None:
    graph = flow(llm("ask", f"Say ${{{name}}}", provider="offline"))
    response = create(client, graph)
    assert response.status_code == 422
    text = problems(response)
    assert f"{name} is not one the operator lets flows read" in text
    assert SERVER_SECRET not in response.text
    assert "/root" not in response.text and "/usr/bin" not in response.text


def test_a_reference_with_a_default_gets_the_default(client: Any) -> None:
    workflow = created(client, flow(llm("ask", "Say ${BPF_SERVER_SECRET:-nothing here}.")))
    run = run_to_end(client, workflow)
    assert run["status"] == "succeeded"
    assert SERVER_SECRET not in everything_about(client, run["id"])


def test_indirect_reads_of_the_environment_are_refused(client: Any) -> None:
    api_key_env = flow(
        llm("ask", "Say hi.", provider="p", model="gpt-4o-mini", max_attempts=1),
        dependencies={"p": {"type": "openai", "config": {"api_key_env": "BPF_SERVER_SECRET"}}},
    )
    run = run_to_end(client, created(client, api_key_env))
    assert run["status"] == "failed"
    assert "BPF_SERVER_SECRET is not one the operator lets flows read" in run["error_summary"]
    assert SERVER_SECRET not in everything_about(client, run["id"])
    secret_env = flow(
        llm("ask", "Say hi."),
        sinks=[
            {
                "type": "webhook",
                "options": {
                    "url": "https://hooks.example.com/in",
                    "secret_env": "BPF_SERVER_SECRET",
                },
            }
        ],
    )
    workflow = created(client, secret_env)
    refused = client.post(f"/api/workflows/{workflow}/runs", json={})
    assert refused.status_code == 422
    assert "BPF_SERVER_SECRET is not one the operator lets flows read" in problems(refused)
    assert SERVER_SECRET not in refused.text


# ------------------------------------------------------------------------------ 3. network


@pytest.fixture
def internal() -> Iterator[RecordingServer]:
    """An internal service on 127.0.0.1 that no flow may reach."""
    with RecordingServer() as server:
        yield server


def fetch(url: str, hosts: list[str]) -> dict[str, Any]:
    return tool(
        "get",
        "http_fetch",
        arguments={
            "url": url,
            "allowed_hosts": hosts,
            "headers": {"Authorization": "Bearer ${BPF_CANARY}"},
        },
    )


def test_http_fetch_reaches_no_internal_address(
    client: Any, service: ServiceProcess, internal: RecordingServer
) -> None:
    targets = [
        (f"http://127.0.0.1:{service.port}/api/workflows", "127.0.0.1"),  # the service itself
        (f"http://localhost:{service.port}/api/workflows", "localhost"),
        (f"http://127.0.0.1:{internal.port}/admin", "127.0.0.1"),
        (f"http://[::ffff:127.0.0.1]:{internal.port}/admin", "::ffff:127.0.0.1"),
        ("http://169.254.169.254/latest/meta-data/iam/", "169.254.169.254"),
        ("http://10.0.0.1/", "10.0.0.1"),
        ("http://[::1]/", "::1"),
    ]
    for url, host in targets:
        run = run_to_end(client, created(client, flow(fetch(url, [host]))))
        assert run["status"] == "failed", url
        assert "refused" in run["error_summary"], run["error_summary"]
        seen = everything_about(client, run["id"])
        assert "internal-only-data" not in seen
        assert CANARY not in seen
    assert internal.requests == []  # nothing reached it, no header, no secret


def test_an_llm_base_url_reaches_no_internal_address(
    client: Any, internal: RecordingServer
) -> None:
    graph = flow(
        llm("ask", "Say hi.", provider="inside", model="gpt-4o-mini", max_attempts=1),
        dependencies={
            "inside": {
                "type": "openai",
                "config": {
                    "base_url": f"http://127.0.0.1:{internal.port}/v1",
                    "api_key": "${BPF_CANARY}",
                },
            }
        },
    )
    run = run_to_end(client, created(client, graph))
    assert run["status"] == "failed"
    assert "loopback" in run["error_summary"]
    assert internal.requests == []  # the API key never left the service
    assert CANARY not in everything_about(client, run["id"])


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1:{port}/api/workflows",
        "http://localhost:{port}/hook",
        "http://169.254.169.254/latest/",
        "http://[fd00:ec2::254]/",
    ],
)
def test_a_webhook_sink_to_an_internal_address_is_refused(
    client: Any, service: ServiceProcess, url: str
) -> None:
    graph = flow(
        llm("ask", "Say hi."),
        sinks=[{"type": "webhook", "options": {"url": url.format(port=service.port)}}],
    )
    response = create(client, graph)
    assert response.status_code == 422
    assert "refused" in problems(response)


def test_sinks_the_operator_does_not_allow_are_refused(client: Any) -> None:
    graph = flow(llm("ask", "Say hi."), sinks=[{"type": "file", "options": {"path": "/tmp/x"}}])
    response = create(client, graph)
    assert response.status_code == 422
    assert "sink type 'file' is not one flows may declare here" in problems(response)


# ------------------------------------------------------------------------------ 4. secrets


def test_a_canary_secret_never_shows_in_anything_a_client_or_sink_can_read(
    open_service: ServiceProcess, workdir: Path
) -> None:
    receiver = RecordingServer().start()
    try:
        graph = flow(
            tool("read", "read_file", arguments={"path": "report.txt"}),
            llm(
                "ask",
                "Summarize the report for key ${BPF_CANARY}:\n\n{{ node.read.output.content }}",
            ),
            tool(
                "call",
                "http_fetch",
                arguments={
                    "url": f"http://127.0.0.1:{receiver.port}/echo?key=${{BPF_CANARY}}",
                    "allowed_hosts": ["127.0.0.1"],
                    "headers": {"Authorization": "Bearer ${BPF_CANARY}"},
                },
            ),
            tool("missing", "read_file", arguments={"path": "${BPF_CANARY}.txt"}),
            sinks=[
                {
                    "type": "webhook",
                    "options": {
                        "url": f"http://127.0.0.1:{receiver.port}/events",
                        "headers": {"X-Token": "${BPF_CANARY}"},
                        "max_delay": 0.05,
                    },
                },
                {"type": "file", "options": {"path": "traces/"}},
            ],
        )
        with open_service.client() as client:
            workflow = created(client, graph)
            run = run_to_end(client, workflow)
            assert run["status"] == "failed"  # the last node reads a file that is not there
            seen = everything_about(client, run["id"])
            stored = client.get(f"/api/workflows/{workflow}").text
            types = {e["type"] for e in trace_events(client, run["id"])}
        # the secret was used: the allowed host got it, the file's text went into the prompt
        echo_request = next(r for r in receiver.requests if r[0].startswith("/echo"))
        assert echo_request[1]["authorization"] == f"Bearer {CANARY}"
        assert {"prep_complete", "llm_request", "llm_response", "tool_response", "error"} <= types
        assert "${BPF_CANARY}" in seen  # where it was, the reference that named it
        # ... and it is nowhere a client or a sink can read
        deliveries = [r for r in receiver.requests if r[0] == "/events"]
        assert deliveries, "the webhook delivered nothing"
        assert deliveries[0][1]["x-token"] == CANARY  # its own header, to an allowed host
        delivered = "\n".join(body.decode("utf-8") for _, _, body in deliveries)
        lines = jsonl_text(workdir / "files" / "traces")
        assert lines.count("\n") > 10
        for where, text in (
            ("API", seen),
            ("workflow", stored),
            ("webhook", delivered),
            ("file sink", lines),
        ):
            assert CANARY not in text, where
        assert "${BPF_CANARY}" in run["error_summary"]
    finally:
        receiver.stop()


# ------------------------------------------------------------------------------ 5. bounded work


def test_huge_arithmetic_in_a_template_is_refused_at_once(client: Any) -> None:
    started = time.perf_counter()
    response = create(client, flow(llm("ask", "{{ (10**(10**7)) > 1 }}")))
    assert time.perf_counter() - started < 2.0
    assert response.status_code == 422
    assert "over the template budget of 4096 bits" in problems(response)
    workflow = created(client, flow(llm("ask", "{{ (inputs.n ** (10 ** 7)) > 1 }}")))
    started = time.perf_counter()
    run = run_to_end(client, workflow, n=10)
    assert time.perf_counter() - started < 5.0
    assert run["status"] == "failed"
    assert "template max_int_bits" in run["error_summary"]


NESTED_LOOP = "{% for i in range(100000) %}{% for j in range(100000) %}{% endfor %}{% endfor %}x"


def test_a_template_loop_neither_outlives_its_budget_nor_stalls_the_service(
    client: Any, service: ServiceProcess
) -> None:
    workflow = created(client, flow(llm("ask", NESTED_LOOP)))
    with HealthProbe(service.url) as health:
        started = time.perf_counter()
        run = run_to_end(client, workflow)
        took = time.perf_counter() - started
    assert run["status"] == "failed"
    assert "ran longer than its budget of 2s" in run["error_summary"]
    assert took < 6.0  # the 2 s budget, the run's bookkeeping, polling
    assert health.worst < 0.5, health.times


def test_a_runs_timeout_holds_while_a_template_renders(open_service: ServiceProcess) -> None:
    with open_service.client() as client:
        workflow = created(client, flow(llm("ask", NESTED_LOOP), limits={"timeout": 2}))
        with HealthProbe(open_service.url) as health:
            started = time.perf_counter()
            run = run_to_end(client, workflow)
            took = time.perf_counter() - started
    assert run["status"] == "failed"
    assert "timeout" in run["error_summary"]
    assert took < 4.0  # 2 s, then the run's own bookkeeping
    assert health.worst < 0.5, health.times


# ------------------------------------------------------------------------------ 6. graph size


def test_a_3000_node_chain_is_checked_without_crashing(client: Any) -> None:
    nodes = [llm(f"n{i}", "Say hi.") for i in range(3_000)]
    response = create(client, flow(*nodes, limits={"max_steps": 3_001}))
    assert response.status_code == 201, response.text[:500]
    ring = flow(*nodes[:50])
    ring["edges"].append({"from": "n49", "to": "n0"})
    refused = create(client, ring)
    assert refused.status_code == 422
    assert "the graph has a cycle" in problems(refused)
