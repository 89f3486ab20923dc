"""``backpackflow tokens create|list|revoke``: the operator's API tokens.

Tokens are made where the database is reachable, never over the API: whoever can run this
command can read the database anyway. ``create`` prints the token's secret once (on stdout,
alone, so ``TOKEN=$(backpackflow tokens create --role runner)`` works); the store keeps only
its SHA-256 digest (see :mod:`backpackflow_server.auth`).
"""

from __future__ import annotations

import argparse
import json
import sys
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol, cast

from backpackflow.plugins import Registry

from .credentials import ROLES, hash_token, new_token, token_hint


class TokenAdmin(Protocol):
    """What this command needs of the run store (the SQL store offers it)."""

    url: str

    def upgrade(self, revision: str = "head") -> None: ...
    def close(self) -> None: ...
    def create_token(
        self,
        name: str,
        role: str,
        token_hash: str,
        *,
        hint: str,
        expires_at: datetime | None = None,
    ) -> dict[str, Any]: ...
    def list_tokens(self, *, include_inactive: bool = False) -> list[dict[str, Any]]: ...
    def revoke_token(self, id_or_name: str) -> dict[str, Any]: ...


ROLE_HELP = (
    "viewer: read workflows, runs and traces; runner: also start and cancel runs; "
    "admin: also create, change and delete workflows"
)


def _days(text: str) -> float:
    try:
        days = float(text)
    except ValueError:
        days = 0.0
    if not days > 0 or days > 36_500:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of days (0 < DAYS <= 36500)")
    return days


def token_arguments(parser: argparse.ArgumentParser) -> None:
    from .plugin import _database_argument as database_argument

    sub = parser.add_subparsers(dest="tokens_command", metavar="ACTION", required=True)
    create = sub.add_parser("create", help="make a token; its secret is printed once")
    create.add_argument("--role", required=True, choices=ROLES, help=ROLE_HELP)
    create.add_argument("--name", help="what the token is for, unique (default: ROLE-N)")
    create.add_argument(
        "--expires-in",
        type=_days,
        metavar="DAYS",
        help="days until it stops working (default: never)",
    )
    create.add_argument("--json", action="store_true", help="print the token as JSON")
    database_argument(create)
    listing = sub.add_parser("list", help="the tokens that work (never their secrets)")
    listing.add_argument("--all", action="store_true", help="also revoked and expired ones")
    listing.add_argument("--json", action="store_true", help="print JSON")
    database_argument(listing)
    revoke = sub.add_parser("revoke", help="stop a token working (within token_cache_seconds)")
    revoke.add_argument("token", metavar="ID_OR_NAME", help="the token's id or name")
    database_argument(revoke)


def _default_name(store: TokenAdmin, role: str) -> str:
    taken = {token["name"] for token in store.list_tokens(include_inactive=True)}
    number = 1
    while f"{role}-{number}" in taken:
        number += 1
    return f"{role}-{number}"


def _table(tokens: list[dict[str, Any]]) -> str:
    header = ("id", "name", "role", "starts", "created", "expires", "last used", "state")
    rows = [
        (
            t["id"],
            t["name"],
            t["role"],
            t["hint"] + "…",
            (t["created_at"] or "")[:19],
            (t["expires_at"] or "never")[:19],
            (t["last_used_at"] or "never")[:19],
            "active" if t["active"] else ("revoked" if t["revoked_at"] else "expired"),
        )
        for t in tokens
    ]
    widths = [max(len(str(row[i])) for row in [header, *rows]) for i in range(len(header))]
    return "\n".join(
        "  ".join(str(cell).ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip()
        for row in [header, *rows]
    )


def run_tokens(args: argparse.Namespace, registry: Registry) -> int:
    from backpackflow_store_sql import InvalidData, NotFound

    from .app import open_store
    from .plugin import _settings as settings_from

    store = cast(TokenAdmin, open_store(registry, settings_from(args).database_url))
    try:
        store.upgrade()
        if args.tokens_command == "create":
            expires = (
                None
                if args.expires_in is None
                else datetime.now(UTC) + timedelta(days=args.expires_in)
            )
            secret = new_token()
            name = args.name or _default_name(store, args.role)
            try:
                record = store.create_token(
                    name, args.role, hash_token(secret), hint=token_hint(secret), expires_at=expires
                )
            except InvalidData as exc:
                print(f"backpackflow tokens create: {exc}", file=sys.stderr)
                return 2
            if args.json:
                print(json.dumps({**record, "token": secret}, indent=2))
            else:
                print(secret)
            print(
                f"created {record['role']} token {record['name']!r} (id {record['id']}, expires "
                f"{record['expires_at'] or 'never'}) in {store.url}; store the secret now: it "
                "is not shown again",
                file=sys.stderr,
            )
        elif args.tokens_command == "list":
            tokens = store.list_tokens(include_inactive=args.all)
            if args.json:
                print(json.dumps(tokens, indent=2))
            elif tokens:
                print(_table(tokens))
            else:
                print(f"no tokens in {store.url}: backpackflow tokens create --role admin")
        else:
            try:
                record = store.revoke_token(args.token)
            except NotFound:
                print(f"backpackflow tokens revoke: no token {args.token!r}", file=sys.stderr)
                return 1
            print(f"revoked token {record['name']!r} (id {record['id']})")
    finally:
        store.close()
    return 0
