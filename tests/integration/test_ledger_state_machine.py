"""The SPEC §3 state machine on real databases: every allowed and every refused move."""

from __future__ import annotations

import itertools
from datetime import timedelta

import pytest
from sqlalchemy import select

from ledger import IllegalTransition, Ledger, Status
from ledger import db as ledger_db
from ledger.lookup import fetch_row
from ledger.schema import events_table
from ledger.status import ALLOWED, TERMINAL
from ledger.transitions import Refused, transition
from tests.conftest import T0


def _task_in(ledger: Ledger, status: Status) -> str:
    """A task brought to `status` through the public API (lost through the transition
    function, as the reconciler does)."""
    task = ledger.create(runtime="subagent", label=f"to {status}", queued=True)
    if status is Status.QUEUED:
        return task.task_id
    if status is Status.LOST:
        with ledger_db.write(ledger.engine) as conn:
            row = fetch_row(conn, task.task_id)
            assert row is not None
            transition(
                conn,
                row,
                Status.LOST,
                now=T0,
                config=ledger.config,
                actor="reconciler",
                summary="no heartbeat",
            )
        return task.task_id
    ledger.start(task.task_id)
    if status is not Status.RUNNING:
        ledger.finish(task.task_id, status=status.value)
    return task.task_id


PAIRS = list(itertools.product(list(Status), list(Status)))


@pytest.mark.parametrize(("current", "requested"), PAIRS, ids=lambda s: s.value)
def test_every_move_is_allowed_or_refused_exactly_as_the_table_says(
    ledger: Ledger, current: Status, requested: Status
) -> None:
    task_id = _task_in(ledger, current)
    allowed = requested in ALLOWED[current]
    with ledger_db.write(ledger.engine) as conn:
        row = fetch_row(conn, task_id)
        assert row is not None
        if allowed:
            new_row = transition(
                conn,
                row,
                requested,
                now=T0 + timedelta(seconds=5),
                config=ledger.config,
                actor="test",
            )
            assert new_row is not None
        else:
            with pytest.raises(Refused):
                transition(conn, row, requested, now=T0, config=ledger.config, actor="test")
    stored = ledger.get(task_id)
    assert stored.status is (requested if allowed else current)


@pytest.mark.parametrize("terminal", sorted(TERMINAL), ids=str)
def test_a_refused_finish_raises_and_leaves_a_late_update_ignored_event(
    ledger: Ledger, terminal: Status
) -> None:
    task_id = _task_in(ledger, terminal)
    other = "failed" if terminal is not Status.FAILED else "succeeded"
    with pytest.raises(IllegalTransition) as refused:
        ledger.finish(task_id, status=other)
    assert refused.value.task_id == task_id
    assert refused.value.current == terminal.value
    assert refused.value.requested == other
    assert task_id in str(refused.value) and terminal.value in str(refused.value)
    events = ledger.events(task_id)
    assert events[-1].kind == "late_update_ignored"
    assert events[-1].from_status == terminal.value and events[-1].to_status == other
    assert ledger.get(task_id).status is terminal


def test_late_truth_after_lost_is_recorded_as_recovered(ledger: Ledger) -> None:
    task_id = _task_in(ledger, Status.LOST)
    task = ledger.finish(
        task_id, status="succeeded", summary="it did finish", now=T0 + timedelta(minutes=20)
    )
    assert task.status is Status.SUCCEEDED
    kinds = [e.kind for e in ledger.events(task_id)]
    assert kinds[-1] == "recovered"
    assert ledger.events(task_id)[-1].from_status == "lost"


def test_start_is_a_no_op_on_a_running_task(ledger: Ledger) -> None:
    task = ledger.create(runtime="cli", label="build")
    again = ledger.start(task.task_id, now=T0 + timedelta(minutes=1))
    assert again.status is Status.RUNNING
    assert again.version == task.version
    assert [e.kind for e in ledger.events(task.task_id)] == ["created"]


def test_timestamps_are_normalized_when_producer_clocks_drift(ledger: Ledger) -> None:
    task = ledger.create(runtime="cli", label="drift", queued=True, now=T0)
    started = ledger.start(task.task_id, now=T0 - timedelta(minutes=3))
    finished = ledger.finish(task.task_id, status="succeeded", now=T0 - timedelta(minutes=9))
    assert started.started_at is not None and finished.ended_at is not None
    assert finished.created_at <= finished.started_at <= finished.ended_at  # type: ignore[operator]
    assert finished.cleanup_after == finished.ended_at + ledger.config.retention


def test_each_event_has_the_next_sequence_number(ledger: Ledger) -> None:
    task = ledger.create(runtime="cli", label="seq", queued=True)
    ledger.start(task.task_id)
    ledger.progress(task.task_id, "half way")
    ledger.finish(task.task_id, status="succeeded")
    with pytest.raises(IllegalTransition):
        ledger.finish(task.task_id, status="failed")
    with ledger_db.read(ledger.engine) as conn:
        seqs = (
            conn.execute(
                select(events_table.c.seq)
                .where(events_table.c.task_id == task.task_id)
                .order_by(events_table.c.seq)
            )
            .scalars()
            .all()
        )
    assert seqs == [1, 2, 3, 4, 5]
    assert ledger.get(task.task_id).version == 5
