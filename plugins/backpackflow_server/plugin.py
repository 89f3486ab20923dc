"""CLI commands of the service: ``backpackflow serve``, ``backpackflow db upgrade|current``
and ``backpackflow tokens create|list|revoke`` (in :mod:`.tokens`).

Options override the ``BACKPACKFLOW_*`` environment (see :class:`Settings`), which overrides
the defaults; ``--database`` and ``BACKPACKFLOW_DATABASE_URL`` name the database.
"""

from __future__ import annotations

import argparse
import importlib.util
import ipaddress
import json
import socket
import sys
from typing import TYPE_CHECKING, Any

from backpackflow import BackpackFlowError, hookimpl
from backpackflow.plugins import CommandRegistrar, Registry

from .tokens import run_tokens, token_arguments

if TYPE_CHECKING:
    from .settings import Settings

# Every CLI invocation loads the plugins, so the web stack is imported only by the commands.
# Checking that it is installed keeps the plugin listed as unavailable (with the install hint
# of its "server" extra) instead of failing later.
for _module in ("fastapi", "uvicorn", "sse_starlette", "pydantic_settings", "sqlalchemy"):
    if importlib.util.find_spec(_module) is None:
        raise ModuleNotFoundError(f"No module named {_module!r}", name=_module)


def _database_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--database",
        metavar="URL",
        help="sqlite:///path.db or postgresql://user:password@host:5432/dbname "
        "(default: $BACKPACKFLOW_DATABASE_URL, else .backpackflow/backpackflow.db)",
    )


def _serve_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on")
    parser.add_argument("--port", type=int, default=8000, help="port to listen on")
    _database_argument(parser)
    parser.add_argument(
        "--max-concurrent-runs", type=int, metavar="N", help="runs executing at once (default 8)"
    )
    parser.add_argument(
        "--live-feed",
        metavar="URL",
        help="share runs' live events and cancels with the other service processes through "
        "this Redis (redis://host:6379/0; default: $BACKPACKFLOW_LIVE_FEED, else none)",
    )
    parser.add_argument(
        "--executor",
        metavar="NAME",
        help="where runs execute: in-process (default) or an installed executor, e.g. celery "
        "(backpackflow worker processes; see docs/deploy.md)",
    )
    parser.add_argument(
        "--broker",
        metavar="URL",
        help="the broker of a worker executor: redis://host:6379/0 or amqp://… "
        "(default: $BACKPACKFLOW_BROKER_URL)",
    )
    parser.add_argument(
        "--seed-dir", metavar="DIR", help="seed the *.json flows of DIR into a new database"
    )
    parser.add_argument(
        "--no-seed", action="store_true", help="do not seed demo workflows into a new database"
    )
    parser.add_argument(
        "--heartbeat", type=float, metavar="SECONDS", help="SSE heartbeat interval (default 15)"
    )
    parser.add_argument(
        "--log-level",
        default="info",
        choices=["critical", "error", "warning", "info", "debug"],
        help="server log level",
    )
    parser.add_argument(
        "--log-format",
        choices=["text", "json"],
        help="service logs as text lines or JSON lines, one per request with its request id, "
        "run id and trace id (default: $BACKPACKFLOW_LOG_FORMAT or text)",
    )
    access = parser.add_argument_group(
        "access", "who may call the service and from where (see docs/security.md)"
    )
    access.add_argument(
        "--local-dev",
        action="store_true",
        help="no API token: every loopback client is an admin (only with a loopback --host)",
    )
    access.add_argument(
        "--allowed-host",
        action="append",
        metavar="HOST",
        help="a Host name clients reach the service by, added to $BACKPACKFLOW_ALLOWED_HOSTS "
        "(default: the loopback names); repeatable",
    )
    access.add_argument(
        "--allowed-origin",
        action="append",
        metavar="ORIGIN",
        help="a browser origin (https://example.com) that may change things; repeatable",
    )
    access.add_argument(
        "--cors-origin",
        action="append",
        metavar="ORIGIN",
        help="a browser origin allowed to call the API with CORS (off by default); repeatable",
    )
    sandbox = parser.add_argument_group(
        "flow sandbox",
        "what flows submitted over the API may make the service do (see docs/security.md); "
        "each option overrides its BACKPACKFLOW_* variable",
    )
    sandbox.add_argument(
        "--files-dir",
        metavar="DIR",
        help="the only folder file tools of API flows read (default .backpackflow/files)",
    )
    sandbox.add_argument(
        "--env-allow",
        action="append",
        metavar="NAME",
        help="an environment variable flows may read (${NAME}, api_key_env); repeatable; "
        "default: none",
    )
    sandbox.add_argument(
        "--egress-allow",
        action="append",
        metavar="NETWORK",
        help="a non-public network flows may reach (CIDR or address); repeatable; default: "
        "public addresses only",
    )
    sandbox.add_argument(
        "--egress-deny",
        action="append",
        metavar="NETWORK",
        help="a public network flows may not reach either; repeatable",
    )
    sandbox.add_argument(
        "--egress-allow-host",
        action="append",
        metavar="HOST",
        help="restrict flows to these host names (exact or *.example.com); repeatable",
    )
    sandbox.add_argument(
        "--flow-sink",
        action="append",
        metavar="TYPE",
        help="an event sink type flows may declare; repeatable; default: webhook",
    )
    sandbox.add_argument(
        "--template-timeout",
        type=float,
        metavar="SECONDS",
        help="wall time one template render may take (default 2)",
    )


