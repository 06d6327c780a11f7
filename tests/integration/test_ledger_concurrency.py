"""Concurrent writers in separate processes, on SQLite and PostgreSQL."""

from __future__ import annotations

import multiprocessing as mp
from typing import Any

import pytest
from sqlalchemy import func, select

from ledger import IllegalTransition, Ledger
from ledger import db as ledger_db
from ledger.schema import events_table, tasks_table

_CTX = mp.get_context("spawn")


def _finish_racer(url: str, task_id: str, status: str, barrier: Any, out: Any) -> None:
    ledger = Ledger.connect(url, actor=f"racer:{status}")
    barrier.wait()
    try:
        ledger.finish(task_id, status=status, summary=f"{status} wins")
        out.put(("won", status))
    except IllegalTransition as refused:
        out.put(("refused", refused.current))
    finally:
        ledger.close()


def test_two_processes_racing_to_finish_one_task_have_exactly_one_winner(ledger: Ledger) -> None:
    url = ledger.engine.url.render_as_string(hide_password=False)
    for round_number in range(5):
        task = ledger.create(runtime="subagent", label=f"race {round_number}")
        barrier = _CTX.Barrier(2)
        out = _CTX.Queue()
        racers = [
            _CTX.Process(target=_finish_racer, args=(url, task.task_id, status, barrier, out))
            for status in ("succeeded", "failed")
        ]
        for racer in racers:
            racer.start()
        results = [out.get(timeout=60) for _ in racers]
        for racer in racers:
            racer.join(timeout=60)
            assert racer.exitcode == 0
        winners = [r for r in results if r[0] == "won"]
        losers = [r for r in results if r[0] == "refused"]
        assert len(winners) == 1
        assert len(losers) == 1
        final = ledger.get(task.task_id)
        assert final.status.value == winners[0][1]
        assert losers[0][1] == final.status.value
        events = ledger.events(task.task_id)
        terminal_moves = [e for e in events if e.kind == "finished"]
        assert len(terminal_moves) == 1
        assert [e.kind for e in events][-1] == "late_update_ignored"


def _lifecycles(url: str, worker: int, count: int, barrier: Any, out: Any) -> None:
    ledger = Ledger.connect(url, actor=f"worker-{worker}")
    errors: list[str] = []
    barrier.wait()
    for i in range(count):
        try:
            task = ledger.create(
                runtime="cli", label=f"w{worker} #{i}", run_id=f"w{worker}-{i}", queued=True
            )
            ledger.start(task.task_id)
            ledger.finish(task.task_id, status="succeeded" if i % 3 else "failed")
        except Exception as error:  # collected and asserted on by the test
            errors.append(f"{type(error).__name__}: {error}")
    ledger.close()
    out.put(errors)


@pytest.mark.parametrize(("workers", "per_worker"), [(8, 500)])
def test_eight_processes_of_lifecycles_lose_no_event_and_raise_no_error(
    ledger: Ledger, workers: int, per_worker: int
) -> None:
    url = ledger.engine.url.render_as_string(hide_password=False)
    barrier = _CTX.Barrier(workers)
    out = _CTX.Queue()
    procs = [
        _CTX.Process(target=_lifecycles, args=(url, w, per_worker, barrier, out))
        for w in range(workers)
    ]
    for proc in procs:
        proc.start()
    errors = [e for _ in procs for e in out.get(timeout=300)]
    for proc in procs:
        proc.join(timeout=60)
    assert errors == []
    total = workers * per_worker
    with ledger_db.read(ledger.engine) as conn:
        tasks = conn.execute(select(func.count()).select_from(tasks_table)).scalar_one()
        events = conn.execute(select(func.count()).select_from(events_table)).scalar_one()
        by_kind = dict(
            conn.execute(
                select(events_table.c.kind, func.count()).group_by(events_table.c.kind)
            ).all()
        )
        gaps = conn.execute(
            select(func.count()).select_from(tasks_table).where(tasks_table.c.version != 3)
        ).scalar_one()
    assert tasks == total
    assert events == 3 * total
    assert by_kind == {"created": total, "started": total, "finished": total}
    assert gaps == 0
