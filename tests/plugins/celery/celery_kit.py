"""Processes of the worker tests: ``serve --executor celery`` and ``worker``, each with the
service tests' node types (tests/plugins/server/server_kit.py) and the Celery plugin.

Run as a script it is ``backpackflow`` with that registry (``python celery_kit.py worker …``).
"""

from __future__ import annotations

import os
import secrets
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import httpx
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "server"))

from server_kit import free_port, make_registry

REDIS_URL_ENV = "BACKPACKFLOW_TEST_REDIS_URL"
DEFAULT_REDIS_URL = "redis://127.0.0.1:6379/0"
RABBITMQ_URL_ENV = "BACKPACKFLOW_TEST_RABBITMQ_URL"
DEFAULT_RABBITMQ_URL = "amqp://guest:guest@127.0.0.1:5672//"


def require_redis() -> str:
    """The test Redis URL; skips (fails under BACKPACKFLOW_REQUIRE_SERVICES=1) without it."""
    from services import service_unavailable

    url = os.environ.get(REDIS_URL_ENV) or DEFAULT_REDIS_URL
    try:
        import redis

        redis.Redis.from_url(url, socket_connect_timeout=2).ping()
    except Exception as exc:  # noqa: BLE001 - any failure means no Redis
        service_unavailable(
            f"Redis at {url} is unavailable ({exc}); start it or set {REDIS_URL_ENV}"
        )
    return url


def require_rabbitmq() -> str:
    from services import service_unavailable

    url = os.environ.get(RABBITMQ_URL_ENV) or DEFAULT_RABBITMQ_URL
    try:
        from kombu import Connection

        with Connection(url, connect_timeout=2) as connection:
            connection.ensure_connection(max_retries=1)
    except Exception as exc:  # noqa: BLE001 - any failure means no RabbitMQ
        service_unavailable(
            f"RabbitMQ at {url} is unavailable ({exc}); start it or set {RABBITMQ_URL_ENV}"
        )
    return url


def unique_queue() -> str:
    """A queue of the test's own: tests sharing a broker never take each other's runs."""
    return f"bpf-celery-test-{secrets.token_hex(4)}"


def delete_queue(broker_url: str, queue: str) -> None:
    """Remove the test's queue (and its binding) from the broker."""
    from kombu import Connection

    with Connection(broker_url, connect_timeout=2) as connection:
        connection.default_channel.queue_delete(queue)
    if broker_url.startswith("redis"):  # the exchange's binding sets stay behind
        import redis

        client = redis.Redis.from_url(broker_url)
        client.delete(f"_kombu.binding.{queue}", f"_kombu.binding_permanent.{queue}")
        client.close()


def worker_env(queue: str, **extra: str) -> dict[str, str]:
    """Settings of short leases and a short visibility timeout: a killed worker's runs are
    taken over within seconds."""
    return {
        "BACKPACKFLOW_BROKER_QUEUE": queue,
        "BACKPACKFLOW_LEASE_SECONDS": "2",
        "BACKPACKFLOW_VISIBILITY_TIMEOUT": "5",
        "BACKPACKFLOW_WRITER_MAX_DELAY": "0.01",
        "BACKPACKFLOW_SSE_HEARTBEAT": "0.5",
        "BACKPACKFLOW_SHUTDOWN_GRACE": "0.5",
        **extra,
    }


def _popen(
    argv: list[str], env: dict[str, str], prefix: Sequence[str] = ()
) -> subprocess.Popen[str]:
    """This file as ``backpackflow`` in a new process (``prefix``: e.g. ``ip netns exec NS``)."""
    return subprocess.Popen(
        [*prefix, sys.executable, __file__, *argv],
        env={**os.environ, **env},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def start_api(
    database_url: str,
    broker_url: str,
    env: dict[str, str],
    *,
    host: str = "127.0.0.1",
    prefix: Sequence[str] = (),
    seed: bool = False,
) -> tuple[subprocess.Popen[str], str]:
    """``serve --executor celery`` in a process of its own; (process, base URL). On loopback
    in local-dev mode; on another ``host`` (an address of the namespace ``prefix`` enters)
    with API tokens, so the database needs one (clients send it). ``seed``: seed the demo
    workflows ``env`` names (``BACKPACKFLOW_SEED_DIR``) instead of none."""
    port = free_port()
    access = ["--local-dev"] if host == "127.0.0.1" else ["--host", host, "--allowed-host", host]
    process = _popen(
        [
            "serve",
            "--port",
            str(port),
            "--database",
            database_url,
            "--executor",
            "celery",
            "--broker",
            broker_url,
            *([] if seed else ["--no-seed"]),
            "--log-level",
            "warning",
            *access,
        ],
        env,
        prefix,
    )
    base = f"http://{host}:{port}"
    deadline = time.monotonic() + 60
    while True:
        try:
            if httpx.get(f"{base}/health", timeout=1).status_code == 200:
                return process, base
        except httpx.TransportError:
            pass
        if process.poll() is not None or time.monotonic() > deadline:
            process.kill()
            output = process.stdout.read() if process.stdout else ""
            pytest.fail(f"the API process did not start:\n{output}")
        time.sleep(0.1)


def start_worker(
    database_url: str,
    broker_url: str,
    env: dict[str, str],
    name: str,
    concurrency: int = 8,
    prefix: Sequence[str] = (),
) -> subprocess.Popen[str]:
    return _popen(
        [
            "worker",
            "--broker",
            broker_url,
            "--database",
            database_url,
            "--concurrency",
            str(concurrency),
            "--hostname",
            f"{name}@test",
            "--log-level",
            "warning",
        ],
        env,
        prefix,
    )


def stop(processes: list[subprocess.Popen[str]]) -> None:
    for process in processes:
        if process.poll() is None:
            process.kill()
            process.wait(10)
        if process.stdout is not None:
            process.stdout.close()


def main(argv: list[str]) -> int:
    import backpackflow_celery.plugin
    from backpackflow.cli import build_parser

    registry = make_registry(backpackflow_celery.plugin, commands=True)
    args = build_parser(registry).parse_args(argv)
    return int(args._handler(args, registry))


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
