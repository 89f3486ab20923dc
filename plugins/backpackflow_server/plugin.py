"""CLI commands of the service: ``backpackflow serve`` and ``backpackflow db upgrade|current``.

Options override the ``BACKPACKFLOW_*`` environment (see :class:`Settings`), which overrides
the defaults; ``--database`` and ``BACKPACKFLOW_DATABASE_URL`` name the database.
"""

from __future__ import annotations

import argparse
import importlib.util
import sys
from typing import TYPE_CHECKING, Any

from backpackflow import hookimpl
from backpackflow.plugins import CommandRegistrar, Registry

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
        ("seed_dir", "seed_dir"),
        ("heartbeat", "sse_heartbeat"),
        ("files_dir", "files_dir"),
        ("env_allow", "flow_env_allowlist"),
        ("egress_allow", "egress_allow_networks"),
        ("egress_deny", "egress_deny_networks"),
        ("egress_allow_host", "egress_allow_hosts"),
        ("flow_sink", "flow_sinks"),
        ("template_timeout", "template_max_seconds"),
    ):
        value = getattr(args, option, None)
        if value is not None:
            overrides[field] = value
    if getattr(args, "no_seed", False):
        overrides["seed"] = False
    return Settings(**overrides)


def _serve(args: argparse.Namespace, registry: Registry) -> int:
    import uvicorn
    from pydantic import ValidationError

    from .app import create_app

    try:
        settings = _settings(args)
    except ValidationError as exc:
        print(f"backpackflow serve: invalid settings:\n{exc}", file=sys.stderr)
        return 2
    uvicorn.run(
        create_app(settings, registry),
        host=args.host,
        port=args.port,
        log_level=args.log_level,
        timeout_graceful_shutdown=int(settings.shutdown_grace) + 5,
    )
    return 0


def _db_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="db_command", metavar="ACTION", required=True)
    _database_argument(sub.add_parser("upgrade", help="create or migrate the schema to the latest"))
    _database_argument(sub.add_parser("current", help="show the schema revision of the database"))


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


#: What the entry point names ("<module>:plugin [extra]"): this module itself.
plugin = sys.modules[__name__]
