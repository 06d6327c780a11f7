"""The Alembic migrations create exactly the models' schema, on both databases."""

from __future__ import annotations

import os
import stat

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import create_engine

from ledger import Ledger
from ledger.db import current_revision, make_engine
from ledger.migrate import head_revision
from ledger.schema import SCHEMA_REVISION, metadata


def test_the_code_expects_the_newest_migration() -> None:
    assert head_revision() == SCHEMA_REVISION


def test_migrations_produce_exactly_the_models_schema(empty_db_url: str) -> None:
    ledger = Ledger.connect(empty_db_url)  # first use migrates
    try:
        assert current_revision(ledger.engine) == SCHEMA_REVISION
        with ledger.engine.connect() as conn:
            context = MigrationContext.configure(conn, opts={"compare_type": True})
            differences = compare_metadata(context, metadata)
        assert differences == []
    finally:
        ledger.close()


def test_a_second_connect_finds_the_schema_current_and_runs_no_migration(
    empty_db_url: str,
) -> None:
    Ledger.connect(empty_db_url).close()
    engine = make_engine(empty_db_url)
    try:
        assert current_revision(engine) == SCHEMA_REVISION
    finally:
        engine.dispose()
    # If a migration ran again it would fail on the existing tables.
    Ledger.connect(empty_db_url).close()


def test_sqlite_ledger_file_is_private_and_in_wal_mode(tmp_path: os.PathLike[str]) -> None:
    path = os.path.join(tmp_path, "sub", "ledger.db")
    ledger = Ledger.connect(f"sqlite:///{path}")
    try:
        ledger.create(runtime="cli", label="x")
        mode = stat.S_IMODE(os.stat(path).st_mode)
        assert mode == 0o600
        with ledger.engine.connect() as conn:
            assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
            assert conn.exec_driver_sql("PRAGMA synchronous").scalar() == 1  # NORMAL
            assert conn.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1
            assert conn.exec_driver_sql("PRAGMA busy_timeout").scalar() >= 1000
    finally:
        ledger.close()


def test_an_unknown_schema_revision_is_refused_with_a_clear_error(
    tmp_path: os.PathLike[str],
) -> None:
    path = os.path.join(tmp_path, "future.db")
    Ledger.connect(f"sqlite:///{path}").close()
    raw = create_engine(f"sqlite:///{path}")
    with raw.begin() as conn:
        conn.exec_driver_sql("UPDATE alembic_version SET version_num = '9999'")
    raw.dispose()
    import pytest

    from ledger.exceptions import SchemaMismatch

    with pytest.raises(SchemaMismatch, match="9999"):
        Ledger.connect(f"sqlite:///{path}")


def test_upgrading_a_0001_sqlite_ledger_keeps_its_tasks_and_narrows_the_board_indexes(
    tmp_path: os.PathLike[str],
) -> None:
    from sqlalchemy import text

    from ledger.migrate import upgrade

    url = f"sqlite:///{tmp_path}/old.db"
    engine = make_engine(url)
    upgrade(engine, "0001")
    old = Ledger(engine, Ledger.connect(url, migrate=False).config)
    in_channel = old.create(
        runtime="cli", label="asked in #builds", reply_to="slack:T1/C1/1.2@U1", tenant="slack:T1"
    )
    nowhere = old.create(runtime="cron", label="nightly", tenant="slack:T1")
    engine.dispose()

    ledger = Ledger.connect(url)  # migrates to the newest revision
    try:
        assert current_revision(ledger.engine) == SCHEMA_REVISION == "0002"
        assert {t.task_id for t in ledger.list(tenant="slack:T1")} == {
            in_channel.task_id,
            nowhere.task_id,
        }
        with ledger.engine.connect() as conn:
            ddl = dict(
                conn.execute(
                    text("SELECT name, sql FROM sqlite_master WHERE name LIKE 'ix_tasks_tenant_%'")
                ).all()
            )
            plan = conn.execute(
                text(
                    "EXPLAIN QUERY PLAN SELECT task_id FROM tasks WHERE tenant = :t AND "
                    "reply_channel = :c AND status = 'running' ORDER BY created_at DESC LIMIT 10"
                ),
                {"t": "slack:T1", "c": "slack:T1/C1"},
            ).all()
        assert ddl["ix_tasks_tenant_channel"].endswith("WHERE reply_channel IS NOT NULL")
        assert ddl["ix_tasks_tenant_reply_user"].endswith("WHERE reply_user IS NOT NULL")
        assert "ix_tasks_tenant_channel" in str(plan)
        board = ledger.board(tenant="slack:T1", channel_key="slack:T1/C1")
        shown = [t.task_id for part in board.groups for t in part.tasks]
        assert shown == [in_channel.task_id]
    finally:
        ledger.close()