def _settings(args: argparse.Namespace) -> Settings:
    from .settings import Settings

    overrides: dict[str, Any] = {}
    for option, field in (
        ("database", "database_url"),
        ("max_concurrent_runs", "max_concurrent_runs"),
        ("live_feed", "live_feed"),
        ("seed_dir", "seed_dir"),
        ("heartbeat", "sse_heartbeat"),
        ("files_dir", "files_dir"),
        ("env_allow", "flow_env_allowlist"),
        ("egress_allow", "egress_allow_networks"),
        ("egress_deny", "egress_deny_networks"),
        ("egress_allow_host", "egress_allow_hosts"),
        ("flow_sink", "flow_sinks"),
        ("template_timeout", "template_max_seconds"),
        ("log_format", "log_format"),
        ("executor", "executor"),
        ("broker", "broker_url"),
    ):
        value = getattr(args, option, None)
        if value is not None:
            overrides[field] = value
    if getattr(args, "no_seed", False):
        overrides["seed"] = False
    if getattr(args, "local_dev", False):
        overrides["auth"] = "local-dev"
    for option, field in (
        ("allowed_host", "allowed_hosts"),
        ("allowed_origin", "allowed_origins"),
        ("cors_origin", "cors_origins"),
    ):
        extra = getattr(args, option, None)
        if extra:
            overrides[field] = [*getattr(Settings(), field), *extra]
    return Settings(**overrides)


def _is_loopback_host(host: str) -> bool:
    """Whether every address ``host`` names is a loopback address (``127.0.0.1``, ``::1``,
    ``localhost``); ``0.0.0.0`` and ``::`` (every interface) are not."""
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        pass
    try:
        addresses = {info[4][0] for info in socket.getaddrinfo(host, None)}
    except OSError:
        return False
    return bool(addresses) and all(
        ipaddress.ip_address(str(a).split("%")[0]).is_loopback for a in addresses
    )


