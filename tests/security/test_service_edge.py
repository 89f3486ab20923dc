"""The service edge under attack, over a real socket, on SQLite and PostgreSQL: each test
performs one attack of issue 12 (part A) and asserts that it fails safely -- refused with a
clear status, nothing stored, nothing run, nothing disclosed, the service still answering.

Authentication and roles, the session cookie, CSRF and DNS rebinding, CORS, ``serve`` on a
public address, bodies that are too large, too deep or hold text the databases cannot store,
lists that must stay bounded and readable, CPU work that must not stall the event loop, and
internals (stack traces, server paths, database URLs) that must stay in the server log.
"""

from __future__ import annotations

import contextlib
import io
import json
import logging
import re
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from attack_kit import (
    GATES,
    SERVER_FILES,
    LiveServer,
    create_workflow,
    echo,
    flow,
    gate,
    in_thread,
    raw,
    read_stream,
    start_run,
    unique,
    wait_for_status,
)
from server_kit import cli_main
from sqlalchemy import text as sql

from backpackflow_server.auth import SESSION_COOKIE
from backpackflow_server.credentials import hash_token

KIT = Path(__file__).resolve().parents[1] / "plugins" / "server" / "server_kit.py"
EVIL = "http://evil.example"
ERROR_ID = re.compile(r"\(error id ([0-9a-f]{16})\)")


def counts(server: LiveServer) -> tuple[int, int]:
    """(workflows, runs) in the server's database, read past the API."""
    store = server.app.state.service.store
    return len(store.list_workflows()), len(store.list_runs(limit=10_000))


def json_body(document: str) -> bytes:
    """A request body exactly as written (``\\ud800`` stays an escape json.dumps would mangle)."""
    return document.encode("utf-8")


# ==============================================================================================
# Authentication and roles


PUBLIC = {
    ("GET", "/health"),
    ("GET", "/version"),
    ("POST", "/api/session"),
    ("DELETE", "/api/session"),
}


def operations(server: LiveServer) -> Iterator[tuple[str, str, bool]]:
    """(method, path with dummy ids, whether the spec says it needs credentials)."""
    spec = httpx.get(f"{server.url}/openapi.json").json()
    for path, item in spec["paths"].items():
        for method, operation in item.items():
            concrete = re.sub(r"\{[^}]+\}", "0123456789abcdef0123456789abcdef", path)
            yield method.upper(), concrete, bool(operation.get("security"))


def test_every_api_route_needs_a_valid_token(server: LiveServer) -> None:
    before = counts(server)
    checked = 0
    for method, path, secured in operations(server):
        if (method, path) in PUBLIC:
            assert not secured, f"{method} {path} is public but documents credentials"
            continue
        assert secured, f"{method} {path} documents no credentials"
        body = b"{}" if method in ("POST", "PUT") else None
        headers = {"Content-Type": "application/json"}
        for credentials in ({}, {"Authorization": "Bearer bpf_guessed"}, {"Authorization": "x"}):
            response = raw(server, method, path, body=body, headers={**headers, **credentials})
            assert response.status_code == 401, (method, path, credentials, response.text)
            assert response.headers["www-authenticate"] == "Bearer"
            assert "token" in response.json()["detail"]
        checked += 1
    assert checked >= 13
    assert counts(server) == before


def test_roles_separate_reading_running_and_editing(server: LiveServer) -> None:
    viewer, runner = server.token("viewer"), server.token("runner")
    name = unique("roles")
    with server.client() as admin:
        workflow_id = create_workflow(admin, flow(gate("g", name)))
    graph = {"name": "x", "graph_json": flow(echo("a"))}
    with server.client(token=viewer) as client:
        assert client.get("/api/workflows").status_code == 200
        assert client.get(f"/api/workflows/{workflow_id}").status_code == 200
        before = counts(server)
        for method, path, body in (
            ("POST", "/api/workflows", graph),
            ("PUT", f"/api/workflows/{workflow_id}", {"name": "renamed"}),
            ("DELETE", f"/api/workflows/{workflow_id}", None),
            ("POST", f"/api/workflows/{workflow_id}/runs", {}),
        ):
            refused = client.request(method, path, json=body)
            assert refused.status_code == 403, (method, path, refused.text)
            assert "is a viewer" in refused.json()["detail"]
        assert counts(server) == before
    with server.client(token=runner) as client:
        run = start_run(client, workflow_id)
        GATES.wait_until_waiting(name)
        assert client.post(f"/api/runs/{run['id']}/cancel").status_code == 202
        wait_for_status(client, run["id"], "canceled")
        for method, path, body in (
            ("POST", "/api/workflows", graph),
            ("PUT", f"/api/workflows/{workflow_id}", {"name": "renamed"}),
            ("DELETE", f"/api/workflows/{workflow_id}", None),
        ):
            refused = client.request(method, path, json=body)
            assert refused.status_code == 403 and "is a runner" in refused.json()["detail"]
        assert client.get(f"/api/workflows/{workflow_id}").json()["version"] == 1
    with server.client(token=viewer) as client:  # a viewer cannot cancel either
        run = start_run(server.client(), workflow_id)
        GATES.wait_until_waiting(name)
        assert client.post(f"/api/runs/{run['id']}/cancel").status_code == 403
        GATES.open(name)
        assert wait_for_status(client, run["id"], "succeeded")


