"""The one place a task's status changes (SPEC §3).

`transition()` checks the table in `ledger.status`, then does a compare-and-set UPDATE on the
`version` column, writes the event row and asks `ledger.notify` for outbox rows — all on the
caller's connection, inside the caller's transaction. Every event bumps `version`, and the
event's `seq` is the version it produced, so the history of a task has no gaps or duplicates.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, bindparam, insert, update

from ledger.config import LedgerConfig
from ledger.prepared import Prepared
from ledger.schema import events_table, reply_columns, tasks_table
from ledger.status import ENDED, EventKind, Status, is_allowed

T = tasks_table.c

# Statements are built once; values travel as parameters, so SQLAlchemy compiles each shape
# once and per-event writes cost one round trip each (CONVENTIONS: hot paths in Core).
_INSERT_EVENT = Prepared(insert(events_table))
_CAS_UPDATE = Prepared(
    update(tasks_table).where(
        T.task_id == bindparam("_task_id"), T.version == bindparam("_version")
    )
)


class Refused(Exception):
    """Internal: a move was refused; the caller records it, commits, then raises."""

    def __init__(self, current: Status, requested: str, reason: str = "") -> None:
        self.current = current
        self.requested = requested
        self.reason = reason
        super().__init__(f"{current} -> {requested}")


def write_event(
    conn: Connection,
    task_id: str,
    seq: int,
    kind: str,
    *,
    at: datetime,
    from_status: str | None = None,
    to_status: str | None = None,
    actor: str | None = None,
    summary: str | None = None,
) -> None:
    _INSERT_EVENT.rowcount(
        conn,
        {
            "task_id": task_id,
            "seq": seq,
            "at": at,
            "kind": kind,
            "from_status": from_status,
            "to_status": to_status,
            "actor": actor,
            "summary": summary,
        },
    )


def bump(
    conn: Connection,
    row: Mapping[str, Any],
    values: Mapping[str, Any],
    *,
    kind: str,
    now: datetime,
    actor: str | None,
    summary: str | None,
    from_status: str | None = None,
    to_status: str | None = None,
) -> dict[str, Any] | None:
    """Compare-and-set `values` onto the task at the version we read, plus an event.

    Returns the new row as a dict, or None when another writer got there first (the caller
    re-reads and decides again).
    """
    version = row["version"]
    new_values = dict(values)
    if "reply_to" in new_values:  # keep the derived reply_channel / reply_user in step
        new_values.update(reply_columns(new_values["reply_to"]))
    new_values["version"] = version + 1
    new_values.setdefault("last_event_at", max(now, row["last_event_at"]))
    changed = _CAS_UPDATE.rowcount(
        conn, {**new_values, "_task_id": row["task_id"], "_version": version}
    )
    if changed != 1:
        return None
    write_event(
        conn,
        row["task_id"],
        version + 1,
        kind,
        at=now,
        from_status=from_status,
        to_status=to_status,
        actor=actor,
        summary=summary,
    )
    merged = dict(row)
    merged.update(new_values)
    return merged


def transition(
    conn: Connection,
    row: Mapping[str, Any],
    requested: Status,
    *,
    now: datetime,
    config: LedgerConfig,
    actor: str | None,
    summary: str | None = None,
    extra: Mapping[str, Any] | None = None,
    kind: str | None = None,
) -> dict[str, Any] | None:
    """Move a task to `requested`. Raises `Refused` for a move the table does not allow;
    returns None when the compare-and-set lost a race; else the new row."""
    current = Status(row["status"])
    if not is_allowed(current, requested):
        raise Refused(current, requested.value)
    values: dict[str, Any] = {"status": requested.value}
    created_at: datetime = row["created_at"]
    if requested is Status.RUNNING:
        started = max(now, created_at)
        lease = _lease_seconds(row, config)
        values.update(
            started_at=started,
            heartbeat_at=started,
            lease_expires_at=_plus(started, lease),
        )
    if requested in ENDED:
        floor = row["started_at"] or created_at
        ended = max(now, floor)
        values.update(ended_at=ended, lease_expires_at=None, grace_until=None)
        if requested.is_terminal:
            values["cleanup_after"] = ended + config.retention_for(requested)
    if extra:
        values.update(extra)
    if kind is None:
        kind = _event_kind(current, requested)
    new_row = bump(
        conn,
        row,
        values,
        kind=kind,
        now=now,
        actor=actor,
        summary=summary,
        from_status=current.value,
        to_status=requested.value,
    )
    if new_row is None:
        return None
    from ledger.notify import enqueue_for_transition

    enqueue_for_transition(conn, row, new_row, kind=kind, now=now, config=config)
    return new_row


def record_refusal(
    conn: Connection,
    row: Mapping[str, Any],
    requested: str,
    *,
    now: datetime,
    actor: str | None,
    reason: str,
) -> None:
    """Leave a `late_update_ignored` event so the operator sees the refused move."""
    for _ in range(20):
        if bump(
            conn,
            row,
            {"last_event_at": row["last_event_at"]},
            kind=EventKind.LATE_UPDATE_IGNORED,
            now=now,
            actor=actor,
            summary=f"refused {row['status']} -> {requested}" + (f": {reason}" if reason else ""),
            from_status=row["status"],
            to_status=requested,
        ):
            return
        from ledger.lookup import fetch_row

        fresh = fetch_row(conn, row["task_id"])
        if fresh is None:
            return
        row = fresh


def _event_kind(current: Status, requested: Status) -> str:
    if current is Status.LOST:
        return EventKind.RECOVERED
    if requested is Status.RUNNING:
        return EventKind.STARTED
    if requested is Status.LOST:
        return EventKind.MARKED_LOST
    if requested is Status.CANCELLED:
        return EventKind.CANCELLED
    return EventKind.FINISHED


def _lease_seconds(row: Mapping[str, Any], config: LedgerConfig) -> float:
    if row.get("lease_seconds"):
        return float(row["lease_seconds"])
    return config.lease_for(row["runtime"]).total_seconds()


def _plus(at: datetime, seconds: float) -> datetime:
    from datetime import timedelta

    return at + timedelta(seconds=seconds)


def lease_expiry(row: Mapping[str, Any], config: LedgerConfig, now: datetime) -> datetime:
    return _plus(now, _lease_seconds(row, config))