def _public_serve_problem(host: str, settings: Settings, registry: Registry) -> str | None:
    """Why ``serve`` must not listen on the non-loopback ``host`` with these settings."""
    from .app import open_store
    from .settings import LOOPBACK_HOSTS

    if settings.auth == "local-dev":
        return (
            f"local-dev mode needs no token, so it serves loopback addresses only, not "
            f"{host!r}: create a token (backpackflow tokens create --role admin) and drop "
            "--local-dev (and BACKPACKFLOW_AUTH=local-dev)"
        )
    if host in ("0.0.0.0", "::", "") and set(settings.allowed_hosts) <= set(LOOPBACK_HOSTS):
        return (
            f"--host {host!r} listens on every address: name the hosts clients reach "
            "the service by with --allowed-host flows.example.com (or "
            "BACKPACKFLOW_ALLOWED_HOSTS; '*' accepts any Host header)"
        )
    store = open_store(registry, settings.database_url)
    try:
        store.upgrade()
        tokens = store.count_active_tokens()
    finally:
        store.close()
    if not tokens:
        return (
            f"no API token exists in {store.url}, so nobody could use a service on {host!r}: "
            "create one first with backpackflow tokens create --role admin (same --database)"
        )
    return None


def _serve(args: argparse.Namespace, registry: Registry) -> int:
    import uvicorn
    from pydantic import ValidationError

    from .app import create_app
    from .logging_json import log_config

    try:
        settings = _settings(args)
    except ValidationError as exc:
        print(f"backpackflow serve: invalid settings:\n{exc}", file=sys.stderr)
        return 2
    try:  # the operator's sinks: a wrong one is an error now, not at every run
        from .runs import operator_sinks

        operator_sinks(settings, registry)
    except BackpackFlowError as exc:
        print(f"backpackflow serve: the sinks setting: {exc}", file=sys.stderr)
        return 2
    if not _is_loopback_host(args.host):
        problem = _public_serve_problem(args.host, settings, registry)
        if problem is not None:
            print(f"backpackflow serve: {problem}", file=sys.stderr)
            return 2
        if args.host not in ("0.0.0.0", "::", "") and args.host not in settings.allowed_hosts:
            hosts = [*settings.allowed_hosts, args.host.lower()]
            settings = settings.model_copy(update={"allowed_hosts": hosts})
    uvicorn.run(
        create_app(settings, registry),
        host=args.host,
        port=args.port,
        log_level=args.log_level,
        log_config=log_config(settings.log_format, args.log_level),
        timeout_graceful_shutdown=int(settings.shutdown_grace) + 5,
    )
    return 0


def _db_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="db_command", metavar="ACTION", required=True)
    _database_argument(sub.add_parser("upgrade", help="create or migrate the schema to the latest"))
    current = sub.add_parser("current", help="show the schema revision of the database")
    _database_argument(current)
    current.add_argument("--json", action="store_true", help="print JSON instead of text")


def _db(args: argparse.Namespace, registry: Registry) -> int:
    from .app import open_store

    url = _settings(args).database_url
    store = open_store(registry, url)
    try:
        if args.db_command == "upgrade":
            before = store.current_revision()
            store.upgrade()
            after = store.current_revision()
            change = "already at" if before == after else f"upgraded {before or 'empty'} ->"
            print(f"{store.url}: {change} {after}")
        else:
            current = store.current_revision()
            head = getattr(store, "head_revision", lambda: None)()
            if args.json:
                report = {"database": store.url, "revision": current, "head": head}
                print(json.dumps({**report, "up_to_date": current == head}, indent=2))
                return 0
            state = "up to date" if current == head else f"needs upgrade to {head}"
            print(f"{store.url}: {current or 'empty (never upgraded)'} ({state})")
    finally:
        store.close()
    return 0


@hookimpl
def backpackflow_register_commands(cli: CommandRegistrar) -> None:
    cli.add(
        "serve",
        _serve,
        help="run the service: REST API, live SSE traces and a web page",
        arguments=_serve_arguments,
    )
    cli.add("db", _db, help="migrate or inspect the service database", arguments=_db_arguments)
    cli.add(
        "tokens",
        run_tokens,
        help="create, list and revoke the service's API tokens",
        arguments=token_arguments,
    )


#: What the entry point names ("<module>:plugin [extra]"): this module itself.
plugin = sys.modules[__name__]
