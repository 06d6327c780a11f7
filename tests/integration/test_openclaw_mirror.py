"""The live mirror: OpenClaw's changes flow through tasktrail's state machine, bad rows are
skipped with a reason, and the source is never written, even while OpenClaw writes to it."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import textwrap
import time
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import select

from ledger import Ledger, Status
from ledger.importers import OpenClawSourceError, openclaw_watch_job
from ledger.reconcile import reconcile
from ledger.schema import tasks_table
from tests.conftest import T0
from tests.integration.openclaw_helpers import (
    copy_sample,
    mirror_counts,
    mirror_versions,
    next_event_ms,
    one_source_row,
    source_counts,
    source_query,
    source_write,
)


@pytest.fixture
def source(tmp_path: Path) -> Path:
    return copy_sample(tmp_path / "openclaw")


def test_a_status_change_and_new_summary_in_openclaw_are_mirrored(
    ledger: Ledger, source: Path
) -> None:
    ref, _ = one_source_row(source, "status = 'running'")
    ledger.import_openclaw(source)
    last = next_event_ms(source)
    source_write(
        source,
        "UPDATE task_runs SET status = 'succeeded', terminal_summary = 'report written', "
        "ended_at = ?, last_event_at = ?, cleanup_after = ? WHERE task_id = ?",
        (last + 5000, last + 5000, last + 86_400_000, ref),
    )

    report = ledger.import_openclaw(source)

    assert (report.created, report.updated, report.refused) == (0, 1, 0)
    task = ledger.get(ref)
    assert task.status is Status.SUCCEEDED
    assert task.terminal_summary == "report written"
    last_event = ledger.events(ref)[-1]
    assert (last_event.kind, last_event.from_status, last_event.to_status) == (
        "finished",
        "running",
        "succeeded",
    )
    assert last_event.actor == "openclaw"


def test_a_new_progress_summary_alone_is_recorded_as_a_mirrored_event(
    ledger: Ledger, source: Path
) -> None:
    ref, _ = one_source_row(source, "status = 'running'")
    ledger.import_openclaw(source)
    last = next_event_ms(source)
    version = ledger.get(ref).version
    source_write(
        source,
        "UPDATE task_runs SET progress_summary = 'half way', last_event_at = ? WHERE task_id = ?",
        (last + 1000, ref),
    )

    report = ledger.import_openclaw(source)

    task = ledger.get(ref)
    assert report.updated == 1
    assert task.status is Status.RUNNING
    assert task.progress_summary == "half way"
    assert task.version == version + 1
    assert ledger.events(ref)[-1].kind == "mirrored"


def test_a_terminal_mirror_is_not_downgraded_and_the_refusal_is_recorded_once(
    ledger: Ledger, source: Path
) -> None:
    ref, _ = one_source_row(source, "status = 'succeeded'")
    ledger.import_openclaw(source)
    last = next_event_ms(source)
    source_write(
        source,
        "UPDATE task_runs SET status = 'running', ended_at = NULL, last_event_at = ? "
        "WHERE task_id = ?",
        (last + 1000, ref),
    )

    report = ledger.import_openclaw(source)
    again = ledger.import_openclaw(source)

    assert report.refused == 1
    assert again.refused == 0
    assert ledger.get(ref).status is Status.SUCCEEDED
    kinds = [e.kind for e in ledger.events(ref)]
    assert kinds.count("late_update_ignored") == 1


def test_a_lost_task_that_openclaw_later_finished_is_recovered(
    ledger: Ledger, source: Path
) -> None:
    ref, _ = one_source_row(source, "status = 'lost'")
    ledger.import_openclaw(source)
    last = next_event_ms(source)
    source_write(
        source,
        "UPDATE task_runs SET status = 'failed', error = 'late truth', last_event_at = ? "
        "WHERE task_id = ?",
        (last + 1000, ref),
    )

    ledger.import_openclaw(source)

    task = ledger.get(ref)
    assert task.status is Status.FAILED
    assert task.error == "late truth"
    assert ledger.events(ref)[-1].kind == "recovered"


def test_corrupted_rows_are_skipped_with_a_reason_and_the_rest_import(
    ledger: Ledger, source: Path
) -> None:
    bad_status, _ = one_source_row(source, "status = 'failed'")
    bad_runtime, _ = one_source_row(source, "runtime = 'cli'")
    source_write(
        source, "UPDATE task_runs SET status = 'exploded' WHERE task_id = ?", (bad_status,)
    )
    source_write(source, "UPDATE task_runs SET runtime = 'media' WHERE task_id = ?", (bad_runtime,))
    (total,) = source_query(source, "SELECT count(*) FROM task_runs")[0]

    report = ledger.import_openclaw(source)

    assert report.skipped == 2
    assert report.created == total - 2
    reasons = {s.openclaw_task_id: s.reason for s in report.skipped_rows}
    assert "status 'exploded'" in reasons[bad_status]
    assert "runtime 'media'" in reasons[bad_runtime]
    assert {s["openclaw_task_id"] for s in report.to_json()["skipped_rows"]} == set(reasons)
    mirrored = mirror_versions(ledger)
    assert bad_status not in mirrored
    assert bad_runtime not in mirrored


def test_rows_pruned_by_openclaw_stay_in_tasktrail(ledger: Ledger, source: Path) -> None:
    ledger.import_openclaw(source)
    pruned = source_write(source, "DELETE FROM task_runs WHERE status = 'succeeded'")
    assert pruned > 0

    ledger.import_openclaw(source)

    assert mirror_counts(ledger, "status")["succeeded"] == pruned


def test_mirrored_running_tasks_are_never_reconciled_to_lost(ledger: Ledger, source: Path) -> None:
    ledger.import_openclaw(source)
    running = mirror_counts(ledger, "status")["running"]

    for hours in (1, 2, 48):
        reconcile(ledger.engine, ledger.config, now=T0 + timedelta(hours=hours))

    assert mirror_counts(ledger, "status")["running"] == running


def test_the_source_file_is_never_written(ledger: Ledger, source: Path) -> None:
    os.chmod(source, 0o444)
    digest = hashlib.sha256(source.read_bytes()).hexdigest()
    mtime = source.stat().st_mtime_ns

    ledger.import_openclaw(source)
    ledger.import_openclaw(source)
    assert openclaw_watch_job(ledger, source.parent.parent, "default") is not None

    assert hashlib.sha256(source.read_bytes()).hexdigest() == digest
    assert source.stat().st_mtime_ns == mtime


def test_a_missing_or_foreign_database_is_a_clear_error(ledger: Ledger, tmp_path: Path) -> None:
    with pytest.raises(OpenClawSourceError, match="not found"):
        ledger.import_openclaw(tmp_path / "nowhere.sqlite")
    other = tmp_path / "other.sqlite"
    source_write(other, "CREATE TABLE t (x)")
    with pytest.raises(OpenClawSourceError, match="no task_runs table"):
        ledger.import_openclaw(other)
    assert openclaw_watch_job(ledger, tmp_path / "nowhere", "default") is None


WRITER = textwrap.dedent(
    """
    import sqlite3, sys, time, uuid
    path, rounds = sys.argv[1], int(sys.argv[2])
    conn = sqlite3.connect(path, isolation_level=None, timeout=30)
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    (clock,) = conn.execute("SELECT max(last_event_at) FROM task_runs").fetchone()
    template = conn.execute(
        "SELECT * FROM task_runs WHERE status = 'queued' LIMIT 1"
    ).fetchone()
    columns = [d[0] for d in conn.execute("SELECT * FROM task_runs LIMIT 0").description]
    marks = ", ".join("?" for _ in columns)
    for i in range(rounds):
        clock += 7
        conn.execute("BEGIN IMMEDIATE")
        row = dict(zip(columns, template))
        row.update(task_id=str(uuid.uuid4()), run_id=None, created_at=clock,
                   last_event_at=clock, label=f"writer {i}")
        conn.execute(f"INSERT INTO task_runs VALUES ({marks})", [row[c] for c in columns])
        conn.execute(
            "UPDATE task_runs SET status = 'running', started_at = ?, last_event_at = ? "
            "WHERE task_id = (SELECT task_id FROM task_runs WHERE status = 'queued' "
            "ORDER BY task_id LIMIT 1)",
            (clock, clock),
        )
        conn.execute(
            "UPDATE task_runs SET status = 'succeeded', ended_at = ?, last_event_at = ? "
            "WHERE task_id = (SELECT task_id FROM task_runs WHERE status = 'running' "
            "ORDER BY task_id LIMIT 1)",
            (clock + 1, clock + 1),
        )
        time.sleep(0.002)  # hold the write lock a moment, as a busy gateway does
        conn.execute("COMMIT")
    conn.close()
    """
)


def test_importing_while_openclaw_writes_to_the_source_in_wal_mode(
    ledger: Ledger, source: Path, tmp_path: Path
) -> None:
    script = tmp_path / "writer.py"
    script.write_text(WRITER)
    writer = subprocess.Popen([sys.executable, str(script), str(source), "300"])
    passes = 0
    try:
        while writer.poll() is None:
            ledger.import_openclaw(source)
            passes += 1
            time.sleep(0.01)
    finally:
        assert writer.wait(timeout=60) == 0
    final = ledger.import_openclaw(source)

    assert passes >= 2
    assert final.skipped == 0
    assert mirror_counts(ledger, "status") == source_counts(source, "status")
    statuses = dict(source_query(source, "SELECT task_id, status FROM task_runs"))
    with ledger.engine.connect() as conn:
        rows = conn.execute(select(tasks_table.c.origin_ref, tasks_table.c.status)).all()
    assert {ref: status for ref, status in rows} == statuses


def test_audit_flags_rows_openclaw_left_running_and_maintenance_leaves_them_running(
    ledger: Ledger, source: Path
) -> None:
    ledger.import_openclaw(source)
    (newest,) = source_query(
        source, "SELECT max(last_event_at) FROM task_runs WHERE status = 'running'"
    )[0]
    later = ledger.get(one_source_row(source, f"last_event_at = {newest}")[0]).last_event_at
    now = later + ledger.config.stale_running + timedelta(minutes=1)
    running = {t.task_id for t in ledger.list(status=["running"], limit=None)}

    report = ledger.audit(now=now, code="stale_running")
    ledger.maintenance(apply=True, now=now)

    flagged = {f.task_id for f in report.findings}
    assert flagged == running
    assert all("openclaw" in f.remedy and not f.fixable for f in report.findings)
    assert {t.task_id for t in ledger.list(status=["running"], limit=None)} == running


def test_with_notify_from_tasktrail_new_work_is_announced_but_history_is_not(
    ledger: Ledger, source: Path
) -> None:
    tenant = "slack:T0123"
    first = ledger.import_openclaw(source, tenant=tenant, notify_from_tasktrail=True)
    assert first.created > 0
    assert ledger.deliveries(tenant=tenant, limit=None) == ()

    ref, _ = one_source_row(
        source,
        "status = 'running' AND task_id IN (SELECT task_id FROM task_delivery_state WHERE "
        "json_extract(requester_origin_json, '$.channel') = 'slack') "
        "AND notify_policy != 'silent'",
    )
    at = next_event_ms(source)
    source_write(
        source,
        "UPDATE task_runs SET status = 'succeeded', terminal_summary = 'done', ended_at = ?, "
        "last_event_at = ? WHERE task_id = ?",
        (at, at, ref),
    )
    ledger.import_openclaw(source, tenant=tenant, notify_from_tasktrail=True)

    task = ledger.get(ref, tenant=tenant)
    notices = ledger.deliveries(tenant=tenant, task=ref, limit=None)
    assert [(d.kind, d.target) for d in notices] == [("terminal", str(task.reply_to))]
    assert task.delivery_status == "pending"


def test_a_delivery_status_settled_without_a_new_event_time_is_still_mirrored(
    ledger: Ledger, source: Path
) -> None:
    ref, _ = one_source_row(source, "delivery_status = 'pending' AND status = 'succeeded'")
    other, _ = one_source_row(source, "status = 'running'")
    at = next_event_ms(source)
    source_write(source, "UPDATE task_runs SET last_event_at = ? WHERE task_id = ?", (at, ref))
    # a later event elsewhere: the watermark moves past the task
    source_write(
        source,
        "UPDATE task_runs SET progress_summary = 'x', last_event_at = ? WHERE task_id = ?",
        (at + 60_000, other),
    )
    ledger.import_openclaw(source)
    source_write(
        source, "UPDATE task_runs SET delivery_status = 'session_queued' WHERE task_id = ?", (ref,)
    )

    report = ledger.import_openclaw(source)

    task = ledger.get(ref)
    assert report.updated == 1
    assert task.delivery_status == "delivered"
    assert task.origin_detail is not None
    assert task.origin_detail["delivery_status"] == "session_queued"
    assert ledger.events(ref)[-1].summary == "OpenClaw changed delivery_status, origin_detail"
