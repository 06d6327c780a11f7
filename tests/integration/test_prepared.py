"""`ledger.prepared`: Core statements run on the driver's cursor behave as through SQLAlchemy."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import bindparam, exc, insert, select, update

from ledger import Ledger, db
from ledger.prepared import Prepared
from ledger.schema import events_table, tasks_table

T = tasks_table.c
_BY_ID = select(tasks_table).where(T.task_id == bindparam("task_id"))


def test_select_matches_sqlalchemy_row(ledger: Ledger) -> None:
    task = ledger.create(runtime="cli", label="same row", reply_to="slack:T1/C1/1.2")
    with db.read(ledger.engine) as conn:
        through_sa = dict(conn.execute(_BY_ID, {"task_id": task.task_id}).mappings().one())
        prepared = Prepared(_BY_ID).first(conn, {"task_id": task.task_id})
        missing = Prepared(_BY_ID).first(conn, {"task_id": "tsk_not_there"})
    assert prepared == through_sa
    assert prepared is not None and prepared["created_at"].tzinfo is not None
    assert missing is None


def test_literal_binds_and_update_rowcount(ledger: Ledger) -> None:
    task = ledger.create(runtime="cli", label="before")
    statement = Prepared(
        update(tasks_table).where(T.task_id == bindparam("_id"), T.status == "running")
    )
    with db.write(ledger.engine) as conn:
        assert statement.rowcount(conn, {"label": "after", "_id": task.task_id}) == 1
        assert statement.rowcount(conn, {"label": "x", "_id": "tsk_not_there"}) == 0
    assert ledger.get(task.task_id).label == "after"


def test_insert_refuses_to_skip_a_default(ledger: Ledger) -> None:
    task = ledger.create(runtime="cli", label="x")
    with db.write(ledger.engine) as conn, pytest.raises(ValueError, match="reply_channel"):
        Prepared(insert(tasks_table)).rowcount(conn, {"task_id": task.task_id})


def test_driver_errors_come_out_as_sqlalchemy_errors(ledger: Ledger) -> None:
    task = ledger.create(runtime="cli", label="x")
    now = datetime.now(UTC)
    event = {
        "task_id": task.task_id,
        "seq": 1,  # the created event already holds seq 1
        "at": now + timedelta(seconds=1),
        "kind": "created",
        "from_status": None,
        "to_status": "running",
        "actor": None,
        "summary": None,
    }
    with pytest.raises(exc.IntegrityError), db.write(ledger.engine) as conn:
        Prepared(insert(events_table)).rowcount(conn, event)
    assert [e.seq for e in ledger.events(task.task_id)] == [1]
