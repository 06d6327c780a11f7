"""Shared fixtures: one ledger suite over SQLite always and PostgreSQL when
TASKTRAIL_TEST_POSTGRES_URL is set (CI sets it).

Each test starts from an empty, migrated ledger: migrating runs once per session (a SQLite
template file copied per test; one PostgreSQL database per session, emptied per test).
"""

from __future__ import annotations

import os
import shutil
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text

from ledger import Ledger, LedgerConfig
from ledger.db import ensure_schema, make_engine

POSTGRES_URL = os.environ.get("TASKTRAIL_TEST_POSTGRES_URL")
BACKENDS = ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)]

#: A fixed instant tests start from; they move time by passing `now=`.
T0 = datetime(2026, 1, 5, 12, 0, 0, tzinfo=UTC)


def _pg_admin_url() -> str:
    if not POSTGRES_URL:
        pytest.skip("TASKTRAIL_TEST_POSTGRES_URL is not set")
    return POSTGRES_URL


def _pg_url_for(name: str) -> str:
    return f"{_pg_admin_url().rsplit('/', 1)[0]}/{name}"


def _pg_execute(statement: str) -> None:
    admin = create_engine(_pg_admin_url(), isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as conn:
            conn.execute(text(statement))
    finally:
        admin.dispose()


@pytest.fixture(scope="session")
def _sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("template") / "ledger.db"
    engine = make_engine(f"sqlite:///{path}")
    ensure_schema(engine)
    with engine.connect() as conn:
        conn.exec_driver_sql("PRAGMA wal_checkpoint(TRUNCATE)")
    engine.dispose()
    return path


@pytest.fixture(scope="session")
def _postgres_session_db() -> Iterator[str]:
    """One migrated PostgreSQL database for this test session."""
    for url in _fresh_postgres():
        engine = make_engine(url)
        ensure_schema(engine)
        engine.dispose()
        yield url


def _fresh_postgres() -> Iterator[str]:
    name = f"tt_{uuid.uuid4().hex[:12]}"
    _pg_execute(f'CREATE DATABASE "{name}"')
    try:
        yield _pg_url_for(name)
    finally:
        _pg_execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def _emptied(url: str) -> str:
    """Empty every ledger table of the session's PostgreSQL database (milliseconds, where
    creating and migrating a database per test takes a second)."""
    engine = create_engine(url)
    try:
        with engine.begin() as conn:
            conn.execute(text("SET LOCAL lock_timeout = '10s'"))
            tables = conn.execute(
                text(
                    "SELECT tablename FROM pg_tables WHERE schemaname = 'public' "
                    "AND tablename <> 'alembic_version'"
                )
            ).scalars()
            names = ", ".join(f'"{t}"' for t in tables)
            if names:
                conn.execute(text(f"TRUNCATE {names} RESTART IDENTITY CASCADE"))
    finally:
        engine.dispose()
    return url


@pytest.fixture(params=BACKENDS)
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """The URL of a fresh, migrated database, on each backend."""
    if request.param == "sqlite":
        template: Path = request.getfixturevalue("_sqlite_template")
        target = tmp_path / "ledger.db"
        shutil.copyfile(template, target)
        os.chmod(target, 0o600)
        yield f"sqlite:///{target}"
    else:
        yield _emptied(request.getfixturevalue("_postgres_session_db"))


@pytest.fixture(params=BACKENDS)
def empty_db_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """The URL of an empty database (no schema yet), on each backend."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'empty.db'}"
    else:
        _pg_admin_url()
        yield from _fresh_postgres()


@pytest.fixture
def sqlite_url(tmp_path: Path, _sqlite_template: Path) -> str:
    """A fresh, migrated SQLite ledger file."""
    target = tmp_path / "ledger.db"
    shutil.copyfile(_sqlite_template, target)
    os.chmod(target, 0o600)
    return f"sqlite:///{target}"


@pytest.fixture
def config() -> LedgerConfig:
    return LedgerConfig()


@pytest.fixture
def ledger(db_url: str, config: LedgerConfig) -> Iterator[Ledger]:
    """A migrated ledger on each backend whose clock stands still at T0 unless a test
    passes `now=`."""
    instance = Ledger.connect(db_url, config)
    instance.clock = lambda: T0
    try:
        yield instance
    finally:
        instance.close()
