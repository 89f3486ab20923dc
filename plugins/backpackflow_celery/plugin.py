"""The Celery plugin: the ``celery`` executor and the ``worker`` and ``workers`` commands.

Celery is imported by the commands and the executor only; checking that it is installed keeps
the plugin listed as unavailable (with the install hint of its ``workers`` extra) instead of
failing later.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import sys
from typing import TYPE_CHECKING, Any

from backpackflow import BackpackFlowError, hookimpl
from backpackflow.plugins import CommandRegistrar, ExecutorRegistrar, Registry

if TYPE_CHECKING:
    from backpackflow_server.settings import Settings

for _module in ("celery", "redis"):  # kombu comes with celery (and hides its __spec__)
    if importlib.util.find_spec(_module) is None:
        raise ModuleNotFoundError(f"No module named {_module!r}", name=_module)


def _make_executor(settings: Settings) -> Any:
    from .executor import CeleryExecutor

    return CeleryExecutor(settings)


@hookimpl
def backpackflow_register_executors(register: ExecutorRegistrar) -> None:
    register(
        "celery",
        _make_executor,
        description="runs go through a Celery broker (Redis, RabbitMQ) to backpackflow "
        "worker processes on any number of hosts",
    )


def _common_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--broker",
        metavar="URL",
        help="redis://host:6379/0 or amqp://user:password@host:5672// "
        "(default: $BACKPACKFLOW_BROKER_URL)",
    )
    parser.add_argument(
        "--database",
        metavar="URL",
        help="the service's database, e.g. postgresql://user@host:5432/backpackflow "
        "(default: $BACKPACKFLOW_DATABASE_URL)",
    )


def _worker_arguments(parser: argparse.ArgumentParser) -> None:
    _common_arguments(parser)
    parser.add_argument(
        "--concurrency",
        type=int,
        default=16,
        metavar="N",
        help="runs this worker drives at once, on one event loop (default 16)",
    )
    parser.add_argument(
        "--hostname", metavar="NAME", help="the worker's node name (default backpackflow@HOST)"
    )
    parser.add_argument(
        "--log-level",
        default="info",
        choices=["critical", "error", "warning", "info", "debug"],
        help="worker log level",
    )


def _workers_arguments(parser: argparse.ArgumentParser) -> None:
    _common_arguments(parser)
    parser.add_argument(
        "--timeout", type=float, default=2.0, metavar="SECONDS", help="wait for replies"
    )
    parser.add_argument("--json", action="store_true", help="print JSON instead of text")


def _settings(args: argparse.Namespace, command: str) -> Settings | None:
    from pydantic import ValidationError

    from backpackflow_server.settings import Settings

    overrides: dict[str, Any] = {}
    if args.broker:
        overrides["broker_url"] = args.broker
    if args.database:
        overrides["database_url"] = args.database
    try:
        settings = Settings(**overrides)
    except ValidationError as exc:
        print(f"backpackflow {command}: invalid settings:\n{exc}", file=sys.stderr)
        return None
    if settings.broker_url is None:
        print(
            f"backpackflow {command}: no broker: give --broker redis://host:6379/0 (or set "
            "BACKPACKFLOW_BROKER_URL)",
            file=sys.stderr,
        )
        return None
    return settings


def _worker(args: argparse.Namespace, registry: Registry) -> int:
    import logging

    from .worker import run_worker

    settings = _settings(args, "worker")
    if settings is None:
        return 2
    if args.concurrency < 1:
        print("backpackflow worker: --concurrency must be at least 1", file=sys.stderr)
        return 2
    logging.basicConfig(
        level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    assert settings.broker_url is not None
    try:
        return run_worker(
            settings,
            registry,
            broker_url=settings.broker_url.get_secret_value(),
            concurrency=args.concurrency,
            hostname=args.hostname,
            loglevel=args.log_level,
        )
    except BackpackFlowError as exc:
        print(f"backpackflow worker: {exc}", file=sys.stderr)
        return 2


def live_workers(
    broker_url: str, *, timeout: float, queue: str = "backpackflow", store: Any = None
) -> dict[str, Any]:
    """The live workers of ``queue`` (those answering Celery's ``inspect`` that consume it),
    the runs each executes (with their lease from ``store`` when given) and the number of runs
    waiting on the queue."""
    from .app import make_celery, queue_depth

    app = make_celery(broker_url, queue=queue)
    try:
        inspector = app.control.inspect(timeout=timeout)
        consumed = inspector.active_queues() or {}
        ours = [n for n, queues in consumed.items() if any(q["name"] == queue for q in queues)]
        active = (app.control.inspect(ours, timeout=timeout).active() or {}) if ours else {}
        depth = queue_depth(app)
    finally:
        app.close()
    workers = []
    for node in sorted(ours):
        tasks = active.get(node) or []
        runs = []
        for task in tasks:
            task_args = task.get("args") or []
            run: dict[str, Any] = {"run_id": task_args[0] if task_args else None}
            if store is not None and run["run_id"] is not None:
                try:
                    lease = store.get_lease(run["run_id"])
                    run.update(
                        lease_owner=lease["owner"],
                        lease_token=lease["token"],
                        lease_expires_at=lease["expires_at"],
                    )
                except BackpackFlowError:
                    pass
            runs.append(run)
        workers.append({"worker": node, "runs": runs})
    return {"workers": workers, "queued": depth}


def _workers(args: argparse.Namespace, registry: Registry) -> int:
    settings = _settings(args, "workers")
    if settings is None:
        return 2
    assert settings.broker_url is not None
    store = None
    if args.database or os.environ.get("BACKPACKFLOW_DATABASE_URL"):
        from backpackflow_server.app import open_store

        store = open_store(registry, settings.database_url)
    try:
        report = live_workers(
            settings.broker_url.get_secret_value(),
            timeout=args.timeout,
            queue=settings.broker_queue,
            store=store,
        )
    except Exception as exc:  # noqa: BLE001 - kombu raises its transports' own errors
        print(f"backpackflow workers: the broker cannot be reached: {exc}", file=sys.stderr)
        return 1
    finally:
        if store is not None:
            store.close()
    if args.json:
        print(json.dumps(report, indent=2))
        return 0
    print(f"{len(report['workers'])} live worker(s); {report['queued']} run(s) queued")
    for worker in report["workers"]:
        print(f"{worker['worker']}: {len(worker['runs'])} run(s)")
        for run in worker["runs"]:
            token = run.get("lease_token")
            lease = f" (lease token {token}, until {run.get('lease_expires_at')})" if token else ""
            print(f"  {run['run_id']}{lease}")
    return 0


@hookimpl
def backpackflow_register_commands(cli: CommandRegistrar) -> None:
    cli.add(
        "worker",
        _worker,
        help="run a worker: executes the runs a service sends through the broker",
        arguments=_worker_arguments,
    )
    cli.add(
        "workers",
        _workers,
        help="list the live workers, the runs each executes and the queue depth",
        arguments=_workers_arguments,
    )


#: What the entry point names ("<module>:plugin [extra]"): this module itself.
plugin = sys.modules[__name__]
