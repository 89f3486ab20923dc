"""Database URLs: the default file, normalisation, and errors that say what to do."""

from __future__ import annotations

from pathlib import Path

import pytest

from backpackflow_store_sql import (
    DATABASE_URL_ENV,
    DatabaseUnavailable,
    SqlRunStore,
    StoreConfigError,
    mask_url,
)
from backpackflow_store_sql.store import normalize_url


def test_default_is_a_sqlite_file_under_dot_backpackflow(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    with SqlRunStore() as store:
        store.upgrade()
        assert store.dialect == "sqlite"
        assert store.url == f"sqlite:///{tmp_path / '.backpackflow' / 'backpackflow.db'}"
    assert (tmp_path / ".backpackflow" / "backpackflow.db").is_file()


def test_sqlite_uses_wal_and_enforces_foreign_keys(tmp_path: Path) -> None:
    store = SqlRunStore(f"sqlite:///{tmp_path}/nested/dir/x.db")
    with store, store.engine.connect() as connection:
        assert connection.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
        assert connection.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1
    assert (tmp_path / "nested" / "dir" / "x.db").is_file()


def test_from_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(DATABASE_URL_ENV, f"sqlite:///{tmp_path}/env.db")
    with SqlRunStore.from_env() as store:
        assert store.url.endswith("/env.db")
    monkeypatch.delenv(DATABASE_URL_ENV)
    monkeypatch.chdir(tmp_path)
    with SqlRunStore.from_env() as store:
        assert store.url.endswith(".backpackflow/backpackflow.db")


@pytest.mark.parametrize(
    ("url", "driver"),
    [
        ("postgresql://u:p@db/x", "postgresql+psycopg"),
        ("postgres://u:p@db/x", "postgresql+psycopg"),
        ("postgresql+psycopg://u:p@db/x", "postgresql+psycopg"),
        ("postgresql+psycopg2://u:p@db/x", "postgresql+psycopg2"),
        ("postgres+psycopg://u:p@db/x", "postgresql+psycopg"),
    ],
)
def test_postgres_urls_use_psycopg_3_by_default(url: str, driver: str) -> None:
    assert normalize_url(url).drivername == driver


def test_postgres_store_reports_its_dialect(postgres_url: str) -> None:
    with SqlRunStore(postgres_url.replace("postgresql+psycopg://", "postgresql://")) as store:
        assert store.dialect == "postgresql"
        assert store.engine.url.drivername == "postgresql+psycopg"


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("not a url", "malformed database URL 'not a url'"),
        ("postgresql://u:secret@h:port/x", "malformed database URL 'postgresql://u:\\*\\*\\*@h"),
        ("mysql://u:secret@db/x", "unsupported database 'mysql://u:\\*\\*\\*@db/x'"),
        ("sqlite://", "in-memory SQLite"),
        ("sqlite:///:memory:", "in-memory SQLite"),
        ("postgresql+nodriver://u:secret@db/x", "cannot use database URL"),
    ],
)
def test_bad_urls_are_refused_with_a_masked_url(url: str, message: str) -> None:
    with pytest.raises(StoreConfigError, match=message) as caught:
        SqlRunStore(url)
    assert "secret" not in str(caught.value)
    assert isinstance(caught.value, ValueError)


def test_unreachable_postgres_names_the_masked_url_and_what_to_do() -> None:
    url = "postgresql://bob:hunter2@127.0.0.1:1/nowhere?connect_timeout=2"
    with pytest.raises(DatabaseUnavailable) as caught:
        SqlRunStore(url)
    message = str(caught.value)
    assert "postgresql+psycopg://bob:***@127.0.0.1:1/nowhere" in message
    assert "hunter2" not in message
    assert "server is running" in message and DATABASE_URL_ENV in message


def test_missing_postgres_database_says_so(postgres_url: str) -> None:
    url = postgres_url.rsplit("/", 1)[0] + "/bpf_no_such_database"
    with pytest.raises(DatabaseUnavailable, match=r"bpf_no_such_database.*database exists"):
        SqlRunStore(url)


def test_unwritable_sqlite_location(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    with pytest.raises(DatabaseUnavailable, match="cannot create the directory"):
        SqlRunStore(f"sqlite:///{blocker}/sub/x.db")


def test_mask_url() -> None:
    assert mask_url("postgresql://u:pw@h/db") == "postgresql://u:***@h/db"
    assert mask_url("weird://u:pw@h:x:y/db") == "weird://u:***@h:x:y/db"