def run_cli(*argv: str) -> tuple[int, str, str]:
    """``backpackflow`` (with the test node types) called in this process, as its entry point
    would (a process per call costs ~2 s of imports and tests nothing more). A ``serve`` that
    should refuse but would start fails here instead of listening forever."""

    def started(*_: Any, **__: Any) -> None:
        raise AssertionError(f"backpackflow {' '.join(argv)} started serving")

    out, err = io.StringIO(), io.StringIO()
    with (
        pytest.MonkeyPatch.context() as patch,
        contextlib.redirect_stdout(out),
        contextlib.redirect_stderr(err),
    ):
        patch.setattr("uvicorn.run", started)
        status = cli_main(list(argv))
    return status, out.getvalue(), err.getvalue()


def test_tokens_from_the_command_are_stored_as_digests_only(serve: Any) -> None:
    server = serve(token_cache_seconds=0)
    url = server.settings.database_url
    status, token, note = run_cli("tokens", "create", "--role", "runner", "--database", url)
    assert status == 0, note
    token = token.strip()
    assert token.startswith("bpf_") and len(token) > 40 and "not shown again" in note
    with server.client(token=token) as client:
        assert client.get("/api/runs").status_code == 200
    store = server.app.state.service.store
    with store.engine.connect() as connection:
        rows = connection.exec_driver_sql("SELECT * FROM api_tokens").all()
    stored = " ".join(str(value) for row in rows for value in row)
    assert hash_token(token) in stored and token not in stored and token[8:] not in stored
    status, listing, _ = run_cli("tokens", "list", "--database", url)
    assert status == 0 and "runner" in listing and token not in listing

    name = next(t["name"] for t in store.list_tokens() if t["role"] == "runner")
    status, revoked, _ = run_cli("tokens", "revoke", name, "--database", url)
    assert status == 0 and f"revoked token {name!r}" in revoked
    with server.client(token=token) as client:
        refused = client.get("/api/runs")
        assert refused.status_code == 401 and "revoked" in refused.json()["detail"]
    if url.startswith("sqlite:"):  # in no page of the files either (read once SQLite let go:
        server.stop()  # closing any descriptor of the file drops the process's SQLite locks)
        for file in Path(url.removeprefix("sqlite:///")).parent.glob("service.db*"):
            assert token.encode() not in file.read_bytes()


def test_an_expired_token_is_refused(server: LiveServer) -> None:
    expired = server.token("admin", expires_at=datetime.now(UTC) - timedelta(seconds=1))
    with server.client(token=expired) as client:
        assert client.get("/api/runs").status_code == 401


def test_a_token_cached_for_a_moment_still_expires_on_time(serve: Any) -> None:
    server = serve(token_cache_seconds=60)
    soon = server.token("viewer", expires_at=datetime.now(UTC) + timedelta(seconds=1))
    with server.client(token=soon) as client:
        assert client.get("/api/runs").status_code == 200  # now cached
        time.sleep(1.1)
        assert client.get("/api/runs").status_code == 401


# ==============================================================================================
# The web page's session: cookie, CSRF token, SSE without headers


@contextlib.contextmanager
def log_in(server: LiveServer, token: str) -> Iterator[tuple[httpx.Client, str]]:
    """A cookie-only client (no Authorization header) logged in with ``token``, and the
    session's CSRF token."""
    with server.client(token=None) as client:
        response = client.post("/api/session", json={"token": token})
        assert response.status_code == 200, response.text
        yield client, response.json()["csrf_token"]


