"""Every audit code of SPEC §6 appears when its condition holds and disappears when the
condition is fixed, on both databases."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import delete, select, update

from ledger import Ledger, LedgerConfig
from ledger.audit import AuditReport
from ledger.db import write
from ledger.ids import short_id
from ledger.outbox import enqueue_notice
from ledger.schema import deliveries_table, events_table, tasks_table
from tests.conftest import T0

S = timedelta(seconds=1)
M = timedelta(minutes=1)
T = tasks_table.c


@pytest.fixture
def config() -> LedgerConfig:
    return LedgerConfig(reconcile_interval=timedelta(hours=1), ops_channel="slack:T1/COPS")


def codes(report: AuditReport) -> list[tuple[str, str | None]]:
    return [(f.code, f.task_id) for f in report.findings]


def found(ledger: Ledger, code: str, now: datetime) -> list[str | None]:
    return [f.task_id for f in ledger.audit(code=code, now=now).findings]


def set_task(ledger: Ledger, task_id: str, **values: Any) -> None:
    with write(ledger.engine) as conn:
        conn.execute(update(tasks_table).where(T.task_id == task_id).values(**values))


def notice(ledger: Ledger, task_id: str | None, key: str, due: datetime) -> int:
    with write(ledger.engine) as conn:
        enqueue_notice(
            conn,
            tenant="default",
            task_id=task_id,
            kind="terminal",
            target="slack:T1/C1/1700000000.000100",
            payload={"text": "done"},
            key=key,
            now=due,
            config=ledger.config,
        )
        return int(
            conn.execute(
                select(deliveries_table.c.id).where(deliveries_table.c.idempotency_key == key)
            ).scalar_one()
        )


def set_delivery(ledger: Ledger, delivery_id: int, **values: Any) -> None:
    with write(ledger.engine) as conn:
        conn.execute(
            update(deliveries_table).where(deliveries_table.c.id == delivery_id).values(**values)
        )


def test_stale_queued_appears_after_ten_minutes_and_goes_when_started(ledger: Ledger) -> None:
    task = ledger.create(runtime="cli", label="waiting", queued=True)
    assert found(ledger, "stale_queued", T0 + 9 * M) == []
    assert found(ledger, "stale_queued", T0 + 11 * M) == [task.task_id]
    finding = ledger.audit(code="stale_queued", now=T0 + 11 * M).findings[0]
    assert "tasktrail cancel" in finding.remedy and not finding.fixable

    ledger.start(task.task_id, now=T0 + 12 * M)
    assert found(ledger, "stale_queued", T0 + 12 * M) == []


def test_stale_running_appears_after_thirty_quiet_minutes_and_goes_with_a_heartbeat(
    ledger: Ledger,
) -> None:
    task = ledger.create(runtime="cli", label="long lease", lease=3 * 3600)
    assert found(ledger, "stale_running", T0 + 29 * M) == []
    report = ledger.audit(code="stale_running", now=T0 + 31 * M)
    assert codes(report) == [("stale_running", task.task_id)]
    assert report.findings[0].severity == "error"
    assert "lease runs until" in report.findings[0].remedy

    ledger.heartbeat(task.task_id, now=T0 + 32 * M)
    assert found(ledger, "stale_running", T0 + 33 * M) == []


def test_lost_appears_with_the_verdict_and_goes_when_acknowledged(ledger: Ledger) -> None:
    task = ledger.create(runtime="subagent", label="vanished")
    assert found(ledger, "lost", T0 + 11 * M) == []
    ledger.reconcile(now=T0 + 11 * M)
    report = ledger.audit(code="lost", now=T0 + 12 * M)
    assert codes(report) == [("lost", task.task_id)]
    assert "heartbeat probe" in report.findings[0].detail

    ledger.dismiss(task.task_id, now=T0 + 13 * M)
    assert found(ledger, "lost", T0 + 14 * M) == []
    assert ledger.get(task.task_id).status == "lost"


def test_delivery_failed_appears_for_a_failed_notice_and_goes_when_dismissed(
    ledger: Ledger,
) -> None:
    task = ledger.create(runtime="cli", label="notify me")
    ledger.finish(task.task_id, status="succeeded")
    delivery = notice(ledger, task.task_id, "k-failed", T0)
    assert found(ledger, "delivery_failed", T0 + M) == []
    set_delivery(ledger, delivery, status="failed", attempts=7, last_error="channel_not_found")
    report = ledger.audit(code="delivery_failed", now=T0 + M)
    assert codes(report) == [("delivery_failed", task.task_id)]
    assert "channel_not_found" in report.findings[0].detail

    ledger.set_notify(task.task_id, "silent", now=T0 + 2 * M)
    assert found(ledger, "delivery_failed", T0 + 2 * M) == []  # silent: nobody waits for it
    ledger.set_notify(task.task_id, "done_only", now=T0 + 3 * M)
    assert found(ledger, "delivery_failed", T0 + 3 * M) == [task.task_id]
    set_delivery(ledger, delivery, status="dismissed")
    assert found(ledger, "delivery_failed", T0 + 4 * M) == []


def test_delivery_stuck_appears_for_a_notice_due_ten_minutes_ago_and_goes_once_sent(
    ledger: Ledger,
) -> None:
    task = ledger.create(runtime="cli", label="notify me")
    delivery = notice(ledger, task.task_id, "k-stuck", T0)
    assert found(ledger, "delivery_stuck", T0 + 9 * M) == []
    report = ledger.audit(code="delivery_stuck", now=T0 + 11 * M)
    assert codes(report) == [("delivery_stuck", task.task_id)]
    assert "tasktrail worker" in report.findings[0].remedy

    set_delivery(ledger, delivery, status="delivered", delivered_at=T0 + 12 * M)
    assert found(ledger, "delivery_stuck", T0 + 12 * M) == []


def test_unproven_success_appears_until_the_proof_is_verified(ledger: Ledger) -> None:
    task = ledger.create(runtime="cli", label="deploy", proof_required=True)
    plain = ledger.create(runtime="cli", label="no proof asked")
    ledger.finish(plain.task_id, status="succeeded")
    assert found(ledger, "unproven_success", T0) == []
    ledger.finish(task.task_id, status="succeeded")
    assert found(ledger, "unproven_success", T0 + M) == [task.task_id]

    set_task(ledger, task.task_id, proof_status="verified")
    assert found(ledger, "unproven_success", T0 + M) == []


def test_cancel_stuck_appears_after_five_minutes_and_maintenance_finalizes_it(
    ledger: Ledger,
) -> None:
    task = ledger.create(runtime="cli", label="stubborn", runner="track")
    ledger.cancel(task.task_id, reason="wrong branch", now=T0 + M)
    assert ledger.get(task.task_id).status == "running"
    assert found(ledger, "cancel_stuck", T0 + 5 * M) == []
    report = ledger.audit(code="cancel_stuck", now=T0 + 7 * M)
    assert codes(report) == [("cancel_stuck", task.task_id)]
    assert report.findings[0].fixable

    result = ledger.maintenance(apply=True, now=T0 + 7 * M)
    assert result.actions["cancel_finalized"] == (task.task_id,)
    done = ledger.get(task.task_id)
    assert done.status == "cancelled"
    assert "runner did not confirm" in (done.terminal_summary or "")
    assert found(ledger, "cancel_stuck", T0 + 8 * M) == []


def test_inconsistent_reports_contradicting_records_and_maintenance_fixes_ended_at(
    ledger: Ledger,
) -> None:
    no_end = ledger.create(runtime="cli", label="ended without ended_at")
    ledger.finish(no_end.task_id, status="failed")
    flipped = ledger.create(runtime="cli", label="status behind its events")
    unrecorded = ledger.create(runtime="cli", label="history lost")
    assert found(ledger, "inconsistent", T0 + M) == []

    set_task(ledger, no_end.task_id, ended_at=None)
    set_task(ledger, flipped.task_id, status="queued")
    with write(ledger.engine) as conn:
        conn.execute(delete(events_table).where(events_table.c.task_id == unrecorded.task_id))
    report = ledger.audit(code="inconsistent", now=T0 + M)
    details = {f.task_id: (f.detail, f.fixable) for f in report.findings}
    assert details == {
        no_end.task_id: ("failed without ended_at", True),
        flipped.task_id: ("status queued but its events say running", False),
        unrecorded.task_id: ("status running but no event records it", False),
    }
    ledger.cancel(unrecorded.task_id, now=T0 + M)  # its cancel is recorded from here on

    ledger.maintenance(apply=True, now=T0 + 2 * M)
    ledger.start(flipped.task_id, now=T0 + 2 * M)  # the producer's start is recorded again
    assert found(ledger, "inconsistent", T0 + 3 * M) == []
    assert ledger.get(no_end.task_id).ended_at is not None


def test_missing_cleanup_appears_for_an_ended_task_without_cleanup_after(
    ledger: Ledger,
) -> None:
    task = ledger.create(runtime="cli", label="kept forever?")
    ledger.finish(task.task_id, status="succeeded")
    assert found(ledger, "missing_cleanup", T0 + M) == []
    set_task(ledger, task.task_id, cleanup_after=None)
    assert found(ledger, "missing_cleanup", T0 + M) == [task.task_id]

    ledger.maintenance(apply=True, now=T0 + 2 * M)
    assert found(ledger, "missing_cleanup", T0 + 2 * M) == []
    assert ledger.get(task.task_id).cleanup_after == T0 + timedelta(days=7)


def test_auditor_gap_appears_only_after_a_scheduled_auditor_ran_and_stopped(
    ledger: Ledger,
) -> None:
    assert found(ledger, "auditor_gap", T0 + 24 * 60 * M) == []  # never ran here: no gap
    ledger.record_auditor_pass("reconcile", timedelta(seconds=30), now=T0)
    assert found(ledger, "auditor_gap", T0 + 90 * S) == []
    report = ledger.audit(code="auditor_gap", now=T0 + 91 * S)
    assert codes(report) == [("auditor_gap", None)]
    assert report.findings[0].severity == "error"
    assert "reconcile" in report.findings[0].detail

    ledger.record_auditor_pass("reconcile", timedelta(seconds=30), now=T0 + 100 * S)
    assert found(ledger, "auditor_gap", T0 + 101 * S) == []


def test_findings_sort_errors_first_then_oldest_and_the_summary_counts_past_the_limit(
    ledger: Ledger,
) -> None:
    old_queued = ledger.create(runtime="cli", label="q1", queued=True, now=T0)
    new_queued = ledger.create(runtime="cli", label="q2", queued=True, now=T0 + 5 * M)
    stale = ledger.create(runtime="cli", label="r", lease=3 * 3600, now=T0 + 10 * M)

    report = ledger.audit(now=T0 + 45 * M)
    assert codes(report) == [
        ("stale_running", stale.task_id),
        ("stale_queued", old_queued.task_id),
        ("stale_queued", new_queued.task_id),
    ]
    limited = ledger.audit(now=T0 + 45 * M, limit=1)
    assert codes(limited) == [("stale_running", stale.task_id)]
    assert limited.summary()["total"] == 3
    assert limited.summary()["by_code"]["stale_queued"] == 2
    errors_only = ledger.audit(now=T0 + 45 * M, severity="error")
    assert codes(errors_only) == [("stale_running", stale.task_id)]
    assert errors_only.to_json()["summary"]["warnings"] == 0


def test_the_digest_is_queued_once_per_changed_set_of_error_findings(ledger: Ledger) -> None:
    first = ledger.create(runtime="cli", label="first")
    ledger.reconcile(now=T0 + 11 * M)

    assert ledger.audit_digest(ledger.audit(now=T0 + 12 * M), now=T0 + 12 * M) is True
    assert ledger.audit_digest(ledger.audit(now=T0 + 13 * M), now=T0 + 13 * M) is False
    second = ledger.create(runtime="cli", label="second", now=T0 + 13 * M)
    ledger.reconcile(now=T0 + 24 * M)
    assert ledger.audit_digest(ledger.audit(now=T0 + 25 * M), now=T0 + 25 * M) is True

    with write(ledger.engine) as conn:
        rows = conn.execute(
            select(deliveries_table).where(deliveries_table.c.kind == "audit_digest")
        ).mappings()
        digests = [dict(r) for r in rows]
    assert [d["target"] for d in digests] == ["slack:T1/COPS", "slack:T1/COPS"]
    assert all(d["task_id"] is None for d in digests)
    import json

    latest = json.loads(digests[1]["payload"])
    assert [f["task_id"] for f in latest["findings"]] == [second.task_id]
    assert short_id(first.task_id) not in latest["text"]
    assert "1 new" in latest["text"]
