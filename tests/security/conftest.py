"""Fixtures of the security tests: real ``backpackflow`` servers on real sockets, on SQLite and
on the real PostgreSQL, attacked over HTTP the way an outsider would.

The servers are the service tests' :class:`server_kit.LiveServer` (uvicorn on 127.0.0.1, port
0, in a thread of this process, so a test can read the server log with ``caplog``); the
attacks that concern the ``backpackflow serve`` command itself run the command.

* ``server``: one server per module and backend with API tokens on (the default); its
  ``admin_token`` exists, :meth:`LiveServer.token` makes tokens of any role;
* ``dev_server``: the same in local-dev mode (no token, loopback clients only);
* ``serve(**settings)``: a server of the test's own (fresh database on the test's backend).

The registry has the service tests' node types plus the few only attacks need
(:mod:`attack_kit`).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from attack_kit import GATES, TEST_SETTINGS, LiveServer, SecurityTestNodes, ServerTestNodes

from backpackflow.plugins import Registry, build_registry
from backpackflow_server import Settings
from services import BACKENDS, new_database


@pytest.fixture(scope="session")
def registry() -> Registry:
    import backpackflow_conditions.plugin
    import backpackflow_store_sql.plugin

    plugins = [
        ServerTestNodes(),
        SecurityTestNodes(),
        backpackflow_store_sql.plugin,
        backpackflow_conditions.plugin,
    ]
    return build_registry(plugins=plugins, autoload=False)


# ------------------------------------------------------------------------------ servers


@pytest.fixture(scope="module", params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


def _database(request: pytest.FixtureRequest, backend: str, folder: Path) -> str:
    return new_database(request, backend, folder / "service.db")


@pytest.fixture(scope="module")
def shared_servers(
    request: pytest.FixtureRequest,
    backend: str,
    registry: Registry,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Callable[..., LiveServer]]:
    """``start(name, **settings)`` → a server of the module (per backend), started once."""
    started: dict[str, LiveServer] = {}

    def start(name: str, **settings: Any) -> LiveServer:
        if name not in started:
            url = _database(request, backend, tmp_path_factory.mktemp(name))
            merged = {**TEST_SETTINGS, **settings}
            started[name] = LiveServer(Settings(database_url=url, **merged), registry).start()
        return started[name]

    yield start
    GATES.open_all()
    for live in started.values():
        live.stop()


@pytest.fixture(scope="module")
def server(shared_servers: Callable[..., LiveServer]) -> LiveServer:
    """A live server with API tokens on, shared by a module's tests, on each backend."""
    return shared_servers("server")


@pytest.fixture(scope="module")
def dev_server(shared_servers: Callable[..., LiveServer]) -> LiveServer:
    """A live server in local-dev mode, shared by a module's tests, on each backend."""
    return shared_servers("dev", auth="local-dev")


@pytest.fixture
def serve(
    request: pytest.FixtureRequest, backend: str, registry: Registry, tmp_path: Path
) -> Iterator[Callable[..., LiveServer]]:
    """``serve(**settings)`` → a started server on a new database of the module's backend."""
    servers: list[LiveServer] = []

    def start(**settings: Any) -> LiveServer:
        folder = tmp_path / f"server-{len(servers)}"
        folder.mkdir()
        settings.setdefault("database_url", _database(request, backend, folder))
        live = LiveServer(Settings(**{**TEST_SETTINGS, **settings}), registry).start()
        servers.append(live)
        return live

    yield start
    GATES.open_all()
    for live in servers:
        if live.thread.is_alive():
            live.stop()


@pytest.fixture(autouse=True)
def _release_gates() -> Iterator[None]:
    yield
    GATES.open_all()
