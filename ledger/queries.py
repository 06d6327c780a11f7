"""Read-side helpers: one task with its artifacts and deliveries, and its event history."""

from __future__ import annotations

from sqlalchemy import Connection, select

from ledger.lookup import resolve_row
from ledger.records import (
    EventRecord,
    TaskRecord,
    artifact_from_row,
    delivery_from_row,
    event_from_row,
    task_from_row,
)
from ledger.schema import artifacts_table, deliveries_table, events_table


def get_task(
    conn: Connection, ref: str, tenant: str | None = None, *, details: bool = False
) -> TaskRecord:
    row = resolve_row(conn, ref, tenant)
    if not details:
        return task_from_row(row)
    task_id = row["task_id"]
    artifacts = tuple(
        artifact_from_row(a)
        for a in conn.execute(
            select(artifacts_table)
            .where(artifacts_table.c.task_id == task_id)
            .order_by(artifacts_table.c.id)
        ).mappings()
    )
    deliveries = tuple(
        delivery_from_row(d)
        for d in conn.execute(
            select(deliveries_table)
            .where(deliveries_table.c.task_id == task_id)
            .order_by(deliveries_table.c.id)
        ).mappings()
    )
    return task_from_row(row, artifacts, deliveries)


def task_events(conn: Connection, task_id: str) -> list[EventRecord]:
    rows = conn.execute(
        select(events_table).where(events_table.c.task_id == task_id).order_by(events_table.c.seq)
    ).mappings()
    return [event_from_row(r) for r in rows]
