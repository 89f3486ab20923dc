"""Fixtures of the service tests: live servers on SQLite and on the real PostgreSQL.

``service`` is one live server per test module and backend (tests share it and use their own
workflows and gates); ``serve(**settings)`` starts a server of their own for tests that need
particular settings or a fresh database. PostgreSQL databases come from ``tests/services.py``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from server_kit import GATES, TEST_SETTINGS, LiveServer, make_registry

from backpackflow.plugins import Registry
from backpackflow_server import Settings
from services import BACKENDS, new_database


@pytest.fixture(scope="session")
def registry() -> Registry:
    return make_registry()


@pytest.fixture(params=BACKENDS)
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A new, empty database on each backend."""
    return new_database(request, request.param, tmp_path / "service.db")


@pytest.fixture(scope="module", params=BACKENDS)
def service(
    request: pytest.FixtureRequest, registry: Registry, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[LiveServer]:
    """A live server shared by a module's tests, on each backend."""
    url = new_database(request, request.param, tmp_path_factory.mktemp("service") / "service.db")
    server = LiveServer(Settings(database_url=url, **TEST_SETTINGS), registry).start()
    yield server
    GATES.open_all()
    server.stop()


@pytest.fixture
def serve(registry: Registry) -> Iterator[Callable[..., LiveServer]]:
    """``serve(database_url=..., **settings)`` → a started server, stopped after the test."""
    servers: list[LiveServer] = []

    def start(**settings: Any) -> LiveServer:
        server = LiveServer(Settings(**{**TEST_SETTINGS, **settings}), registry).start()
        servers.append(server)
        return server

    yield start
    GATES.open_all()
    for server in servers:
        if server.thread.is_alive():
            server.stop()


@pytest.fixture
def client(service: LiveServer) -> Iterator[Any]:
    with service.client() as http:
        yield http


@pytest.fixture(autouse=True)
def _release_gates() -> Iterator[None]:
    """Runs a test left waiting at a gate finish after it, freeing their slots."""
    yield
    GATES.open_all()
