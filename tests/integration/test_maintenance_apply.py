"""Maintenance: preview never writes; --apply fixes what it claims to; retention prunes in
batches (SPEC §7), on both databases."""

from __future__ import annotations

import hashlib
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select, text, update

from ledger import Ledger, LedgerConfig
from ledger.db import write
from ledger.maintenance import prune
from ledger.outbox import enqueue_notice
from ledger.schema import (
    artifacts_table,
    deliveries_table,
    events_table,
    followers_table,
    tasks_table,
)
from tests.conftest import T0

S = timedelta(seconds=1)
M = timedelta(minutes=1)
D = timedelta(days=1)
T = tasks_table.c
TABLES = (
    "tasks",
    "task_events",
    "artifacts",
    "deliveries",
    "followers",
    "cron_runs",
    "ledger_state",
)


@pytest.fixture
def config() -> LedgerConfig:
    return LedgerConfig(retention_failed=timedelta(days=30))


def set_task(ledger: Ledger, task_id: str, **values: Any) -> None:
    with write(ledger.engine) as conn:
        conn.execute(update(tasks_table).where(T.task_id == task_id).values(**values))


def checksum(ledger: Ledger) -> str:
    """Every row of every ledger table, and on SQLite the database file's bytes."""
    digest = hashlib.sha256()
    with ledger.engine.connect() as conn:
        if conn.dialect.name == "sqlite":
            conn.exec_driver_sql("PRAGMA wal_checkpoint(TRUNCATE)")
            database = ledger.engine.url.database
            assert database
            digest.update(Path(database).read_bytes())
            wal = Path(database + "-wal")
            if wal.exists():
                digest.update(wal.read_bytes())
        for table in TABLES:
            for row in conn.execute(text(f"SELECT * FROM {table} ORDER BY 1")):
                digest.update(repr(tuple(row)).encode())
    return digest.hexdigest()


def untidy_ledger(ledger: Ledger, now: datetime) -> dict[str, str]:
    """One task for each thing maintenance fixes, one for each it must leave alone."""
    start = now - 60 * D
    ids: dict[str, str] = {}
    old = ledger.create(runtime="cli", label="old success", now=start)
    ledger.finish(old.task_id, status="succeeded", now=start + M)
    ledger.add_artifact(old.task_id, kind="commit", value="abc123", now=start + M)
    ids["expired"] = old.task_id
    failed = ledger.create(runtime="cli", label="failed 20 days ago", now=now - 20 * D)
    ledger.finish(failed.task_id, status="failed", error="boom", now=now - 20 * D)
    ids["kept_failure"] = failed.task_id
    # Lease expired 5m10s ago: its grace window ended 10 s ago.
    quiet = ledger.create(runtime="subagent", label="went quiet", now=now - 10 * M - 10 * S)
    ids["to_lose"] = quiet.task_id
    stubborn = ledger.create(runtime="cli", label="ignores cancel", runner="run", now=now - 9 * M)
    ledger.cancel(stubborn.task_id, now=now - 8 * M)
    ledger.heartbeat(stubborn.task_id, now=now - M)
    ids["cancel"] = stubborn.task_id
    no_cleanup = ledger.create(runtime="cli", label="no cleanup", now=now - 2 * D)
    ledger.finish(no_cleanup.task_id, status="succeeded", now=now - 2 * D)
    set_task(ledger, no_cleanup.task_id, cleanup_after=None)
    ids["stamp"] = no_cleanup.task_id
    no_end = ledger.create(runtime="cli", label="no ended_at", now=now - 2 * D)
    ledger.finish(no_end.task_id, status="timed_out", now=now - 2 * D)
    set_task(ledger, no_end.task_id, ended_at=None)
    ids["ended_at"] = no_end.task_id
    waiting = ledger.create(runtime="cli", label="never started", queued=True, now=now - 3 * D)
    ids["queued"] = waiting.task_id
    claimed = ledger.create(runtime="cli", label="notice held by a dead worker", now=now - 20 * M)
    ledger.heartbeat(claimed.task_id, now=now - M)
    with write(ledger.engine) as conn:
        enqueue_notice(
            conn,
            tenant="default",
            task_id=claimed.task_id,
            kind="started",
            target="slack:T1/C1",
            payload={"text": "started"},
            key="dead-claim",
            now=now - 20 * M,
            config=ledger.config,
        )
        conn.execute(
            update(deliveries_table)
            .where(deliveries_table.c.idempotency_key == "dead-claim")
            .values(claimed_by="worker-gone", claim_expires_at=now - 15 * M)
        )
    ids["delivery"] = claimed.task_id
    ledger.reconcile(now=now - 20 * S)  # the auditor ran just now: no outage guard
    return ids


