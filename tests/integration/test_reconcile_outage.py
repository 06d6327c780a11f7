"""The outage guard: no burst of false "lost" after the auditor was down (SPEC §4)."""

from __future__ import annotations

from datetime import timedelta

from ledger import Ledger
from tests.conftest import T0

S = timedelta(seconds=1)
M = timedelta(minutes=1)


def test_after_an_hour_without_passes_running_tasks_get_one_grace_window_first(
    ledger: Ledger,
) -> None:
    tasks = [ledger.create(runtime="subagent", label=f"agent {i}") for i in range(100)]
    alive = {t.task_id for t in tasks[:40]}
    silent = {t.task_id for t in tasks[40:]}
    assert ledger.reconcile(now=T0).marked_lost == ()
    # The auditor is down for an hour; the live producers kept heartbeating.
    for task_id in alive:
        ledger.heartbeat(task_id, now=T0 + 58 * M)

    first = ledger.reconcile(now=T0 + 60 * M)

    assert first.outage is True
    assert first.marked_lost == ()
    assert set(first.grace_granted) == silent
    assert {t.status for t in ledger.list(limit=None)} == {"running"}
    assert ledger.get(tasks[50].task_id).grace_until == T0 + 65 * M

    # The auditor runs normally again (every 30 s); live producers heartbeat every 2 min.
    lost: set[str] = set()
    now = T0 + 60 * M
    while now < T0 + 66 * M:
        now += 30 * S
        if (now - T0) % (2 * M) == timedelta(0):
            for task_id in alive:
                ledger.heartbeat(task_id, now=now)
        report = ledger.reconcile(now=now)
        assert report.outage is False
        if now < T0 + 65 * M:
            assert report.marked_lost == ()
        lost.update(report.marked_lost)

    assert lost == silent
    statuses = {t.task_id: t.status for t in ledger.list(limit=None)}
    assert {statuses[i] for i in alive} == {"running"}
    assert {statuses[i] for i in silent} == {"lost"}


def test_a_second_outage_does_not_grant_a_task_its_grace_twice(ledger: Ledger) -> None:
    task = ledger.create(runtime="cli", label="gone quiet")
    ledger.reconcile(now=T0)

    first = ledger.reconcile(now=T0 + 60 * M)
    assert first.grace_granted == (task.task_id,)
    second = ledger.reconcile(now=T0 + 120 * M)

    assert second.outage is True
    assert second.grace_granted == ()
    assert second.marked_lost == (task.task_id,)
    assert [e.kind for e in ledger.events(task.task_id)] == [
        "created",
        "grace_granted",
        "marked_lost",
    ]


def test_a_preview_pass_decides_without_writing_or_recording_itself(ledger: Ledger) -> None:
    task = ledger.create(runtime="cli", label="quiet")
    ledger.reconcile(now=T0)

    preview = ledger.reconcile(now=T0 + 60 * M, apply=False)

    assert preview.grace_granted == (task.task_id,)
    assert ledger.get(task.task_id).grace_until is None
    assert ledger.reconcile(now=T0 + 60 * M).outage is True  # the preview was not a pass