def test_session_cookie_is_httponly_strict_and_holds_no_token(server: LiveServer) -> None:
    token = server.token("runner")
    with server.client(token=None) as client:
        response = client.post("/api/session", json={"token": token})
    assert response.status_code == 200
    body = response.json()
    assert (body["role"], body["via"]) == ("runner", "cookie") and body["csrf_token"]
    cookie = response.headers["set-cookie"]
    attributes = {part.strip().split("=")[0].lower() for part in cookie.split(";")[1:]}
    assert {"httponly", "samesite", "path", "max-age"} <= attributes
    assert "samesite=strict" in cookie.lower() and "secure" not in attributes  # plain http
    value = cookie.split(";")[0].split("=", 1)[1]
    assert token not in value and token[4:20] not in value

    with server.client(token=None) as client:
        wrong = client.post("/api/session", json={"token": "bpf_wrong"})
        assert wrong.status_code == 401 and "set-cookie" not in wrong.headers


def test_the_session_cookie_alone_reads_and_streams(server: LiveServer) -> None:
    with server.client() as admin:
        workflow_id = create_workflow(admin, flow(echo("a"), echo("b")))
        run = start_run(admin, workflow_id)
        wait_for_status(admin, run["id"], "succeeded")
    with log_in(server, server.token("viewer")) as (client, _):
        assert "authorization" not in client.headers
        assert client.get("/api/runs").status_code == 200
        who = client.get("/api/session").json()
        assert (who["role"], who["via"]) == ("viewer", "cookie")
        events, end = read_stream(client, run["id"])  # as EventSource does: cookie only
        assert end is not None and end["status"] == "succeeded" and len(events) > 5


def test_changes_with_the_session_cookie_need_the_csrf_token(server: LiveServer) -> None:
    with server.client() as admin:
        workflow_id = create_workflow(admin, flow(echo("a")))
    with log_in(server, server.token("runner")) as (client, csrf):
        before = counts(server)
        for headers in ({}, {"X-CSRF-Token": "guessed"}, {"X-CSRF-Token": csrf[:-1]}):
            refused = client.post(f"/api/workflows/{workflow_id}/runs", headers=headers)
            assert refused.status_code == 403 and "X-CSRF-Token" in refused.json()["detail"]
        assert counts(server) == before
        started = client.post(
            f"/api/workflows/{workflow_id}/runs", json={}, headers={"X-CSRF-Token": csrf}
        )
        assert started.status_code == 202
        wait_for_status(client, started.json()["id"], "succeeded")


def test_a_forged_expired_or_orphaned_session_is_refused(serve: Any) -> None:
    server = serve(token_cache_seconds=0, session_max_age=60)
    token = server.token("admin")
    with log_in(server, token) as (client, _):
        value = client.cookies[SESSION_COOKIE]
        for forged in (value[:-2] + ("AA" if not value.endswith("AA") else "BB"), "x", ""):
            client.cookies.set(SESSION_COOKIE, forged)
            assert client.get("/api/runs").status_code == 401
        # Signed with another key (another service's secret): refused.
        other = serve(session_secret="another-secret")
        with log_in(other, other.token("admin")) as (other_client, _):
            client.cookies.set(SESSION_COOKIE, other_client.cookies[SESSION_COOKIE])
        assert client.get("/api/runs").status_code == 401
        client.cookies.set(SESSION_COOKIE, value)
        assert client.get("/api/runs").status_code == 200
        store = server.app.state.service.store
        store.revoke_token(next(t["id"] for t in store.list_tokens() if t["role"] == "admin"))
        refused = client.get("/api/runs")
        assert refused.status_code == 401 and "revoked" in refused.json()["detail"]
        logged_out = client.delete("/api/session")
        assert logged_out.status_code == 204
        removal = logged_out.headers["set-cookie"].lower()
        assert removal.startswith(f"{SESSION_COOKIE}=") and "max-age=0" in removal


# ==============================================================================================
# CSRF and DNS rebinding: what a web page in the user's browser can make the service do


def test_a_cross_origin_post_without_a_body_starts_no_run(dev_server: LiveServer) -> None:
    """A foreign page's ``<form method=post action=http://127.0.0.1:8000/...>`` against an
    open (local-dev) service: the browser sends its Origin, or at least Sec-Fetch-Site."""
    with dev_server.client() as client:
        workflow_id = create_workflow(client, flow(echo("a")))
    before = counts(dev_server)
    path = f"/api/workflows/{workflow_id}/runs"
    for headers in (
        {"Origin": EVIL},
        {"Origin": EVIL, "Content-Type": "application/x-www-form-urlencoded"},
        {"Origin": "null"},  # a sandboxed frame or a file:// page
        {"Origin": f"{EVIL}:{dev_server.url.rsplit(':', 1)[1]}"},  # same port, other host
        {"Sec-Fetch-Site": "cross-site"},
    ):
        refused = raw(dev_server, "POST", path, headers=headers)
        assert refused.status_code == 403, (headers, refused.text)
    for method, target in (("DELETE", f"/api/workflows/{workflow_id}"), ("POST", "/api/workflows")):
        assert raw(dev_server, method, target, headers={"Origin": EVIL}).status_code == 403
    assert counts(dev_server) == before
    # The service's own page (same origin) and non-browser clients (no Origin) still work.
    own = raw(dev_server, "POST", path, headers={"Origin": dev_server.url})
    assert own.status_code == 202, own.text
    assert raw(dev_server, "POST", path).status_code == 202