def test_a_preview_never_writes(ledger: Ledger) -> None:
    now = T0 + 90 * D
    ids = untidy_ledger(ledger, now)
    before = checksum(ledger)

    report = ledger.maintenance(now=now)

    assert checksum(ledger) == before
    assert report.mode == "preview"
    assert report.actions["pruned"] == (ids["expired"],)
    assert report.actions["marked_lost"] == (ids["to_lose"],)
    assert report.actions["cancel_finalized"] == (ids["cancel"],)
    assert report.actions["deliveries_requeued"] == (ids["delivery"],)
    assert report.actions["cleanup_stamped"] == (ids["stamp"],)
    assert report.actions["ended_at_fixed"] == (ids["ended_at"],)
    assert report.to_json()["audit_after"]["projected"] is True


def test_apply_fixes_everything_it_claims_to_and_leaves_the_rest_with_a_remedy(
    ledger: Ledger,
) -> None:
    now = T0 + 90 * D
    ids = untidy_ledger(ledger, now)
    preview = ledger.maintenance(now=now)

    report = ledger.maintenance(apply=True, now=now)

    assert report.mode == "apply"
    assert report.actions["pruned"] == preview.actions["pruned"]
    assert report.actions["marked_lost"] == preview.actions["marked_lost"]
    assert report.actions["cancel_finalized"] == preview.actions["cancel_finalized"]
    assert report.actions["cleanup_stamped"] == preview.actions["cleanup_stamped"]
    assert report.audit_after["by_code"] == preview.audit_after["by_code"]
    after = ledger.audit(now=now)
    assert [f for f in after.findings if f.fixable] == []
    assert {(f.code, f.task_id) for f in after.findings} == {
        ("lost", ids["to_lose"]),
        ("stale_queued", ids["queued"]),
        ("delivery_stuck", ids["delivery"]),
    }
    assert {(f.code, f.task_id) for f in report.remaining} == {
        ("lost", ids["to_lose"]),
        ("stale_queued", ids["queued"]),
        ("delivery_stuck", ids["delivery"]),
    }
    assert ledger.get(ids["queued"]).status == "queued"
    assert ledger.get(ids["cancel"]).status == "cancelled"
    assert ledger.get(ids["kept_failure"]).status == "failed"
    delivery = ledger.get(ids["delivery"], details=True).deliveries[0]
    assert delivery.claimed_by is None


def test_prune_deletes_expired_tasks_with_their_rows_in_small_batches(ledger: Ledger) -> None:
    expired = []
    for i in range(7):
        task = ledger.create(runtime="cli", label=f"old {i}", reply_to="slack:T1/C1")
        ledger.add_artifact(task.task_id, kind="url", value="https://example.com")
        ledger.finish(task.task_id, status="succeeded", now=T0 + M)
        expired.append(task.task_id)
    fresh = ledger.create(runtime="cli", label="recent", now=T0 + 6 * D)
    ledger.finish(fresh.task_id, status="succeeded", now=T0 + 6 * D)
    running = ledger.create(runtime="cli", label="still running")
    set_task(ledger, running.task_id, cleanup_after=T0)  # never prune active work
    with write(ledger.engine) as conn:
        conn.execute(
            followers_table.insert().values(
                task_id=expired[0],
                address="slack:T1/C9",
                channel_key="slack:T1/C9",
                created_by=None,
                created_at=T0,
            )
        )

    pruned = prune(ledger.engine, now=T0 + 8 * D, batch_size=3, pause=0)

    assert sorted(pruned) == sorted(expired)
    remaining = {t.task_id for t in ledger.list(limit=None)}
    assert remaining == {fresh.task_id, running.task_id}
    with ledger.engine.connect() as conn:
        for table in (events_table, artifacts_table, deliveries_table, followers_table):
            left = conn.execute(
                select(func.count()).where(table.c.task_id.in_(expired))
            ).scalar_one()
            assert left == 0, table.name


def test_failures_are_kept_for_their_own_retention(ledger: Ledger) -> None:
    ok = ledger.create(runtime="cli", label="ok")
    ledger.finish(ok.task_id, status="succeeded")
    bad = ledger.create(runtime="cli", label="bad")
    ledger.finish(bad.task_id, status="failed")

    report = ledger.maintenance(apply=True, now=T0 + 8 * D)

    assert report.actions["pruned"] == (ok.task_id,)
    assert ledger.get(bad.task_id).cleanup_after == T0 + 30 * D
    assert ledger.maintenance(apply=True, now=T0 + 31 * D).actions["pruned"] == (bad.task_id,)
