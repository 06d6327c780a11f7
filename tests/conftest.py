"""Shared fixtures: one ledger suite over SQLite always and PostgreSQL when
TASKTRAIL_TEST_POSTGRES_URL is set (CI sets it)."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text

from ledger import Ledger, LedgerConfig

POSTGRES_URL = os.environ.get("TASKTRAIL_TEST_POSTGRES_URL")
BACKENDS = ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)]

#: A fixed instant tests start from; they move time by passing `now=`.
T0 = datetime(2026, 1, 5, 12, 0, 0, tzinfo=UTC)


def _postgres_database() -> Iterator[str]:
    """A fresh database per test on the PostgreSQL server (dropped afterwards)."""
    if not POSTGRES_URL:
        pytest.skip("TASKTRAIL_TEST_POSTGRES_URL is not set")
    name = f"tt_{uuid.uuid4().hex[:12]}"
    admin = create_engine(POSTGRES_URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    base = POSTGRES_URL.rsplit("/", 1)[0]
    try:
        yield f"{base}/{name}"
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


@pytest.fixture(params=BACKENDS)
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A URL of an empty database, on each backend."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'ledger.db'}"
    else:
        yield from _postgres_database()


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'ledger.db'}"


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