def test_dns_rebinding_reaches_the_socket_but_not_the_api(dev_server: LiveServer) -> None:
    """``evil.example`` re-resolved to 127.0.0.1: the page's requests carry its Host."""
    port = dev_server.url.rsplit(":", 1)[1]
    before = counts(dev_server)
    for method, path in (
        ("GET", "/api/runs"),
        ("GET", "/api/workflows"),
        ("POST", "/api/workflows"),
    ):
        for host in (f"evil.example:{port}", "evil.example", f"127.0.0.1.evil.example:{port}"):
            refused = raw(dev_server, method, path, headers={"Host": host}, body=b"{}")
            assert refused.status_code == 400, (host, refused.text)
    assert counts(dev_server) == before
    for host in (f"localhost:{port}", f"127.0.0.1:{port}"):
        assert raw(dev_server, "GET", "/api/runs", headers={"Host": host}).status_code == 200


def test_cors_is_off_unless_configured(server: LiveServer, serve: Any) -> None:
    preflight = {
        "Origin": EVIL,
        "Access-Control-Request-Method": "POST",
        "Access-Control-Request-Headers": "authorization,content-type",
    }
    answer = raw(server, "OPTIONS", "/api/workflows", headers=preflight)
    assert "access-control-allow-origin" not in answer.headers
    read = raw(server, "GET", "/api/runs", headers={"Origin": EVIL}, token=server.admin_token)
    assert "access-control-allow-origin" not in read.headers

    ui = "https://ui.example"
    configured = serve(cors_origins=[ui])
    allowed = raw(configured, "OPTIONS", "/api/workflows", headers={**preflight, "Origin": ui})
    assert allowed.status_code == 200
    assert allowed.headers["access-control-allow-origin"] == ui
    assert "access-control-allow-credentials" not in allowed.headers
    still_refused = raw(configured, "OPTIONS", "/api/workflows", headers=preflight)
    assert "access-control-allow-origin" not in still_refused.headers
    body = json.dumps({"name": "from the ui", "graph_json": flow(echo("a"))}).encode()
    token = configured.admin_token
    sent = {"Origin": ui, "Content-Type": "application/json"}
    assert (
        raw(configured, "POST", "/api/workflows", body=body, headers=sent, token=token).status_code
        == 201
    )
    sent["Origin"] = EVIL
    assert (
        raw(configured, "POST", "/api/workflows", body=body, headers=sent, token=token).status_code
        == 403
    )


