"""API tokens in the store: digests only, one working token per name, expiry and revocation."""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import text

from backpackflow_store_sql import InvalidData, NotFound, SqlRunStore


def digest(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def test_tokens_are_found_by_digest_and_never_stored_in_clear(store: SqlRunStore) -> None:
    secret = "bpf_the-secret-itself"
    created = store.create_token("ci", "runner", digest(secret), hint=secret[:8])
    assert created["role"] == "runner" and created["active"] and created["hint"] == "bpf_the-"
    assert store.find_token(token_hash=digest(secret)) == created
    assert store.find_token(token_id=created["id"]) == created
    assert store.find_token(token_hash=digest("bpf_another")) is None
    with store.engine.connect() as connection:
        rows = connection.execute(text("SELECT * FROM api_tokens")).all()
    assert rows and all(secret not in str(value) for value in rows[0])
    assert store.count_active_tokens() == 1


def test_revoked_and_expired_tokens_stop_working(store: SqlRunStore) -> None:
    now = datetime.now(UTC)
    store.create_token("old", "viewer", digest("a"), hint="a", expires_at=now - timedelta(1))
    tomorrow = now + timedelta(1)
    later = store.create_token("later", "admin", digest("b"), hint="b", expires_at=tomorrow)
    gone = store.create_token("gone", "admin", digest("c"), hint="c")
    assert store.find_token(token_hash=digest("a")) is None
    assert store.find_token(token_hash=digest("b")) == later
    revoked = store.revoke_token("gone")  # by name
    assert revoked["id"] == gone["id"] and not revoked["active"] and revoked["revoked_at"]
    assert store.find_token(token_hash=digest("c")) is None
    assert [t["name"] for t in store.list_tokens()] == ["later"]
    assert {t["name"] for t in store.list_tokens(include_inactive=True)} == {"old", "later", "gone"}
    assert store.revoke_token(later["id"])["active"] is False  # by id
    with pytest.raises(NotFound, match="token 'nobody' not found"):
        store.revoke_token("nobody")
    # A revoked token's name may be used again.
    assert store.create_token("gone", "viewer", digest("d"), hint="d")["active"]


def test_token_records_are_checked(store: SqlRunStore) -> None:
    store.create_token("ci", "runner", digest("x"), hint="x")
    with pytest.raises(InvalidData, match="a token named 'ci' exists"):
        store.create_token("ci", "viewer", digest("y"), hint="y")
    with pytest.raises(InvalidData, match="unknown role 'root'"):
        store.create_token("r", "root", digest("z"), hint="z")
    with pytest.raises(InvalidData, match="SHA-256 digest"):
        store.create_token("r", "viewer", "not-a-digest", hint="z")
    with pytest.raises(InvalidData, match="NUL"):
        store.create_token("a\x00b", "viewer", digest("w"), hint="w")


def test_touch_records_the_last_use(store: SqlRunStore) -> None:
    token = store.create_token("ci", "runner", digest("x"), hint="x")
    assert token["last_used_at"] is None
    when = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
    store.touch_token(token["id"], when)
    assert store.find_token(token_id=token["id"])["last_used_at"] == when.isoformat()


def test_the_roles_tokens_are_made_with_are_the_roles_the_store_allows() -> None:
    from backpackflow_server.credentials import ROLES
    from backpackflow_store_sql.models import TOKEN_ROLES

    assert sorted(ROLES) == sorted(TOKEN_ROLES)


def test_loading_the_plugins_imports_no_database_stack() -> None:
    """Every ``backpackflow`` command loads every plugin: the store's SQLAlchemy and Alembic
    (and the service's web stack) load only when a command opens a store, and the OpenAI and
    Anthropic SDKs (~2.5 s of imports) only when a flow builds one of their providers."""
    import subprocess
    import sys

    code = (
        "import sys; from backpackflow.plugins import build_registry; build_registry(); "
        "heavy = ('sqlalchemy', 'alembic', 'fastapi', 'openai', 'anthropic'); "
        "print(sorted(m for m in heavy if m in sys.modules))"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    )
    assert result.stdout.strip() == "[]"