def outward_address() -> str | None:
    """An address of this machine that is not loopback (None: there is none)."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        try:
            probe.connect(("192.0.2.1", 9))  # no packet is sent; the route picks the address
        except OSError:
            return None
        address = str(probe.getsockname()[0])
    return None if address.startswith("127.") or address == "0.0.0.0" else address


def test_local_dev_mode_answers_loopback_clients_only(registry: Any, tmp_path: Path) -> None:
    """Even if a local-dev service is made to listen on every address (bypassing ``serve``),
    a client reaching it from another address gets nothing."""
    import uvicorn

    from backpackflow_server import Settings, create_app

    address = outward_address()
    if address is None:
        pytest.skip("this machine has no non-loopback address to connect from")
    settings = Settings(
        database_url=f"sqlite:///{tmp_path / 'dev.db'}",
        auth="local-dev",
        seed=False,
        allowed_hosts=["*"],
    )
    config = uvicorn.Config(
        create_app(settings, registry), host="0.0.0.0", port=0, log_level="warning"
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        while not server.started:
            time.sleep(0.01)
        port = server.servers[0].sockets[0].getsockname()[1]
        remote = httpx.get(f"http://{address}:{port}/api/runs", timeout=10)
        assert remote.status_code == 403 and "loopback clients only" in remote.json()["detail"]
        assert httpx.get(f"http://127.0.0.1:{port}/api/runs", timeout=10).status_code == 200
    finally:
        server.should_exit = True
        thread.join(30)


def test_serve_refuses_a_public_address_without_auth(tmp_path: Path) -> None:
    database = f"sqlite:///{tmp_path / 'public.db'}"
    common = ("serve", "--port", "0", "--database", database, "--no-seed")
    status, _, error = run_cli(*common, "--host", "0.0.0.0", "--local-dev")
    assert status == 2 and "local-dev mode" in error and "loopback addresses only" in error
    status, _, error = run_cli(*common, "--host", "0.0.0.0")
    assert status == 2 and "--allowed-host" in error
    status, _, error = run_cli(*common, "--host", "0.0.0.0", "--allowed-host", "flows.example")
    assert status == 2 and "no API token exists" in error
    address = outward_address()
    if address is not None:
        status, _, error = run_cli(*common, "--host", address)
        assert status == 2 and "no API token exists" in error


def test_serve_on_a_public_address_with_a_token_needs_it(tmp_path: Path) -> None:
    database = f"sqlite:///{tmp_path / 'public.db'}"
    status, token, _ = run_cli("tokens", "create", "--role", "viewer", "--database", database)
    assert status == 0
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    command = [sys.executable, str(KIT), "serve", "--host", "0.0.0.0", "--port", str(port)]
    command += ["--database", database, "--no-seed", "--allowed-host", "flows.example"]
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 30
        while True:
            try:
                if httpx.get(f"{url}/health", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert process.poll() is None and time.monotonic() < deadline, "serve did not start"
            time.sleep(0.05)
        named = {"Host": f"flows.example:{port}"}  # as a client reaching it by name
        assert httpx.get(f"{url}/api/runs", headers=named).status_code == 401
        authorized = {**named, "Authorization": f"Bearer {token.strip()}"}
        assert httpx.get(f"{url}/api/runs", headers=authorized).status_code == 200
        unnamed = {"Host": f"other.example:{port}", "Authorization": authorized["Authorization"]}
        assert httpx.get(f"{url}/api/runs", headers=unnamed).status_code == 400
    finally:
        process.terminate()
        process.wait(30)


# ==============================================================================================
# Bounded requests


def test_bodies_beyond_the_limit_get_413_and_store_nothing(serve: Any) -> None:
    server = serve(max_body_bytes=64 * 1024)
    before = counts(server)
    padding = "x" * (100 * 1024)
    body = json.dumps({"name": "big", "description": padding, "graph_json": flow(echo("a"))})
    headers = {"Content-Type": "application/json"}
    announced = raw(
        server,
        "POST",
        "/api/workflows",
        body=body.encode(),
        headers=headers,
        token=server.admin_token,
    )
    assert announced.status_code == 413 and "65536 bytes" in announced.json()["detail"]

    def chunks() -> Iterator[bytes]:  # no Content-Length: the body streams in
        encoded = body.encode()
        for start in range(0, len(encoded), 8192):
            yield encoded[start : start + 8192]

    with server.client() as client:
        streamed = client.post("/api/workflows", content=chunks(), headers=headers)
        assert streamed.status_code == 413
        assert streamed.request.headers.get("transfer-encoding") == "chunked"
    assert counts(server) == before
    with server.client() as client:  # the service goes on
        assert client.get("/health").status_code == 200
        create_workflow(client, flow(echo("a")))


def test_the_default_limit_refuses_a_50_mb_body(server: LiveServer) -> None:
    before = counts(server)
    body = b'{"name": "huge", "graph_json": {"nodes": [], "pad": "' + b"x" * 50_000_000 + b'"}}'
    refused = raw(
        server,
        "POST",
        "/api/workflows",
        body=body,
        token=server.admin_token,
        headers={"Content-Type": "application/json"},
    )
    assert refused.status_code == 413
    assert counts(server) == before


def test_every_list_is_paginated_with_a_bounded_page(server: LiveServer) -> None:
    with server.client() as client:
        ids = [create_workflow(client, flow(echo("a")), name=unique("page")) for _ in range(3)]
        page = client.get("/api/workflows", params={"limit": 2})
        assert len(page.json()) == 2
        link = page.headers["link"]
        assert link.endswith('; rel="next"') and "before=" in link
        following = client.get(link[1 : link.index(">")])
        assert following.status_code == 200
        seen = [w["id"] for w in page.json() + following.json()]
        assert len(seen) == len(set(seen)) and set(ids[-2:]) <= set(seen)
        for path, too_many in (("/api/workflows", 201), ("/api/runs", 501)):
            refused = client.get(path, params={"limit": too_many})
            assert (
                refused.status_code == 422 and refused.json()["detail"][0]["path"] == "query.limit"
            )
        runs = [start_run(client, ids[0]) for _ in range(3)]
        for run in runs:
            wait_for_status(client, run["id"], "succeeded")
        first = client.get("/api/runs", params={"limit": 2, "workflow_id": ids[0]})
        assert len(first.json()) == 2 and "link" in first.headers
        rest = client.get(first.headers["link"][1 : first.headers["link"].index(">")])
        assert [r["id"] for r in first.json() + rest.json()] == [r["id"] for r in reversed(runs)]
        assert "link" not in rest.headers  # the last page
        trace = client.get(f"/api/runs/{runs[0]['id']}/trace", params={"limit": 1001})
        assert trace.status_code == 422
    spec = httpx.get(f"{server.url}/openapi.json").json()
    for path in ("/api/workflows", "/api/runs"):
        limit = next(p for p in spec["paths"][path]["get"]["parameters"] if p["name"] == "limit")
        assert limit["schema"]["maximum"] in (200, 500)


def test_a_flow_with_too_many_nodes_is_refused(serve: Any) -> None:
    server = serve(max_flow_nodes=50)
    before = counts(server)
    with server.client() as client:
        too_many = flow(*(echo(f"n{i}") for i in range(51)))
        refused = client.post("/api/workflows", json={"name": "big", "graph_json": too_many})
        assert refused.status_code == 422
        [problem] = refused.json()["detail"]
        assert problem["path"] == "$.nodes" and "max_flow_nodes" in problem["msg"]
        nested = flow(
            *(echo(f"n{i}") for i in range(30)),
            {"type": "flow", "id": "inner", "params": flow(*(echo(f"m{i}") for i in range(30)))},
        )
        refused = client.post("/api/workflows", json={"name": "nested", "graph_json": nested})
        assert refused.status_code == 422 and "nested flows included" in refused.text
        assert counts(server) == before
        create_workflow(client, flow(*(echo(f"n{i}") for i in range(50))))


def deep(levels: int) -> Any:
    value: Any = "leaf"
    for _ in range(levels):
        value = {"a": value}
    return value


def test_deep_nesting_is_refused_before_anything_is_stored(server: LiveServer) -> None:
    with server.client() as client:
        workflow_id = create_workflow(client, flow(echo("a")))
        before = counts(server)
        path = f"/api/workflows/{workflow_id}/runs"
        for levels in (64, 256):
            refused = client.post(path, json={"input_vars": {"v": deep(levels)}})
            assert refused.status_code == 422, refused.text
            problem = refused.json()["detail"][0]
            assert problem["loc"][:3] == ["body", "input_vars", "v"]
            assert "at most 64 levels" in problem["msg"]
        graph = flow(echo("a"))
        graph["nodes"][0]["params"]["message"] = deep(70)
        refused = client.post("/api/workflows", json={"name": "deep", "graph_json": graph})
        assert refused.status_code == 422 and "at most 64 levels" in refused.text
        body = b'{"input_vars": {"v": ' + b"[" * 50_000 + b"]" * 50_000 + b"}}"
        refused = client.post(path, content=body, headers={"Content-Type": "application/json"})
        assert refused.status_code == 422 and "nested too deeply" in refused.text
        assert counts(server) == before
        assert client.get("/api/runs").status_code == 200
        run = client.post(path, json={"input_vars": {"v": deep(60)}})
        assert run.status_code == 202  # within the bound: accepted, stored, listed
        wait_for_status(client, run.json()["id"], "succeeded")
        assert client.get("/api/runs").status_code == 200


# ==============================================================================================
# Poison text: what neither database can store is refused alike, before anything is stored

POISON = {"lone surrogate": "\\ud800", "low surrogate": "x\\udfffy", "NUL": "a\\u0000b"}


def poisoned_requests(workflow_id: str, bad: str) -> Iterator[tuple[str, str, str, str]]:
    """(where, method, path, raw JSON body) with ``bad`` (a JSON escape) in one place."""
    graph = json.dumps(flow(echo("a")))
    yield (
        "input_vars value",
        "POST",
        f"/api/workflows/{workflow_id}/runs",
        (f'{{"input_vars": {{"topic": "{bad}"}}}}'),
    )
    yield (
        "input_vars key",
        "POST",
        f"/api/workflows/{workflow_id}/runs",
        (f'{{"input_vars": {{"{bad}": 1}}}}'),
    )
    yield (
        "triggered_by",
        "POST",
        f"/api/workflows/{workflow_id}/runs",
        (f'{{"triggered_by": "{bad}"}}'),
    )
    yield "workflow name", "POST", "/api/workflows", f'{{"name": "{bad}", "graph_json": {graph}}}'
    yield "description", "PUT", f"/api/workflows/{workflow_id}", f'{{"description": "{bad}"}}'
    yield (
        "node id",
        "POST",
        "/api/workflows",
        (
            '{"name": "n", "graph_json": '
            + graph.replace('"id": "a"', f'"id": "{bad}"').replace(
                '"from": "a"', f'"from": "{bad}"'
            )
            + "}"
        ),
    )
    yield (
        "flow name",
        "PUT",
        f"/api/workflows/{workflow_id}",
        ('{"graph_json": ' + graph[:-1] + f', "name": "{bad}"}}}}'),
    )


@pytest.mark.parametrize("bad", list(POISON.values()), ids=list(POISON))
def test_text_the_databases_cannot_store_is_refused_alike(server: LiveServer, bad: str) -> None:
    with server.client() as client:
        workflow_id = create_workflow(client, flow(echo("a")))
        before = counts(server)
        for where, method, path, body in poisoned_requests(workflow_id, bad):
            json.loads(body)  # the attack is valid JSON
            refused = raw(
                server,
                method,
                path,
                body=json_body(body),
                token=server.admin_token,
                headers={"Content-Type": "application/json"},
            )
            assert refused.status_code == 422, (where, refused.text)
            problem = refused.json()["detail"][0]
            assert problem["type"] == "request_body" and "contains" in problem["msg"], where
        assert counts(server) == before
        assert client.get(f"/api/workflows/{workflow_id}").json()["version"] == 1
        assert client.get("/api/runs").status_code == 200
        assert client.get("/api/workflows").status_code == 200


def test_poison_rows_stored_by_an_older_version_break_no_list(serve: Any, backend: str) -> None:
    """What the issue found stored -- input variables nested 300 deep (both databases took
    them), a lone surrogate (SQLite took it) -- reads back cut and replaced: every list and
    every run answers."""
    server = serve()
    legacy = {"deep": json.dumps({"v": deep(300)})}
    if backend == "sqlite":  # PostgreSQL refused a lone surrogate even then
        legacy["surrogate"] = '{"v": "\\ud800"}'
    store = server.app.state.service.store
    cast = "CAST(:v AS JSONB)" if backend == "postgresql" else ":v"
    with server.client() as client:
        workflow_id = create_workflow(client, flow(echo("a")))
        runs = {}
        for name, stored in legacy.items():
            run = start_run(client, workflow_id)
            wait_for_status(client, run["id"], "succeeded")
            with store.engine.begin() as connection:
                connection.execute(
                    sql(f"UPDATE workflow_runs SET input_vars = {cast} WHERE id = :id"),
                    {"v": stored, "id": run["id"]},
                )
            runs[name] = run["id"]
        listed = client.get("/api/runs")
        assert listed.status_code == 200, listed.text
        by_id = {r["id"]: r for r in listed.json()}
        assert "nested deeper than 200 levels" in json.dumps(by_id[runs["deep"]]["input_vars"])
        if "surrogate" in runs:
            assert by_id[runs["surrogate"]]["input_vars"] == {"v": "\ufffd"}
        for run_id in runs.values():
            assert client.get(f"/api/runs/{run_id}").status_code == 200
            assert client.get(f"/api/runs/{run_id}/trace").status_code == 200


def test_text_a_run_produces_is_stored_and_streamed_alike(server: LiveServer) -> None:
    with server.client() as client:
        workflow_id = create_workflow(client, flow({"type": "poison", "id": "p"}, echo("b")))
        run = start_run(client, workflow_id)
        live, end = read_stream(client, run["id"])
        assert end is not None and end["status"] == "succeeded"
        stored = client.get(f"/api/runs/{run['id']}/trace", params={"limit": 1000}).json()
        assert [e["payload"] for e in live] == [e["payload"] for e in stored["items"]]
        logged = next(e for e in live if e["type"] == "log")
        assert logged["payload"]["message"] == "nul \ufffd and surrogate \ufffd"
        assert logged["payload"]["data"] == {"key\ufffd": ["\ufffd"]}
        assert client.get("/api/runs").status_code == 200


# ==============================================================================================
# CPU work of one request must not stall the others


def test_validating_a_flow_does_not_stall_health(server: LiveServer) -> None:
    name = unique("slow-build")
    graph = flow({"type": "slow_build", "id": "s", "params": {"gate": name}})
    with server.client() as client:
        creating = in_thread(
            lambda: client.post("/api/workflows", json={"name": "slow", "graph_json": graph})
        )
        GATES.wait_until_waiting(name)  # the flow is being built, in a worker thread
        with server.client(timeout=5) as other:  # the event loop answers meanwhile
            assert other.get("/health").json()["status"] == "ok"
            assert other.get("/api/runs").status_code == 200
        GATES.open(name)
        assert creating(30).status_code == 201


# ==============================================================================================
# Internals stay in the server log


def test_error_events_and_summaries_carry_an_error_id_not_a_stack(
    server: LiveServer, caplog: pytest.LogCaptureFixture
) -> None:
    secret_path = str(SERVER_FILES)
    graph = flow(echo("a"), {"type": "leaky", "id": "boom"})
    caplog.set_level(logging.ERROR, logger="backpackflow_server")
    with server.client() as client:
        workflow_id = create_workflow(client, graph)
        run = start_run(client, workflow_id)
        with client.stream("GET", f"/api/runs/{run['id']}/stream") as response:
            wire = response.read().decode()
        failed = wait_for_status(client, run["id"], "failed")
        stored = client.get(f"/api/runs/{run['id']}/trace", params={"limit": 1000}).text
    for text in (wire, stored, json.dumps(failed)):
        assert "Traceback" not in text and "stack" not in text
        assert secret_path not in text and str(Path(__file__).parents[2]) not in text
        assert "site-packages" not in text and ".py" not in text
    error = next(
        json.loads(line[6:])
        for line in wire.splitlines()
        if line.startswith("data: ") and '"type":"error"' in line
    )
    assert error["payload"]["error"] == "[Errno 2] No such file or directory: '<path>'"
    event_id = error["payload"]["error_id"]
    summary_id = ERROR_ID.search(failed["error_summary"]).group(1)
    assert failed["error_summary"].startswith("FileNotFoundError: [Errno 2] No such file")
    log = "\n".join(r.getMessage() + (r.exc_text or "") for r in caplog.records)
    for error_id in (event_id, summary_id):
        entry = next(r for r in caplog.records if error_id in r.getMessage())
        text = entry.getMessage() + (entry.exc_text or "")
        assert "Traceback" in text and secret_path in text
    assert log.count(event_id) == 1  # one event, one entry, one id (not one per reader)


def test_a_node_type_failing_to_build_discloses_no_path(
    server: LiveServer, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.ERROR, logger="backpackflow_server")
    with server.client() as client:
        refused = client.post(
            "/api/workflows",
            json={"name": "broken", "graph_json": flow({"type": "broken_build", "id": "b"})},
        )
    assert refused.status_code == 422
    message = refused.json()["detail"][0]["msg"]
    assert (
        "failed to build node 'b': OSError: cannot open <path>: the node type is broken" in message
    )
    assert "attack_kit.py" not in refused.text and "Traceback" not in refused.text
    error_id = ERROR_ID.search(message).group(1)
    entry = next(r for r in caplog.records if error_id in r.getMessage())
    assert "Traceback" in entry.exc_text and "attack_kit.py" in entry.exc_text


def test_an_unexpected_failure_answers_500_with_an_error_id(
    serve: Any, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    server = serve()
    store = server.app.state.service.store

    def broken(*args: Any, **kwargs: Any) -> Any:
        raise RuntimeError(f"bug near {Path(__file__).resolve()}")

    monkeypatch.setattr(store, "list_runs", broken)
    caplog.set_level(logging.ERROR)
    with server.client() as client:
        answer = client.get("/api/runs")
        assert answer.status_code == 500
        body = answer.json()
        assert set(body) == {"detail", "error_id"} and body["error_id"] in body["detail"]
        assert "RuntimeError" not in answer.text and __file__ not in answer.text
        assert client.get("/health").status_code == 200  # the service goes on
    entry = next(r for r in caplog.records if body["error_id"] in r.getMessage())
    assert "RuntimeError: bug near" in (entry.exc_text or "")


def test_an_unavailable_database_is_not_named_to_clients(
    serve: Any, backend: str, caplog: pytest.LogCaptureFixture
) -> None:
    server = serve()
    url = server.settings.database_url
    shown = url.split("@")[-1] if "@" in url else url.removeprefix("sqlite:///")
    caplog.set_level(logging.ERROR, logger="backpackflow_server")
    store = server.app.state.service.store

    def down() -> None:
        from backpackflow_store_sql import DatabaseUnavailable

        raise DatabaseUnavailable(f"cannot connect to the database {url!r}: refused")

    with server.client() as client, contextlib.ExitStack() as undo:
        undo.callback(setattr, store, "ping", store.ping)
        undo.callback(setattr, store, "list_runs", store.list_runs)
        store.ping = down
        store.list_runs = lambda *a, **k: down()
        health = client.get("/health")
        listed = client.get("/api/runs")
    assert health.status_code == 503 and listed.status_code == 503
    for answer in (health, listed):
        assert shown not in answer.text and "cannot connect" not in answer.text
        assert ERROR_ID.search(answer.text)
    assert any(shown in r.getMessage() for r in caplog.records)
